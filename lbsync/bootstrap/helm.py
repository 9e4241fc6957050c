"""The helm edge: driving the real `helm` binary (3.17 and later, or 4), and the pure rules
around it.

Owns argv construction for both majors (helm 4 dropped `helm list -a`, which lists every status
by default, and `--atomic`), version parsing and support, "is the release already as wanted"
(so reruns skip the upgrade and report unchanged), and turning helm's failures into one line
that keeps the cause: helm prints log lines (helm 4's `level=WARN ...`), then `Error: ...` and
sometimes more lines after it (`ensure CRDs are installed first`, `context deadline
exceeded`), and for a failed uninstall only `failed to delete release` unless asked for its
debug log. KIC 3.x has no Helm-free manifest and rendering the chart ourselves would
regenerate its webhook certificate each run, so the binary it is.

Charts are fetched with `--repo URL` on every call that needs one: nothing is added to the
user's helm repositories, and no repository cache can be stale (`helm repo update` forgotten
was how an upgrade once failed with `chart "ingress" matching 0.24.0 not found`).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from lbsync import files
from lbsync.bootstrap.config import BootstrapConfig
from lbsync.errors import HelmError

MIN_HELM = (3, 17, 0)
SUPPORTED_MAJORS = (3, 4)
# Tested: helm 4.1.4 and 3.17.3 against the kong/ingress charts 0.10.2 and 0.24.0.
TESTED = ("v4.1.4", "v3.17.3")
MAX_ERROR = 2000  # characters of helm's error kept in the one line

Version = tuple[int, int, int]


@dataclass(frozen=True)
class Release:
    name: str
    namespace: str
    chart: str  # e.g. "ingress-0.24.0"
    status: str  # deployed, failed, pending-install, uninstalling, ...
    revision: int = 0


def parse_version(text: str) -> Version | None:
    """`helm version --short` prints e.g. `v3.17.3+ge4da497` or `v4.1.4+g05fa379`."""
    m = re.search(r"v?(\d+)\.(\d+)\.(\d+)", text)
    return (int(m[1]), int(m[2]), int(m[3])) if m else None


def unsupported(version: Version) -> str:
    """Why this helm cannot be used ("" when it can)."""
    shown = "v" + ".".join(map(str, version))
    if version < MIN_HELM:
        return f"{shown} is older than v{'.'.join(map(str, MIN_HELM))}"
    if version[0] not in SUPPORTED_MAJORS:
        return f"{shown}: helm {version[0]} is not supported (helm 3.17+ or helm 4)"
    return ""


def chart_name(cfg: BootstrapConfig) -> str:
    """The chart's name in the repository (`kong/ingress` and `ingress` both mean `ingress`)."""
    return cfg.kong.chart.rsplit("/", 1)[-1]


def chart_ref(cfg: BootstrapConfig) -> str:
    """The chart as the release reports it: `<chart name>-<version>`."""
    return f"{chart_name(cfg)}-{cfg.kong.chart_version}"


def chart_args(cfg: BootstrapConfig) -> list[str]:
    return [chart_name(cfg), "--repo", cfg.kong.repo_url, "--version", cfg.kong.chart_version]


def upgrade_argv(cfg: BootstrapConfig, values_file: str, timeout_s: float, *,
                 dry_run: bool = False) -> list[str]:
    """`helm upgrade --install`, the same for helm 3 and 4 (bare `--wait`: helm 4's kstatus
    watcher, helm 3's readiness checks). `dry_run`: `--dry-run=server`, which makes helm run
    its own checks against the cluster (the chart version exists, every kind is served,
    existing objects may be adopted) and change nothing."""
    argv = ["upgrade", "--install", cfg.kong.release, *chart_args(cfg), "-n", cfg.kong.namespace,
            "-f", values_file]
    if dry_run:
        return [*argv, "--dry-run=server"]
    return [*argv, "--wait", "--timeout", f"{max(1, int(timeout_s))}s"]


