"""Sequencing: `apply`, the waits, `--write-kubeconfig`, and `uninstall`.

Owns the order of steps (CRDs, namespaces, RBAC, Helm, then the Gateway API objects), turning
each into `Result`s (done/unchanged/failed), polling waits with timeouts and hints, and the
reverse order for uninstall. Talks to the cluster and helm only through `Cluster` and `Helm`,
so it can be driven against the emulator or a fake.
"""

from __future__ import annotations

import base64
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import yaml

from lbsync import files
from lbsync.bootstrap import conditions, crds, helm, manifests
from lbsync.bootstrap.cluster import Cluster
from lbsync.bootstrap.conditions import Verdict
from lbsync.bootstrap.config import BootstrapConfig
from lbsync.bootstrap.helm import Helm
from lbsync.bootstrap.manifests import Obj, ref
from lbsync.bootstrap.plan import needs_apply, resource_version
from lbsync.bootstrap.report import Report, Result, Status
from lbsync.errors import ApiError, ConfigError, HelmError

CRD_API = "apiextensions.k8s.io/v1"
GW_API = manifests.GATEWAY_API_VERSION
Step = Callable[["Context", bool], Iterator[Result]]


@dataclass
class Context:
    """What every step needs; `sleep`/`clock` are injectable so waits test quickly."""

    cfg: BootstrapConfig
    cluster: Cluster
    helm: Helm
    poll_interval: float = 1.0
    force_conflicts: bool = False
    crd_timeout: float = 60.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    on_result: Callable[[Result], None] = field(default=lambda r: None)


# ---- objects ---------------------------------------------------------------------------------

def apply_object(ctx: Context, obj: Obj, dry_run: bool, *, force: bool = False) -> Result:
    """Server-side apply one object; changed iff it is new or its resourceVersion moved."""
    meta = obj["metadata"]
    live = ctx.cluster.get(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"))
    if dry_run:
        if not needs_apply(obj, live):
            return Result(ref(obj), Status.UNCHANGED)
        return Result(ref(obj), Status.WOULD_CHANGE, "would create" if live is None
                      else "would update")
    applied = ctx.cluster.apply(obj, force=force or ctx.force_conflicts)
    if live is not None and resource_version(live) == resource_version(applied):
        return Result(ref(obj), Status.UNCHANGED)
    return Result(ref(obj), Status.DONE, "created" if live is None else "updated")


def apply_objects(ctx: Context, objs: list[Obj], dry_run: bool) -> Iterator[Result]:
    for obj in objs:
        yield apply_object(ctx, obj, dry_run)


# ---- waits -----------------------------------------------------------------------------------

def wait_for(ctx: Context, name: str, fetch: Callable[[], Obj | None],
             judge: Callable[[Obj | None], Verdict], timeout: float) -> Result:
    """Poll until `judge` says ready or time runs out; the last verdict explains a timeout."""
    deadline = ctx.clock() + timeout
    # Start polling quickly (most things settle in well under a second), then back off.
    interval = min(0.05, ctx.poll_interval)
    while True:
        verdict = judge(fetch())
        if verdict.ok:
            return Result(name, Status.READY)
        if ctx.clock() >= deadline:
            return Result(name, Status.FAILED,
                          f"not ready after {timeout:g}s: {verdict.message}", verdict.hint)
        ctx.sleep(interval)
        interval = min(interval * 2, ctx.poll_interval)


def _getter(ctx: Context, api_version: str, kind: str, name: str,
            namespace: str | None = None) -> Callable[[], Obj | None]:
    return lambda: ctx.cluster.get(api_version, kind, name, namespace)


def wait_deployments(ctx: Context, dry_run: bool) -> Iterator[Result]:
    if dry_run:
        return
    ns = ctx.cfg.kong.namespace
    for name in ctx.cfg.kong.deployments:
        yield wait_for(ctx, f"Deployment/{ns}/{name} available",
                       _getter(ctx, "apps/v1", "Deployment", name, ns),
                       partial(conditions.deployment, name=name), ctx.cfg.wait_timeout)


def wait_gateway_api(ctx: Context, dry_run: bool) -> Iterator[Result]:
    if dry_run:
        return
    cfg, timeout = ctx.cfg, ctx.cfg.wait_timeout
    yield wait_for(ctx, f"GatewayClass/{cfg.gateway.class_name} Accepted",
                   _getter(ctx, GW_API, "GatewayClass", cfg.gateway.class_name),
                   lambda o: conditions.gateway_class(o, cfg.gateway.class_name), timeout)
    gw_ref = f"{cfg.kong.namespace}/{cfg.gateway.name}"
    yield wait_for(ctx, f"Gateway/{gw_ref} Accepted+Programmed",
                   _getter(ctx, GW_API, "Gateway", cfg.gateway.name, cfg.kong.namespace),
                   lambda o: conditions.gateway(o, gw_ref), timeout)
    for route in cfg.routes:
        r_ref = f"{route.namespace}/{route.object_name}"
        yield wait_for(ctx, f"HTTPRoute/{r_ref} Accepted+ResolvedRefs+Programmed",
                       _getter(ctx, GW_API, "HTTPRoute", route.object_name, route.namespace),
                       partial(conditions.http_route, ref=r_ref, gateway_name=cfg.gateway.name,
                               gateway_ns=cfg.kong.namespace), timeout)


# ---- CRDs ------------------------------------------------------------------------------------

def load_bundle(cfg: BootstrapConfig) -> list[Obj]:
    source = cfg.gateway_api.crds_source
    if cfg.gateway_api.crds_file:
        try:
            text = Path(source).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"--gateway-api-crds {source}: {exc.strerror}") from None
    else:
        try:
            with urllib.request.urlopen(source, timeout=30) as resp:
                text = resp.read().decode("utf-8")
        except OSError as exc:
            raise ConfigError(f"Gateway API bundle {source}: cannot download ({exc}); "
                              "use --gateway-api-crds FILE on hosts without internet") from None
    return crds.parse_bundle(text, source)


