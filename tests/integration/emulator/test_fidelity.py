"""Focused checks, with the Python client and raw requests, of what real clients rely on:
OpenAPI documents, aggregated discovery, watch-list, dry runs in DeleteOptions, field
validation, protobuf bodies, strategic merge, and the controllers' public API."""

from __future__ import annotations

import json
import threading
from typing import Any

import kubernetes
import pytest
from kubernetes.client.rest import ApiException
from lbsync_lab.sim import ApiServer, Conflict, objects, protobuf
from lbsync_lab.sim.schema import builtin_schema, strategic_merge
from lbsync_lab.sim.testing import WatchReader

AUTH = {"Authorization": "Bearer secret"}


def _get(client: Any, path: str, accept: str = "application/json") -> Any:
    return client.rest_client.pool_manager.request(
        "GET", client.configuration.host + path, headers=dict(AUTH, Accept=accept))


def test_openapi_v2_and_v3(api: ApiServer, client: Any) -> None:
    v2 = json.loads(_get(client, "/openapi/v2").data)
    assert v2["swagger"] == "2.0" and "io.k8s.api.apps.v1.Deployment" in v2["definitions"]
    refused = _get(client, "/openapi/v2",
                   "application/com.github.proto-openapi.spec.v2@v1.0+protobuf")
    assert refused.status == 406
    root = json.loads(_get(client, "/openapi/v3").data)["paths"]
    for gv in ("api/v1", "apis/apps/v1", "apis/admissionregistration.k8s.io/v1",
               "apis/networking.k8s.io/v1", "apis/policy/v1", "apis/events.k8s.io/v1"):
        assert root[gv]["serverRelativeURL"].startswith(f"/openapi/v3/{gv}?hash=")
    assert not any("beta" in gv or "alpha" in gv for gv in root)  # GA versions only
    apps = json.loads(_get(client, root["apis/apps/v1"]["serverRelativeURL"]).data)
    patch = apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"]["kind"] == "Deployment"
    assert "fieldValidation" in [p["name"] for p in patch["parameters"]]
    containers = apps["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"]["properties"][
        "containers"]
    assert containers["x-kubernetes-patch-merge-key"] == "name"


def test_aggregated_discovery(api: ApiServer, client: Any) -> None:
    accept = ("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
              "application/json")
    r = _get(client, "/apis", accept)
    assert r.headers["Content-Type"].startswith("application/json;g=apidiscovery.k8s.io;v=v2")
    doc = json.loads(r.data)
    groups = {g["metadata"]["name"]: g for g in doc["items"]}
    for group in ("apps", "admissionregistration.k8s.io", "networking.k8s.io", "policy",
                  "events.k8s.io", "authentication.k8s.io", "authorization.k8s.io"):
        assert groups[group]["versions"][0]["version"] == "v1", group
    apps = {r["resource"]: r for r in groups["apps"]["versions"][0]["resources"]}
    assert apps["replicasets"]["shortNames"] == ["rs"]
    assert apps["deployments"]["subresources"][0]["subresource"] == "status"
    core = json.loads(_get(client, "/api", accept).data)["items"][0]
    sa = next(r for r in core["versions"][0]["resources"] if r["resource"] == "serviceaccounts")
    assert sa["subresources"][0]["subresource"] == "token"
    legacy = json.loads(_get(client, "/apis").data)  # without the Accept: APIGroupList
    assert legacy["kind"] == "APIGroupList"


def test_watch_list_ends_its_initial_events_with_a_bookmark(api: ApiServer, client: Any) -> None:
    api.put(objects.node("node-1", "127.0.10.1"))
    api.put(objects.node("node-2", "127.0.10.2"))
    base = "/api/v1/nodes?watch=true&sendInitialEvents=true&allowWatchBookmarks=true"
    assert _get(client, base).status == 422  # without resourceVersionMatch=NotOlderThan
    resp = client.rest_client.pool_manager.request(
        "GET", client.configuration.host + base + "&resourceVersionMatch=NotOlderThan",
        headers=AUTH, preload_content=False)
    reader = WatchReader(resp)
    try:
        first = reader.take(3)
        assert [(e["type"], e["object"]["metadata"].get("name")) for e in first[:2]] == [
            ("ADDED", "node-1"), ("ADDED", "node-2")]
        assert first[2]["type"] == "BOOKMARK"
        assert first[2]["object"]["metadata"]["annotations"] == {
            "k8s.io/initial-events-end": "true"}
        api.delete("Node", "node-1")
        event = reader.next()
        while event is not None and event["type"] == "BOOKMARK":
            event = reader.next()
        assert event is not None and event["type"] == "DELETED"
    finally:
        reader.close()


def test_dry_run_in_delete_options(api: ApiServer, client: Any) -> None:
    api.put(objects.namespace("kong"))
    core = kubernetes.client.CoreV1Api(client)
    core.create_namespaced_config_map("kong", {"metadata": {"name": "c"}})
    rv = api.resource_version
    core.delete_namespaced_config_map("c", "kong", body={"dryRun": ["All"]})
    core.delete_namespaced_config_map("c", "kong", dry_run="All")
    core.delete_collection_namespaced_config_map("kong", dry_run="All")
    assert api.get("ConfigMap", "c", "kong") is not None and api.resource_version == rv
    with pytest.raises(ApiException) as bad:
        core.delete_namespaced_config_map("c", "kong", body={"dryRun": ["Everything"]})
    assert bad.value.status == 400
    with pytest.raises(ApiException) as stale:
        core.delete_namespaced_config_map("c", "kong", body={"preconditions": {"uid": "x"}})
    assert stale.value.status == 409
    core.delete_namespaced_config_map("c", "kong")
    assert api.get("ConfigMap", "c", "kong") is None


