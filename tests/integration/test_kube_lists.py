"""Lists through `lbsync.kube` against the emulator over HTTPS, as a real API server answers
them: streamed (watch-list) where the server serves it, paged where it refuses it (422, as
kube-apiserver 1.27-1.31 with the WatchList gate off) or ignores it (no initial-events-end
bookmark). Either way the same objects and a resourceVersion a watch can start from."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from lbsync_lab.sim import ApiServer, objects

from lbsync import kube
from lbsync.config import KubernetesConfig


def cluster(tmp_path: Path, watch_list: str, nodes: int = 30) -> ApiServer:
    api = ApiServer(workdir=tmp_path / "sim", token="secret", bookmark_interval=30.0,
                    watch_list=watch_list)
    for i in range(nodes):
        api.put(objects.node(f"node-{i:02d}", f"10.0.{i // 200}.{i % 200 + 1}",
                             ready=i % 3 != 0, labels={"pool": "edge" if i % 2 else "core"}))
    api.put(objects.service("kong", "proxy", ports=[{"name": "http", "port": 80,
                                                     "nodePort": 32001}]))
    return api


@pytest.fixture(params=["on", "off", "ignored"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    # Silence before the bookmark means "no streaming": shortened, so the test is quick.
    monkeypatch.setattr(kube, "STREAM_SILENCE", 0.5)
    return str(request.param)


@pytest.fixture
def api(tmp_path: Path, mode: str) -> Iterator[ApiServer]:
    with cluster(tmp_path, mode) as server:
        yield server


def client(api: ApiServer) -> kube.Client:
    return kube.Client.from_config(KubernetesConfig(api.kubeconfig_path))


def lists(api: ApiServer) -> list[str]:
    return [q for method, q, _ in api.requests if method == "GET" and "/nodes" in q]


def test_every_mode_lists_the_same_nodes(api: ApiServer, mode: str) -> None:
    c = client(api)
    listed = c.list(kube.nodes())
    paged = kube.Client.from_config(KubernetesConfig(api.kubeconfig_path))
    paged.streaming = False
    reference = paged.list(kube.nodes())
    assert listed.items == reference.items and len(listed.items) == 30
    assert (listed.items["node-03"].ready, listed.items["node-04"].ready) == ("Unknown", "True")
    assert listed.items["node-04"].address("InternalIP") == "10.0.0.5"
    assert listed.resource_version == reference.resource_version == str(api.resource_version)
    asked = lists(api)
    streamed = [q for q in asked if "sendInitialEvents=true" in q]
    assert len(streamed) == 1 and "resourceVersionMatch=NotOlderThan" in streamed[0]
    assert c.streaming is (mode == "on")
    if mode == "on":
        assert "limit=" not in asked[0] and len(asked) == 2  # the stream, then the reference
    else:
        assert "limit=500" in asked[1]  # the fallback, at once


def test_the_answer_is_remembered(api: ApiServer, mode: str) -> None:
    c = client(api)
    c.list(kube.nodes())
    c.list(kube.nodes())
    streamed = [q for q in lists(api) if "sendInitialEvents=true" in q]
    assert len(streamed) == (2 if mode == "on" else 1)


def test_a_label_selector_streams_only_its_nodes(api: ApiServer) -> None:
    listed = client(api).list(kube.nodes("pool=edge"))
    assert sorted(listed.items) == [f"node-{i:02d}" for i in range(1, 30, 2)]


def test_a_watch_from_the_listed_version_sees_the_next_change(api: ApiServer) -> None:
    c = client(api)
    listed = c.list(kube.nodes())
    api.put(objects.node("node-00", "10.0.0.1", ready=True))
    events = c.watch(kube.nodes(), listed.resource_version, 5)
    first = next(e for e in events if e.type != "BOOKMARK")
    assert (first.type, first.key) == ("MODIFIED", "node-00")
    assert first.obj is not None and first.obj.ready == "True"


def test_a_service_is_read_in_one_page(api: ApiServer) -> None:
    listed = client(api).list(kube.service("kong", "proxy"))
    assert list(listed.items) == ["kong/proxy"]
    services = [q for _, q, _ in api.requests if "/services" in q]
    assert len(services) == 1 and "limit=500" in services[0]  # small: never streamed
