"""The lab as pytest fixtures (a pytest plugin: `pytest_plugins = ["lbsync_lab.fixtures"]`).

Fixtures: `shared_data`, `nginx`, `standins`, `api` (an empty emulator), and for the
bootstrap's tests, which drive the real helm and charts: `chart_repo`, `kong_install` (one
real install per helm per session), `env` (an empty lab), `installed` (a lab holding a copy of
that install), `kong` (Kong's proxy stood in on node-1's address).
Missing shared test data fails the whole run at its start with one clear message, unless
`LBSYNC_SKIP_SHARED_DATA=1` says to skip the tests that need it, on purpose.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from lbsync import schema
from lbsync.bootstrap import actions
from lbsync.bootstrap.cluster import ApiCluster
from lbsync.bootstrap.config import BootstrapConfig, GatewayApiSection, KongSection
from lbsync.bootstrap.helm import Helm
from lbsync.bootstrap.report import Report
from lbsync_lab import data
from lbsync_lab.controllers import FakeKong, StandInController
from lbsync_lab.inprocess import Running
from lbsync_lab.nginx import PrivateNginx, free_port
from lbsync_lab.nodes import StandinPool
from lbsync_lab.rig import addr, write_config
from lbsync_lab.sim import ApiServer, objects
from lbsync_lab.sim.clients import ChartRepo, tool

SKIP_SHARED_DATA = os.environ.get("LBSYNC_SKIP_SHARED_DATA") == "1"


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


# --- the bootstrap's tests: the real helm and the real kong/ingress charts ------------------
#
# `lbsync bootstrap` drives the real helm 4.1.4 or 3.17.3 (scripts/get-tools.sh; missing, a
# test errors naming the script), which installs the real charts (../shared/data/kong-charts,
# served as a chart repository on loopback) into the emulator; the stand-in controllers make
# the Deployments available, publish EndpointSlices and write KIC's Gateway API statuses.
#
# A real install takes seconds, so it is done once per helm per session (`kong_install`), and
# a copy of every object it left in the emulator (helm's release record included) seeds
# `installed`: a fresh emulator per test that real helm finds exactly as it left it, so
# upgrades, uninstalls and doctor's failure cases run isolated, without a reinstall.

HELMS = ("helm4", "helm3")
CHART_VERSIONS = ("0.10.2", "0.24.0")
BACKEND = {"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": "hello-world-1-svc", "namespace": "default"},
           "spec": {"ports": [{"port": 80, "targetPort": 8080}],
                    "selector": {"app": "hello-world-1"}}}


@pytest.fixture(scope="session")
def chart_repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChartRepo]:
    """The real kong/ingress charts as a chart repository on 127.0.0.1."""
    charts = [data.path(f"{data.KONG_CHARTS}/ingress-{v}.tgz") for v in CHART_VERSIONS]
    with ChartRepo(charts, tmp_path_factory.mktemp("charts"), tool("helm4")) as repo:
        yield repo


def real_helm(name: str, kubeconfig: str, home: Path) -> Helm:
    """lbsync's helm edge over a real helm (`helm4` or `helm3`), with homes of its own."""
    env = {var: str(home / sub) for var, sub in (
        ("HELM_CACHE_HOME", "cache"), ("HELM_CONFIG_HOME", "config"),
        ("HELM_DATA_HOME", "data"))}
    return Helm(kubeconfig, binary=str(tool(name)), env=env)


def snapshot(api: ApiServer) -> list[dict[str, Any]]:
    """Every stored object, CRDs and Namespaces first (what `restore` needs first)."""
    out = []
    for rt in api.registry.all():
        if not rt.virtual:
            out += api.list(rt.kind, api_version=rt.api_version)
    first = {"CustomResourceDefinition": 0, "Namespace": 1}
    return sorted(out, key=lambda o: first.get(o["kind"], 2))


def restore(api: ApiServer, objs: list[dict[str, Any]]) -> None:
    for obj in objs:
        obj = json.loads(json.dumps(obj))
        obj["metadata"].pop("resourceVersion", None)
        api.put(obj)