def apply_crds(ctx: Context, bundle: list[Obj], dry_run: bool) -> Iterator[Result]:
    """Install or upgrade the pinned bundle, never downgrade, then wait for Established."""
    applied: list[str] = []
    for crd in bundle:
        name = crd["metadata"]["name"]
        plan = crds.decide(crd, ctx.cluster.get(CRD_API, "CustomResourceDefinition", name))
        what = f"CustomResourceDefinition/{name}"
        if plan.decision is crds.CrdDecision.NEWER:
            yield Result(what, Status.SKIPPED, f"installed {plan.installed} is newer than "
                         f"{plan.wanted}; not downgrading")
            continue
        if plan.decision is crds.CrdDecision.SAME:
            yield Result(what, Status.UNCHANGED, f"{plan.installed} installed")
            continue
        # Force: the bundle is pinned and authoritative for these fields, and a previous
        # `kubectl apply` of the same bundle would otherwise conflict on every field.
        result = apply_object(ctx, crd, dry_run, force=True)
        yield Result(what, result.status, _crd_message(result, plan))
        applied.append(name)
    if dry_run:
        return
    for name in applied:
        yield wait_for(ctx, f"CustomResourceDefinition/{name} Established",
                       _getter(ctx, CRD_API, "CustomResourceDefinition", name),
                       partial(conditions.crd, name=name), ctx.crd_timeout)


def _crd_message(result: Result, plan: crds.CrdPlan) -> str:
    if result.status is Status.UNCHANGED:
        return plan.wanted or ""
    if plan.installed:
        return f"{plan.installed} -> {plan.wanted}"
    return f"{result.message} {plan.wanted or ''}".strip()


def step_gateway_api_crds(ctx: Context, dry_run: bool) -> Iterator[Result]:
    yield from apply_crds(ctx, load_bundle(ctx.cfg), dry_run)


# ---- Helm ------------------------------------------------------------------------------------

def step_helm(ctx: Context, dry_run: bool) -> Iterator[Result]:
    cfg = ctx.cfg
    yield _helm_repo(ctx, dry_run)
    release = ctx.helm.release(cfg.kong.release, cfg.kong.namespace)
    live_values = ctx.helm.values(cfg.kong.release, cfg.kong.namespace) if release else None
    values = manifests.helm_values(cfg)
    what = f"helm release {cfg.kong.namespace}/{cfg.kong.release} ({helm.chart_ref(cfg)})"
    if helm.release_up_to_date(cfg, release, live_values, values):
        yield Result(what, Status.UNCHANGED, "deployed with these values")
        return
    if dry_run:
        yield Result(what, Status.WOULD_CHANGE, "would upgrade" if release else "would install")
        return
    if release is not None:
        # Helm installs a chart's CRDs on first install only; an upgrade must bring them itself.
        text = ctx.helm.show_crds(cfg)
        if text.strip():
            for crd in crds.parse_bundle(text, f"helm show crds {cfg.kong.chart}"):
                yield apply_object(ctx, crd, dry_run, force=True)
    yield _helm_upgrade(ctx, what, values, upgrading=release is not None)


