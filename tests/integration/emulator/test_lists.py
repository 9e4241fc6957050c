"""Lists, paging, selectors, single GETs, auth and discovery against the emulator."""

from __future__ import annotations

import json
import time
from typing import Any

import kubernetes
import pytest
from kubernetes.client.rest import ApiException
from lbsync_lab.sim import ApiServer, objects
from lbsync_lab.sim.testing import add_nodes, raw_json


def test_paging_returns_every_object_once_from_a_consistent_snapshot(
        api: ApiServer, core: Any) -> None:
    names = add_nodes(api, 25)
    first = raw_json(core.list_node(limit=7, _preload_content=False))
    rv = first["metadata"]["resourceVersion"]
    seen = [i["metadata"]["name"] for i in first["items"]]
    assert len(seen) == 7
    assert first["metadata"]["remainingItemCount"] == 18
    # changes after the first page must not show up in later pages
    api.delete("Node", names[20])
    api.put(objects.node("node-999", "127.0.10.200"))
    token = first["metadata"]["continue"]
    while token:
        page = raw_json(core.list_node(limit=7, _continue=token, _preload_content=False))
        assert page["metadata"]["resourceVersion"] == rv
        assert page["kind"] == "NodeList"
        seen += [i["metadata"]["name"] for i in page["items"]]
        token = page["metadata"].get("continue")
    assert seen == names  # exactly once each, in key order, snapshot at the first page
    # list items carry no kind/apiVersion, like a real server's typed lists
    assert "kind" not in first["items"][0]
    fresh = raw_json(core.list_node(_preload_content=False))
    assert int(fresh["metadata"]["resourceVersion"]) == int(rv) + 2
    assert "node-999" in [i["metadata"]["name"] for i in fresh["items"]]


def test_resource_version_zero_ignores_limit_like_the_watch_cache(
        api: ApiServer, core: Any) -> None:
    add_nodes(api, 5)
    data = raw_json(core.list_node(limit=2, resource_version="0", _preload_content=False))
    assert len(data["items"]) == 5 and "continue" not in data["metadata"]
    data = raw_json(core.list_node(limit=2, resource_version="", _preload_content=False))
    assert len(data["items"]) == 2 and data["metadata"]["continue"]


def test_node_factory_is_realistic() -> None:
    node = objects.node("n1", "127.0.10.1", external_address="203.0.113.7")
    size = len(json.dumps(node, separators=(",", ":")))
    assert 6000 < size < 9000
    conds = {c["type"]: c for c in node["status"]["conditions"]}
    assert list(conds) == ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]
    assert conds["Ready"]["reason"] == "KubeletReady"
    assert [a["type"] for a in node["status"]["addresses"]] == [
        "InternalIP", "ExternalIP", "Hostname"]
    assert node["metadata"]["labels"]["kubernetes.io/hostname"] == "n1"
    assert len(node["status"]["images"]) >= 18
    deleting = objects.node("n2", "127.0.10.2", deleting=True, address_type="ExternalIP")
    assert deleting["metadata"]["deletionTimestamp"]
    assert deleting["status"]["addresses"][0] == {"type": "ExternalIP", "address": "127.0.10.2"}


def test_expired_or_garbage_continue_token_is_410(api: ApiServer, core: Any) -> None:
    add_nodes(api, 5)
    first = raw_json(core.list_node(limit=2, _preload_content=False))
    api.compact()
    with pytest.raises(ApiException) as exc:
        core.list_node(limit=2, _continue=first["metadata"]["continue"])
    assert exc.value.status == 410
    body = json.loads(exc.value.body)
    assert body["reason"] == "Expired" and body["kind"] == "Status" and body["code"] == 410
    with pytest.raises(ApiException) as exc2:
        core.list_node(limit=2, _continue="bm90LWEtdG9rZW4")
    assert exc2.value.status == 410


def test_models_deserialize_with_the_real_client(api: ApiServer, core: Any) -> None:
    api.put(objects.node("n1", "127.0.10.1", ready=False, unschedulable=True,
                         taints=[{"key": "ToBeDeletedByClusterAutoscaler",
                                  "value": "1", "effect": "NoSchedule"}]))
    nodes = core.list_node()
    node = nodes.items[0]
    assert node.metadata.name == "n1"
    ready = next(c for c in node.status.conditions if c.type == "Ready")
    assert ready.status == "Unknown"
    assert node.spec.unschedulable is True
    assert {t.key for t in node.spec.taints} >= {"ToBeDeletedByClusterAutoscaler"}
    assert len(node.status.images) >= 18