@dataclass
class Lab:
    """An emulator with the stand-in controllers, lbsync's bootstrap config for it, and a
    context that drives a real helm."""

    api: ApiServer
    cfg: BootstrapConfig
    ctx: actions.Context
    helm_name: str
    kubeconfig: str
    controller: StandInController
    workdir: Path

    def with_cfg(self, **changes: Any) -> actions.Context:
        """Change settings by path, `__` for the dot: with_cfg(kong__node_port=40000)."""
        for path, value in changes.items():
            self.cfg = schema.replaced(self.cfg, path.replace("__", "."), value)
        self.ctx = replace(self.ctx, cfg=self.cfg)
        return self.ctx

    def helm(self, *args: str) -> str:
        """The lab's helm, as a person would run it (for what lbsync does not ask)."""
        return self.ctx.helm.run(*args)

    def history(self) -> list[dict[str, Any]]:
        """helm's revisions of the release."""
        got: list[dict[str, Any]] = json.loads(self.helm("history", "kong", "-n", "kong",
                                                         "-o", "json"))
        return got

    def writes(self, since: int) -> list[tuple[str, str, int]]:
        """Requests after the first `since` that may change something (dry runs excluded)."""
        return [r for r in self.api.requests[since:] if r[0] not in ("GET", "HEAD")
                and "dryRun=All" not in r[1] and not r[1].startswith(
                    ("/apis/authorization.k8s.io/",))]


@contextlib.contextmanager
def lab(workdir: Path, helm_name: str, repo: ChartRepo,
        seed: list[dict[str, Any]] | None = None, wait_timeout: float = 30.0) -> Iterator[Lab]:
    """A lab: an emulator seeded with `seed` (else a node, namespace default and the route's
    backend Service), the stand-in controllers running, helm `helm_name`."""
    with ApiServer(workdir=workdir / "sim", token="secret") as api:
        api.ops.crd_delay = 0.02
        if seed is None:
            api.put(objects.namespace("default"))
            api.put(objects.node("node-1", addr(1)))
            api.put(BACKEND)
        else:
            restore(api, seed)
        cfg = BootstrapConfig(
            gateway_api=GatewayApiSection(crds_file=data.path(data.GATEWAY_API_BUNDLE)),
            kong=KongSection(repo_url=repo.url), wait_timeout=wait_timeout)
        kubeconfig = str(api.kubeconfig_path)
        with StandInController(api) as controller:
            ctx = actions.Context(cfg, ApiCluster(kubeconfig),
                                  real_helm(helm_name, kubeconfig, workdir / "helm"),
                                  poll_interval=0.02, crd_timeout=5.0)
            yield Lab(api, cfg, ctx, helm_name, kubeconfig, controller, workdir)
        assert not controller.errors, controller.errors


@dataclass
class KongInstall:
    """A real install from an empty emulator: its report, and a copy of every object."""

    report: Report
    seconds: float
    objects: list[dict[str, Any]]


class KongInstalls:
    """One real install per helm per session: `kong_install("helm4")`. The first caller with
    a lab of its own may `record` its install; otherwise one is made in a lab that is taken
    down at once (no emulator is left running for the rest of the session)."""

    def __init__(self, workdir: Callable[[str], Path], repo: ChartRepo) -> None:
        self._workdir, self._repo = workdir, repo
        self._done: dict[str, KongInstall] = {}

    def record(self, helm_name: str, report: Report, seconds: float,
               api: ApiServer) -> KongInstall:
        assert not report.failed, [r for r in report.results if r.status.failed]
        self._done.setdefault(helm_name, KongInstall(report, seconds, snapshot(api)))
        return self._done[helm_name]

    def __call__(self, helm_name: str) -> KongInstall:
        if helm_name not in self._done:
            with lab(self._workdir(f"kong-{helm_name}"), helm_name, self._repo) as the_lab:
                start = time.monotonic()
                report = actions.apply(the_lab.ctx)
                self.record(helm_name, report, time.monotonic() - start, the_lab.api)
        return self._done[helm_name]


@pytest.fixture(scope="session")
def kong_install(tmp_path_factory: pytest.TempPathFactory,
                 chart_repo: ChartRepo) -> KongInstalls:
    return KongInstalls(tmp_path_factory.mktemp, chart_repo)


@pytest.fixture
def env(tmp_path: Path, chart_repo: ChartRepo) -> Iterator[Lab]:
    """An empty cluster (a node, the backend Service) and the real helm 4."""
    with lab(tmp_path, "helm4", chart_repo) as empty:
        yield empty


@pytest.fixture
def installed(tmp_path: Path, chart_repo: ChartRepo,
              kong_install: KongInstalls) -> Iterator[Lab]:
    """A fresh emulator holding what `lbsync bootstrap apply` with the real helm 4 made."""
    with lab(tmp_path, "helm4", chart_repo, kong_install("helm4").objects) as copy:
        yield copy


@pytest.fixture
def kong(request: pytest.FixtureRequest) -> Iterator[FakeKong]:
    """Kong's proxy answering on node-1's address, for `verify` (on `installed` or `env`)."""
    the_lab: Lab = request.getfixturevalue(
        "installed" if "installed" in request.fixturenames else "env")
    with FakeKong(the_lab.api, addr(1)) as k:
        yield k


def statuses(report: Any) -> dict[str, str]:
    return {r.name: r.status.value for r in report.results}
