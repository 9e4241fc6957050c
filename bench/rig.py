"""The benchmark rig: the API emulator as its own process, a private nginx, and an lbsync
config pointing at both. Shared by bench/once.py and bench/convergence.py."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

from lbsync.lab.nginx import PrivateNginx  # noqa: E402


@dataclass
class Rig:
    kubeconfig: Path
    nginx: PrivateNginx
    config: Path


@contextlib.contextmanager
def rig(work: Path, nodes: int, **sections: Any) -> Iterator[Rig]:
    """Emulator with `nodes` Nodes and Kong's proxy Service, nginx, and config.yaml."""
    sim = subprocess.Popen(
        [sys.executable, "-m", "lbsync.sim", "--nodes", str(nodes), "--workdir",
         str(work / "sim")], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        cwd=ROOT, env=ENV)
    assert sim.stdout is not None
    kubeconfig = Path(sim.stdout.readline().strip())
    nginx = PrivateNginx(work / "nginx")
    try:
        nginx.start()
        config = work / "config.yaml"
        config.write_text(yaml.safe_dump({
            "kubernetes": {"kubeconfig": str(kubeconfig)},
            "upstreams": [{"name": "k8s_cluster", "service": "kong/kong-gateway-proxy",
                           "port": 80}],
            "nginx": {"output": str(nginx.output), "test_command": list(nginx.test_command),
                      "reload_command": list(nginx.reload_command)},
            "log": {"format": "json"},
            **sections,
        }))
        yield Rig(kubeconfig, nginx, config)
    finally:
        nginx.stop()
        sim.terminate()
        sim.wait()
