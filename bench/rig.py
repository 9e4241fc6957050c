"""The benchmarks' rig: the lab's emulator as its own process (so that its CPU is not counted
as lbsync's), a private nginx, and an lbsync config pointing at both. A thin layer over
`lbsync_lab.rig`, shared by bench/perf.py and its helpers."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from lbsync_lab.nginx import PrivateNginx
from lbsync_lab.rig import SOURCE_PATHS, EmulatorProcess, child_env, emulator_process, merge

ROOT = Path(SOURCE_PATHS[0])
ENV = child_env()


@dataclass
class Rig:
    kubeconfig: Path
    nginx: PrivateNginx
    config: Path
    emulator: EmulatorProcess
    work: Path


@contextlib.contextmanager
def rig(work: Path, count: int, /, *emulator: str, **sections: Any) -> Iterator[Rig]:
    """Emulator with `count` Nodes and Kong's proxy Service (`emulator`: more of its options),
    nginx, and config.yaml (`sections` override its sections, e.g. nodes=...). The
    emulator's stand-in controllers do not run: nothing here needs them, and their CPU would
    be noise."""
    with emulator_process(work / "sim", count, "--no-controllers", *emulator) as process, \
            PrivateNginx(work / "nginx") as nginx:
        kubeconfig = process.kubeconfig
        config = work / "config.yaml"
        config.write_text(yaml.safe_dump(merge({
            "kubernetes": {"kubeconfig": str(kubeconfig)},
            "upstreams": [{"name": "k8s_cluster", "service": "kong/kong-gateway-proxy",
                           "port": 80}],
            "nodes": {"allow_loopback": True},
            "nginx": {"servers_dir": str(nginx.staged), "test_command": list(nginx.test_command),
                      "reload_command": list(nginx.reload_command),
                      "pid_file": str(nginx.pid_file), "state_dir": str(work / "state")},
            "log": {"format": "json"},
        }, sections)))
        yield Rig(kubeconfig, nginx, config, process, work)
