"""`doctor`: named PASS/WARN/FAIL checks of a live install, each failure with its fix.

Owns the diagnosis rules (CRDs, Deployments, proxy Service and node port, admin endpoints,
GatewayClass controller and unmanaged annotation, Gateway listeners and what they admit,
routes and backends, lbsync's access: what its account may and may not do, asked of the API
server's own RBAC with SubjectAccessReviews) as pure functions over a `Snapshot`, and
`gather` which reads the snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lbsync.bootstrap import checks, conditions, crds, manifests
from lbsync.bootstrap.cluster import Cluster
from lbsync.bootstrap.config import BootstrapConfig
from lbsync.bootstrap.report import Report, Result, Status
from lbsync.config import LeaderElectionConfig

Obj = dict[str, Any]
GW_API = manifests.GATEWAY_API_VERSION
ADMIN_PORT_NAMES = {"admin-tls", "kong-admin-tls"}
GATEWAY_API_CRDS = ("gatewayclasses", "gateways", "httproutes", "referencegrants")


@dataclass
class Snapshot:
    """Everything doctor looks at, read once."""

    crds: dict[str, Obj | None] = field(default_factory=dict)
    deployments: dict[str, Obj | None] = field(default_factory=dict)
    services: list[Obj] = field(default_factory=list)
    admin_slices: list[Obj] = field(default_factory=list)
    gateway_class: Obj | None = None
    gateway: Obj | None = None
    routes: dict[str, Obj | None] = field(default_factory=dict)  # route object name -> live
    token_secret: Obj | None = None
    service_account: Obj | None = None
    # (verb, resource, namespace, name) -> may lbsync's account do it (SubjectAccessReview)
    access: dict[tuple[str, str, str, str], bool] = field(default_factory=dict)


def _svc(snap: Snapshot, namespace: str, name: str) -> Obj | None:
    for svc in snap.services:
        meta = svc.get("metadata") or {}
        if meta.get("namespace") == namespace and meta.get("name") == name:
            return svc
    return None


def _from_verdict(name: str, verdict: conditions.Verdict) -> Result:
    if verdict.ok:
        return Result(name, Status.PASS)
    return Result(name, Status.FAIL, verdict.message, verdict.hint)


def check_crds(cfg: BootstrapConfig, snap: Snapshot) -> list[Result]:
    results = []
    for plural in GATEWAY_API_CRDS:
        name = f"{plural}.{manifests.GATEWAY_API_GROUP}"
        live = snap.crds.get(name)
        if live is None:
            results.append(Result(f"crd {plural}", Status.FAIL, "not installed",
                                  "run `lbsync bootstrap apply`"))
            continue
        verdict = conditions.crd(live, name)
        have = crds.version_key(crds.bundle_version(live) or "")
        want = crds.version_key(cfg.gateway_api.version)
        if not verdict.ok:
            results.append(_from_verdict(f"crd {plural}", verdict))
        elif have is not None and want is not None and have < want:
            results.append(Result(f"crd {plural}", Status.WARN,
                                  f"bundle {crds.bundle_version(live)} older than "
                                  f"{cfg.gateway_api.version}", "run `lbsync bootstrap apply`"))
        else:
            results.append(Result(f"crd {plural}", Status.PASS, crds.bundle_version(live) or ""))
    return results


def check_deployments(cfg: BootstrapConfig, snap: Snapshot) -> list[Result]:
    return [_from_verdict(f"deployment {name}", conditions.deployment(snap.deployments.get(name),
                                                                       name))
            for name in cfg.kong.deployments]


def check_proxy_service(cfg: BootstrapConfig, snap: Snapshot) -> list[Result]:
    name = f"service {cfg.kong.namespace}/{cfg.kong.proxy_service}"
    svc = _svc(snap, cfg.kong.namespace, cfg.kong.proxy_service)
    if svc is None:
        return [Result(name, Status.FAIL, "not found", "run `lbsync bootstrap apply` (helm)")]
    spec = svc.get("spec") or {}
    if spec.get("type") not in ("NodePort", "LoadBalancer"):
        return [Result(name, Status.FAIL, f"type {spec.get('type')}, not NodePort",
                       "set gateway.proxy.type=NodePort (rerun apply)")]
    port = next((p for p in spec.get("ports") or [] if p.get("port") == cfg.kong.proxy_port), None)
    if port is None:
        return [Result(name, Status.FAIL, f"no port {cfg.kong.proxy_port}",
                       "the Gateway listener port must be a port of this Service")]
    if port.get("nodePort") != cfg.kong.node_port:
        other = checks.port_owner(cfg.kong.node_port, snap.services,
                                  (cfg.kong.namespace, cfg.kong.proxy_service))
        why = f"; {cfg.kong.node_port} is already allocated by Service {other}" if other else ""
        return [Result(name, Status.FAIL, f"node port {port.get('nodePort')}, expected "
                       f"{cfg.kong.node_port}{why}",
                       "free the port or change kong.node_port, then rerun apply")]
    if cfg.loadbalancer.enabled:
        return [_loadbalancer_verdict(cfg, name, svc)]
    return [Result(name, Status.PASS, f"NodePort {cfg.kong.proxy_port}->{cfg.kong.node_port}")]


def _loadbalancer_verdict(cfg: BootstrapConfig, name: str, svc: Obj) -> Result:
    """Loadbalancer mode: lbsync's class, and the address an lbsync wrote (or why not)."""
    spec, want = svc.get("spec") or {}, cfg.loadbalancer.load_balancer_class
    if spec.get("type") != "LoadBalancer" or spec.get("loadBalancerClass") != want:
        return Result(name, Status.FAIL, f"type {spec.get('type')}, class "
                      f"{spec.get('loadBalancerClass') or 'none'}: not a LoadBalancer of "
                      f"class {want}", "rerun `lbsync bootstrap apply` (loadbalancer.enabled)")
    ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    shown = [i.get("ip") or i.get("hostname") for i in ingress if isinstance(i, dict)]
    if not shown:
        return Result(name, Status.WARN, f"LoadBalancer {cfg.kong.proxy_port}->"
                      f"{cfg.kong.node_port}, no address yet",
                      "start lbsync on the gateway with loadbalancer.enabled and the config "
                      "from `apply --write-kubeconfig`; `lbsync status` says why it is not "
                      "served")
    return Result(name, Status.PASS, f"LoadBalancer {cfg.kong.proxy_port}->"
                  f"{cfg.kong.node_port} at {', '.join(str(a) for a in shown)}")