def _helm_repo(ctx: Context, dry_run: bool) -> Result:
    cfg = ctx.cfg
    what = f"helm repo {cfg.kong.repo_name}"
    if helm.repo_present(ctx.helm.repos(), cfg.kong.repo_name, cfg.kong.repo_url):
        return Result(what, Status.UNCHANGED, cfg.kong.repo_url)
    if dry_run:
        return Result(what, Status.WOULD_CHANGE, f"would add {cfg.kong.repo_url}")
    ctx.helm.run("repo", "add", cfg.kong.repo_name, cfg.kong.repo_url, "--force-update")
    return Result(what, Status.DONE, f"added {cfg.kong.repo_url}")


def _helm_upgrade(ctx: Context, what: str, values: Obj, *, upgrading: bool) -> Result:
    # A repo added long ago has a stale index that may not list the pinned chart version.
    ctx.helm.run("repo", "update", ctx.cfg.kong.repo_name)
    with files.private_dir("lbsync-bootstrap-") as tmp:
        values_file = tmp / "values.yaml"
        files.write_private(values_file, yaml.safe_dump(values, sort_keys=False))
        argv = helm.upgrade_argv(ctx.cfg, str(values_file), ctx.cfg.wait_timeout)
        ctx.helm.run(*argv, timeout=ctx.cfg.wait_timeout + 60)
    return Result(what, Status.DONE, "upgraded" if upgrading else "installed")


# ---- apply -----------------------------------------------------------------------------------

def step_cluster_objects(ctx: Context, dry_run: bool) -> Iterator[Result]:
    yield from apply_objects(ctx, manifests.cluster_objects(ctx.cfg), dry_run)


def step_gateway_objects(ctx: Context, dry_run: bool) -> Iterator[Result]:
    yield from apply_objects(ctx, manifests.gateway_objects(ctx.cfg), dry_run)


APPLY_STEPS: list[tuple[str, Step]] = [
    ("Gateway API CRDs", step_gateway_api_crds),
    ("namespaces and lbsync access", step_cluster_objects),
    ("Kong (helm)", step_helm),
    ("Kong Deployments", wait_deployments),
    ("GatewayClass, Gateway, HTTPRoutes", step_gateway_objects),
    ("Gateway API status", wait_gateway_api),
]


def run_steps(ctx: Context, report: Report, steps: list[tuple[str, Step]], dry_run: bool,
              *, keep_going: bool = False) -> Report:
    """Run steps in order, streaming results; stop at the first failure unless told not to."""
    for label, step in steps:
        try:
            for result in step(ctx, dry_run):
                _record(ctx, report, result)
                if result.status.failed and not keep_going:
                    break  # later results of a step depend on earlier ones (waits, CRDs)
        except (ApiError, HelmError, ConfigError) as exc:
            _record(ctx, report, Result(label, Status.FAILED, str(exc), _hint(exc)))
        if report.failed and not keep_going:
            break
    return report


def _hint(exc: Exception) -> str:
    if isinstance(exc, ApiError) and exc.status == 409:
        return ("another field manager changed fields lbsync manages (kubectl edit?); rerun "
                "apply with --force-conflicts to take them back")
    if isinstance(exc, ApiError) and exc.status == 403:
        return "the admin kubeconfig lacks a permission; see `lbsync bootstrap check --pre`"
    return ""


def _record(ctx: Context, report: Report, result: Result) -> None:
    report.add(result)
    ctx.on_result(result)


def apply(ctx: Context, dry_run: bool = False) -> Report:
    return run_steps(ctx, Report("apply"), APPLY_STEPS, dry_run)


# ---- kubeconfig for the gateway host ---------------------------------------------------------

def read_token(ctx: Context, timeout: float) -> tuple[str, bytes | None]:
    """Wait for the token controller to fill the Secret; return (token, CA PEM or None)."""
    cfg = ctx.cfg
    name = manifests.token_secret_name(cfg)
    fetch = _getter(ctx, "v1", "Secret", name, cfg.access.namespace)
    result = wait_for(ctx, f"Secret/{cfg.access.namespace}/{name}", fetch, _token_verdict,
                      timeout)
    if result.status.failed:
        raise ApiError(f"Secret/{cfg.access.namespace}/{name}: the token controller has not "
                       "filled in a token; is the ServiceAccount there and the "
                       "controller-manager running?")
    data = (fetch() or {}).get("data") or {}
    token = base64.b64decode(data["token"]).decode("utf-8")
    ca = base64.b64decode(data["ca.crt"]) if data.get("ca.crt") else None
    return token, ca


