"""Manifest rendering: the objects, their order, and the files for the gateway host."""

from __future__ import annotations

import base64
import json
from typing import Any

from lbsync import config as lbsync_config
from lbsync.bootstrap import manifests
from lbsync.bootstrap.config import (
    AccessSection,
    BootstrapConfig,
    GatewaySection,
    KongSection,
    LoadBalancerSection,
    Route,
)
from lbsync.bootstrap.plan import is_subset, needs_apply, owns_beyond


def test_order_namespaces_then_rbac_then_gateway_objects() -> None:
    cfg = BootstrapConfig(access=AccessSection(namespace="lbsync"))
    kinds = [o["kind"] for o in manifests.cluster_objects(cfg) + manifests.gateway_objects(cfg)]
    assert kinds == ["Namespace", "Namespace", "ServiceAccount", "ClusterRole",
                     "ClusterRoleBinding", "Role", "RoleBinding", "GatewayClass", "Gateway",
                     "HTTPRoute"]
    legacy = BootstrapConfig(access=AccessSection(credential="secret"))
    assert [o["kind"] for o in manifests.access_objects(legacy)][-1] == "Secret"


def test_single_namespace_when_access_shares_kong_namespace() -> None:
    objs = manifests.cluster_objects(BootstrapConfig())
    assert [o["metadata"]["name"] for o in objs if o["kind"] == "Namespace"] == ["kong"]


def test_gateway_class_is_unmanaged_kic() -> None:
    gc = manifests.gateway_class(BootstrapConfig())
    assert gc["metadata"]["annotations"] == {"konghq.com/gatewayclass-unmanaged": "true"}
    assert gc["spec"] == {"controllerName": "konghq.com/kic-gateway-controller"}


def selector(*namespaces: str) -> dict[str, Any]:
    return {"namespaces": {"from": "Selector", "selector": {"matchExpressions": [
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": list(namespaces)}]}}}


def test_gateway_listens_on_the_service_port_not_the_node_port() -> None:
    gw = manifests.gateway(BootstrapConfig(kong=KongSection(node_port=32001, proxy_port=80)))
    (listener,) = gw["spec"]["listeners"]
    assert listener["port"] == 80 and listener["protocol"] == "HTTP"


def test_listeners_admit_only_the_configured_routes_hosts_and_namespaces() -> None:
    cfg = BootstrapConfig(routes=(Route("worlds.com", "/a", "a", 80, "apps"),
                                  Route("worlds.com", "/b", "b", 80, "web"),
                                  Route("*.example.org", "/", "c", 80, "web"),
                                  Route("a-b.com", "/", "d", 80), Route("a.b.com", "/", "d", 80)))
    got = {ls["name"]: (ls.get("hostname"), ls["allowedRoutes"])
           for ls in manifests.gateway(cfg)["spec"]["listeners"]}
    assert got == {
        "http-wildcard-example-org": ("*.example.org", selector("web")),
        "http-a-b-com": ("a-b.com", selector("default")),
        "http-a-b-com-2": ("a.b.com", selector("default")),
        "http-worlds-com": ("worlds.com", selector("apps", "web")),
    }
    # gateway.hostname: one listener for it, admitting every route's namespace
    one = BootstrapConfig(gateway=GatewaySection(hostname="*.worlds.com"),
                          routes=(Route("a.worlds.com", "/", "a", 80, "x"),
                                  Route("b.worlds.com", "/", "b", 80, "y")))
    (listener,) = manifests.gateway(one)["spec"]["listeners"]
    assert listener == {"name": "http", "protocol": "HTTP", "port": 80,
                        "hostname": "*.worlds.com", "allowedRoutes": selector("x", "y")}
    # no routes: a listener that admits routes from Kong's namespace only
    (listener,) = manifests.gateway(BootstrapConfig(routes=()))["spec"]["listeners"]
    assert "hostname" not in listener and listener["allowedRoutes"] == selector("kong")


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


def test_rbac_reads_nodes_and_the_proxy_service_only() -> None:
    objs = {o["kind"]: o for o in manifests.access_objects(BootstrapConfig())}
    assert objs["ClusterRole"]["rules"] == [
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]}]
    assert objs["Role"]["metadata"]["namespace"] == "kong"
    assert objs["Role"]["rules"] == [
        {"apiGroups": [""], "resources": ["services"], "verbs": ["get", "list", "watch"],
         "resourceNames": ["kong-gateway-proxy"]}]
    for binding in ("ClusterRoleBinding", "RoleBinding"):
        assert objs[binding]["subjects"] == [
            {"kind": "ServiceAccount", "name": "lbsync", "namespace": "kong"}]
    assert "Secret" not in objs  # no never-expiring token unless asked for
    assert objs["ServiceAccount"]["automountServiceAccountToken"] is False


def test_helm_values_expose_only_the_proxy() -> None:
    values = manifests.helm_values(BootstrapConfig(kong=KongSection(node_port=32001)))
    proxy = values["gateway"]["proxy"]
    assert proxy["type"] == "NodePort"
    assert proxy["http"]["nodePort"] == 32001
    assert proxy["tls"] == {"enabled": False}
    assert values["gateway"]["admin"]["http"]["enabled"] is False
    assert values["gateway"]["manager"]["enabled"] is False
    on = manifests.helm_values(BootstrapConfig(kong=KongSection(admin_http=True, manager=True)))
    assert on["gateway"]["admin"]["http"]["enabled"] is True
    assert on["gateway"]["manager"]["enabled"] is True


LB = BootstrapConfig(loadbalancer=LoadBalancerSection(enabled=True,
                                                      addresses=("203.0.113.10",)))


def test_loadbalancer_mode_grants_exactly_what_lbsync_calls_in_roles_of_its_own() -> None:
    reader = manifests.access_objects(BootstrapConfig())
    objs = manifests.access_objects(LB)
    assert objs[:len(reader)] == reader  # the reader is unchanged
    added = {(o["kind"], o["metadata"]["name"]): o for o in objs[len(reader):]}
    assert list(added) == [("ClusterRole", "lbsync-loadbalancer"),
                           ("ClusterRoleBinding", "lbsync-loadbalancer"),
                           ("Role", "lbsync-loadbalancer"), ("RoleBinding", "lbsync-loadbalancer")]
    assert added["ClusterRole", "lbsync-loadbalancer"]["rules"] == [
        {"apiGroups": [""], "resources": ["services"], "verbs": ["list", "watch"]},
        {"apiGroups": [""], "resources": ["services/status"], "verbs": ["patch"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]}]
    role = added["Role", "lbsync-loadbalancer"]
    assert role["metadata"]["namespace"] == "kong"
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
         "verbs": ["get", "update"], "resourceNames": ["lbsync-loadbalancer"]}]


