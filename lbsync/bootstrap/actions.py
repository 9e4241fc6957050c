"""Sequencing: `apply`, the waits, the gateway host's kubeconfig (and its renewal), and
`uninstall`.

Owns the order of steps (CRDs, namespaces, RBAC, Helm, then the Gateway API objects), what
each step depends on (a failed step stops the steps that need it: `apply` stops at the first
failure; `uninstall` goes on with independent steps but never deletes a namespace whose helm
release could not be removed, since that would orphan the chart's cluster-scoped objects),
turning each into `Result`s (done/unchanged/failed), polling waits with timeouts and hints,
and explaining a helm `--wait` timeout by the Deployments' own conditions. Talks to the
cluster and helm only through `Cluster` and `Helm`.
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
from lbsync.bootstrap.manifests import FIELD_MANAGER, Obj, ref
from lbsync.bootstrap.plan import needs_apply, resource_version
from lbsync.bootstrap.report import Report, Result, Status
from lbsync.errors import ApiError, ConfigError, HelmError

CRD_API = "apiextensions.k8s.io/v1"
GW_API = manifests.GATEWAY_API_VERSION
Step = Callable[["Context", bool], Iterator[Result]]
# Chart objects at cluster scope: helm removes them only while its release record (a Secret
# in the release's namespace) exists, so uninstall looks for any it left behind.
CHART_CLUSTER_KINDS = (
    ("rbac.authorization.k8s.io/v1", "ClusterRole"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
    ("networking.k8s.io/v1", "IngressClass"),
    ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration"),
)


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


@dataclass(frozen=True)
class StepSpec:
    """One step: its label, what it runs, and the labels of the steps it needs."""

    label: str
    run: Step
    needs: tuple[str, ...] = ()


# ---- objects ---------------------------------------------------------------------------------

def apply_object(ctx: Context, obj: Obj, dry_run: bool, *, force: bool = False) -> Result:
    """Server-side apply one object, only when it would change: a rerun writes nothing."""
    meta = obj["metadata"]
    live = ctx.cluster.get(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"))
    if not needs_apply(obj, live, FIELD_MANAGER):
        return Result(ref(obj), Status.UNCHANGED)
    if dry_run:
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
        if result.status is Status.DONE:
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

def helm_release_name(cfg: BootstrapConfig) -> str:
    return f"helm release {cfg.kong.namespace}/{cfg.kong.release} ({helm.chart_ref(cfg)})"


def step_helm(ctx: Context, dry_run: bool) -> Iterator[Result]:
    cfg = ctx.cfg
    release = ctx.helm.release(cfg.kong.release, cfg.kong.namespace)
    live_values = ctx.helm.values(cfg.kong.release, cfg.kong.namespace) if release else None
    values = manifests.helm_values(cfg)
    what = helm_release_name(cfg)
    if helm.release_up_to_date(cfg, release, live_values, values):
        yield Result(what, Status.UNCHANGED, f"deployed with these values (revision "
                     f"{release.revision if release else '?'})")
        return
    if dry_run:
        # helm's own server-side dry run: what would stop the real one stops this one.
        ctx.helm.upgrade(cfg, values, dry_run=True)
        yield Result(what, Status.WOULD_CHANGE, f"{_would(release)} (helm's dry run passes)")
        return
    if release is not None:
        # Helm installs a chart's CRDs on first install only; an upgrade must bring them itself.
        text = ctx.helm.show_crds(cfg)
        if text.strip():
            for crd in crds.parse_bundle(text, f"helm show crds {helm.chart_name(cfg)}"):
                yield apply_object(ctx, crd, dry_run, force=True)
    yield _helm_upgrade(ctx, what, values, release)


def _would(release: helm.Release | None) -> str:
    if release is None:
        return "would install"
    if release.status != "deployed":
        return f"would upgrade (release is {release.status})"
    return f"would upgrade from {release.chart}"


def _helm_upgrade(ctx: Context, what: str, values: Obj, release: helm.Release | None) -> Result:
    try:
        ctx.helm.upgrade(ctx.cfg, values)
    except HelmError as exc:
        if helm.is_wait_timeout(str(exc)):
            # helm 3 says only "context deadline exceeded": say which Deployment waited.
            raise HelmError(f"{exc}; {not_ready(ctx)}") from None
        raise
    if release is None:
        return Result(what, Status.DONE, "installed")
    return Result(what, Status.DONE, f"upgraded from {release.chart} ({release.status})")


def not_ready(ctx: Context) -> str:
    """What the release's Deployments say now, for a helm wait that timed out."""
    ns = ctx.cfg.kong.namespace
    waiting = []
    for name in ctx.cfg.kong.deployments:
        try:
            verdict = conditions.deployment(ctx.cluster.get("apps/v1", "Deployment", name, ns),
                                            name)
        except ApiError as exc:
            waiting.append(f"Deployment {ns}/{name}: cannot read it ({exc})")
            continue
        if not verdict.ok:
            waiting.append(verdict.message.replace(f"Deployment {name}",
                                                   f"Deployment {ns}/{name}", 1))
    if not waiting:
        return "the Deployments are available now; another resource of the release was not ready"
    return "not ready: " + "; ".join(waiting)