def test_label_selectors(api: ApiServer, core: Any) -> None:
    api.put(objects.node("a", "127.0.10.1", labels={"role": "edge", "tier": "1"}))
    api.put(objects.node("b", "127.0.10.2", labels={"role": "edge"}))
    api.put(objects.node("c", "127.0.10.3", labels={"role": "worker", "tier": "2"}))

    def names(sel: str) -> list[str]:
        data = raw_json(core.list_node(label_selector=sel, _preload_content=False))
        return [i["metadata"]["name"] for i in data["items"]]

    assert names("role=edge") == ["a", "b"]
    assert names("role==worker") == ["c"]
    assert names("role!=edge") == ["c"]
    assert names("tier") == ["a", "c"]
    assert names("!tier") == ["b"]
    assert names("tier in (1,2),role=edge") == ["a"]
    assert names("role notin (edge)") == ["c"]
    assert names("kubernetes.io/hostname=b") == ["b"]
    with pytest.raises(ApiException) as exc:
        core.list_node(label_selector="role in edge)")
    assert exc.value.status == 400


def test_field_selectors_on_services(api: ApiServer, core: Any) -> None:
    api.put(objects.service("kong", "kong-gateway-proxy"))
    api.put(objects.service("kong", "kong-admin", ports=[{"name": "admin", "port": 8444,
                                                           "nodePort": 30444}]))
    api.put(objects.service("web", "kong-gateway-proxy", ports=[{"port": 80,
                                                                  "nodePort": 30080}]))

    def names(sel: str, ns: str | None = None) -> list[str]:
        if ns:
            resp = core.list_namespaced_service(ns, field_selector=sel, _preload_content=False)
        else:
            resp = core.list_service_for_all_namespaces(field_selector=sel,
                                                         _preload_content=False)
        return [f"{i['metadata']['namespace']}/{i['metadata']['name']}"
                for i in raw_json(resp)["items"]]

    assert names("metadata.name=kong-gateway-proxy") == ["kong/kong-gateway-proxy",
                                                         "web/kong-gateway-proxy"]
    assert names("metadata.namespace=kong") == ["kong/kong-admin", "kong/kong-gateway-proxy"]
    assert names("metadata.namespace==kong,metadata.name!=kong-admin") == [
        "kong/kong-gateway-proxy"]
    assert names("metadata.name=kong-admin", ns="web") == []
    with pytest.raises(ApiException) as exc:
        core.list_service_for_all_namespaces(field_selector="spec.type=NodePort")
    assert exc.value.status == 400


def test_get_single_object_and_404(api: ApiServer, core: Any) -> None:
    api.put(objects.namespace("kong"))
    api.put(objects.service("kong", "kong-gateway-proxy"))
    svc = core.read_namespaced_service("kong-gateway-proxy", "kong")
    assert svc.spec.ports[0].node_port == 32001
    assert svc.metadata.resource_version and svc.metadata.uid
    raw = raw_json(core.read_namespaced_service("kong-gateway-proxy", "kong",
                                                _preload_content=False))
    assert raw["kind"] == "Service" and raw["apiVersion"] == "v1"
    with pytest.raises(ApiException) as exc:
        core.read_namespaced_service("nope", "kong")
    assert exc.value.status == 404
    body = json.loads(exc.value.body)
    assert body["reason"] == "NotFound" and body["message"] == 'services "nope" not found'
    assert core.read_namespace("kong").status.phase == "Active"


def test_requests_without_the_token_get_401(api: ApiServer, client: Any) -> None:
    cfg = client.configuration
    anon = kubernetes.client.Configuration()
    anon.host = cfg.host
    anon.ssl_ca_cert = cfg.ssl_ca_cert
    with kubernetes.client.ApiClient(anon) as c, pytest.raises(ApiException) as exc:
        kubernetes.client.CoreV1Api(c).list_node()
    assert exc.value.status == 401
    assert ("GET", "/api/v1/nodes", 401) in api.requests
    bad = kubernetes.client.Configuration()
    bad.host, bad.ssl_ca_cert = cfg.host, cfg.ssl_ca_cert
    bad.api_key = {"authorization": "Bearer wrong"}
    with kubernetes.client.ApiClient(bad) as c, pytest.raises(ApiException) as exc2:
        kubernetes.client.CoreV1Api(c).list_node()
    assert exc2.value.status == 401


