"""The command line: wiring, output formats, exit codes, one-line failures; with the real
helm 4 (`--helm`) against the emulator."""

from __future__ import annotations

import argparse
import json
import stat
from pathlib import Path

import pytest
import yaml
from lbsync_lab import data
from lbsync_lab.controllers import FakeKong
from lbsync_lab.fixtures import Lab
from lbsync_lab.rig import addr

from lbsync.bootstrap import cli
from lbsync.cli import main

COMMANDS = ("render", "check", "apply", "verify", "doctor", "uninstall", "renew-token")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["bootstrap", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_register_adds_every_subcommand_with_a_func() -> None:
    parser = argparse.ArgumentParser(prog="lbsync")
    cli.register(parser.add_subparsers(dest="command"))
    for command in COMMANDS:
        extra = ["--write-kubeconfig", "x"] if command == "renew-token" else []
        args = parser.parse_args(["bootstrap", command, *extra])
        assert callable(args.func)


def test_missing_subcommand_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["bootstrap"])
    assert exc.value.code == 2


def test_render_needs_no_cluster(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "render", "--kubeconfig", "/nonexistent")
    assert code == 0
    docs = [d for d in yaml.safe_load_all(out) if d]
    kinds = [d["kind"] for d in docs]
    assert kinds[-3:] == ["GatewayClass", "Gateway", "HTTPRoute"]
    assert "# values.yaml:" in out and "nodePort: 32001" in out


def test_render_json_with_crds_and_overrides(capsys: pytest.CaptureFixture[str],
                                            shared_data: Path) -> None:
    code, out, _ = run(capsys, "render", "-o", "json", "--with-crds", "--gateway-api-crds",
                       str(shared_data / data.GATEWAY_API_BUNDLE), "--node-port", "30080",
                       "--hostname", "worlds.com",
                       "--route", "worlds.com/a -> apps/a:80", "--route", "worlds.com/b=b:8080")
    assert code == 0
    doc = json.loads(out)
    assert len(doc["crds"]) == 4
    assert doc["helm"]["values"]["gateway"]["proxy"]["http"]["nodePort"] == 30080
    routes = [o for o in doc["objects"] if o["kind"] == "HTTPRoute"]
    assert [r["metadata"]["name"] for r in routes] == ["worlds-com-a", "worlds-com-b"]
    gw = next(o for o in doc["objects"] if o["kind"] == "Gateway")
    assert gw["spec"]["listeners"][0]["hostname"] == "worlds.com"


def test_render_from_config_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    conf = tmp_path / "bootstrap.yaml"
    conf.write_text("kong:\n  namespace: edge\nroutes:\n  - worlds.com/x -> x:80\n")
    code, out, _ = run(capsys, "render", "-o", "json", "--bootstrap-config", str(conf))
    assert code == 0
    doc = json.loads(out)
    assert doc["helm"]["namespace"] == "edge"


@pytest.mark.parametrize(("argv", "text"), [
    (["render", "--route", "nonsense"], "routes[0]: 'nonsense': expected 'host/path ->"),
    (["render", "--bootstrap-config", "/nonexistent.yaml"], "config /nonexistent.yaml"),
    (["render", "--node-port-range", "x"], "node_port_range"),
    (["apply", "--write-config", "c.yaml", "--kubeconfig", "/nonexistent"],
     "--write-config needs --write-kubeconfig"),
])
def test_usage_errors_exit_2_in_one_line(capsys: pytest.CaptureFixture[str], argv: list[str],
                                         text: str) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert text in err and err.count("\n") == 1 and "Traceback" not in err


def test_bad_kubeconfig_is_a_config_error_in_one_line(capsys: pytest.CaptureFixture[str]
                                                     ) -> None:
    # One error tree: a kubeconfig that cannot be loaded is exit 2 here as for `lbsync render`.
    code, _, err = run(capsys, "doctor", "--kubeconfig", "/nonexistent")
    assert code == 2
    assert err.startswith("lbsync: error: --kubeconfig: cannot load /nonexistent")
    assert err.count("\n") == 1


def test_debug_shows_the_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(Exception, match="kubeconfig"):
        main(["bootstrap", "doctor", "--kubeconfig", "/nonexistent", "--debug"])


def test_unreachable_cluster_fails_in_one_line(capsys: pytest.CaptureFixture[str],
                                               tmp_path: Path) -> None:
    kc = tmp_path / "kc"
    kc.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "x",
        "clusters": [{"name": "x", "cluster": {"server": "http://127.0.20.3:9"}}],
        "users": [{"name": "x", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "x", "user": "x"}}]}))
    code, out, _ = run(capsys, "check", "--pre", "--kubeconfig", str(kc), "-o", "json")
    assert code == 1
    result = json.loads(out)["results"][0]
    assert result["name"] == "cluster reachable" and "cannot reach" in result["message"]