# ---- apply -----------------------------------------------------------------------------------

def step_cluster_objects(ctx: Context, dry_run: bool) -> Iterator[Result]:
    yield from apply_objects(ctx, manifests.cluster_objects(ctx.cfg), dry_run)
    yield from _legacy_token_left(ctx)
    if not ctx.cfg.loadbalancer.enabled:
        yield from _loadbalancer_access_left(ctx, dry_run)


def _loadbalancer_access_left(ctx: Context, dry_run: bool) -> Iterator[Result]:
    """Loadbalancer mode turned off: the rights it granted go with it (ours only, by label),
    or the account could still write Service statuses."""
    for obj in reversed(manifests.loadbalancer_access_objects(ctx.cfg)):
        meta = obj["metadata"]
        live = ctx.cluster.get(obj["apiVersion"], obj["kind"], meta["name"],
                               meta.get("namespace"))
        labels = ((live or {}).get("metadata") or {}).get("labels") or {}
        if live is None or not manifests.MANAGED_LABELS.items() <= labels.items():
            continue
        if dry_run:
            yield Result(manifests.ref(obj), Status.WOULD_CHANGE,
                         "would delete: loadbalancer.enabled is off")
        else:
            result = _delete(ctx, obj["apiVersion"], obj["kind"], meta["name"],
                             meta.get("namespace"))
            yield Result(result.name, result.status, "loadbalancer.enabled is off")


def _legacy_token_left(ctx: Context) -> Iterator[Result]:
    """With a bound token (`access.credential: token-request`), a never-expiring token Secret
    from an earlier install is a standing credential: say so. It is not deleted here, since a
    gateway host may still use it until it has a renewed kubeconfig."""
    cfg = ctx.cfg
    if cfg.access.credential != "token-request":
        return
    name = manifests.token_secret_name(cfg)
    live = ctx.cluster.get("v1", "Secret", name, cfg.access.namespace)
    labels = ((live or {}).get("metadata") or {}).get("labels") or {}
    if live is not None and manifests.MANAGED_LABELS.items() <= labels.items():
        yield Result(f"Secret/{cfg.access.namespace}/{name}", Status.SKIPPED,
                     "kept: it holds a never-expiring token (access.credential: secret); "
                     f"delete it (kubectl -n {cfg.access.namespace} delete secret {name}) once "
                     "the gateway host uses a kubeconfig from --write-kubeconfig or renew-token")


def step_gateway_objects(ctx: Context, dry_run: bool) -> Iterator[Result]:
    yield from apply_objects(ctx, manifests.gateway_objects(ctx.cfg), dry_run)


APPLY_STEPS: list[StepSpec] = [
    StepSpec("Gateway API CRDs", step_gateway_api_crds),
    StepSpec("namespaces and lbsync access", step_cluster_objects, ("Gateway API CRDs",)),
    StepSpec("Kong (helm)", step_helm, ("namespaces and lbsync access",)),
    StepSpec("Kong Deployments", wait_deployments, ("Kong (helm)",)),
    StepSpec("GatewayClass, Gateway, HTTPRoutes", step_gateway_objects, ("Kong Deployments",)),
    StepSpec("Gateway API status", wait_gateway_api, ("GatewayClass, Gateway, HTTPRoutes",)),
]


