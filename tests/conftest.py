"""Shared fixtures: a private nginx, stand-in nodes, the API emulator, and config files."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from lbsync.lab.nginx import PrivateNginx
from lbsync.lab.nodes import StandinPool
from lbsync.sim import ApiServer, objects

# Each test process gets its own 127.N.10.x range for stand-in nodes, so two test runs on one
# machine (or a leftover of an interrupted one) never fight over an address.
NET = f"127.{os.getpid() % 200 + 20}.10"


def addr(i: int) -> str:
    """The loopback address of stand-in node number i (1-based)."""
    return f"{NET}.{i}"


def hp(i: int, port: int = 32001) -> str:
    """host:port of stand-in node i, as it appears in an upstream."""
    return f"{addr(i)}:{port}"


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


def write_config(path: Path, api: ApiServer, nginx: PrivateNginx, **sections: Any) -> Path:
    """An lbsync config pointing at the emulator and the private nginx; `sections` override."""
    doc: dict[str, Any] = {
        "kubernetes": {"kubeconfig": str(api.kubeconfig_path)},
        "upstreams": [{"name": "k8s_cluster", "service": "kong/kong-gateway-proxy",
                       "port": 80}],
        "nginx": {"output": str(nginx.output), "test_command": list(nginx.test_command),
                  "reload_command": list(nginx.reload_command)},
        "log": {"format": "json", "level": "info"},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(doc.get(key), dict):
            doc[key] = {**doc[key], **value}
        else:
            doc[key] = value
    path.write_text(yaml.safe_dump(doc))
    return path


def add_cluster(api: ApiServer, standins: StandinPool | None, count: int,
                node_port: int = 32001) -> list[str]:
    """`count` Ready nodes at addr(1..count) with stand-ins, and Kong's proxy Service."""
    names = []
    for i in range(1, count + 1):
        name, address = f"node-{i}", addr(i)
        api.put(objects.node(name, address))
        if standins is not None:
            standins.add(name, address, node_port)
        names.append(name)
    api.put(objects.service("kong", "kong-gateway-proxy", ports=[
        {"name": "kong-proxy", "port": 80, "targetPort": 8000, "nodePort": node_port,
         "protocol": "TCP"}]))
    return names