def list_argv(major: int, name: str, namespace: str) -> list[str]:
    """`helm list` for one release in any status: helm 3 needs `-a`, helm 4 has no such flag
    (every status is listed by default)."""
    argv = ["list", "-n", namespace, "-o", "json", "--filter", f"^{re.escape(name)}$"]
    return [*argv, "-a"] if major < 4 else argv


def parse_release(out: str, name: str, namespace: str) -> Release | None:
    try:
        items = json.loads(out or "[]")
    except ValueError:
        raise HelmError(f"helm list: not JSON: {out[:200]!r}") from None
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and item.get("name") == name:
            rev = str(item.get("revision", "0"))
            return Release(name, namespace, str(item.get("chart", "")),
                           str(item.get("status", "")), int(rev) if rev.isdigit() else 0)
    return None


def release_up_to_date(cfg: BootstrapConfig, release: Release | None,
                       live_values: dict[str, Any] | None, values: dict[str, Any]) -> bool:
    """Skip the upgrade when the deployed release already has our chart and exactly our
    values (`helm get values` returns the user-supplied values only; a value set by hand
    since is a difference, which the upgrade takes back)."""
    if release is None or release.status != "deployed" or release.chart != chart_ref(cfg):
        return False
    return live_values == values


# Lines helm prints that are logs or traces, not part of an error's text.
_NOT_ERROR_TEXT = re.compile(r"^(level=\w+ |\S+\.go:\d+: |\t|\[debug\] |walk\.go|WARNING: )")


def error_text(stderr: str, stdout: str = "") -> str:
    """helm's failure as one line: the `Error:` line and the lines that continue it, without
    log lines and stack traces, plus the cause helm only logs when a release could not be
    deleted (visible with `--debug`)."""
    lines = (stderr or stdout).splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("Error:")), None)
    if start is None:
        text = next((line for line in reversed(lines) if line.strip()
                     and not _NOT_ERROR_TEXT.match(line)), "")
    else:
        parts = [lines[start].removeprefix("Error:").strip()]
        for line in lines[start + 1:]:
            if _NOT_ERROR_TEXT.match(line):
                break
            if line.strip():
                parts.append(line.strip())
        text = "; ".join(parts)
    cause = _logged_cause(lines)
    if cause and cause not in text:
        text = f"{text} (cause: {cause})"
    text = " ".join(text.split())
    return text[:MAX_ERROR] + ("..." if len(text) > MAX_ERROR else "")


def _logged_cause(lines: list[str]) -> str:
    """The errors behind `failed to delete release`, from helm 3's `[debug]` or helm 4's
    `level=DEBUG` log line."""
    for line in lines:
        m = re.search(r'Failed to delete release"? error="(.*)"\s*$', line) or re.search(
            r"Failed to delete release: (.*)$", line)
        if m:
            return m[1].replace('\\"', '"')
    return ""


def is_wait_timeout(message: str) -> bool:
    """helm 3 says only `context deadline exceeded` (or `timed out waiting for the
    condition`); helm 4 names one resource first."""
    return any(s in message for s in ("context deadline exceeded", "timed out waiting",
                                      "not ready. status:"))


def hint(cfg: BootstrapConfig, message: str) -> str:
    """What to do about a helm failure, for the causes we know."""
    ns = cfg.kong.namespace
    if "invalid ownership metadata" in message or "cannot be imported" in message:
        return ("an object the chart creates already exists and is not this release's (left "
                "from another install?): delete it, or let helm adopt it: kubectl label "
                "KIND NAME app.kubernetes.io/managed-by=Helm; kubectl annotate KIND NAME "
                f"meta.helm.sh/release-name={cfg.kong.release} "
                f"meta.helm.sh/release-namespace={ns}")
    if "not found in" in message and "repository" in message:
        return (f"kong.chart_version {cfg.kong.chart_version} is not in {cfg.kong.repo_url}; "
                "pick a version the repository has (--chart-version)")
    if is_wait_timeout(message):
        return (f"kubectl -n {ns} describe deployment (and its pods); raise --wait-timeout "
                "if images pull slowly")
    if "not found on PATH" in message or "is not supported" in message \
            or "is older than" in message:
        return "install helm 3.17+ or helm 4 (https://helm.sh/docs/intro/install/), or --helm"
    if "failed to delete release" in message:
        return (f"the release stays (helm list -n {ns}); fix the cause and rerun uninstall: "
                f"namespace {ns} is kept until the release is gone")
    return ""


