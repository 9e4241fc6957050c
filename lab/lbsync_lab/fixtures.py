"""The lab as pytest fixtures (a pytest plugin: `pytest_plugins = ["lbsync_lab.fixtures"]`).

Fixtures: `shared_data`, `nginx`, `standins`, `api` (an empty emulator), and for the
bootstrap's tests `bootstrap_api` (an emulator with a node, a backend Service and quick
stand-in Deployments), `controller`, `kong`, `helm_bin`, `bootstrap_cfg`, `env`, `installed`.
Missing shared test data fails the whole run at its start with one clear message, unless
`LBSYNC_SKIP_SHARED_DATA=1` says to skip the tests that need it, on purpose.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from lbsync import schema
from lbsync.bootstrap import actions
from lbsync.bootstrap.cluster import ApiCluster
from lbsync.bootstrap.config import BootstrapConfig, GatewayApiSection
from lbsync.bootstrap.helm import Helm
from lbsync_lab import data
from lbsync_lab.controllers import FakeKong, StandInController
from lbsync_lab.inprocess import Running
from lbsync_lab.nginx import PrivateNginx, free_port
from lbsync_lab.nodes import StandinPool
from lbsync_lab.rig import addr, child_env, write_config
from lbsync_lab.sim import ApiServer, objects

SKIP_SHARED_DATA = os.environ.get("LBSYNC_SKIP_SHARED_DATA") == "1"
FAKE_HELM = Path(__file__).resolve().parent / "fake_helm.py"


def pytest_sessionstart(session: pytest.Session) -> None:
    missing = data.missing()
    if missing and not SKIP_SHARED_DATA:
        pytest.exit(
            f"shared test data missing: {', '.join(map(str, missing))}. Put ../shared/data "
            f"beside the project root or set ${data.ENV}; LBSYNC_SKIP_SHARED_DATA=1 skips the "
            "tests that need it, on purpose.", returncode=4)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With the data missing and the switch set: every integration and end-to-end test needs
    the emulator, which serves the real OpenAPI document, so only the unit tier runs."""
    if not (data.missing() and SKIP_SHARED_DATA):
        return
    skip = pytest.mark.skip(reason="LBSYNC_SKIP_SHARED_DATA=1: shared test data skipped on "
                                   "purpose (the emulator needs it)")
    for item in items:
        if {"integration", "e2e"} & set(item.path.parts):
            item.add_marker(skip)


@pytest.fixture
def shared_data() -> Path:
    """The shared data directory; tests that need it take this fixture."""
    if data.missing():
        if SKIP_SHARED_DATA:
            pytest.skip("LBSYNC_SKIP_SHARED_DATA=1: shared test data skipped on purpose")
        raise data.MissingTestData(f"missing: {data.missing()}")
    return data.directory()


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[PrivateNginx]:
    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
        pytest.fail("nginx is not installed: run .ci/run or `apt-get install nginx`")
    server = PrivateNginx(tmp_path / "nginx")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def standins() -> Iterator[StandinPool]:
    with StandinPool() as pool:
        yield pool


@pytest.fixture
def api(tmp_path: Path) -> Iterator[ApiServer]:
    with ApiServer(workdir=tmp_path / "sim", token="secret", bookmark_interval=0.5) as server:
        yield server


# --- the daemon in this process ------------------------------------------------------------

# Quick timing, so that tests wait for tenths of seconds, not for production's seconds.
FAST = {"debounce": 0.1, "max_delay": 1.0, "min_reload_interval": 0.2,
        "ready_after_failure": 1.5, "watch_timeout": 30}
# Probes are off unless a test turns them on (`nodes={"probe": {"enabled": True}}`): the
# daemon's other tests add nodes without stand-ins to watch the API side alone.
FAST_PROBES = {"enabled": False, "interval": 0.2, "timeout": 0.15, "rise": 2, "fall": 2}