def test_loadbalancer_mode_helm_values_and_the_gateways_config() -> None:
    proxy = manifests.helm_values(LB)["gateway"]["proxy"]
    assert (proxy["type"], proxy["loadBalancerClass"]) == ("LoadBalancer", "lbsync.io/nginx")
    assert proxy["http"]["nodePort"] == 32001  # lbsync's stream listeners balance over it
    doc = manifests.render_lbsync_config(LB, "/etc/lbsync/kubeconfig")
    cfg = lbsync_config.parse(doc, check_paths=False)
    assert cfg.upstreams == () and cfg.loadbalancer.enabled
    assert cfg.loadbalancer.addresses == ("203.0.113.10",)
    assert 80 not in cfg.loadbalancer.reserved_ports  # the proxy's port is a listener now
    assert cfg.loadbalancer.leader_election.namespace == "kong"
    plain = lbsync_config.parse(manifests.render_lbsync_config(BootstrapConfig(), "/k"),
                                check_paths=False)
    assert [u.name for u in plain.upstreams] == ["k8s_cluster"]
    assert not plain.loadbalancer.enabled


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


def test_needs_apply_when_we_own_a_field_no_longer_wanted() -> None:
    desired = manifests.namespace("kong")
    labels = {"app.kubernetes.io/managed-by": "lbsync-bootstrap", "extra": "x"}
    live: dict[str, Any] = {"metadata": {"name": "kong", "labels": labels, "managedFields": [
        {"manager": "kubectl", "operation": "Update",
         "fieldsV1": {"f:metadata": {"f:labels": {"f:extra": {}}}}},
        {"manager": "lbsync", "operation": "Apply",
         "fieldsV1": {"f:metadata": {"f:labels": {"f:app.kubernetes.io/managed-by": {}}}}}]}}
    assert not needs_apply(desired, live, "lbsync")  # others' fields are theirs
    live["metadata"]["managedFields"][1]["fieldsV1"]["f:metadata"]["f:labels"]["f:extra"] = {}
    assert needs_apply(desired, live, "lbsync")  # ours: apply removes it
    live["metadata"]["managedFields"].pop()
    assert needs_apply(desired, live, "lbsync")  # never applied by lbsync: record ownership


def test_owns_beyond_keyed_lists() -> None:
    desired = {"spec": {"listeners": [{"name": "a", "port": 80}]}}
    key = 'k:{"name":"a"}'
    assert not owns_beyond({"f:spec": {"f:listeners": {key: {".": {}, "f:port": {}}}}}, desired)
    assert owns_beyond({"f:spec": {"f:listeners": {'k:{"name":"b"}': {}}}}, desired)
    assert owns_beyond({"f:spec": {"f:listeners": {key: {"f:hostname": {}}}}}, desired)
    assert owns_beyond({"f:spec": {"f:x": {}}}, desired)
    assert not owns_beyond({"f:spec": {"f:listeners": {"i:0": {"f:port": {}}}}}, desired)
    assert owns_beyond({"f:spec": {"f:listeners": {"i:1": {}}}}, desired)
    assert not owns_beyond({"f:spec": {"f:listeners": {'v:{"name":"a","port":80}': {}}}}, desired)
    assert owns_beyond({"z:odd": {}}, desired)


def test_token_expiry() -> None:
    def jwt(claims: dict[str, Any]) -> str:
        body = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
        return f"eyJhbGciOiJIUzI1NiJ9.{body}.sig"

    assert manifests.token_expiry(jwt({"exp": 1893456000, "sub": "x"})) == 1893456000
    assert manifests.token_expiry(jwt({"sub": "legacy tokens never expire"})) is None
    assert manifests.token_expiry("not-a-jwt") is None
    assert manifests.token_expiry("a.!!!.c") is None
    doc = manifests.render_kubeconfig("https://x", None, "tok")
    assert manifests.kubeconfig_token(doc) == "tok"
    assert manifests.kubeconfig_token({"users": []}) is None