def check_node_port(cfg: BootstrapConfig, snap: Snapshot) -> list[Result]:
    results = checks.node_port(cfg.kong.node_port, cfg.node_port_range, snap.services,
                               (cfg.kong.namespace, cfg.kong.proxy_service))
    # The dynamic-band warning matters before the port is claimed; `check --pre` gives it.
    return [r for r in results if not r.name.endswith(" band")]


def check_admin_endpoints(cfg: BootstrapConfig, snap: Snapshot) -> list[Result]:
    """KIC finds Kong's admin API through these EndpointSlices; without them nothing works."""
    name = f"admin endpoints {cfg.kong.namespace}/{cfg.kong.admin_service}"
    hint = ("the controller cannot reach Kong's admin API: check the kong-gateway pods run and "
            f"Service {cfg.kong.admin_service} has a port named admin-tls")
    ready = 0
    for es in snap.admin_slices:
        ports = {p.get("name") for p in es.get("ports") or []}
        if not ports & ADMIN_PORT_NAMES:
            continue
        ready += sum(1 for ep in es.get("endpoints") or []
                     if (ep.get("conditions") or {}).get("ready", True))
    if ready == 0:
        return [Result(name, Status.FAIL, "no ready endpoints with an admin-tls port", hint)]
    return [Result(name, Status.PASS, f"{ready} ready")]


def check_gateway_class(cfg: BootstrapConfig, snap: Snapshot) -> list[Result]:
    name = f"gatewayclass {cfg.gateway.class_name}"
    gc = snap.gateway_class
    if gc is None:
        return [Result(name, Status.FAIL, "not found", "run `lbsync bootstrap apply`")]
    controller = (gc.get("spec") or {}).get("controllerName")
    if controller != manifests.KIC_CONTROLLER_NAME:
        return [Result(name, Status.FAIL, f"controllerName {controller!r}",
                       f"GatewayClass must name {manifests.KIC_CONTROLLER_NAME}; delete it "
                       "and rerun apply (controllerName is immutable)")]
    annotations = (gc.get("metadata") or {}).get("annotations") or {}
    if not annotations.get(manifests.UNMANAGED_ANNOTATION):
        return [Result(name, Status.FAIL,
                       f"missing annotation {manifests.UNMANAGED_ANNOTATION}",
                       f"kubectl annotate gatewayclass {cfg.gateway.class_name} "
                       f"{manifests.UNMANAGED_ANNOTATION}=true (or rerun apply)")]
    return [_from_verdict(name, conditions.gateway_class(gc, cfg.gateway.class_name))]


