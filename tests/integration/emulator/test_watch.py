"""Watch streams, bookmarks, timeouts, 410 Expired, and connection-level faults."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import urllib3
from lbsync_lab.rig import child_env
from lbsync_lab.sim import ApiServer, objects
from lbsync_lab.sim.testing import WatchReader, add_nodes, raw_json

TIMEOUT = 10  # client-side read timeout so a broken test fails instead of hanging


def watch_nodes(core: Any, **kw: Any) -> WatchReader:
    return WatchReader(core.list_node(watch=True, _preload_content=False,
                                      _request_timeout=TIMEOUT, **kw))


def test_watch_from_list_rv_sees_only_later_changes(api: ApiServer, core: Any) -> None:
    names = add_nodes(api, 3)
    rv = raw_json(core.list_node(_preload_content=False))["metadata"]["resourceVersion"]
    api.put(objects.node(names[0], "127.0.10.1", ready=False))
    api.put(objects.node("node-new", "127.0.10.9"))
    api.delete("Node", names[1])
    w = watch_nodes(core, resource_version=rv)
    api.put(objects.node(names[2], "127.0.10.3", unschedulable=True))  # live, after replay
    events = w.take(4)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("MODIFIED", names[0]), ("ADDED", "node-new"), ("DELETED", names[1]),
        ("MODIFIED", names[2])]
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert rvs == sorted(rvs) and rvs[0] == int(rv) + 1
    assert events[0]["object"]["kind"] == "Node"
    assert events[3]["object"]["spec"]["unschedulable"] is True
    w.close()


def test_watch_without_rv_starts_with_synthetic_added(api: ApiServer, core: Any) -> None:
    names = add_nodes(api, 4)
    w = watch_nodes(core)
    first = w.take(4)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in first] == [
        ("ADDED", n) for n in names]
    api.delete("Node", names[0])
    assert w.take(1)[0]["type"] == "DELETED"
    w.close()


def test_bookmarks_arrive_when_idle(api: ApiServer, core: Any) -> None:
    add_nodes(api, 1)
    rv = api.resource_version
    w = watch_nodes(core, resource_version=str(rv), allow_watch_bookmarks=True)
    t = time.monotonic()
    ev = w.take(1)[0]
    assert ev["type"] == "BOOKMARK"
    assert 0.2 <= time.monotonic() - t < 3
    assert ev["object"] == {"kind": "Node", "apiVersion": "v1",
                            "metadata": {"resourceVersion": str(rv)}}
    api.put(objects.namespace("other"))  # a write elsewhere moves the bookmark RV on
    ev2 = w.take(1)[0]
    assert ev2["type"] == "BOOKMARK"
    assert int(ev2["object"]["metadata"]["resourceVersion"]) == rv + 1
    w.close()
    # no bookmarks unless asked for
    w2 = watch_nodes(core, resource_version=str(rv + 1), timeout_seconds=1)
    assert w2.rest() == []


def test_timeout_seconds_ends_the_stream_cleanly(api: ApiServer, core: Any) -> None:
    add_nodes(api, 2)
    t = time.monotonic()
    w = watch_nodes(core, timeout_seconds=1)
    events = w.rest()  # returns only on a clean end (terminating chunk)
    took = time.monotonic() - t
    assert [e["type"] for e in events] == ["ADDED", "ADDED"]
    assert 0.9 <= took < 3


def test_too_old_rv_gives_an_error_410_event(api: ApiServer, core: Any) -> None:
    add_nodes(api, 3)
    old_rv = api.resource_version
    api.put(objects.node("node-x", "127.0.10.50"))
    api.compact()
    w = watch_nodes(core, resource_version=str(old_rv))
    events = w.rest()
    assert len(events) == 1 and events[0]["type"] == "ERROR"
    assert events[0]["object"]["code"] == 410
    assert events[0]["object"]["reason"] == "Expired"
    assert events[0]["object"]["kind"] == "Status"
    # watching from the current RV still works after a compaction
    w2 = watch_nodes(core, resource_version=str(api.resource_version))
    api.delete("Node", "node-x")
    assert w2.take(1)[0]["type"] == "DELETED"
    w2.close()


def test_history_window_is_bounded(tmp_path: Path) -> None:
    import kubernetes

    with ApiServer(workdir=tmp_path, history=5) as api:
        start = api.resource_version
        for i in range(10):
            api.put(objects.node(f"n{i}", f"127.0.10.{i + 1}"))
        core = kubernetes.client.CoreV1Api(
            kubernetes.config.new_client_from_config(config_file=str(api.kubeconfig_path)))
        ev = watch_nodes(core, resource_version=str(start)).rest()
        assert [e["type"] for e in ev] == ["ERROR"] and ev[0]["object"]["code"] == 410
        recent = watch_nodes(core, resource_version=str(start + 5), timeout_seconds=1).rest()
        assert [e["object"]["metadata"]["name"] for e in recent] == [f"n{i}" for i in range(5, 10)]


def test_selector_watch_turns_non_matching_into_deleted(api: ApiServer, core: Any) -> None:
    api.put(objects.node("a", "127.0.10.1", labels={"pool": "edge"}))
    api.put(objects.node("b", "127.0.10.2", labels={"pool": "core"}))
    w = watch_nodes(core, label_selector="pool=edge")
    assert [e["object"]["metadata"]["name"] for e in w.take(1)] == ["a"]
    api.put(objects.node("b", "127.0.10.2", labels={"pool": "edge"}))
    api.put(objects.node("a", "127.0.10.1", labels={"pool": "core"}))
    api.put(objects.node("c", "127.0.10.3", labels={"pool": "core"}))
    api.delete("Node", "b")
    got = [(e["type"], e["object"]["metadata"]["name"]) for e in w.take(3)]
    assert got == [("ADDED", "b"), ("DELETED", "a"), ("DELETED", "b")]
    w.close()


def test_namespaced_service_watch_with_field_selector(api: ApiServer, core: Any) -> None:
    w = WatchReader(core.list_namespaced_service(
        "kong", watch=True, field_selector="metadata.name=kong-gateway-proxy",
        _preload_content=False, _request_timeout=TIMEOUT))
    api.put(objects.service("web", "kong-gateway-proxy", ports=[{"port": 80,
                                                                  "nodePort": 30080}]))
    api.put(objects.service("kong", "other", ports=[{"port": 80, "nodePort": 30081}]))
    api.put(objects.service("kong", "kong-gateway-proxy"))
    ev = w.take(1)[0]
    assert ev["type"] == "ADDED" and ev["object"]["metadata"]["namespace"] == "kong"
    assert ev["object"]["metadata"]["name"] == "kong-gateway-proxy"
    w.close()


def test_drop_watches_breaks_the_stream_without_a_clean_end(api: ApiServer, core: Any) -> None:
    add_nodes(api, 1)
    w = watch_nodes(core)
    w.take(1)
    api.faults.drop_watches()
    with pytest.raises((urllib3.exceptions.ProtocolError, OSError)):
        w.rest()
    # new watches work again
    w2 = watch_nodes(core, timeout_seconds=1)
    assert len(w2.rest()) == 1


def test_outage_fails_connections_and_recovery_works(api: ApiServer, core: Any) -> None:
    add_nodes(api, 2)
    w = watch_nodes(core)
    w.take(2)
    core.api_client.rest_client.pool_manager.connection_pool_kw["retries"] = 1
    api.faults.set_outage(True)
    with pytest.raises((urllib3.exceptions.ProtocolError, OSError)):
        w.rest()
    with pytest.raises((urllib3.exceptions.HTTPError, OSError)):
        core.list_node(_request_timeout=3)
    # a raw TCP connect is refused or reset at once
    import socket
    import ssl

    ctx = ssl.create_default_context(cafile=str(api.ca_path))
    with (pytest.raises(OSError),
          socket.create_connection(("127.0.0.1", api.port), timeout=3) as s,
          ctx.wrap_socket(s, server_hostname="localhost") as tls):
        tls.sendall(b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n")
        if not tls.recv(1):
            raise ConnectionResetError("closed")
    api.faults.set_outage(False)
    assert len(core.list_node().items) == 2
    w2 = watch_nodes(core, timeout_seconds=1)
    assert len(w2.rest()) == 2


def test_many_concurrent_watchers(api: ApiServer, core: Any) -> None:
    add_nodes(api, 1)
    rv = str(api.resource_version)
    import kubernetes

    readers = []
    for _ in range(40):
        c = kubernetes.client.CoreV1Api(kubernetes.config.new_client_from_config(
            config_file=str(api.kubeconfig_path)))
        readers.append(watch_nodes(c, resource_version=rv))
    api.put(objects.node("late", "127.0.10.77"))
    for r in readers:
        ev = r.take(1)[0]
        assert (ev["type"], ev["object"]["metadata"]["name"]) == ("ADDED", "late")
    assert api.watch_count >= 40
    for r in readers:
        r.close()


def test_standalone_cli(tmp_path: Path) -> None:
    import kubernetes

    proc = subprocess.Popen([sys.executable, "-m", "lbsync_lab.sim", "--nodes", "300",
                             "--demo-objects", "--workdir", str(tmp_path)],
                            stdout=subprocess.PIPE, text=True, env=child_env())
    try:
        assert proc.stdout is not None
        path = proc.stdout.readline().strip()
        assert path == str(tmp_path / "kubeconfig")
        core = kubernetes.client.CoreV1Api(
            kubernetes.config.new_client_from_config(config_file=path))
        nodes = raw_json(core.list_node(_preload_content=False))["items"]
        assert len(nodes) == 300
        addrs = {n["status"]["addresses"][0]["address"] for n in nodes}
        assert len(addrs) == 300 and all(a.startswith("127.") for a in addrs)
        svc = core.read_namespaced_service("kong-gateway-proxy", "kong")
        assert svc.spec.ports[0].node_port == 32001
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
    assert json.loads(json.dumps(objects.node("x", "127.0.0.1")))  # factories are plain JSON


def test_standalone_cli_starts_empty(tmp_path: Path) -> None:
    """Without --nodes/--demo-objects it is an empty cluster: a real helm install into it
    must meet no leftover Service."""
    import kubernetes

    proc = subprocess.Popen([sys.executable, "-m", "lbsync_lab.sim", "--workdir",
                             str(tmp_path)], stdout=subprocess.PIPE, text=True, env=child_env())
    try:
        assert proc.stdout is not None
        core = kubernetes.client.CoreV1Api(
            kubernetes.config.new_client_from_config(config_file=proc.stdout.readline().strip()))
        assert raw_json(core.list_node(_preload_content=False))["items"] == []
        assert raw_json(core.list_service_for_all_namespaces(
            _preload_content=False))["items"] == []
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


def test_kubernetes_watch_class_sees_bookmarks_and_raises_410(api: ApiServer, core: Any) -> None:
    import kubernetes
    from kubernetes.client.rest import ApiException

    add_nodes(api, 1)
    rv = api.resource_version
    stream = kubernetes.watch.Watch().stream(core.list_node, resource_version=str(rv),
                                             allow_watch_bookmarks=True, timeout_seconds=2)
    ev = next(stream)
    assert ev["type"] == "BOOKMARK" and ev["raw_object"]["metadata"]["resourceVersion"] == str(rv)
    stream.close()
    api.put(objects.node("other", "127.0.10.2"))
    api.compact()
    with pytest.raises(ApiException) as exc:
        for _ in kubernetes.watch.Watch().stream(core.list_node, resource_version=str(rv),
                                                 timeout_seconds=2):
            pass
    assert exc.value.status == 410
