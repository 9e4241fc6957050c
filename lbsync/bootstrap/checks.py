"""`check --pre`: can the bootstrap run here, before it changes anything?

Owns the pre-flight rules (server version, helm version, permissions, node port range and
collisions, the KEP-3668 dynamic band, an existing Gateway API bundle, route backends, and
helm's own verdict on installing the pinned chart) as pure functions over gathered facts, and
`run_pre` which gathers them read-only. Helm's verdict comes from `helm upgrade --install
--dry-run=server`: helm fetches the pinned chart version, renders it against the cluster's
API and checks every object it would create may be taken over (an existing proxy Service
without helm's ownership labels fails here, not halfway through apply). Nothing is written,
in the cluster or in the user's helm repositories.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from functools import partial
from typing import Any

from lbsync.bootstrap import crds, helm, manifests
from lbsync.bootstrap.cluster import Cluster
from lbsync.bootstrap.config import BootstrapConfig
from lbsync.bootstrap.helm import Helm
from lbsync.bootstrap.report import Report, Result, Status
from lbsync.errors import ApiError, HelmError

Obj = dict[str, Any]

# Gateway API v1.0 CRDs use CEL validation, served from Kubernetes 1.25 on; KIC 3 wants 1.26+.
MIN_KUBERNETES = (1, 26)

# What `apply` creates at cluster scope or outside its namespace: (verb, group, resource).
REQUIRED_PERMISSIONS: list[tuple[str, str, str]] = [
    ("create", "apiextensions.k8s.io", "customresourcedefinitions"),
    ("patch", "apiextensions.k8s.io", "customresourcedefinitions"),
    ("create", "", "namespaces"),
    ("create", "rbac.authorization.k8s.io", "clusterroles"),
    ("create", "rbac.authorization.k8s.io", "clusterrolebindings"),
    ("create", "gateway.networking.k8s.io", "gatewayclasses"),
    ("create", "admissionregistration.k8s.io", "validatingwebhookconfigurations"),
]
INSTALL_HELP = "install helm 3.17+ or helm 4 (https://helm.sh/docs/intro/install/), or --helm"


def server_version(version: Obj) -> Result:
    git = str(version.get("gitVersion") or "?")
    major = re.sub(r"\D", "", str(version.get("major", "")))
    minor = re.sub(r"\D", "", str(version.get("minor", "")))
    if not major or not minor:
        return Result("kubernetes version", Status.WARN, f"cannot parse {git}")
    if (int(major), int(minor)) < MIN_KUBERNETES:
        return Result("kubernetes version", Status.FAIL, f"{git} is older than "
                      f"{MIN_KUBERNETES[0]}.{MIN_KUBERNETES[1]}",
                      "upgrade the cluster; Gateway API v1 and KIC 3 need it")
    return Result("kubernetes version", Status.PASS, git)


def helm_version(version: helm.Version | None, error: str | None) -> Result:
    if error:
        return Result("helm", Status.FAIL, error, INSTALL_HELP)
    if version is None:
        return Result("helm", Status.FAIL, "cannot parse `helm version`", INSTALL_HELP)
    why = helm.unsupported(version)
    if why:
        return Result("helm", Status.FAIL, why, INSTALL_HELP)
    return Result("helm", Status.PASS, "v" + ".".join(map(str, version)))


def helm_dry_run(cfg: BootstrapConfig, error: str | None) -> Result:
    """helm's own verdict on `upgrade --install --dry-run=server` of the pinned chart."""
    name = f"helm chart {helm.chart_ref(cfg)}"
    if error is None:
        return Result(name, Status.PASS, f"from {cfg.kong.repo_url}: helm's server-side dry "
                      "run of the install passes")
    return Result(name, Status.FAIL, error, helm.hint(cfg, error))


def permission(verb: str, group: str, resource: str, allowed: bool) -> Result:
    what = f"permission {verb} {resource}" + (f".{group}" if group else "")
    if allowed:
        return Result(what, Status.PASS)
    return Result(what, Status.FAIL, "denied by SelfSubjectAccessReview",
                  "run the bootstrap with a cluster-admin kubeconfig (--kubeconfig/--context)")


def static_band(low: int, high: int) -> tuple[int, int]:
    """KEP-3668: the low band of the NodePort range that dynamic allocation avoids."""
    size = high - low + 1
    band = min(max(16, math.ceil(size / 32)), 128)
    return low, min(high, low + band - 1)


