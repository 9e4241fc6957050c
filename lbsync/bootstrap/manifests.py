"""Desired state as plain dicts: every object the bootstrap applies, plus the Helm values.

Owns rendering (config -> manifests, in dependency order), the kubeconfig and lbsync config
written for the gateway host, and the YAML serialisation used by `render`. Pure.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import yaml

from lbsync.bootstrap.config import BootstrapConfig, Route
from lbsync.config import LeaderElectionConfig, LoadBalancerConfig

Obj = dict[str, Any]

FIELD_MANAGER = "lbsync"
KIC_CONTROLLER_NAME = "konghq.com/kic-gateway-controller"
UNMANAGED_ANNOTATION = "konghq.com/gatewayclass-unmanaged"
STRIP_PATH_ANNOTATION = "konghq.com/strip-path"
GATEWAY_API_GROUP = "gateway.networking.k8s.io"
GATEWAY_API_VERSION = f"{GATEWAY_API_GROUP}/v1"
# Labels let uninstall and doctor find what the bootstrap made, and tell people who made it.
MANAGED_LABELS = {"app.kubernetes.io/managed-by": "lbsync-bootstrap"}

# What lbsync on the gateway host reads, and nothing else: Nodes cluster-wide (list and
# watch), and in the proxy Service's namespace only that Service (its Role names it; the
# daemon lists and watches it with fieldSelector=metadata.name=NAME, which RBAC authorizes as
# a request for that name). Nothing it never reads: no EndpointSlices, no Secrets.
READ = ["get", "list", "watch"]
NODE_RULES: list[Obj] = [{"apiGroups": [""], "resources": ["nodes"], "verbs": READ}]
RBAC = "rbac.authorization.k8s.io"
# loadbalancer.enabled only, in roles of their own (so the reader stays a reader, and turning
# the mode off deletes exactly these): what lbsync's loadbalancer mode calls. Every Service,
# to find those of its class; their status by server-side apply (PATCH); an Event on a
# Service it cannot serve; one Lease so that one gateway writes. Nothing else: no update of
# a Service's spec, no delete, no other namespace's Leases.
LB_CLUSTER_RULES: list[Obj] = [
    {"apiGroups": [""], "resources": ["services"], "verbs": ["list", "watch"]},
    {"apiGroups": [""], "resources": ["services/status"], "verbs": ["patch"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
]
LEASES = "coordination.k8s.io"
LEGACY_TOKEN_TYPE = "kubernetes.io/service-account-token"


def _meta(name: str, namespace: str | None = None, **annotations: str) -> Obj:
    meta: Obj = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    meta["labels"] = dict(MANAGED_LABELS)
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def namespace(name: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(name)}


def service_rules(cfg: BootstrapConfig) -> list[Obj]:
    return [{"apiGroups": [""], "resources": ["services"], "verbs": READ,
             "resourceNames": [cfg.kong.proxy_service]}]


def access_objects(cfg: BootstrapConfig) -> list[Obj]:
    """lbsync's ServiceAccount, what it may read (a ClusterRole for Nodes, a Role for the proxy
    Service) with their bindings, and, with `access.credential: secret` only, the Secret the
    token controller fills with a never-expiring token."""
    sa, ns = cfg.access.service_account, cfg.access.namespace
    name = reader_name(cfg)
    subject = [{"kind": "ServiceAccount", "name": sa, "namespace": ns}]
    objs: list[Obj] = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(sa, ns),
         # lbsync never runs in a pod: no token is mounted anywhere by accident.
         "automountServiceAccountToken": False},
        {"apiVersion": f"{RBAC}/v1", "kind": "ClusterRole", "metadata": _meta(name),
         "rules": NODE_RULES},
        {"apiVersion": f"{RBAC}/v1", "kind": "ClusterRoleBinding", "metadata": _meta(name),
         "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": name},
         "subjects": subject},
        {"apiVersion": f"{RBAC}/v1", "kind": "Role", "metadata": _meta(name, cfg.kong.namespace),
         "rules": service_rules(cfg)},
        {"apiVersion": f"{RBAC}/v1", "kind": "RoleBinding",
         "metadata": _meta(name, cfg.kong.namespace),
         "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": name}, "subjects": subject},
    ]
    if cfg.access.credential == "secret":
        objs.append(legacy_token_secret(cfg))
    if cfg.loadbalancer.enabled:
        objs += loadbalancer_access_objects(cfg)
    return objs


def loadbalancer_access_objects(cfg: BootstrapConfig) -> list[Obj]:
    """What loadbalancer mode adds: a ClusterRole (LB_CLUSTER_RULES) and, in Kong's namespace
    (lbsync's leader_election.namespace), a Role for its one Lease, with their bindings.
    `create` cannot be limited to a name (the object has none yet when RBAC decides)."""
    name = loadbalancer_role_name(cfg)
    subject = [{"kind": "ServiceAccount", "name": cfg.access.service_account,
                "namespace": cfg.access.namespace}]
    lease = LeaderElectionConfig().name
    lease_rules: list[Obj] = [
        {"apiGroups": [LEASES], "resources": ["leases"], "verbs": ["create"]},
        {"apiGroups": [LEASES], "resources": ["leases"], "verbs": ["get", "update"],
         "resourceNames": [lease]}]
    ns = cfg.kong.namespace
    return [
        {"apiVersion": f"{RBAC}/v1", "kind": "ClusterRole", "metadata": _meta(name),
         "rules": LB_CLUSTER_RULES},
        {"apiVersion": f"{RBAC}/v1", "kind": "ClusterRoleBinding", "metadata": _meta(name),
         "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": name},
         "subjects": subject},
        {"apiVersion": f"{RBAC}/v1", "kind": "Role", "metadata": _meta(name, ns),
         "rules": lease_rules},
        {"apiVersion": f"{RBAC}/v1", "kind": "RoleBinding", "metadata": _meta(name, ns),
         "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": name}, "subjects": subject},
    ]


def loadbalancer_role_name(cfg: BootstrapConfig) -> str:
    return f"{cfg.access.service_account}-loadbalancer"


def legacy_token_secret(cfg: BootstrapConfig) -> Obj:
    # Since Kubernetes 1.24 tokens are not minted automatically; this Secret type asks the
    # token controller for a non-expiring one (access.credential: secret only).
    meta = _meta(token_secret_name(cfg), cfg.access.namespace)
    meta["annotations"] = {"kubernetes.io/service-account.name": cfg.access.service_account}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": LEGACY_TOKEN_TYPE}


def reader_name(cfg: BootstrapConfig) -> str:
    """The ClusterRole, Role and both bindings share this name."""
    return f"{cfg.access.service_account}-reader"


def cluster_role_name(cfg: BootstrapConfig) -> str:
    return reader_name(cfg)


def token_secret_name(cfg: BootstrapConfig) -> str:
    return f"{cfg.access.service_account}-token"


def service_account_user(cfg: BootstrapConfig) -> str:
    """The user name the API server gives lbsync's tokens."""
    return f"system:serviceaccount:{cfg.access.namespace}:{cfg.access.service_account}"


def gateway_class(cfg: BootstrapConfig) -> Obj:
    # KIC only programs Gateways of a class it is told it does not manage (the chart's Kong).
    return {
        "apiVersion": GATEWAY_API_VERSION, "kind": "GatewayClass",
        "metadata": _meta(cfg.gateway.class_name, **{UNMANAGED_ANNOTATION: "true"}),
        "spec": {"controllerName": KIC_CONTROLLER_NAME},
    }


def allowed_routes(namespaces: list[str] | tuple[str, ...]) -> Obj:
    """Routes only from the namespaces the configured routes live in, chosen by the label
    the API server puts on every Namespace (`kubernetes.io/metadata.name`)."""
    return {"namespaces": {"from": "Selector", "selector": {"matchExpressions": [
        {"key": "kubernetes.io/metadata.name", "operator": "In",
         "values": sorted(set(namespaces))}]}}}


def listeners(cfg: BootstrapConfig) -> list[Obj]:
    """HTTP listeners on the proxy Service's port (not the node port: KIC reports
    PortUnavailable otherwise). No listener admits any hostname from any namespace: with
    `gateway.hostname` one listener for it, else one per route host; each admits routes from
    the namespaces of the routes it serves."""
    def listener(name: str, hostname: str | None, namespaces: list[str]) -> Obj:
        ls: Obj = {"name": name, "protocol": "HTTP", "port": cfg.kong.proxy_port}
        if hostname:
            ls["hostname"] = hostname
        ls["allowedRoutes"] = allowed_routes(namespaces or [cfg.kong.namespace])
        return ls

    if cfg.gateway.hostname or not cfg.routes:
        return [listener("http", cfg.gateway.hostname, list(cfg.route_namespaces))]
    out: list[Obj] = []
    taken: set[str] = set()
    for host in sorted({r.host for r in cfg.routes}):
        name = listener_name(host, taken)
        taken.add(name)
        out.append(listener(name, host, [r.namespace for r in cfg.routes if r.host == host]))
    return out


def listener_name(host: str, taken: set[str]) -> str:
    """`http-<host as a DNS label>`, `*` spelt `wildcard`; stable across runs, unique."""
    slug = re.sub(r"[^a-z0-9]+", "-", host.lower().replace("*", "wildcard")).strip("-")
    base = f"http-{slug}"[:240].rstrip("-")
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    return name


def gateway(cfg: BootstrapConfig) -> Obj:
    return {
        "apiVersion": GATEWAY_API_VERSION, "kind": "Gateway",
        "metadata": _meta(cfg.gateway.name, cfg.kong.namespace),
        "spec": {"gatewayClassName": cfg.gateway.class_name, "listeners": listeners(cfg)},
    }


def http_route(cfg: BootstrapConfig, route: Route) -> Obj:
    annotations = {STRIP_PATH_ANNOTATION: "true"} if route.strip_path else {}
    return {
        "apiVersion": GATEWAY_API_VERSION, "kind": "HTTPRoute",
        "metadata": _meta(route.object_name, route.namespace, **annotations),
        "spec": {
            "parentRefs": [{"group": GATEWAY_API_GROUP, "kind": "Gateway",
                            "name": cfg.gateway.name, "namespace": cfg.kong.namespace}],
            "hostnames": [route.host],
            "rules": [{
                "matches": [{"path": {"type": "PathPrefix", "value": route.path}}],
                "backendRefs": [{"name": route.service, "port": route.port}],
            }],
        },
    }


def cluster_objects(cfg: BootstrapConfig) -> list[Obj]:
    """Objects applied before Helm runs: namespaces first, then RBAC (dependency order)."""
    namespaces = dict.fromkeys([cfg.kong.namespace, cfg.access.namespace])
    return [namespace(n) for n in namespaces] + access_objects(cfg)


def gateway_objects(cfg: BootstrapConfig) -> list[Obj]:
    """Objects applied after Kong is up (their CRDs and controller must exist)."""
    return [gateway_class(cfg), gateway(cfg)] + [http_route(cfg, r) for r in cfg.routes]


def helm_values(cfg: BootstrapConfig) -> Obj:
    """Values for `kong/ingress`: the proxy as a NodePort on plain HTTP (NGINX on the gateway
    host terminates TLS), and nothing else exposed: no plain-HTTP admin API
    (`kong.admin_http`), no Kong Manager NodePort (`kong.manager`) unless asked for."""
    proxy: Obj = {"type": "NodePort"}
    if cfg.loadbalancer.enabled:
        # A LoadBalancer Service keeps its node ports: lbsync's stream listeners use them.
        proxy = {"type": "LoadBalancer",
                 "loadBalancerClass": cfg.loadbalancer.load_balancer_class}
    return {
        "gateway": {
            "proxy": {
                **proxy,
                "http": {"enabled": True, "servicePort": cfg.kong.proxy_port,
                         "nodePort": cfg.kong.node_port},
                "tls": {"enabled": False},
            },
            "admin": {"http": {"enabled": cfg.kong.admin_http}},
            "manager": {"enabled": cfg.kong.manager},
        },
    }


def ref(obj: Obj) -> str:
    """How every message names an object: Kind/namespace/name or Kind/name."""
    meta = obj.get("metadata", {})
    ns = meta.get("namespace")
    kind, name = obj.get("kind"), meta.get("name")
    return f"{kind}/{ns}/{name}" if ns else f"{kind}/{name}"


def dump_all(objs: list[Obj]) -> str:
    return yaml.safe_dump_all(objs, sort_keys=False, default_flow_style=False)


def render_kubeconfig(server: str, ca_pem: bytes | None, token: str, *, name: str = "lbsync",
                      insecure: bool = False) -> Obj:
    """A single-context kubeconfig for the gateway host's lbsync (token auth, embedded CA)."""
    cluster: Obj = {"server": server}
    if ca_pem:
        cluster["certificate-authority-data"] = base64.b64encode(ca_pem).decode("ascii")
    elif insecure:
        cluster["insecure-skip-tls-verify"] = True
    return {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
    }


def kubeconfig_token(doc: Any) -> str | None:
    """The token of a kubeconfig written by `render_kubeconfig` (None if it has none)."""
    try:
        token = doc["users"][0]["user"]["token"]
    except (TypeError, KeyError, IndexError):
        return None
    return token if isinstance(token, str) else None


def token_expiry(token: str) -> int | None:
    """The `exp` claim (unix seconds) of a JWT, read without verifying it (the API server
    verifies; this only says when to renew). None: not a JWT, or it never expires."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return int(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


def render_lbsync_config(cfg: BootstrapConfig, kubeconfig_path: str) -> Obj:
    """A minimal lbsync `config.yaml` matching what the bootstrap installed: an http
    upstream for the NodePort proxy, or loadbalancer mode serving the proxy Service."""
    conf: Obj = {"kubernetes": {"kubeconfig": kubeconfig_path}}
    lb = cfg.loadbalancer
    if not lb.enabled:
        conf["upstreams"] = [{"name": "k8s_cluster",
                              "service": f"{cfg.kong.namespace}/{cfg.kong.proxy_service}",
                              "port": cfg.kong.proxy_port}]
        return conf
    # The proxy's port (80) is a stream listener now: NGINX's http site must not hold it on
    # these addresses, so it is not among the reserved ports (sshd's and lbsync's are).
    reserved = [p for p in LoadBalancerConfig().reserved_ports if p != cfg.kong.proxy_port]
    conf["upstreams"] = []
    conf["loadbalancer"] = {
        "enabled": True, "load_balancer_class": lb.load_balancer_class,
        "addresses": list(lb.addresses), "reserved_ports": reserved,
        "leader_election": {"namespace": cfg.kong.namespace}}
    if lb.hostname:
        conf["loadbalancer"]["hostname"] = lb.hostname
    return conf
