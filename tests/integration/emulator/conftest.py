"""Fixtures: a fresh emulator per test and real `kubernetes` clients pointed at it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from lbsync_lab.sim import ApiServer


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