def check_gateway(cfg: BootstrapConfig, snap: Snapshot) -> list[Result]:
    ref = f"{cfg.kong.namespace}/{cfg.gateway.name}"
    name = f"gateway {ref}"
    gw = snap.gateway
    if gw is None:
        return [Result(name, Status.FAIL, "not found", "run `lbsync bootstrap apply`")]
    for listener in (gw.get("spec") or {}).get("listeners") or []:
        if listener.get("port") == cfg.kong.node_port and cfg.kong.node_port != cfg.kong.proxy_port:
            return [Result(name, Status.FAIL, f"listener {listener.get('name')} uses the node "
                           f"port {cfg.kong.node_port}", conditions.HINTS["PortUnavailable"])]
    return [_from_verdict(name, conditions.gateway(gw, ref)), *check_listeners(cfg, gw)]


def check_listeners(cfg: BootstrapConfig, gw: Obj) -> list[Result]:
    """A listener that admits routes from every namespace, or for any hostname, lets anyone
    who may create an HTTPRoute anywhere take traffic for any host."""
    open_ = []
    for listener in (gw.get("spec") or {}).get("listeners") or []:
        source = (((listener.get("allowedRoutes") or {}).get("namespaces") or {})
                  .get("from", "Same"))
        why = [w for w, bad in (("every namespace", source == "All"),
                                ("any hostname", not listener.get("hostname")
                                 and not cfg.gateway.hostname and cfg.routes)) if bad]
        if why:
            open_.append(f"{listener.get('name')} admits routes for {' and '.join(why)}")
    name = f"gateway {cfg.kong.namespace}/{cfg.gateway.name} listeners"
    if open_:
        return [Result(name, Status.WARN, "; ".join(open_),
                       "rerun `lbsync bootstrap apply`: listeners then admit only the "
                       "configured routes' namespaces and hosts")]
    return [Result(name, Status.PASS, "admit only the configured routes' namespaces and hosts")]


def check_routes(cfg: BootstrapConfig, snap: Snapshot) -> list[Result]:
    results = []
    for route in cfg.routes:
        ref = f"{route.namespace}/{route.object_name}"
        name = f"httproute {ref}"
        live = snap.routes.get(route.object_name)
        if live is not None and _svc(snap, route.namespace, route.service) is None:
            results.append(Result(name, Status.FAIL, f"backend Service {route.namespace}/"
                                  f"{route.service} not found",
                                  conditions.HINTS["BackendNotFound"]))
            continue
        results.append(_from_verdict(name, conditions.http_route(live, ref, cfg.gateway.name,
                                                                 cfg.kong.namespace)))
    return results


def access_checks(cfg: BootstrapConfig) -> tuple[list[tuple[str, str, str, str]],
                                                 list[tuple[str, str, str, str]]]:
    """(verb, resource, namespace, name) lbsync's account needs, and some it must not have:
    every write, the Secrets beside it, EndpointSlices, any Service but the proxy's."""
    ns, svc = cfg.kong.namespace, cfg.kong.proxy_service
    needs = [(v, "nodes", "", "") for v in ("list", "watch")] + [
        (v, "services", ns, svc) for v in ("get", "list", "watch")]
    refused = [("list", "secrets", cfg.access.namespace, ""),
               ("list", "endpointslices.discovery.k8s.io", ns, "")] + [
        (v, r, n, "") for v in ("create", "patch", "delete")
        for r, n in (("nodes", ""), ("services", ns))]
    lease = ("leases.coordination.k8s.io", ns, LeaderElectionConfig().name)
    if cfg.loadbalancer.enabled:
        needs += [("list", "services", "", ""), ("watch", "services", "", ""),
                  ("patch", "services/status", "", ""), ("create", "events", "", ""),
                  ("create", lease[0], ns, ""), ("get", *lease), ("update", *lease)]
        refused += [("update", "services", ns, ""), ("delete", "leases.coordination.k8s.io",
                                                      ns, lease[2])]
    else:
        refused += [("list", "services", ns, ""), ("patch", "services/status", ns, ""),
                    ("create", "events", ns, "")]
    return needs, refused


