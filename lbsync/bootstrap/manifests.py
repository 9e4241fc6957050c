"""Desired state as plain dicts: every object the bootstrap applies, plus the Helm values.

Owns rendering (config -> manifests, in dependency order), the kubeconfig and lbsync config
written for the gateway host, and the YAML serialisation used by `render`. Pure.
"""

from __future__ import annotations

import base64
from typing import Any

import yaml

from lbsync.bootstrap.config import BootstrapConfig, Route

Obj = dict[str, Any]

FIELD_MANAGER = "lbsync"
KIC_CONTROLLER_NAME = "konghq.com/kic-gateway-controller"
UNMANAGED_ANNOTATION = "konghq.com/gatewayclass-unmanaged"
STRIP_PATH_ANNOTATION = "konghq.com/strip-path"
GATEWAY_API_GROUP = "gateway.networking.k8s.io"
GATEWAY_API_VERSION = f"{GATEWAY_API_GROUP}/v1"
# Labels let uninstall and doctor find what the bootstrap made, and tell people who made it.
MANAGED_LABELS = {"app.kubernetes.io/managed-by": "lbsync-bootstrap"}

# What lbsync on the gateway host reads, and nothing else: it only needs to list and watch.
LBSYNC_RULES: list[Obj] = [
    {"apiGroups": [""], "resources": ["nodes", "services"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
     "verbs": ["get", "list", "watch"]},
]


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


def access_objects(cfg: BootstrapConfig) -> list[Obj]:
    """ServiceAccount, read-only ClusterRole and binding, and a long-lived token Secret."""
    sa, ns = cfg.access.service_account, cfg.access.namespace
    token_meta = _meta(f"{sa}-token", ns)
    token_meta["annotations"] = {"kubernetes.io/service-account.name": sa}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(sa, ns)},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": _meta(cluster_role_name(cfg)), "rules": LBSYNC_RULES},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": _meta(cluster_role_name(cfg)),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": cluster_role_name(cfg)},
         "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}]},
        # Since Kubernetes 1.24 tokens are not minted automatically; this Secret type asks the
        # token controller for a non-expiring one, which a gateway host daemon needs.
        {"apiVersion": "v1", "kind": "Secret", "metadata": token_meta,
         "type": "kubernetes.io/service-account-token"},
    ]


def cluster_role_name(cfg: BootstrapConfig) -> str:
    return f"{cfg.access.service_account}-reader"


def token_secret_name(cfg: BootstrapConfig) -> str:
    return f"{cfg.access.service_account}-token"


def gateway_class(cfg: BootstrapConfig) -> Obj:
    # KIC only programs Gateways of a class it is told it does not manage (the chart's Kong).
    return {
        "apiVersion": GATEWAY_API_VERSION, "kind": "GatewayClass",
        "metadata": _meta(cfg.gateway.class_name, **{UNMANAGED_ANNOTATION: "true"}),
        "spec": {"controllerName": KIC_CONTROLLER_NAME},
    }


def gateway(cfg: BootstrapConfig) -> Obj:
    listener: Obj = {
        "name": "http",
        "protocol": "HTTP",
        # The proxy Service's port, not the node port: KIC reports PortUnavailable otherwise.
        "port": cfg.kong.proxy_port,
        "allowedRoutes": {"namespaces": {"from": "All"}},
    }
    if cfg.gateway.hostname:
        listener["hostname"] = cfg.gateway.hostname
    return {
        "apiVersion": GATEWAY_API_VERSION, "kind": "Gateway",
        "metadata": _meta(cfg.gateway.name, cfg.kong.namespace),
        "spec": {"gatewayClassName": cfg.gateway.class_name, "listeners": [listener]},
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
    """The tutorial's values for `kong/ingress`: NodePort proxy, plain HTTP, admin HTTP on."""
    return {
        "gateway": {
            "proxy": {
                "type": "NodePort",
                "http": {"enabled": True, "servicePort": cfg.kong.proxy_port,
                         "nodePort": cfg.kong.node_port},
                "tls": {"enabled": False},
            },
            "admin": {"http": {"enabled": True}},
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


def render_lbsync_config(cfg: BootstrapConfig, kubeconfig_path: str) -> Obj:
    """A minimal lbsync `config.yaml` matching what the bootstrap installed."""
    return {
        "kubernetes": {"kubeconfig": kubeconfig_path},
        "upstreams": [{"name": "k8s_cluster",
                       "service": f"{cfg.kong.namespace}/{cfg.kong.proxy_service}",
                       "port": cfg.kong.proxy_port}],
    }