def node_port(port: int, port_range: tuple[int, int], services: list[Obj],
              own: tuple[str, str]) -> list[Result]:
    """Range, collisions with other Services, and the dynamic-band warning."""
    low, high = port_range
    what = f"node port {port}"
    if not low <= port <= high:
        return [Result(what, Status.FAIL, f"outside the cluster's NodePort range {low}-{high}",
                       "pick kong.node_port inside the range (or pass --node-port-range if "
                       "the API server uses another --service-node-port-range)")]
    owner = port_owner(port, services, own)
    if owner:
        return [Result(what, Status.FAIL, f"already allocated by Service {owner}",
                       "free that port or choose another kong.node_port")]
    results = [Result(what, Status.PASS, f"in range {low}-{high}, not held by another Service")]
    s_low, s_high = static_band(low, high)
    if port > s_high:
        results.append(Result(f"{what} band", Status.WARN,
                              f"outside the static band {s_low}-{s_high}: Kubernetes may hand "
                              "it to another Service first",
                              f"prefer a port in {s_low}-{s_high}, or install soon after the "
                              "check"))
    return results


def port_owner(port: int, services: list[Obj], own: tuple[str, str]) -> str | None:
    for svc in services:
        meta = svc.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        if key == own:
            continue  # our own proxy Service holding the port is the goal, not a conflict
        for p in (svc.get("spec") or {}).get("ports") or []:
            if p.get("nodePort") == port:
                return f"{key[0]}/{key[1]}"
    return None


def existing_bundle(installed: list[Obj], wanted: str) -> Result:
    versions = crds.bundle_versions(
        [c for c in installed if (c.get("spec") or {}).get("group") == "gateway.networking.k8s.io"])
    if not versions:
        return Result("Gateway API CRDs", Status.PASS, f"none installed; will install {wanted}")
    shown = ", ".join(sorted(versions))
    keys = [crds.version_key(v) for v in versions]
    want = crds.version_key(wanted)
    if len(versions) > 1:
        return Result("Gateway API CRDs", Status.WARN, f"mixed bundle versions installed: {shown}",
                      "re-apply one bundle so all CRDs match")
    if want is not None and keys[0] is not None and keys[0] > want:
        return Result("Gateway API CRDs", Status.WARN, f"{shown} installed, newer than {wanted}; "
                      "kept (never downgraded)", "check KIC supports that bundle")
    if keys[0] == want:
        return Result("Gateway API CRDs", Status.PASS, f"{shown} installed")
    return Result("Gateway API CRDs", Status.PASS, f"{shown} installed; will upgrade to {wanted}")


def backends(routes: list[tuple[str, bool]]) -> list[Result]:
    """(namespace/service, exists) per route backend: a missing one makes apply's wait fail."""
    results = []
    for ref, exists in routes:
        if exists:
            results.append(Result(f"backend {ref}", Status.PASS))
        else:
            results.append(Result(f"backend {ref}", Status.WARN, "Service not found; its route "
                                  "will report BackendNotFound and apply will wait on it",
                                  "deploy the backend before `apply`, or fix the route"))
    return results


def _backends(cfg: BootstrapConfig, cluster: Cluster) -> list[Result]:
    refs = dict.fromkeys((r.namespace, r.service) for r in cfg.routes)
    return backends([(f"{ns}/{svc}", cluster.get("v1", "Service", svc, ns) is not None)
                     for ns, svc in refs])


def _permission(cluster: Cluster, verb: str, group: str, resource: str,
                namespace: str | None = None) -> list[Result]:
    return [permission(verb, group, resource, cluster.can_i(verb, group, resource, namespace))]


def _guard(name: str, fn: Callable[[], list[Result]]) -> list[Result]:
    try:
        return fn()
    except ApiError as exc:
        return [Result(name, Status.FAIL, str(exc))]


def run_pre(cfg: BootstrapConfig, cluster: Cluster, helm_: Helm) -> Report:
    report = Report("check")
    try:
        report.add(server_version(cluster.version()))
    except ApiError as exc:
        report.add(Result("cluster reachable", Status.FAIL, str(exc),
                          "check --kubeconfig/--context and that the API server is up"))
        return report  # every other check needs the API
    try:
        report.add(helm_version(helm_.version(), None))
    except HelmError as exc:
        report.add(helm_version(None, str(exc)))
    for verb, group, resource in REQUIRED_PERMISSIONS:
        report.results += _guard(f"permission {verb} {resource}",
                                 partial(_permission, cluster, verb, group, resource))
    if cfg.access.credential == "token-request":
        # The gateway host's token comes from a TokenRequest for lbsync's account.
        report.results += _guard("permission create serviceaccounts/token", partial(
            _permission, cluster, "create", "", "serviceaccounts/token", cfg.access.namespace))
    own = (cfg.kong.namespace, cfg.kong.proxy_service)
    report.results += _guard("node port", lambda: node_port(
        cfg.kong.node_port, cfg.node_port_range, cluster.list("v1", "Service"), own))
    report.results += _guard("Gateway API CRDs", lambda: [existing_bundle(
        cluster.list("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
        cfg.gateway_api.version)])
    report.results += _guard("route backends", partial(_backends, cfg, cluster))
    if not any(r.name == "helm" and r.status.failed for r in report.results):
        error = None
        try:
            helm_.upgrade(cfg, manifests.helm_values(cfg), dry_run=True)
        except HelmError as exc:
            error = str(exc)
        report.add(helm_dry_run(cfg, error))
    return report