def test_discovery_documents(api: ApiServer, client: Any) -> None:
    version = kubernetes.client.VersionApi(client).get_code()
    assert version.major == "1" and version.git_version.startswith("v1.")
    assert kubernetes.client.CoreApi(client).get_api_versions().versions == ["v1"]
    groups = kubernetes.client.ApisApi(client).get_api_versions()
    assert "discovery.k8s.io" in [g.name for g in groups.groups]
    core_res = kubernetes.client.CoreV1Api(client).get_api_resources()
    by_name = {r.name: r for r in core_res.resources}
    assert by_name["nodes"].kind == "Node" and not by_name["nodes"].namespaced
    assert by_name["services"].namespaced and "watch" in by_name["services"].verbs


def test_endpointslices(api: ApiServer, client: Any) -> None:
    api.put(objects.endpointslice("kong", "kong-gateway-proxy",
                                  [("10.244.1.5", "node-001"), ("10.244.2.7", "node-002")]))
    disc = kubernetes.client.DiscoveryV1Api(client)
    data = raw_json(disc.list_endpoint_slice_for_all_namespaces(
        label_selector="kubernetes.io/service-name=kong-gateway-proxy", _preload_content=False))
    assert data["kind"] == "EndpointSliceList" and data["apiVersion"] == "discovery.k8s.io/v1"
    assert [e["nodeName"] for e in data["items"][0]["endpoints"]] == ["node-001", "node-002"]
    typed = disc.list_namespaced_endpoint_slice("kong")
    assert typed.items[0].address_type == "IPv4"


def test_fail_next_answers_the_injected_status(api: ApiServer, core: Any) -> None:
    add_nodes(api, 2)
    api.faults.fail_next(2, status=500)
    for _ in range(2):
        with pytest.raises(ApiException) as exc:
            core.list_node()
        assert exc.value.status == 500
    assert len(core.list_node().items) == 2
    # 429 carries Retry-After, which urllib3 honours by retrying on its own
    api.faults.fail_next(1, status=429)
    pool = core.api_client.rest_client.pool_manager
    raw = pool.request("GET", api.url + "/api/v1/nodes", retries=False,
                       headers={"Authorization": "Bearer secret"})
    assert raw.status == 429 and raw.headers["Retry-After"] == "1"
    assert json.loads(raw.data)["reason"] == "TooManyRequests"
    api.faults.fail_next(1, status=429)
    t = time.monotonic()
    assert len(core.list_node().items) == 2
    assert time.monotonic() - t >= 0.9
    assert [r[2] for r in api.requests[-2:]] == [429, 200]
    api.faults.fail_next(1, status=403, path_contains="/services")
    assert len(core.list_node().items) == 2  # not matched: still pending
    with pytest.raises(ApiException) as exc403:
        core.list_service_for_all_namespaces()
    assert exc403.value.status == 403
    assert json.loads(exc403.value.body)["reason"] == "Forbidden"
    assert core.list_service_for_all_namespaces().items == []


def test_latency_is_added(api: ApiServer, core: Any) -> None:
    api.faults.latency = 0.3
    t = time.monotonic()
    core.list_node()
    assert time.monotonic() - t >= 0.3
    api.faults.latency = 0.0


def test_five_thousand_nodes_list_in_pages(api: ApiServer, core: Any) -> None:
    t = time.monotonic()
    for i in range(5000):
        api.put(objects.node(f"node-{i:04d}", objects.node_address(i, 5000)))
    setup = time.monotonic() - t
    t = time.monotonic()
    token, count, pages, size = None, 0, 0, 0
    while True:
        resp = core.list_node(limit=500, _continue=token, _preload_content=False)
        size += len(resp.data)
        page = raw_json(resp)
        count += len(page["items"])
        pages += 1
        token = page["metadata"].get("continue")
        if not token:
            break
    took = time.monotonic() - t
    print(f"\n5000 nodes: setup {setup:.2f}s; {pages} pages, {size / 1e6:.1f} MB in {took:.2f}s")
    assert count == 5000 and pages == 10


def test_plain_http_mode(tmp_path: Any) -> None:
    with ApiServer(workdir=tmp_path, tls=False) as api:
        assert api.url.startswith("http://")
        api.put(objects.node("n1", "127.0.10.1"))
        c = kubernetes.config.new_client_from_config(config_file=str(api.kubeconfig_path))
        assert [n.metadata.name for n in kubernetes.client.CoreV1Api(c).list_node().items] == [
            "n1"]
        assert not (tmp_path / "ca.crt").exists()
