"""The helm edge: driving the `helm` binary, and the pure rules around it.

Owns argv construction, version parsing, "is the release already as wanted" (so reruns skip the
upgrade and report unchanged), and running helm with one-line errors. KIC 3.x has no Helm-free
manifest and rendering the chart ourselves would regenerate its webhook certificate each run,
so the binary it is.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

from lbsync.bootstrap.config import BootstrapConfig
from lbsync.bootstrap.plan import is_subset
from lbsync.errors import HelmError

MIN_HELM = (3, 8, 0)
HELM_TIMEOUT = "10m"


@dataclass(frozen=True)
class Release:
    name: str
    namespace: str
    chart: str  # e.g. "ingress-0.10.2"
    status: str


def parse_version(text: str) -> tuple[int, int, int] | None:
    """`helm version --short` prints e.g. `v3.14.2+gc309b6f`."""
    m = re.search(r"v?(\d+)\.(\d+)\.(\d+)", text)
    return (int(m[1]), int(m[2]), int(m[3])) if m else None


def chart_ref(cfg: BootstrapConfig) -> str:
    """The chart as the release reports it: `<chart name>-<version>`."""
    return f"{cfg.kong.chart.rsplit('/', 1)[-1]}-{cfg.kong.chart_version}"


def upgrade_argv(cfg: BootstrapConfig, values_file: str, timeout_s: float) -> list[str]:
    return ["upgrade", "--install", cfg.kong.release, cfg.kong.chart, "-n", cfg.kong.namespace,
            "--version", cfg.kong.chart_version, "-f", values_file, "--wait",
            "--timeout", f"{int(timeout_s)}s"]


def release_up_to_date(cfg: BootstrapConfig, release: Release | None,
                       live_values: dict[str, Any] | None, values: dict[str, Any]) -> bool:
    """Skip the upgrade when the deployed release already has our chart and values."""
    if release is None or release.status != "deployed" or release.chart != chart_ref(cfg):
        return False
    return live_values is not None and is_subset(values, live_values)


def repo_present(repos: list[dict[str, Any]], name: str, url: str) -> bool:
    return any(r.get("name") == name and str(r.get("url", "")).rstrip("/") == url.rstrip("/")
               for r in repos)


class Helm:
    """Runs helm; `kubeconfig`/`context` are passed through so helm and we see one cluster."""

    def __init__(self, kubeconfig: str | None = None, context: str | None = None,
                 binary: str = "helm") -> None:
        self.kubeconfig, self.context, self.binary = kubeconfig, context, binary

    def available(self) -> bool:
        return shutil.which(self.binary) is not None

    def run(self, *args: str, timeout: float = 900.0) -> str:
        argv = [self.binary, *args]
        if self.kubeconfig:
            argv += ["--kubeconfig", self.kubeconfig]
        if self.context:
            argv += ["--kube-context", self.context]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                  check=False)
        except FileNotFoundError:
            raise HelmError(f"helm: {self.binary!r} not found on PATH") from None
        except subprocess.TimeoutExpired:
            raise HelmError(f"helm {args[0]}: timed out after {timeout:.0f}s") from None
        if proc.returncode != 0:
            lines = (proc.stderr or proc.stdout).strip().splitlines()
            why = lines[-1] if lines else f"exit code {proc.returncode}"
            raise HelmError(f"helm {' '.join(args[:2])}: {why}")
        return proc.stdout

    def version(self) -> tuple[int, int, int] | None:
        return parse_version(self.run("version", "--short"))

    def repos(self) -> list[dict[str, Any]]:
        try:
            out = self.run("repo", "list", "-o", "json")
        except HelmError as exc:
            if "no repositories" in str(exc):  # helm's way of saying "empty list"
                return []
            raise
        got = json.loads(out or "[]")
        return got if isinstance(got, list) else []

    def release(self, name: str, namespace: str) -> Release | None:
        out = self.run("list", "-n", namespace, "-a", "-o", "json", "--filter", f"^{name}$")
        for item in json.loads(out or "[]"):
            if item.get("name") == name:
                return Release(name, namespace, str(item.get("chart", "")),
                               str(item.get("status", "")))
        return None

    def values(self, name: str, namespace: str) -> dict[str, Any] | None:
        out = self.run("get", "values", name, "-n", namespace, "-o", "json")
        got = json.loads(out or "null")
        return got if isinstance(got, dict) else None

    def show_crds(self, cfg: BootstrapConfig) -> str:
        return self.run("show", "crds", cfg.kong.chart, "--version", cfg.kong.chart_version)