def _token_verdict(obj: Obj | None) -> Verdict:
    if obj and ((obj.get("data") or {}).get("token")):
        return conditions.READY
    return Verdict(False, "no token yet")


def write_kubeconfig(ctx: Context, server: str, admin_ca: bytes | None, insecure: bool,
                     path: str, config_path: str | None, kubeconfig_ref: str) -> list[Result]:
    token, ca = read_token(ctx, min(ctx.cfg.wait_timeout, 60.0))
    doc = manifests.render_kubeconfig(server, ca or admin_ca, token, insecure=insecure)
    files.write_private(Path(path), yaml.safe_dump(doc, sort_keys=False))
    results = [Result(f"kubeconfig {path}", Status.DONE,
                      f"ServiceAccount {ctx.cfg.access.namespace}/{ctx.cfg.access.service_account} "
                      f"at {server}")]
    if config_path:
        conf = manifests.render_lbsync_config(ctx.cfg, kubeconfig_ref)
        files.write_private(Path(config_path), yaml.safe_dump(conf, sort_keys=False))
        results.append(Result(f"lbsync config {config_path}", Status.DONE,
                              f"kubeconfig {kubeconfig_ref}"))
    return results


# ---- uninstall -------------------------------------------------------------------------------

def _delete(ctx: Context, api_version: str, kind: str, name: str,
            namespace: str | None = None) -> Result:
    what = f"{kind}/{namespace}/{name}" if namespace else f"{kind}/{name}"
    if ctx.cluster.delete(api_version, kind, name, namespace):
        return Result(what, Status.DELETED)
    return Result(what, Status.ABSENT)


def step_delete_gateway_objects(ctx: Context, dry_run: bool) -> Iterator[Result]:
    for obj in reversed(manifests.gateway_objects(ctx.cfg)):
        meta = obj["metadata"]
        yield _delete(ctx, obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"))


def step_helm_uninstall(ctx: Context, dry_run: bool) -> Iterator[Result]:
    cfg = ctx.cfg
    what = f"helm release {cfg.kong.namespace}/{cfg.kong.release}"
    if ctx.cluster.get("v1", "Namespace", cfg.kong.namespace) is None:
        yield Result(what, Status.ABSENT, f"namespace {cfg.kong.namespace} does not exist")
        return
    if ctx.helm.release(cfg.kong.release, cfg.kong.namespace) is None:
        yield Result(what, Status.ABSENT)
        return
    ctx.helm.run("uninstall", cfg.kong.release, "-n", cfg.kong.namespace, "--wait",
                 timeout=cfg.wait_timeout + 60)
    yield Result(what, Status.DELETED)


def step_delete_access(ctx: Context, dry_run: bool) -> Iterator[Result]:
    for obj in reversed(manifests.access_objects(ctx.cfg)):
        meta = obj["metadata"]
        yield _delete(ctx, obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"))


def step_delete_namespaces(ctx: Context, dry_run: bool) -> Iterator[Result]:
    for ns in reversed(manifests.cluster_objects(ctx.cfg)):
        if ns["kind"] != "Namespace":
            continue
        name = ns["metadata"]["name"]
        live = ctx.cluster.get("v1", "Namespace", name)
        labels = ((live or {}).get("metadata") or {}).get("labels") or {}
        if live is not None and not manifests.MANAGED_LABELS.items() <= labels.items():
            # Someone else's namespace (e.g. `default`): never delete what we did not create.
            yield Result(f"Namespace/{name}", Status.SKIPPED, "not created by lbsync bootstrap")
            continue
        yield _delete(ctx, "v1", "Namespace", name)


def step_purge_crds(ctx: Context, dry_run: bool) -> Iterator[Result]:
    found = False
    for crd in ctx.cluster.list(CRD_API, "CustomResourceDefinition"):
        if (crd.get("spec") or {}).get("group") == manifests.GATEWAY_API_GROUP:
            found = True
            yield _delete(ctx, CRD_API, "CustomResourceDefinition", crd["metadata"]["name"])
    if not found:
        yield Result("Gateway API CRDs", Status.ABSENT)


def uninstall(ctx: Context, purge: bool = False) -> Report:
    steps: list[tuple[str, Step]] = [
        ("GatewayClass, Gateway, HTTPRoutes", step_delete_gateway_objects),
        ("Kong (helm)", step_helm_uninstall),
        ("lbsync access", step_delete_access),
        ("namespaces", step_delete_namespaces),
    ]
    if purge:
        steps.append(("Gateway API CRDs", step_purge_crds))
    # Keep going: a partial install must still be cleaned up as far as possible.
    return run_steps(ctx, Report("uninstall"), steps, False, keep_going=True)