def test_field_validation(api: ApiServer, client: Any) -> None:
    api.put(objects.namespace("kong"))
    body = json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": "c", "namespace": "kong", "bogus": 1}, "data": {"a": "1"}, "extra": True})

    def post(validation: str | None) -> Any:
        query = f"?fieldValidation={validation}" if validation else ""
        return client.rest_client.pool_manager.request(
            "POST", f"{client.configuration.host}/api/v1/namespaces/kong/configmaps{query}",
            body=body, headers=dict(AUTH, **{"Content-Type": "application/json"}))

    strict = post("Strict")
    assert strict.status == 400
    assert json.loads(strict.data)["message"] == (
        'ConfigMap in version "v1" cannot be handled as a ConfigMap: strict decoding error: '
        'unknown field "metadata.bogus", unknown field "extra"')
    warned = post(None)  # Warn is the default
    assert warned.status == 201
    assert warned.headers.getlist("Warning") == [
        '299 - "unknown field \\"metadata.bogus\\""', '299 - "unknown field \\"extra\\""']
    stored = api.get("ConfigMap", "c", "kong")
    assert stored is not None and "extra" not in stored and "bogus" not in stored["metadata"]
    api.delete("ConfigMap", "c", "kong")
    ignored = post("Ignore")
    assert ignored.status == 201 and not ignored.headers.getlist("Warning")
    assert post("Loose").status == 400


def _pb_field(number: int, payload: bytes) -> bytes:
    return bytes([number << 3 | 2, len(payload)]) + payload


def test_protobuf_bodies(api: ApiServer, client: Any) -> None:
    api.put(objects.namespace("kong"))
    meta = _pb_field(1, b"c") + _pb_field(11, _pb_field(1, b"app") + _pb_field(2, b"kong"))
    cm = _pb_field(1, meta) + _pb_field(2, _pb_field(1, b"a") + _pb_field(2, b"1"))
    envelope = _pb_field(1, _pb_field(1, b"v1") + _pb_field(2, b"ConfigMap")) + _pb_field(2, cm)

    def post(body: bytes) -> Any:
        return client.rest_client.pool_manager.request(
            "POST", f"{client.configuration.host}/api/v1/namespaces/kong/configmaps",
            body=body, headers=dict(AUTH, **{"Content-Type": protobuf.CONTENT_TYPE}))

    assert post(protobuf.MAGIC + envelope).status == 201
    stored = api.get("ConfigMap", "c", "kong")
    assert stored is not None and stored["data"] == {"a": "1"}
    assert stored["metadata"]["labels"] == {"app": "kong"}
    unknown = _pb_field(1, _pb_field(1, b"apps/v1") + _pb_field(2, b"Deployment"))
    r = post(protobuf.MAGIC + unknown + _pb_field(2, b""))
    assert r.status == 415 and json.loads(r.data)["reason"] == "UnsupportedMediaType"
    assert post(b"not protobuf").status == 400
    odd = _pb_field(1, _pb_field(1, b"v1") + _pb_field(2, b"ConfigMap")) + _pb_field(
        2, _pb_field(9, b"x"))
    r = post(protobuf.MAGIC + odd)
    assert r.status == 400 and "field 9 of ConfigMap" in json.loads(r.data)["message"]


def test_strategic_merge_follows_the_real_schema() -> None:
    schema = builtin_schema("apps", "v1", "Deployment")
    assert schema is not None
    live = {"spec": {"template": {"spec": {"containers": [
        {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}]},
        {"name": "b", "image": "b:1"}]}}}}
    patch = {"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
        "containers": [{"name": "a", "image": "a:2",
                        "env": [{"name": "X", "$patch": "delete"}]},
                       {"name": "c", "$patch": "delete"}]}}}}
    out = strategic_merge(live, patch, schema)
    containers = out["spec"]["template"]["spec"]["containers"]
    assert containers == [{"name": "b", "image": "b:1"},
                          {"name": "a", "image": "a:2"}]
    # a list without a merge key (args) is replaced, and null deletes
    live2 = {"spec": {"replicas": 2, "template": {"spec": {"containers": [
        {"name": "a", "args": ["x", "y"]}]}}}}
    out2 = strategic_merge(live2, {"spec": {"replicas": None, "template": {"spec": {
        "containers": [{"name": "a", "args": ["z"]}]}}}}, schema)
    assert out2 == {"spec": {"template": {"spec": {"containers": [{"name": "a",
                                                                    "args": ["z"]}]}}}}


def test_update_is_optimistic_and_changes_are_fed(api: ApiServer) -> None:
    feed = api.changes()
    api.put(objects.namespace("kong"))
    cm = api.create({"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": {"name": "c", "namespace": "kong"}, "data": {"a": "1"}})
    stale = json.loads(json.dumps(cm))
    cm["data"] = {"a": "2"}
    api.update(cm)
    stale["data"] = {"a": "3"}
    with pytest.raises(Conflict):
        api.update(stale)
    assert api.get("ConfigMap", "c", "kong")["data"] == {"a": "2"}
    seen = [(c.type, c.kind) for c in feed.wait(1)]
    assert seen == [("ADDED", "Namespace"), ("ADDED", "ConfigMap"), ("MODIFIED", "ConfigMap")]
    assert feed.wait(0.05) == []
    woke: list[Any] = []
    waiter = threading.Thread(target=lambda: woke.extend(feed.wait(5)))
    waiter.start()
    api.delete("ConfigMap", "c", "kong")
    waiter.join(timeout=5)
    assert [c.type for c in woke] == ["DELETED"]
