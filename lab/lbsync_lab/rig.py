"""The lab rig: the one way to stand up a cluster and a gateway on loopback.

The demo, the tests, the package test and the benchmarks all use it: the API emulator (in
this process, or as its own process so that a benchmark measures lbsync alone), stand-in
nodes on a free block of loopback addresses, Kong's proxy Service, a private nginx, and an
lbsync config file that points at all of them. Node i (1-based) is `node-i` at `addr(i)`.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

import lbsync
import lbsync_lab
from lbsync_lab.nginx import PrivateNginx
from lbsync_lab.nodes import StandinPool, free_block
from lbsync_lab.sim import ApiServer, objects

# Where `lbsync` and `lbsync_lab` are imported from: a child Python (a CLI under test, the
# emulator as its own process) must import the same code, on any interpreter.
SOURCE_PATHS = tuple(dict.fromkeys(str(Path(m.__file__).resolve().parents[1])
                                   for m in (lbsync, lbsync_lab) if m.__file__))


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a child Python process that must see this lbsync and lab."""
    path = os.pathsep.join([*SOURCE_PATHS, *filter(None, [os.environ.get("PYTHONPATH")])])
    return {**os.environ, "PYTHONPATH": path, **extra}


NODE_PORT = 32001
PROXY_NAMESPACE, PROXY_NAME = "kong", "kong-gateway-proxy"
# Room for the nodes a test adds one by one after the first ones.
BLOCK = 40


def proxy_service(node_port: int = NODE_PORT) -> dict[str, Any]:
    """Kong's proxy Service as the chart makes it: NodePort 80 -> node_port."""
    return objects.service(PROXY_NAMESPACE, PROXY_NAME, ports=[
        {"name": "kong-proxy", "port": 80, "targetPort": 8000, "nodePort": node_port,
         "protocol": "TCP"}])


_net: str | None = None


def net() -> str:
    """This process's block of loopback addresses (`127.X.Y`), picked free on first use."""
    global _net
    if _net is None:
        _net = free_block(BLOCK, NODE_PORT)
    return _net


def addr(i: int) -> str:
    """The loopback address of node i (1-based)."""
    return f"{net()}.{i}"


def hp(i: int, port: int = NODE_PORT) -> str:
    """host:port of node i as it appears in an upstream."""
    return f"{addr(i)}:{port}"


def add_cluster(api: ApiServer, standins: StandinPool | None, count: int,
                node_port: int = NODE_PORT) -> list[str]:
    """`count` Ready nodes `node-i` at addr(i) (with stand-ins), and Kong's proxy Service."""
    names = []
    for i in range(1, count + 1):
        name = f"node-{i}"
        api.put(objects.node(name, addr(i)))
        if standins is not None and name not in standins.nodes:
            standins.add(name, addr(i), node_port)
        names.append(name)
    api.put(proxy_service(node_port))
    return names


def config_doc(api: ApiServer | Path, nginx: PrivateNginx | None, /, **sections: Any
               ) -> dict[str, Any]:
    """An lbsync config for the emulator (or another API server's kubeconfig) and the private
    nginx; `sections` override."""
    kubeconfig = api if isinstance(api, Path) else api.kubeconfig_path
    doc: dict[str, Any] = {
        "kubernetes": {"kubeconfig": str(kubeconfig)},
        "upstreams": [{"name": "k8s_cluster", "service": f"{PROXY_NAMESPACE}/{PROXY_NAME}",
                       "port": 80}],
        # Stand-in nodes live on loopback, which a production lbsync refuses.
        "nodes": {"allow_loopback": True},
        "log": {"format": "json", "level": "info"},
    }
    if nginx is not None:
        doc["nginx"] = {"servers_dir": str(nginx.staged),
                        "test_command": list(nginx.test_command),
                        "reload_command": list(nginx.reload_command),
                        "pid_file": str(nginx.pid_file), "error_log": str(nginx.error_log),
                        "state_dir": str(nginx.prefix / "lbsync-state")}
    return merge(doc, sections)