def run_steps(ctx: Context, report: Report, steps: list[StepSpec], dry_run: bool, *,
              keep_going: bool = False) -> Report:
    """Run steps in order, streaming results; a failure inside a step ends that step (its
    later results depend on earlier ones: waits, CRDs). Then stop, or with `keep_going` run
    the steps that do not need a failed one (a step whose needs failed says so)."""
    failed: set[str] = set()
    for spec in steps:
        if failed and not keep_going:
            break
        blocked = [n for n in spec.needs if n in failed]
        if blocked:
            failed.add(spec.label)
            _record(ctx, report, Result(spec.label, Status.SKIPPED,
                                        f"not run: {', '.join(blocked)} did not succeed"))
            continue
        try:
            for result in spec.run(ctx, dry_run):
                _record(ctx, report, result)
                if result.status.failed:
                    failed.add(spec.label)
                    break
        except (ApiError, HelmError, ConfigError) as exc:
            failed.add(spec.label)
            _record(ctx, report, Result(spec.label, Status.FAILED, str(exc),
                                        _hint(ctx.cfg, exc)))
    return report


def _hint(cfg: BootstrapConfig, exc: Exception) -> str:
    if isinstance(exc, HelmError):
        return helm.hint(cfg, str(exc))
    if isinstance(exc, ApiError) and exc.status == 409:
        return ("another field manager changed fields lbsync manages (kubectl edit?); rerun "
                "apply with --force-conflicts to take them back")
    if isinstance(exc, ApiError) and exc.status == 403:
        return "the admin kubeconfig lacks a permission; see `lbsync bootstrap check --pre`"
    if isinstance(exc, ApiError) and exc.status == 404 and str(exc).startswith("TokenRequest"):
        return "run `lbsync bootstrap apply` first: it creates the ServiceAccount"
    return ""


def _record(ctx: Context, report: Report, result: Result) -> None:
    report.add(result)
    ctx.on_result(result)


def apply(ctx: Context, dry_run: bool = False) -> Report:
    """Every step needs the one before it: stop at the first failure."""
    return run_steps(ctx, Report("apply"), APPLY_STEPS, dry_run)


# ---- kubeconfig for the gateway host ---------------------------------------------------------

def read_token(ctx: Context, timeout: float) -> tuple[str, bytes | None]:
    """`access.credential: secret`: wait for the token controller to fill the Secret; return
    (token, CA PEM or None)."""
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


def cluster_ca(ctx: Context) -> bytes | None:
    """The cluster's CA as every namespace publishes it (ConfigMap kube-root-ca.crt), for
    when the admin kubeconfig names none."""
    cm = ctx.cluster.get("v1", "ConfigMap", "kube-root-ca.crt", ctx.cfg.access.namespace)
    pem = ((cm or {}).get("data") or {}).get("ca.crt")
    return pem.encode() if isinstance(pem, str) and pem else None


def write_kubeconfig(ctx: Context, server: str, admin_ca: bytes | None, insecure: bool,
                     path: str, config_path: str | None, kubeconfig_ref: str) -> list[Result]:
    """The gateway host's kubeconfig: a bound token from a TokenRequest (the default), or
    the never-expiring token of the Secret (`access.credential: secret`)."""
    cfg = ctx.cfg
    account = f"ServiceAccount {cfg.access.namespace}/{cfg.access.service_account}"
    if cfg.access.credential == "secret":
        token, ca = read_token(ctx, min(cfg.wait_timeout, 60.0))
        validity = "a never-expiring token (access.credential: secret)"
    else:
        token, expires = ctx.cluster.request_token(
            cfg.access.namespace, cfg.access.service_account, cfg.access.token_seconds)
        ca = None
        validity = f"token expires {expires}; renew with `lbsync bootstrap renew-token`"
    doc = manifests.render_kubeconfig(server, ca or admin_ca or cluster_ca(ctx), token,
                                      insecure=insecure)
    files.write_private(Path(path), yaml.safe_dump(doc, sort_keys=False))
    results = [Result(f"kubeconfig {path}", Status.DONE, f"{account} at {server}; {validity}")]
    if config_path:
        conf = manifests.render_lbsync_config(cfg, kubeconfig_ref)
        files.write_private(Path(config_path), yaml.safe_dump(conf, sort_keys=False))
        results.append(Result(f"lbsync config {config_path}", Status.DONE,
                              f"kubeconfig {kubeconfig_ref}"))
    return results


