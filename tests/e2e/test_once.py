"""`lbsync once` and `lbsync render` end to end: the real CLI, the API emulator over HTTPS,
a real nginx, and stand-in nodes on loopback."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from lbsync_lab.nginx import PrivateNginx
from lbsync_lab.nodes import StandinPool
from lbsync_lab.rig import add_cluster, addr, child_env, hp, write_config
from lbsync_lab.sim import ApiServer, objects

ROOT = Path(__file__).resolve().parents[2]


def lbsync(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lbsync", *args], capture_output=True, text=True, timeout=60,
        cwd=ROOT, env=child_env(**(env or {})),
    )


def served_by(nginx: PrivateNginx, requests: int = 12) -> Counter[str]:
    seen: Counter[str] = Counter()
    for _ in range(requests):
        url = f"http://127.0.0.1:{nginx.port}/world1"
        with urllib.request.urlopen(url, timeout=5) as resp:
            seen[resp.read().decode().split()[0]] += 1
    return seen


@pytest.fixture
def cfg_path(tmp_path: Path, api: ApiServer, nginx: PrivateNginx) -> Path:
    return write_config(tmp_path / "config.yaml", api, nginx)


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("lbsync: ")]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_once_writes_reloads_and_traffic_reaches_exactly_the_eligible_nodes(
    api: ApiServer, nginx: PrivateNginx, standins: StandinPool, cfg_path: Path
) -> None:
    add_cluster(api, standins, 3)
    # A fourth node answers too, but is NotReady: it must get no traffic.
    api.put(objects.node("node-4", addr(4), ready=False))
    standins.add("node-4", addr(4), 32001)
    workers = nginx.worker_pids()

    result = lbsync("-c", str(cfg_path), "once")
    assert result.returncode == 0, result.stderr
    # No record of what nginx ran before (the fixture's placeholder): all three are "added".
    assert result.stdout == "k8s_cluster: 3 nodes (+3 -0), reloaded\n"
    nginx.wait_reloaded(workers)
    assert served_by(nginx) == Counter({"node-1": 4, "node-2": 4, "node-3": 4})
    text = nginx.output.read_text()
    assert f"server {hp(1)} max_fails=3 fail_timeout=10s;  # node-1" in text
    assert addr(4) not in text


def test_not_ready_node_is_dropped_and_an_unchanged_run_does_not_reload(
    api: ApiServer, nginx: PrivateNginx, standins: StandinPool, cfg_path: Path
) -> None:
    add_cluster(api, standins, 3)
    workers = nginx.worker_pids()
    assert lbsync("-c", str(cfg_path), "once").returncode == 0
    workers = nginx.wait_reloaded(workers)

    again = lbsync("-c", str(cfg_path), "once")
    assert again.stdout == "k8s_cluster: 3 nodes (+0 -0), unchanged\n"
    assert nginx.worker_pids() == workers  # no reload: same worker processes

    api.put(objects.node("node-2", addr(2), ready=False))
    dropped = lbsync("-c", str(cfg_path), "once")
    assert dropped.stdout == "k8s_cluster: 2 nodes (+0 -1), reloaded\n", dropped.stderr
    nginx.wait_reloaded(workers)
    assert set(served_by(nginx)) == {"node-1", "node-3"}


def test_failing_nginx_test_keeps_the_previous_file_and_nginx_serving(
    api: ApiServer, nginx: PrivateNginx, standins: StandinPool, cfg_path: Path
) -> None:
    add_cluster(api, standins, 2)
    workers = nginx.worker_pids()
    assert lbsync("-c", str(cfg_path), "once").returncode == 0
    before = nginx.output.read_bytes()
    workers = nginx.wait_reloaded(workers)
    (nginx.conf_d / "other.conf").write_text("upstream broken { server ; }\n")
    api.put(objects.node("node-3", addr(3)))
    standins.add("node-3", addr(3), 32001)  # up, or its failing probe would leave it out

    result = lbsync("-c", str(cfg_path), "once")
    assert result.returncode == 1
    line = one_error_line(result.stderr)
    assert "nginx test failed, previous file restored" in line
    assert "[emerg]" in line and "other.conf" in line
    assert nginx.output.read_bytes() == before
    assert nginx.worker_pids() == workers
    assert set(served_by(nginx, 4)) == {"node-1", "node-2"}


@pytest.mark.parametrize(
    "hostile",
    ["127.0.10.9; server 6.6.6.6:80", "}\ninclude /etc/passwd;\nupstream x {",
     "127.0.10.9:80", "example.com", "127.0.10.9 backup", "../../etc/nginx"],
)
def test_hostile_node_data_never_reaches_the_file(
    api: ApiServer, nginx: PrivateNginx, standins: StandinPool, cfg_path: Path, hostile: str
) -> None:
    add_cluster(api, standins, 2)
    api.put(objects.node("evil", hostile))
    result = lbsync("-c", str(cfg_path), "once")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "k8s_cluster: 2 nodes (+2 -0), reloaded\n"
    text = nginx.output.read_text()
    assert hostile not in text and "evil" not in text
    assert "6.6.6.6" not in text and "include" not in text and "passwd" not in text
    # The skipped node is named in a warning.
    assert "evil" in result.stderr and "bad-address" in result.stderr


def test_render_prints_the_file_and_touches_nothing(
    api: ApiServer, nginx: PrivateNginx, cfg_path: Path
) -> None:
    add_cluster(api, None, 2)
    before = nginx.output.read_bytes()
    workers = nginx.worker_pids()
    result = lbsync("-c", str(cfg_path), "render")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("# upstream k8s_cluster: kong/kong-gateway-proxy:80, "
                                     "2 server(s).\n")
    assert f"\nserver {hp(1)} max_fails=3 fail_timeout=10s;  # node-1\n" in result.stdout
    assert nginx.output.read_bytes() == before and not nginx.staged_output.exists()
    assert nginx.worker_pids() == workers


def test_missing_service_fails_naming_it(
    api: ApiServer, nginx: PrivateNginx, cfg_path: Path
) -> None:
    api.put(objects.node("node-1", addr(1)))
    before = nginx.output.read_bytes()
    result = lbsync("-c", str(cfg_path), "once")
    assert result.returncode == 1
    assert "Service kong/kong-gateway-proxy not found" in one_error_line(result.stderr)
    assert nginx.output.read_bytes() == before


def test_too_few_nodes_refuses_to_write(
    api: ApiServer, nginx: PrivateNginx, tmp_path: Path
) -> None:
    add_cluster(api, None, 2)
    api.put(objects.node("node-2", addr(2), ready=False))
    path = write_config(tmp_path / "c.yaml", api, nginx, nodes={"min_nodes": 2})
    before = nginx.output.read_bytes()
    result = lbsync("-c", str(path), "once")
    assert result.returncode == 1
    assert "fewer than nodes.min_nodes=2" in one_error_line(result.stderr)
    assert nginx.output.read_bytes() == before


def test_unreachable_cluster_fails_with_one_line(
    api: ApiServer, nginx: PrivateNginx, cfg_path: Path
) -> None:
    api.stop()
    result = lbsync("-c", str(cfg_path), "once")
    assert result.returncode == 1
    assert "cannot reach the API server" in one_error_line(result.stderr)


def test_rejected_token_fails_with_the_status(
    api: ApiServer, nginx: PrivateNginx, tmp_path: Path
) -> None:
    text = Path(api.kubeconfig_path).read_text().replace("secret", "wrong-token")
    kubeconfig = tmp_path / "bad-kubeconfig"
    kubeconfig.write_text(text)
    path = write_config(tmp_path / "c.yaml", api, nginx,
                        kubernetes={"kubeconfig": str(kubeconfig)})
    result = lbsync("-c", str(path), "once")
    assert result.returncode == 1
    assert "Unauthorized (HTTP 401)" in one_error_line(result.stderr)


def test_transient_api_errors_are_retried(
    api: ApiServer, nginx: PrivateNginx, standins: StandinPool, cfg_path: Path
) -> None:
    add_cluster(api, standins, 1)
    api.faults.fail_next(2, status=503)
    result = lbsync("-c", str(cfg_path), "once")
    assert result.returncode == 0, result.stderr
    assert "reloaded" in result.stdout


@pytest.mark.parametrize(
    ("content", "message"),
    [("upstreams: []\n", "upstreams: must be a non-empty list"),
     ("upstreams: [{name: a, node_port: 1}]\nnginx: {outptu: x}\n", "nginx.outptu: unknown key"),
     ("upstreams: [{name: a, node_port: 32001}]\nkubernetes: {kubeconfig: /nonexistent}\n",
      "kubernetes.kubeconfig: /nonexistent: no such file")],
)
def test_bad_config_exits_2_naming_the_key(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(content)
    result = lbsync("-c", str(path), "once")
    assert result.returncode == 2
    assert message in one_error_line(result.stderr)


def test_config_from_environment_and_missing_file(tmp_path: Path) -> None:
    result = lbsync("once", env={"LBSYNC_CONFIG": str(tmp_path / "nope.yaml")})
    assert result.returncode == 2
    assert f"config file {tmp_path / 'nope.yaml'}: not found" in one_error_line(result.stderr)


def test_version_and_help() -> None:
    from lbsync import __version__

    assert lbsync("--version").stdout == f"lbsync {__version__}\n"
    top = lbsync("--help")
    assert top.returncode == 0
    for word in ("once", "render", "exit codes:", "2  usage or configuration error"):
        assert word in top.stdout
    sub = lbsync("once", "--help")
    assert sub.returncode == 0 and "previous files are put back" in sub.stdout
    assert lbsync("nonsense").returncode == 2


def test_a_pass_killed_during_the_test_is_redone_by_the_next_one(
    api: ApiServer, nginx: PrivateNginx, standins: StandinPool, tmp_path: Path
) -> None:
    """Before: SIGKILL during `nginx -t` left the new file on disk; the next run saw identical
    bytes, said "unchanged" and never reloaded, so nginx never ran them."""
    import os
    import signal
    import time

    add_cluster(api, standins, 2)
    started = tmp_path / "test-started"
    hanging = tmp_path / "hang.sh"
    hanging.write_text(f'#!/bin/sh\ntouch "{started}"\nexec sleep 60\n')
    hanging.chmod(0o755)
    slow = write_config(tmp_path / "slow.yaml", api, nginx,
                        nginx={"test_command": [str(hanging)]})
    proc = subprocess.Popen([sys.executable, "-m", "lbsync", "-c", str(slow), "once"],
                            cwd=ROOT, env=child_env(), start_new_session=True)
    deadline = time.monotonic() + 20
    while not started.exists():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # lbsync and its test command, mid-test
    proc.wait()
    assert nginx.staged_output.exists()  # the killed pass wrote its file
    assert hp(1) not in nginx.servers()  # but nginx never ran it

    workers = nginx.worker_pids()
    result = lbsync("-c", str(write_config(tmp_path / "c.yaml", api, nginx)), "once")
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith(", reloaded\n"), result.stdout
    nginx.wait_reloaded(workers)
    assert nginx.servers() == {hp(1), hp(2)}


def test_once_probes_and_leaves_out_a_node_that_refuses(
    api: ApiServer, nginx: PrivateNginx, standins: StandinPool, cfg_path: Path
) -> None:
    """Ready in the API, but nothing answers on its node port: one probe round says so."""
    add_cluster(api, standins, 3)
    standins.nodes["node-2"].crash()
    result = lbsync("-c", str(cfg_path), "once")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "k8s_cluster: 2 nodes (+2 -0), reloaded\n"
    assert nginx.servers() == {hp(1), hp(3)}
