"""Manifest rendering: the objects, their order, and the files for the gateway host."""

from __future__ import annotations

import base64
from typing import Any

from lbsync.bootstrap import manifests
from lbsync.bootstrap.config import (
    AccessSection,
    BootstrapConfig,
    GatewaySection,
    KongSection,
    Route,
)
from lbsync.bootstrap.plan import is_subset, needs_apply


def test_order_namespaces_then_rbac_then_gateway_objects() -> None:
    cfg = BootstrapConfig(access=AccessSection(namespace="lbsync"))
    kinds = [o["kind"] for o in manifests.cluster_objects(cfg) + manifests.gateway_objects(cfg)]
    assert kinds == ["Namespace", "Namespace", "ServiceAccount", "ClusterRole",
                     "ClusterRoleBinding", "Secret", "GatewayClass", "Gateway", "HTTPRoute"]


def test_single_namespace_when_access_shares_kong_namespace() -> None:
    objs = manifests.cluster_objects(BootstrapConfig())
    assert [o["metadata"]["name"] for o in objs if o["kind"] == "Namespace"] == ["kong"]


def test_gateway_class_is_unmanaged_kic() -> None:
    gc = manifests.gateway_class(BootstrapConfig())
    assert gc["metadata"]["annotations"] == {"konghq.com/gatewayclass-unmanaged": "true"}
    assert gc["spec"] == {"controllerName": "konghq.com/kic-gateway-controller"}


def test_gateway_listens_on_the_service_port_not_the_node_port() -> None:
    gw = manifests.gateway(BootstrapConfig(kong=KongSection(node_port=32001, proxy_port=80)))
    (listener,) = gw["spec"]["listeners"]
    assert listener["port"] == 80 and listener["protocol"] == "HTTP"
    assert listener["allowedRoutes"] == {"namespaces": {"from": "All"}}
    assert "hostname" not in listener
    gw = manifests.gateway(BootstrapConfig(gateway=GatewaySection(hostname="worlds.com")))
    assert gw["spec"]["listeners"][0]["hostname"] == "worlds.com"


def test_http_route() -> None:
    cfg = BootstrapConfig()
    route = manifests.http_route(cfg, Route("worlds.com", "/world1", "hello-world-1-svc", 80))
    assert route["metadata"]["namespace"] == "default"
    assert route["metadata"]["annotations"] == {"konghq.com/strip-path": "true"}
    assert route["spec"]["parentRefs"][0]["name"] == "kong-gateway"
    assert route["spec"]["parentRefs"][0]["namespace"] == "kong"
    assert route["spec"]["rules"][0]["backendRefs"] == [{"name": "hello-world-1-svc", "port": 80}]
    plain = manifests.http_route(cfg, Route("a.b", "/x", "s", 80, strip_path=False))
    assert "annotations" not in plain["metadata"]


def test_rbac_is_read_only() -> None:
    cr = next(o for o in manifests.access_objects(BootstrapConfig()) if o["kind"] == "ClusterRole")
    verbs = {v for rule in cr["rules"] for v in rule["verbs"]}
    resources = {r for rule in cr["rules"] for r in rule["resources"]}
    assert verbs == {"get", "list", "watch"}
    assert resources == {"nodes", "services", "endpointslices"}


def test_helm_values_match_the_tutorial() -> None:
    values = manifests.helm_values(BootstrapConfig(kong=KongSection(node_port=32001)))
    proxy = values["gateway"]["proxy"]
    assert proxy["type"] == "NodePort"
    assert proxy["http"]["nodePort"] == 32001
    assert proxy["tls"] == {"enabled": False}
    assert values["gateway"]["admin"]["http"]["enabled"] is True


def test_kubeconfig() -> None:
    doc = manifests.render_kubeconfig("https://10.0.0.1:6443", b"PEM", "tok")
    cluster = doc["clusters"][0]["cluster"]
    assert cluster == {"server": "https://10.0.0.1:6443",
                       "certificate-authority-data": base64.b64encode(b"PEM").decode()}
    assert doc["users"][0]["user"] == {"token": "tok"}
    assert doc["current-context"] == doc["contexts"][0]["name"]
    insecure = manifests.render_kubeconfig("https://x", None, "t", insecure=True)
    assert insecure["clusters"][0]["cluster"]["insecure-skip-tls-verify"] is True


def test_dump_all_round_trips() -> None:
    import yaml

    objs = manifests.gateway_objects(BootstrapConfig())
    assert list(yaml.safe_load_all(manifests.dump_all(objs))) == objs


def test_needs_apply_ignores_server_fields() -> None:
    desired = manifests.namespace("kong")
    live: dict[str, Any] = {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "kong", "resourceVersion": "7",
                         "labels": {"app.kubernetes.io/managed-by": "lbsync-bootstrap",
                                    "kubernetes.io/metadata.name": "kong"}},
            "status": {"phase": "Active"}}
    assert not needs_apply(desired, live)
    assert needs_apply(desired, None)
    live["metadata"]["labels"] = {}
    assert needs_apply(desired, live)
    assert is_subset({}, live)