@pytest.fixture(name="cli")
def cli_flags(request: pytest.FixtureRequest, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> tuple[Lab, list[str]]:
    """The lab (`installed` if the test asks for it, else `env`) and the flags that point the
    CLI at it: its kubeconfig, the real helm with homes of its own, the chart repository."""
    lab: Lab = request.getfixturevalue(
        "installed" if "installed" in request.fixturenames else "env")
    for var, value in (lab.ctx.helm.env or {}).items():
        monkeypatch.setenv(var, value)
    conf = tmp_path / "bootstrap.yaml"
    conf.write_text(yaml.safe_dump({"kong": {"repo_url": lab.cfg.kong.repo_url}}))
    return lab, ["--kubeconfig", lab.kubeconfig, "--gateway-api-crds",
                 lab.cfg.gateway_api.crds_source, "--wait-timeout", "30",
                 "--helm", lab.ctx.helm.binary, "--bootstrap-config", str(conf)]


def test_apply_from_empty_then_rerun_doctor_verify_check_uninstall(
        env: Lab, cli: tuple[Lab, list[str]], capsys: pytest.CaptureFixture[str]) -> None:
    _, common = cli
    code, out, _ = run(capsys, "apply", *common)
    assert code == 0, out
    assert "done          Namespace/kong: created" in out
    assert "done          helm release kong/kong (ingress-0.24.0): installed" in out
    assert out.rstrip().splitlines()[-1].startswith("apply: changed")
    code, out, _ = run(capsys, "apply", "-o", "json", *common)
    second = json.loads(out)
    assert code == 0 and second["changed"] is False and second["ok"] is True
    assert {r["status"] for r in second["results"]} == {"unchanged", "ready"}
    code, out, _ = run(capsys, "apply", "--dry-run", *common)
    assert code == 0 and out.rstrip().splitlines()[-1].startswith("apply: unchanged")

    code, out, _ = run(capsys, "doctor", *common)
    assert code == 0, out
    assert "PASS          gatewayclass kong-class" in out
    assert "PASS          lbsync account kong/lbsync" in out

    with FakeKong(env.api, addr(1)) as kong:
        code, out, _ = run(capsys, "verify", *common, "--port", str(kong.port))
        assert code == 0, out
        code, out, _ = run(capsys, "verify", "--address", addr(1), "--port", str(kong.port),
                           "-o", "json")
        assert json.loads(out)["ok"] is True

    code, out, _ = run(capsys, "check", "--pre", *common)
    assert code == 3  # 32001 lies in the dynamic band: a warning, not a failure
    assert "fix: prefer a port in 30000-30086" in out
    assert "PASS          helm: v4.1.4" in out

    code, out, _ = run(capsys, "uninstall", *common, "--purge")
    assert code == 0, out
    assert "deleted       Namespace/kong" in out


def test_apply_writes_the_gateway_files_and_renew_token(
        installed: Lab, cli: tuple[Lab, list[str]], capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    _, common = cli
    kc, conf = tmp_path / "out" / "kubeconfig", tmp_path / "out" / "config.yaml"
    code, out, _ = run(capsys, "apply", "-o", "json", *common, "--write-kubeconfig",
                       str(kc), "--write-config", str(conf))
    doc = json.loads(out)
    assert code == 0, [r for r in doc["results"] if r["status"] == "failed"]
    assert doc["changed"] is True and doc["dry_run"] is False  # the files
    assert stat.S_IMODE(kc.stat().st_mode) == 0o600
    assert yaml.safe_load(conf.read_text())["kubernetes"]["kubeconfig"] == \
        "/etc/lbsync/kubeconfig"
    code, out, _ = run(capsys, "renew-token", *common, "--write-kubeconfig", str(kc),
                       "--if-expires-within", "7")
    assert code == 0 and out.startswith(f"unchanged     kubeconfig {kc}: token valid for 30.0")
    code, out, _ = run(capsys, "renew-token", *common, "--write-kubeconfig", str(kc),
                       "--if-expires-within", "31", "-o", "json")
    assert code == 0 and json.loads(out)["results"][0]["status"] == "done"


def test_apply_failure_exit_1_with_hint(installed: Lab, cli: tuple[Lab, list[str]],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    _, common = cli
    installed.controller.refuse_class = True
    code, out, _ = run(capsys, "apply", *common, "--wait-timeout", "0.3")
    assert code == 1
    assert "failed        GatewayClass/kong-class Accepted" in out
    assert "fix:" in out
    assert out.rstrip().splitlines()[-1].startswith("apply: FAILED")


def test_wired_into_the_main_cli(capsys: pytest.CaptureFixture[str]) -> None:
    main_cli = pytest.importorskip("lbsync.cli")
    code = main_cli.main(["bootstrap", "render", "-o", "json"])
    assert code == 0 and json.loads(capsys.readouterr().out)["helm"]["release"] == "kong"
    # --debug before the subcommand survives the subcommand's own --debug
    with pytest.raises(Exception, match="kubeconfig"):
        main_cli.main(["--debug", "bootstrap", "doctor", "--kubeconfig", "/nonexistent"])


def test_dry_run_writes_no_kubeconfig(env: Lab, cli: tuple[Lab, list[str]],
                                      capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    _, common = cli
    kc = tmp_path / "kubeconfig"
    before = len(env.api.requests)
    code, out, _ = run(capsys, "apply", "--dry-run", "-o", "json", *common,
                       "--write-kubeconfig", str(kc))
    assert env.writes(before) == []
    doc = json.loads(out)
    assert code == 0 and doc["dry_run"] is True and doc["changed"] is True
    assert doc["results"][-1] == {"name": f"kubeconfig {kc}", "status": "skipped",
                                  "message": "dry run"}
    assert not kc.exists()
