"""Phase 2: generic CRUD, patches, server-side apply, CRDs, access reviews, DynamicClient."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml
from kubernetes.client.rest import ApiException
from kubernetes.dynamic import DynamicClient
from lbsync_lab import data
from lbsync_lab.controllers import ControllerManager
from lbsync_lab.sim import ApiServer, objects
from lbsync_lab.sim.testing import WatchReader

BUNDLE_NAME = data.GATEWAY_API_BUNDLE


@pytest.fixture
def dyn(client: Any, tmp_path: Path) -> DynamicClient:
    return DynamicClient(client, cache_file=str(tmp_path / "discovery.json"))


def ssa(dyn: DynamicClient, res: Any, doc: dict[str, Any], manager: str,
        force: bool | None = None) -> Any:
    """Server-side apply through DynamicClient with a serialized body.

    kubernetes 22.6's REST layer cannot send a dict with Content-Type
    application/apply-patch+yaml ("Cannot prepare a request message") and 30.x
    json.dumps() a str for exactly that type; a JSON string body (plus explicit
    name/namespace) with a charset parameter, which the server drops, works in
    every client version.
    """
    meta = doc["metadata"]
    return dyn.patch(res, body=json.dumps(doc), name=meta["name"],
                     namespace=meta.get("namespace") if res.namespaced else None,
                     content_type="application/apply-patch+yaml; charset=utf-8",
                     field_manager=manager, force_conflicts=force)


def _status_body(exc: ApiException) -> dict[str, Any]:
    return json.loads(exc.body)  # type: ignore[no-any-return]


def test_create_conflict_replace_and_delete(api: ApiServer, core: Any) -> None:
    core.create_namespace({"metadata": {"name": "kong"}})
    with pytest.raises(ApiException) as exc:
        core.create_namespace({"metadata": {"name": "kong"}})
    assert exc.value.status == 409 and _status_body(exc.value)["reason"] == "AlreadyExists"
    with pytest.raises(ApiException) as nsmissing:
        core.create_namespaced_config_map("nope", {"metadata": {"name": "x"}})
    assert nsmissing.value.status == 404
    cm = core.create_namespaced_config_map(
        "kong", {"metadata": {"name": "settings"}, "data": {"a": "1"}})
    assert cm.metadata.uid and cm.metadata.resource_version
    cm.data = {"a": "2"}
    replaced = core.replace_namespaced_config_map("settings", "kong", cm)
    assert replaced.data == {"a": "2"}
    assert int(replaced.metadata.resource_version) > int(cm.metadata.resource_version)
    assert replaced.metadata.uid == cm.metadata.uid
    # stale resourceVersion on replace -> 409 Conflict
    with pytest.raises(ApiException) as stale:
        core.replace_namespaced_config_map("settings", "kong", cm)
    assert stale.value.status == 409 and _status_body(stale.value)["reason"] == "Conflict"
    core.delete_namespaced_config_map("settings", "kong", propagation_policy="Foreground")
    assert api.get("ConfigMap", "settings", "kong") is None
    with pytest.raises(ApiException) as gone:
        core.delete_namespaced_config_map("settings", "kong")
    assert gone.value.status == 404


def test_service_create_allocates_ports(api: ApiServer, core: Any) -> None:
    api.put(objects.namespace("kong"))
    svc = core.create_namespaced_service("kong", {
        "metadata": {"name": "proxy"},
        "spec": {"type": "NodePort", "ports": [{"name": "http", "port": 80,
                                                "targetPort": 8000}]}})
    port = svc.spec.ports[0]
    assert 30000 <= port.node_port <= 32767 and svc.spec.cluster_ip
    with pytest.raises(ApiException) as taken:
        core.create_namespaced_service("kong", {
            "metadata": {"name": "other"},
            "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": port.node_port}]}})
    assert taken.value.status == 422


def test_merge_strategic_and_json_patches(api: ApiServer, core: Any) -> None:
    api.put(objects.node("n1", "127.0.10.1", labels={"pool": "edge"}))
    core.patch_node("n1", {"metadata": {"labels": {"pool": None, "team": "net"}}})
    labels = api.get("Node", "n1")["metadata"]["labels"]  # type: ignore[index]
    assert "pool" not in labels and labels["team"] == "net"
    core.patch_node("n1", [{"op": "add", "path": "/spec/unschedulable", "value": True}])
    assert api.get("Node", "n1")["spec"]["unschedulable"] is True  # type: ignore[index]
    pool = core.api_client.rest_client.pool_manager
    rv = api.resource_version
    r = pool.request("PATCH", api.url + "/api/v1/nodes/n1",
                     body=json.dumps({"metadata": {"annotations": {"x": "y"}}}),
                     headers={"Authorization": "Bearer secret",
                              "Content-Type": "application/merge-patch+json"})
    assert r.status == 200 and json.loads(r.data)["metadata"]["annotations"]["x"] == "y"
    assert api.resource_version == rv + 1
    r = pool.request("PATCH", api.url + "/api/v1/nodes/n1", body="{}",
                     headers={"Authorization": "Bearer secret", "Content-Type": "text/plain"})
    assert r.status == 415


def test_status_subresource(api: ApiServer, core: Any) -> None:
    api.put(objects.node("n1", "127.0.10.1"))
    conds = api.get("Node", "n1")["status"]["conditions"]  # type: ignore[index]
    for c in conds:
        if c["type"] == "Ready":
            c["status"] = "False"
    core.patch_node_status("n1", {"status": {"conditions": conds},
                                  "spec": {"unschedulable": True}})
    node = api.get("Node", "n1")
    assert node is not None
    assert "unschedulable" not in node["spec"]  # /status ignores spec
    assert [c["status"] for c in node["status"]["conditions"] if c["type"] == "Ready"] == [
        "False"]
    # and the main resource ignores status
    core.patch_node("n1", {"status": {"phase": "x"}, "spec": {"unschedulable": True}})
    node = api.get("Node", "n1")
    assert node is not None and node["spec"]["unschedulable"] is True
    assert "phase" not in node["status"]


def test_server_side_apply_is_idempotent_and_tracks_managers(
        api: ApiServer, core: Any, dyn: DynamicClient) -> None:
    api.put(objects.namespace("kong"))
    cms = dyn.resources.get(api_version="v1", kind="ConfigMap")
    body = {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "lb", "namespace": "kong", "labels": {"app": "lbsync"}},
            "data": {"upstream": "kong"}}
    created = ssa(dyn, cms, body, "lbsync").to_dict()
    rv = created["metadata"]["resourceVersion"]
    mf = created["metadata"]["managedFields"]
    assert [(m["manager"], m["operation"]) for m in mf] == [("lbsync", "Apply")]
    assert mf[0]["fieldsV1"] == {"f:data": {"f:upstream": {}},
                                 "f:metadata": {"f:labels": {"f:app": {}}}}
    watch = WatchReader(core.list_namespaced_config_map(
        "kong", watch=True, resource_version=rv, _preload_content=False,
        _request_timeout=10, timeout_seconds=1))
    again = ssa(dyn, cms, body, "lbsync")
    assert again.metadata.resourceVersion == rv  # nothing changed: no new RV
    assert watch.rest() == []  # and no event
    # another manager changing an owned field conflicts unless forced
    other = {**body, "data": {"upstream": "other"}}
    with pytest.raises(ApiException) as exc:
        ssa(dyn, cms, other, "helm")
    assert exc.value.status == 409 and _status_body(exc.value)["reason"] == "Conflict"
    # the same value is shared ownership, no conflict
    ssa(dyn, cms, body, "helm")
    forced = ssa(dyn, cms, other, "helm", force=True).to_dict()
    assert forced["data"]["upstream"] == "other"
    owners = {m["manager"]: m["fieldsV1"] for m in forced["metadata"]["managedFields"]}
    assert "f:data" in owners["helm"] and "f:data" not in owners["lbsync"]
    # a field dropped from the applied config is removed
    dropped = ssa(dyn, cms, {**body, "metadata": {
        "name": "lb", "namespace": "kong"}, "data": {"upstream": "other"}}, "lbsync")
    assert "app" not in (dropped.metadata.labels or {})


def test_apply_requires_field_manager(api: ApiServer, core: Any) -> None:
    pool = core.api_client.rest_client.pool_manager
    r = pool.request("PATCH", api.url + "/api/v1/namespaces/x", body="metadata: {name: x}",
                     headers={"Authorization": "Bearer secret",
                              "Content-Type": "application/apply-patch+yaml"})
    assert r.status == 400
    r = pool.request("PATCH", api.url + "/api/v1/namespaces/x?fieldManager=me",
                     body="metadata: {name: x}",
                     headers={"Authorization": "Bearer secret",
                              "Content-Type": "application/apply-patch+yaml"})
    assert r.status == 201 and json.loads(r.data)["metadata"]["name"] == "x"


def test_access_reviews_and_deny(api: ApiServer, client: Any) -> None:
    authz = kubernetes.client.AuthorizationV1Api(client)

    def allowed(verb: str, resource: str) -> bool:
        review = authz.create_self_subject_access_review({
            "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": {"verb": verb, "resource": resource}}})
        return bool(review.status.allowed)

    assert allowed("watch", "nodes")
    api.deny("watch", "nodes")
    assert not allowed("watch", "nodes")
    assert allowed("list", "nodes")


def test_deployment_becomes_ready_with_the_controller(api: ApiServer, client: Any) -> None:
    api.put(objects.namespace("kong"))
    apps = kubernetes.client.AppsV1Api(client)
    with ControllerManager(api) as controllers:
        _create_and_wait_ready(apps)
    assert not controllers.errors
    rs = apps.list_namespaced_replica_set("kong").items
    assert len(rs) == 1 and rs[0].metadata.owner_references[0].name == "kong"
    assert rs[0].status.ready_replicas == 2
    # the garbage collector removes the ReplicaSet with its Deployment
    with ControllerManager(api):
        apps.delete_namespaced_deployment("kong", "kong")
        deadline = time.monotonic() + 5
        while apps.list_namespaced_replica_set("kong").items and time.monotonic() < deadline:
            time.sleep(0.05)
    assert not apps.list_namespaced_replica_set("kong").items


def test_deployment_stays_unready_without_controllers(api: ApiServer, client: Any) -> None:
    """kube-apiserver alone makes no ReplicaSet and reports no status: controllers do."""
    api.put(objects.namespace("kong"))
    apps = kubernetes.client.AppsV1Api(client)
    apps.create_namespaced_deployment("kong", _DEPLOYMENT)
    time.sleep(0.5)
    assert apps.read_namespaced_deployment("kong", "kong").status is None
    assert not apps.list_namespaced_replica_set("kong").items


_DEPLOYMENT = {
    "metadata": {"name": "kong"},
    "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "kong"}},
             "template": {"metadata": {"labels": {"app": "kong"}},
                          "spec": {"containers": [{"name": "kong", "image": "kong:3.7"}]}}}}


def _create_and_wait_ready(apps: Any) -> None:
    apps.create_namespaced_deployment("kong", _DEPLOYMENT)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        d = apps.read_namespaced_deployment("kong", "kong")
        if d.status and d.status.ready_replicas == 2:
            break
        time.sleep(0.05)
    assert d.status.ready_replicas == 2 and d.status.observed_generation == 1


def test_crd_registers_a_resource(api: ApiServer, client: Any, dyn: DynamicClient) -> None:
    crds = dyn.resources.get(api_version="apiextensions.k8s.io/v1",
                             kind="CustomResourceDefinition")
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "widgets.example.com"},
           "spec": {"group": "example.com", "scope": "Namespaced",
                    "names": {"plural": "widgets", "singular": "widget", "kind": "Widget",
                              "listKind": "WidgetList"},
                    "versions": [{"name": "v1", "served": True, "storage": True,
                                  "schema": {"openAPIV3Schema": {
                                      "type": "object", "properties": {"spec": {
                                          "type": "object",
                                          "properties": {"size": {"type": "integer"}}}}}},
                                  "subresources": {"status": {}}}]}}
    ssa(dyn, crds, crd, "test")
    est = _wait_established(api, "widgets.example.com")
    assert est["status"]["acceptedNames"]["kind"] == "Widget"
    api.put(objects.namespace("demo"))
    fresh = DynamicClient(client, cache_file=str(Path(api.workdir) / "disc2.json"))
    widgets = fresh.resources.get(api_version="example.com/v1", kind="Widget")
    w = ssa(fresh, widgets, {
        "apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w1", "namespace": "demo"}, "spec": {"size": 3, "color": "red"}},
        "test")
    assert w.spec.size == 3 and w.metadata.generation == 1
    assert w.spec.color is None  # pruned: the CRD's schema does not declare it
    listed = fresh.get(widgets, namespace="demo")
    assert [i.metadata.name for i in listed.items] == ["w1"]
    assert listed.items[0].kind == "Widget"  # custom resource lists keep TypeMeta
    fresh.delete(crds, name="widgets.example.com")
    with pytest.raises(ApiException):
        fresh.get(widgets, name="w1", namespace="demo")


def _wait_established(api: ApiServer, name: str) -> dict[str, Any]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        crd = api.get("CustomResourceDefinition", name)
        conds = {c["type"]: c["status"] for c in (crd or {}).get("status", {}).get(
            "conditions") or []}
        if conds.get("Established") == "True" and conds.get("NamesAccepted") == "True":
            assert crd is not None
            return crd
        time.sleep(0.02)
    raise AssertionError(f"{name} not Established")


def test_gateway_api_bundle_applies_and_gateway_works(
        api: ApiServer, client: Any, dyn: DynamicClient, shared_data: Path) -> None:
    crds = dyn.resources.get(api_version="apiextensions.k8s.io/v1",
                             kind="CustomResourceDefinition")
    docs = [d for d in yaml.safe_load_all((shared_data / BUNDLE_NAME).read_text()) if d]
    assert len(docs) == 4
    for doc in docs:
        ssa(dyn, crds, doc, "lbsync-bootstrap")
    for doc in docs:
        _wait_established(api, doc["metadata"]["name"])
    rv = api.resource_version
    for doc in docs:  # idempotent re-run
        ssa(dyn, crds, doc, "lbsync-bootstrap")
    assert api.resource_version == rv
    apis = kubernetes.client.ApisApi(client).get_api_versions()
    gw = next(g for g in apis.groups if g.name == "gateway.networking.k8s.io")
    assert gw.preferred_version.version == "v1"
    assert [v.version for v in gw.versions] == ["v1", "v1beta1", "v1alpha2"]
    api.put(objects.namespace("kong"))
    fresh = DynamicClient(client, cache_file=str(Path(api.workdir) / "disc3.json"))
    gateways = fresh.resources.get(api_version="gateway.networking.k8s.io/v1", kind="Gateway")
    assert gateways.namespaced
    ssa(fresh, gateways, {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "kong", "namespace": "kong"},
        "spec": {"gatewayClassName": "kong",
                 "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}},
        "lbsync-bootstrap")
    got = fresh.get(gateways, name="kong", namespace="kong")
    assert got.spec.listeners[0].port == 80
    classes = fresh.resources.get(api_version="gateway.networking.k8s.io/v1",
                                  kind="GatewayClass")
    assert not classes.namespaced


@pytest.mark.skipif(kubernetes.__version__.startswith("22."),
                    reason="kubernetes 22.6 cannot send a dict body as apply-patch+yaml")
def test_dynamic_apply_with_a_dict_body(api: ApiServer, dyn: DynamicClient) -> None:
    res = dyn.resources.get(api_version="v1", kind="Namespace")
    ns = dyn.server_side_apply(res, body={"apiVersion": "v1", "kind": "Namespace",
                                          "metadata": {"name": "dict-body"}},
                               field_manager="test")
    assert ns.metadata.name == "dict-body" and api.get("Namespace", "dict-body")


def test_dry_run_answers_but_stores_nothing(api: ApiServer, core: Any) -> None:
    api.put(objects.namespace("kong"))
    rv = api.resource_version
    cm = core.create_namespaced_config_map(
        "kong", {"metadata": {"name": "x"}, "data": {"a": "1"}}, dry_run="All")
    assert cm.metadata.uid and cm.data == {"a": "1"}
    assert api.get("ConfigMap", "x", "kong") is None and api.resource_version == rv
    api.put({"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"name": "x", "namespace": "kong"}, "data": {"a": "1"}})
    rv = api.resource_version
    patched = core.patch_namespaced_config_map("x", "kong", {"data": {"a": "2"}}, dry_run="All")
    assert patched.data == {"a": "2"}
    core.delete_namespace("kong", dry_run="All")
    assert api.get("ConfigMap", "x", "kong")["data"] == {"a": "1"}  # type: ignore[index]
    assert api.get("Namespace", "kong") is not None and api.resource_version == rv


def test_namespace_delete_cascades(api: ApiServer, core: Any) -> None:
    api.put(objects.namespace("kong"))
    api.put(objects.service("kong", "kong-gateway-proxy"))
    ns = core.delete_namespace("kong", _preload_content=False)
    assert json.loads(ns.data)["status"]["phase"] == "Terminating"
    assert api.get("Service", "kong-gateway-proxy", "kong") is None
    assert api.get("Namespace", "kong") is None


def test_non_apply_writes_take_ownership_so_reapply_conflicts(
        api: ApiServer, core: Any, dyn: DynamicClient) -> None:
    api.put(objects.namespace("kong"))
    cms = dyn.resources.get(api_version="v1", kind="ConfigMap")
    body = {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "lb", "namespace": "kong"}, "data": {"mode": "a", "x": "1"}}
    ssa(dyn, cms, body, "lbsync")
    core.patch_namespaced_config_map("lb", "kong", {"data": {"mode": "b"}})
    managers = {(m["manager"], m["operation"]): m["fieldsV1"]
                for m in api.get("ConfigMap", "lb", "kong")["metadata"]["managedFields"]}  # type: ignore[index]
    assert managers[("OpenAPI-Generator", "Update")] == {"f:data": {"f:mode": {}}}
    assert managers[("lbsync", "Apply")] == {"f:data": {"f:x": {}}}
    with pytest.raises(ApiException) as exc:
        ssa(dyn, cms, body, "lbsync")
    assert exc.value.status == 409
    assert "OpenAPI-Generator" in _status_body(exc.value)["message"]
    assert ssa(dyn, cms, body, "lbsync", force=True).data.mode == "a"


def test_delete_collection_with_a_selector(api: ApiServer, core: Any) -> None:
    api.put(objects.node("a", "127.0.10.1", labels={"pool": "edge"}))
    api.put(objects.node("b", "127.0.10.2", labels={"pool": "core"}))
    api.put(objects.node("c", "127.0.10.3", labels={"pool": "edge"}))
    core.delete_collection_node(label_selector="pool=edge")
    assert [n["metadata"]["name"] for n in api.list("Node")] == ["b"]
