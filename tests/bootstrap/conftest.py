"""Fixtures: an emulated cluster with a stand-in helm on PATH, Kong's controller, and Kong."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from lbsync.bootstrap import actions
from lbsync.bootstrap.config import BootstrapConfig
from lbsync.bootstrap.helm import Helm
from lbsync.bootstrap.kube import ApiCluster

HERE = Path(__file__).resolve().parent
BUNDLE = HERE.parents[2] / "shared" / "data" / "gateway-api-v1.0.0-standard-install.yaml"



def _sim() -> Any:
    # Imported lazily: the pure tests must run even where the emulator is not available.
    return pytest.importorskip("lbsync.sim", reason="the API emulator is not available")


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    sim = _sim()
    server = sim.ApiServer(workdir=tmp_path / "sim", token="secret")
    with server:
        server.ops.deployment_delay = 0.05
        server.ops.crd_delay = 0.02
        server.put(sim.objects.namespace("default"))
        server.put(sim.objects.node("node-1", "127.0.20.1"))
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
    script.write_text(f"#!{sys.executable}\n" + (HERE / "fake_helm.py").read_text())
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("PYTHONPATH", str(HERE.parents[1]))
    return bindir


def helm_calls(bindir: Path) -> list[list[str]]:
    log = bindir / "helm-argv.jsonl"
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


@pytest.fixture
def controller(api: Any) -> Iterator[Any]:
    from tests.bootstrap.fakes import StandInController

    with StandInController(api) as ctl:
        yield ctl


@pytest.fixture
def kong(api: Any) -> Iterator[Any]:
    from tests.bootstrap.fakes import FakeKong

    with FakeKong(api, "127.0.20.1") as k:
        yield k


@pytest.fixture
def cfg() -> BootstrapConfig:
    if not BUNDLE.exists():
        pytest.skip(f"{BUNDLE} not present")
    return BootstrapConfig(gateway_api_crds_file=str(BUNDLE), wait_timeout=5.0)


@dataclass
class Env:
    api: Any
    cfg: BootstrapConfig
    ctx: actions.Context
    helm_bin: Path
    kubeconfig: str
    controller: Any

    def with_cfg(self, **changes: Any) -> actions.Context:
        self.cfg = replace(self.cfg, **changes)
        self.ctx = replace(self.ctx, cfg=self.cfg)
        return self.ctx


@pytest.fixture
def env(api: Any, cfg: BootstrapConfig, helm_bin: Path, controller: Any) -> Env:
    kubeconfig = str(api.kubeconfig_path)
    ctx = actions.Context(cfg, ApiCluster(kubeconfig), Helm(kubeconfig), poll_interval=0.02,
                          crd_timeout=5.0)
    return Env(api, cfg, ctx, helm_bin, kubeconfig, controller)


def statuses(report: Any) -> dict[str, str]:
    return {r.name: r.status.value for r in report.results}


@pytest.fixture
def installed(env: Env) -> Env:
    report = actions.apply(env.ctx)
    assert not report.failed, [r for r in report.results if r.status.failed]
    return env


__all__ = ["BUNDLE", "Env", "helm_calls", "statuses"]