def current_expiry(path: str) -> int | None:
    """When the token in an existing kubeconfig expires (None: no file, no token, or it
    never expires)."""
    raw = files.read(Path(path))
    if raw is None:
        return None
    try:
        doc = yaml.safe_load(raw)
    except yaml.YAMLError:
        return None
    token = manifests.kubeconfig_token(doc)
    return manifests.token_expiry(token) if token else None


def renew_token(ctx: Context, server: str, admin_ca: bytes | None, insecure: bool, path: str,
                if_expires_within: float | None, now: float) -> Report:
    """A fresh bound token in the gateway host's kubeconfig. With `if_expires_within`, only
    when the file's token expires sooner than that (so a timer may run it often)."""
    report = Report("renew-token")
    if ctx.cfg.access.credential != "token-request":
        raise ConfigError("access.credential: secret: that token never expires; to rotate it "
                          "delete the Secret and rerun apply --write-kubeconfig")
    if if_expires_within is not None:
        exp = current_expiry(path)
        if exp is not None and exp - now > if_expires_within:
            left = (exp - now) / 86400
            report.add(Result(f"kubeconfig {path}", Status.UNCHANGED,
                              f"token valid for {left:.1f} more days, beyond "
                              f"{if_expires_within / 86400:g} days"))
            return report
    try:
        for result in write_kubeconfig(ctx, server, admin_ca, insecure, path, None, path):
            report.add(result)
    except ApiError as exc:
        report.add(Result(f"kubeconfig {path}", Status.FAILED, str(exc), _hint(ctx.cfg, exc)))
    return report


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
    elif (release := ctx.helm.release(cfg.kong.release, cfg.kong.namespace)) is None:
        yield Result(what, Status.ABSENT)
    else:
        ctx.helm.uninstall(cfg.kong.release, cfg.kong.namespace, cfg.wait_timeout)
        yield Result(what, Status.DELETED, f"was {release.chart}, {release.status}")
    yield from _delete_orphans(ctx)


def _delete_orphans(ctx: Context) -> Iterator[Result]:
    """Cluster-scoped objects of the release that helm can no longer remove (its record went
    with a namespace deleted before it): they carry helm's ownership annotations."""
    cfg = ctx.cfg
    for api_version, kind in CHART_CLUSTER_KINDS:
        for obj in ctx.cluster.list(api_version, kind):
            annotations = (obj.get("metadata") or {}).get("annotations") or {}
            if (annotations.get("meta.helm.sh/release-name") == cfg.kong.release
                    and annotations.get("meta.helm.sh/release-namespace") == cfg.kong.namespace):
                result = _delete(ctx, api_version, kind, obj["metadata"]["name"])
                yield Result(result.name, result.status,
                             "left behind by the release, whose record is gone")


def step_delete_access(ctx: Context, dry_run: bool) -> Iterator[Result]:
    cfg = ctx.cfg
    if cfg.access.credential != "secret":
        # The never-expiring token of an earlier `access.credential: secret`, if any.
        legacy = _delete(ctx, "v1", "Secret", manifests.token_secret_name(cfg),
                         cfg.access.namespace)
        if legacy.status is Status.DELETED:
            yield legacy
    if not cfg.loadbalancer.enabled:  # rights of an earlier loadbalancer mode, if any
        for obj in reversed(manifests.loadbalancer_access_objects(cfg)):
            meta = obj["metadata"]
            result = _delete(ctx, obj["apiVersion"], obj["kind"], meta["name"],
                             meta.get("namespace"))
            if result.status is Status.DELETED:
                yield result
    for obj in reversed(manifests.access_objects(cfg)):
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
    """Reverse order. Independent steps go on after a failure, so a partial install is
    cleaned up as far as it safely can be; the namespace (holding helm's release record) is
    deleted only once the release is gone, and the CRDs only once nothing uses them."""
    gateway, release = "GatewayClass, Gateway, HTTPRoutes", "Kong (helm)"
    steps = [
        StepSpec(gateway, step_delete_gateway_objects),
        StepSpec(release, step_helm_uninstall),
        StepSpec("lbsync access", step_delete_access),
        StepSpec("namespaces", step_delete_namespaces, (release, "lbsync access")),
    ]
    if purge:
        steps.append(StepSpec("Gateway API CRDs", step_purge_crds, (gateway, release)))
    return run_steps(ctx, Report("uninstall"), steps, False, keep_going=True)
