"""Shared fixtures: a private nginx, stand-in nodes, the API emulator, and config files."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from lbsync.lab.nginx import PrivateNginx
from lbsync.lab.nodes import StandinPool


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
