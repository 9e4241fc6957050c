"""Fixtures: a fresh emulator per test, real `kubernetes` clients and the real kubectl pointed
at it, and the stand-in controllers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from lbsync_lab.controllers import ControllerManager
from lbsync_lab.sim import ApiServer
from lbsync_lab.sim.clients import Kubectl


@pytest.fixture
def api(tmp_path: Path) -> Iterator[ApiServer]:
    server = ApiServer(workdir=tmp_path / "sim", token="secret", bookmark_interval=0.3,
                       history=1000)
    with server:
        yield server


@pytest.fixture
def client(api: ApiServer) -> Any:
    c = kubernetes.config.new_client_from_config(config_file=str(api.kubeconfig_path))
    yield c
    c.close() if hasattr(c, "close") else None


@pytest.fixture
def core(client: Any) -> Any:
    return kubernetes.client.CoreV1Api(client)


@pytest.fixture
def kubectl(api: ApiServer, tmp_path: Path) -> Kubectl:
    """The real kubectl (scripts/get-tools.sh), with the emulator's admin kubeconfig."""
    return Kubectl(api.kubeconfig_path, tmp_path / "kubectl")


@pytest.fixture
def controllers(api: ApiServer) -> Iterator[ControllerManager]:
    """kube-controller-manager's stand-ins (Deployments, tokens, garbage collection)."""
    with ControllerManager(api) as manager:
        yield manager
    assert not manager.errors, manager.errors