class Helm:
    """Runs helm; `kubeconfig`/`context` are passed through so helm and we see one cluster.
    `env` adds to the environment helm runs in (tests give it homes of its own)."""

    def __init__(self, kubeconfig: str | None = None, context: str | None = None,
                 binary: str = "helm", env: Mapping[str, str] | None = None) -> None:
        self.kubeconfig, self.context, self.binary = kubeconfig, context, binary
        self.env = dict(env) if env else None
        self._version: Version | None = None

    def run(self, *args: str, timeout: float = 900.0) -> str:
        argv = [self.binary, *args]
        if self.kubeconfig:
            argv += ["--kubeconfig", self.kubeconfig]
        if self.context:
            argv += ["--kube-context", self.context]
        env = {**os.environ, **self.env} if self.env is not None else None
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                  check=False, env=env)
        except FileNotFoundError:
            raise HelmError(f"helm: {self.binary!r} not found on PATH") from None
        except subprocess.TimeoutExpired:
            raise HelmError(f"helm {args[0]}: timed out after {timeout:.0f}s") from None
        if proc.returncode != 0:
            why = error_text(proc.stderr, proc.stdout) or f"exit code {proc.returncode}"
            raise HelmError(f"helm {_command(args)}: {why}")
        return proc.stdout

    def version(self) -> Version:
        """helm's version, asked once; an unparsable or unsupported one is a HelmError."""
        if self._version is None:
            out = self.run("version", "--short")
            found = parse_version(out)
            if found is None:
                raise HelmError(f"helm version: cannot parse {out.strip()[:80]!r}")
            self._version = found
        return self._version

    def checked_version(self) -> Version:
        version = self.version()
        why = unsupported(version)
        if why:
            raise HelmError(f"helm {why}; install helm 3.17+ or helm 4 "
                            "(https://helm.sh/docs/intro/install/)")
        return version

    def release(self, name: str, namespace: str) -> Release | None:
        out = self.run(*list_argv(self.checked_version()[0], name, namespace))
        return parse_release(out, name, namespace)

    def values(self, name: str, namespace: str) -> dict[str, Any] | None:
        out = self.run("get", "values", name, "-n", namespace, "-o", "json")
        try:
            got = json.loads(out or "null")
        except ValueError:
            raise HelmError(f"helm get values: not JSON: {out[:200]!r}") from None
        return got if isinstance(got, dict) else None

    def upgrade(self, cfg: BootstrapConfig, values: dict[str, Any], *,
                dry_run: bool = False) -> str:
        """`helm upgrade --install` with these values (a private temporary file)."""
        with files.private_dir("lbsync-bootstrap-") as tmp:
            values_file = tmp / "values.yaml"
            files.write_private(values_file, yaml.safe_dump(values, sort_keys=False))
            argv = upgrade_argv(cfg, str(values_file), cfg.wait_timeout, dry_run=dry_run)
            return self.run(*argv, timeout=cfg.wait_timeout + 120)

    def show_crds(self, cfg: BootstrapConfig) -> str:
        return self.run("show", "crds", *chart_args(cfg))

    def uninstall(self, name: str, namespace: str, timeout: float) -> None:
        # --debug: helm says only "failed to delete release" and logs why.
        self.run("uninstall", name, "-n", namespace, "--wait", "--timeout",
                 f"{max(1, int(timeout))}s", "--debug", timeout=timeout + 60)


def _command(args: tuple[str, ...]) -> str:
    """How a message names the helm call: the sub-command words, not flags or values."""
    words = []
    for arg in args[:2]:
        if arg.startswith("-"):
            break
        words.append(arg)
    return " ".join(words)