def check_access(cfg: BootstrapConfig, snap: Snapshot) -> list[Result]:
    who = f"lbsync account {cfg.access.namespace}/{cfg.access.service_account}"
    if snap.service_account is None:
        return [Result(who, Status.FAIL, "ServiceAccount not found",
                       "run `lbsync bootstrap apply` to create lbsync's read-only access")]
    needs, refused = access_checks(cfg)
    missing = [_say(c) for c in needs if not snap.access.get(c)]
    extra = [_say(c) for c in refused if snap.access.get(c)]
    results = []
    if missing:
        results.append(Result(who, Status.FAIL, f"may not {', '.join(missing)}",
                              "rerun `lbsync bootstrap apply` (it grants exactly what lbsync "
                              "reads)"))
    elif extra:
        results.append(Result(who, Status.WARN, f"may also {', '.join(extra)}",
                              "another (Cluster)RoleBinding grants the account more than it "
                              "reads: find it with kubectl get clusterrolebindings,rolebindings "
                              "-A -o wide"))
    else:
        results.append(Result(who, Status.PASS, _granted(cfg)))
    results += check_token(cfg, snap)
    return results


def _granted(cfg: BootstrapConfig) -> str:
    reads = f"reads nodes and Service {cfg.kong.namespace}/{cfg.kong.proxy_service}"
    if not cfg.loadbalancer.enabled:
        return f"{reads}; writes nothing"
    return (f"{reads}, lists and watches Services; writes only Service status, Events and "
            f"its Lease (loadbalancer mode)")


def _say(check: tuple[str, str, str, str]) -> str:
    verb, resource, ns, name = check
    what = f"{resource}/{name}" if name else resource
    return f"{verb} {what}" + (f" in {ns}" if ns else "")


def check_token(cfg: BootstrapConfig, snap: Snapshot) -> list[Result]:
    name = f"lbsync token {cfg.access.namespace}/{manifests.token_secret_name(cfg)}"
    secret = snap.token_secret
    if cfg.access.credential == "token-request":
        if secret is not None:
            return [Result(name, Status.WARN, "a never-expiring token Secret exists, while "
                           "access.credential is token-request",
                           f"delete it (kubectl -n {cfg.access.namespace} delete secret "
                           f"{manifests.token_secret_name(cfg)}) once the gateway host uses a "
                           "renewed kubeconfig")]
        return []
    if secret is None:
        return [Result(name, Status.WARN, "not found",
                       "run `lbsync bootstrap apply` to create lbsync's read-only access")]
    if not (secret.get("data") or {}).get("token"):
        return [Result(name, Status.WARN, "no token filled in yet",
                       "the token controller fills it; check the ServiceAccount exists")]
    return [Result(name, Status.PASS)]


RULES = [check_crds, check_deployments, check_proxy_service, check_node_port,
         check_admin_endpoints, check_gateway_class, check_gateway, check_routes, check_access]


def diagnose(cfg: BootstrapConfig, snap: Snapshot) -> Report:
    report = Report("doctor")
    for rule in RULES:
        report.results += rule(cfg, snap)
    return report


def gather(cfg: BootstrapConfig, cluster: Cluster) -> Snapshot:
    """Read what doctor needs; missing objects and missing CRDs simply show up as None."""
    snap = Snapshot()
    for plural in GATEWAY_API_CRDS:
        name = f"{plural}.{manifests.GATEWAY_API_GROUP}"
        snap.crds[name] = cluster.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", name)
    for dep in cfg.kong.deployments:
        snap.deployments[dep] = cluster.get("apps/v1", "Deployment", dep, cfg.kong.namespace)
    snap.services = cluster.list("v1", "Service")
    snap.admin_slices = cluster.list("discovery.k8s.io/v1", "EndpointSlice", cfg.kong.namespace,
                                     f"kubernetes.io/service-name={cfg.kong.admin_service}")
    snap.gateway_class = cluster.get(GW_API, "GatewayClass", cfg.gateway.class_name)
    snap.gateway = cluster.get(GW_API, "Gateway", cfg.gateway.name, cfg.kong.namespace)
    for route in cfg.routes:
        snap.routes[route.object_name] = cluster.get(GW_API, "HTTPRoute", route.object_name,
                                                     route.namespace)
    snap.token_secret = cluster.get("v1", "Secret", manifests.token_secret_name(cfg),
                                    cfg.access.namespace)
    snap.service_account = cluster.get("v1", "ServiceAccount", cfg.access.service_account,
                                       cfg.access.namespace)
    if snap.service_account is not None:
        user = manifests.service_account_user(cfg)
        groups = ["system:serviceaccounts", f"system:serviceaccounts:{cfg.access.namespace}",
                  "system:authenticated"]
        needs, refused = access_checks(cfg)
        for check in needs + refused:
            verb, resource, ns, name = check
            plural, _, group = resource.partition(".")
            plural, _, sub = plural.partition("/")
            snap.access[check] = cluster.subject_can(user, groups, verb, group, plural,
                                                     ns or None, name or None, sub or None)
    return snap