def write_config(path: Path, api: ApiServer | Path, nginx: PrivateNginx | None, /,
                 **sections: Any) -> Path:
    path.write_text(yaml.safe_dump(config_doc(api, nginx, **sections)))
    return path


def merge(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """One level deep: a section given as a mapping updates the default section."""
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


class Lab:
    """A running lab. Use as a context manager; everything it started stops on exit."""

    def __init__(self, workdir: Path, *, nginx: bool = True, standins: bool = True,
                 node_port: int = NODE_PORT, port: int | None = None,
                 token: str = "secret", **api_options: Any) -> None:
        self.workdir = workdir
        self.node_port = node_port
        self.api = ApiServer(workdir=workdir / "apiserver", token=token, **api_options)
        self.standins: StandinPool | None = StandinPool() if standins else None
        self.nginx: PrivateNginx | None = (PrivateNginx(workdir / "nginx", port=port)
                                           if nginx else None)

    # --- the cluster ---------------------------------------------------------------------

    addr = staticmethod(addr)

    def hp(self, i: int, port: int | None = None) -> str:
        return hp(i, port or self.node_port)

    def add_node(self, i: int, *, ready: bool = True, standin: bool = True,
                 **node_options: Any) -> str:
        """Node `node-i` in the API (and a stand-in answering at its address)."""
        name = f"node-{i}"
        self.api.put(objects.node(name, addr(i), ready=ready, **node_options))
        if standin and self.standins is not None and name not in self.standins.nodes:
            self.standins.add(name, addr(i), self.node_port)
        return name

    def set_ready(self, i: int, ready: bool, **node_options: Any) -> None:
        self.api.put(objects.node(f"node-{i}", addr(i), ready=ready, **node_options))

    def add_cluster(self, count: int, *, standins: bool = True) -> list[str]:
        """`count` Ready nodes and Kong's proxy Service."""
        return add_cluster(self.api, self.standins if standins else None, count,
                           self.node_port)

    def write_config(self, path: Path | None = None, **sections: Any) -> Path:
        """An lbsync config file for this lab; `sections` override the defaults."""
        return write_config(path or self.workdir / "config.yaml", self.api, self.nginx,
                            **sections)

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> Lab:
        self.api.start()
        if self.nginx is not None:
            self.nginx.start()
        return self

    def stop(self) -> None:
        if self.nginx is not None:
            self.nginx.stop()
        if self.standins is not None:
            self.standins.stop_all()
        self.api.stop()

    def __enter__(self) -> Lab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class EmulatorProcess:
    """A running standalone emulator: its kubeconfig, and its fault commands."""

    def __init__(self, proc: subprocess.Popen[str], kubeconfig: Path) -> None:
        self.proc, self.kubeconfig = proc, kubeconfig

    def control(self, command: str) -> None:
        """`compact` or `drop-watches` (see `python -m lbsync_lab.sim --help`), done when
        this returns."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().strip()
        if answer != f"ok {command}":
            raise RuntimeError(f"emulator: {command}: {answer or 'no answer'}")


@contextlib.contextmanager
def emulator_process(workdir: Path, nodes: int, *options: str) -> Iterator[EmulatorProcess]:
    """The emulator as its own process with `nodes` Nodes and Kong's proxy Service.
    Benchmarks use it so that the emulator's CPU is not lbsync's. `options` are more of its
    command line (`--watch-list off`)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "lbsync_lab.sim", "--nodes", str(nodes), "--demo-objects",
         "--workdir", str(workdir), "--stdin-control", *options], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=child_env())
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line:
            raise RuntimeError(f"the emulator did not start (exit {proc.wait()})")
        yield EmulatorProcess(proc, Path(line))
    finally:
        proc.terminate()
        proc.wait()
