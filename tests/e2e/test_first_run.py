"""What a new user meets first must tell the truth: missing test data fails the run loudly,
a broken kubeconfig is one line naming the file, and the demo's errors are its own."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from lbsync_lab.rig import child_env

ROOT = Path(__file__).resolve().parents[2]


def pytest_run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=ROOT, env=child_env(**env), capture_output=True, text=True, timeout=120)


def test_missing_shared_data_fails_the_test_run_loudly(tmp_path: Path) -> None:
    result = pytest_run("tests/unit/test_text.py", LBSYNC_SHARED_DATA=str(tmp_path / "none"))
    assert result.returncode == 4, result.stdout + result.stderr
    out = result.stdout + result.stderr
    assert "shared test data missing" in out and str(tmp_path / "none") in out
    assert "LBSYNC_SKIP_SHARED_DATA=1" in out


def test_skipping_the_shared_data_is_a_documented_choice(tmp_path: Path) -> None:
    result = pytest_run("tests/unit/bootstrap/test_crds.py",
                        LBSYNC_SHARED_DATA=str(tmp_path / "none"), LBSYNC_SKIP_SHARED_DATA="1")
    assert result.returncode == 0, result.stdout
    assert "skipped on purpose" in result.stdout or "1 skipped" in result.stdout


def test_a_kubeconfig_that_is_not_yaml_is_one_line_naming_it_exit_2(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nclusters: [\n  - {name: a\n")
    config = tmp_path / "config.yaml"
    config.write_text(f"upstreams: [{{name: a, node_port: 32001}}]\n"
                      f"kubernetes: {{kubeconfig: {kubeconfig}}}\n"
                      f"nginx: {{servers_dir: {tmp_path}, state_dir: {tmp_path / 'state'}}}\n")
    for command in ("render", "once", "status"):
        result = subprocess.run([sys.executable, "-m", "lbsync", "-c", str(config), command],
                                env=child_env(), capture_output=True, text=True, timeout=30)
        assert result.returncode == 2, (command, result.stderr)
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
        assert result.stderr.startswith(f"lbsync: error: kubernetes.kubeconfig: cannot load "
                                        f"{kubeconfig}: not valid YAML (line ")


def test_the_demo_says_so_when_its_port_is_taken() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "lbsync", "demo", "--port", str(port)],
                                env=child_env(), capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr == (f"lbsync demo: error: port {port} on 127.0.0.1 is taken; pick "
                             "another with --port, or --port 0 for any free one\n")