@pytest.fixture
def run_daemon(tmp_path: Path, api: ApiServer, nginx: PrivateNginx
               ) -> Iterator[Callable[..., Running]]:
    """Start `lbsync run` in this process against the emulator and the private nginx:
    `run_daemon(**config sections)`; every one started is stopped at the end."""
    started: list[Running] = []

    def start(**sections: Any) -> Running:
        sync = {**FAST, **sections.pop("sync", {})}
        nodes = sections.pop("nodes", {})
        nodes = {**nodes, "probe": {**FAST_PROBES, **nodes.get("probe", {})}}
        path = write_config(tmp_path / "config.yaml", api, nginx, sync=sync, nodes=nodes,
                            http={"listen": f"127.0.0.1:{free_port()}"}, **sections)
        started.append(Running.start(path, nginx))
        return started[-1]

    yield start
    for running in started:
        running.stop()


# --- the bootstrap's tests -------------------------------------------------------------------


@pytest.fixture
def bootstrap_api(tmp_path: Path) -> Iterator[ApiServer]:
    server = ApiServer(workdir=tmp_path / "sim", token="secret")
    with server:
        server.ops.crd_delay = 0.02
        server.put(objects.namespace("default"))
        server.put(objects.node("node-1", addr(1)))
        server.put({"apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": "hello-world-1-svc", "namespace": "default"},
                    "spec": {"ports": [{"port": 80, "targetPort": 8080}],
                             "selector": {"app": "hello-world-1"}}})
        yield server


@pytest.fixture
def helm_bin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The stand-in helm, first on PATH; its argv log and state live next to it."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "helm"
    script.write_text(f"#!{sys.executable}\n" + FAKE_HELM.read_text())
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("PYTHONPATH", child_env()["PYTHONPATH"])
    return bindir


def helm_calls(bindir: Path) -> list[list[str]]:
    log = bindir / "helm-argv.jsonl"
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


@pytest.fixture
def controller(bootstrap_api: ApiServer) -> Iterator[StandInController]:
    with StandInController(bootstrap_api) as ctl:
        yield ctl


@pytest.fixture
def kong(bootstrap_api: ApiServer) -> Iterator[FakeKong]:
    with FakeKong(bootstrap_api, addr(1)) as k:
        yield k


@pytest.fixture
def bootstrap_cfg(shared_data: Path) -> BootstrapConfig:
    return BootstrapConfig(
        gateway_api=GatewayApiSection(crds_file=shared_data / data.GATEWAY_API_BUNDLE),
        wait_timeout=5.0)


@dataclass
class Env:
    api: ApiServer
    cfg: BootstrapConfig
    ctx: actions.Context
    helm_bin: Path
    kubeconfig: str
    controller: StandInController

    def with_cfg(self, **changes: Any) -> actions.Context:
        """Change settings by path, `__` for the dot: with_cfg(kong__node_port=40000)."""
        for path, value in changes.items():
            self.cfg = schema.replaced(self.cfg, path.replace("__", "."), value)
        self.ctx = replace(self.ctx, cfg=self.cfg)
        return self.ctx


@pytest.fixture
def env(bootstrap_api: ApiServer, bootstrap_cfg: BootstrapConfig, helm_bin: Path,
        controller: StandInController) -> Env:
    kubeconfig = str(bootstrap_api.kubeconfig_path)
    ctx = actions.Context(bootstrap_cfg, ApiCluster(kubeconfig), Helm(kubeconfig),
                          poll_interval=0.02, crd_timeout=5.0)
    return Env(bootstrap_api, bootstrap_cfg, ctx, helm_bin, kubeconfig, controller)


def statuses(report: Any) -> dict[str, str]:
    return {r.name: r.status.value for r in report.results}


@pytest.fixture
def installed(env: Env) -> Env:
    report = actions.apply(env.ctx)
    assert not report.failed, [r for r in report.results if r.status.failed]
    return env
