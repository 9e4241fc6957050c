"""The Kubernetes edge alone, against a tiny real HTTP server on loopback that answers what a
test scripts: pagination, errors, bounds on what a hostile server may send, watch events,
the retry policy, and kubeconfig loading."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from lbsync_lab.hostile import HostileApi, Reply, Script, json_reply

from lbsync import kube
from lbsync.config import KubernetesConfig
from lbsync.errors import ApiError, ConfigError, Expired
from lbsync.kubeconfig import Connection
from lbsync.model import Event


class Server(HostileApi):
    def client(self, streaming: bool | None = False) -> kube.Client:
        """A client of this server; by default one that pages through lists (the tests of
        streamed lists say `streaming=None`: try, then remember)."""
        client = kube.Client(Connection(self.url, headers=lambda: {
            "authorization": "Bearer secret"}))
        client.streaming = streaming
        return client


@pytest.fixture
def serve() -> Iterator[Callable[[Script], Server]]:
    servers: list[Server] = []

    def start(script: Script) -> Server:
        servers.append(Server(script).__enter__())
        return servers[-1]

    yield start
    for s in servers:
        s.__exit__()


def node(name: str, rv: str = "1") -> dict[str, Any]:
    return {"metadata": {"name": name, "resourceVersion": rv},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}}


def test_list_pages_through_continue_tokens_and_sends_the_token(serve: Any) -> None:
    pages = {None: (["a", "b"], "t1"), "t1": (["c"], "t2"), "t2": (["d"], None)}

    def script(path: str, q: dict[str, list[str]]) -> Reply:
        names, token = pages[q.get("continue", [None])[0]]
        return json_reply({"items": [node(n) for n in names],
                           "metadata": {"resourceVersion": "42", "continue": token}})

    server = serve(script)
    listed = server.client().list(kube.nodes("pool=edge"))
    assert sorted(listed.items) == ["a", "b", "c", "d"] and listed.resource_version == "42"
    assert [r[1]["limit"] for r in server.requests] == [["500"]] * 3
    assert server.requests[0][1]["labelSelector"] == ["pool=edge"]
    assert server.requests[0][2]["authorization"] == "Bearer secret"


def test_an_endless_chain_of_continue_tokens_is_cut_by_the_deadline(serve: Any) -> None:
    count = iter(range(10**9))
    server = serve(lambda p, q: json_reply({"items": [], "metadata": {
        "resourceVersion": "1", "continue": f"t{next(count)}"}}))
    start = time.monotonic()
    with pytest.raises(kube.ProtocolError, match="not done after"):
        server.client().list(kube.nodes(), deadline=0.5)
    assert time.monotonic() - start < 5


def test_too_many_objects_fail_the_list(serve: Any) -> None:
    count = iter(range(10**9))
    server = serve(lambda p, q: json_reply({"items": [node(f"n{next(count)}") for _ in range(50)],
                                            "metadata": {"continue": "more"}}))
    with pytest.raises(kube.ProtocolError, match="more than 120 objects"):
        server.client().list(kube.nodes(), max_objects=120)


def test_a_body_larger_than_the_bound_fails_without_reading_it_all(serve: Any) -> None:
    chunks = (b"x" * 65536 for _ in range(10_000))  # 640 MB if read to the end
    server = serve(lambda p, q: (200, {}, chunks))
    with pytest.raises(kube.ProtocolError, match="larger than 1 MB"):
        server.client().call("GET", "/api/v1/nodes", what="list nodes", max_bytes=1 << 20)


@pytest.mark.parametrize(("body", "message"), [
    (b"<html>proxy error</html>", "invalid JSON"),
    (b"[1, 2]", "unexpected JSON"),
    (b"[" * 200_000 + b"]" * 200_000, "invalid JSON"),  # deep nesting: RecursionError
])
def test_garbage_is_a_protocol_error(serve: Any, body: bytes, message: str) -> None:
    server = serve(lambda p, q: (200, {}, iter([body])))
    with pytest.raises(kube.ProtocolError, match=message):
        server.client().json("GET", "/api/v1/nodes", what="list nodes")


@pytest.mark.parametrize(("status", "headers", "kind", "message", "retry_after"), [
    (410, {}, Expired, "list nodes: too old", None),  # not shown: it only means "relist"
    (429, {"Retry-After": "7"}, ApiError, "list nodes: slow down (HTTP 429)", 7.0),
    (403, {}, ApiError, 'list nodes: nodes is forbidden: User "x" cannot list (HTTP 403)',
     None),
    (500, {}, ApiError, "list nodes: too old (HTTP 500)", None),
])
def test_error_answers_become_one_line(serve: Any, status: int, headers: dict[str, str],
                                       kind: type[ApiError], message: str,
                                       retry_after: float | None) -> None:
    text = {403: 'nodes is forbidden: User "x" cannot list\n\nmore', 429: "slow down"}
    server = serve(lambda p, q: json_reply({"kind": "Status", "message": text.get(
        status, "too old")}, status, **headers))
    with pytest.raises(kind) as err:
        server.client().call("GET", "/api/v1/nodes", what="list nodes")
    assert str(err.value) == message
    assert err.value.status == status and err.value.retry_after == retry_after


def test_an_endless_error_body_is_bounded(serve: Any) -> None:
    server = serve(lambda p, q: (500, {}, (b"x" * 65536 for _ in range(10_000))))
    with pytest.raises(ApiError) as err:
        server.client().call("GET", "/api/v1/nodes", what="list nodes")
    assert len(str(err.value)) < 400 and err.value.status == 500


def test_unreachable_server_names_it() -> None:
    with pytest.raises(ApiError) as err:
        kube.Client(Connection("http://127.0.0.1:9")).call("GET", "/version", what="version")
    assert str(err.value) == ("cannot reach the API server http://127.0.0.1:9 (version): "
                              "connection refused")
    assert err.value.status is None and err.value.retryable


def stream(*lines: bytes) -> Script:
    return lambda p, q: (200, {}, iter(lines))


def test_watch_events_and_query(serve: Any) -> None:
    server = serve(stream(
        b'{"type":"ADDED","object":' + json.dumps(node("a", "5")).encode() + b"}\n",
        b'{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"6"}}}\n'
        b'{"type":"DELETED","object":' + json.dumps(node("a", "7")).encode() + b"}\n"))
    events = list(server.client().watch(kube.nodes(), "4", 30))
    assert [(e.type, e.resource_version, e.key) for e in events] == [
        ("ADDED", "5", "a"), ("BOOKMARK", "6", ""), ("DELETED", "7", "a")]
    assert events[2].obj is None
    q = server.requests[0][1]
    assert (q["watch"], q["resourceVersion"], q["timeoutSeconds"], q["allowWatchBookmarks"]) == (
        ["1"], ["4"], ["30"], ["true"])


def test_a_watch_line_that_never_ends_is_refused(serve: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(kube, "MAX_LINE", 64 << 10)
    server = serve(stream(*(b"x" * 8192 for _ in range(100_000))))
    with pytest.raises(kube.ProtocolError, match="longer than"):
        list(server.client().watch(kube.nodes(), "1", 30))


@pytest.mark.parametrize(("raw", "outcome"), [
    ({"type": "ERROR", "object": {"code": 410, "message": "too old"}}, Expired),
    ({"type": "ERROR", "object": {"code": 500, "message": "etcd\nleader changed"}}, ApiError),
    ({"type": "ERROR", "object": {"code": "x"}}, ApiError),
    ({"type": "MODIFIED"}, kube.ProtocolError),
    ({"type": "MODIFIED", "object": [1]}, kube.ProtocolError),
    ({"type": "SURPRISE", "object": {}}, kube.ProtocolError),
    ({"type": "MODIFIED", "object": {"metadata": [1]}}, Event("MODIFIED", "", "", None)),
    ({"type": "BOOKMARK", "object": {"metadata": "x"}}, Event("BOOKMARK", "")),
])
def test_event_parsing_never_crashes(raw: dict[str, Any], outcome: Any) -> None:
    if isinstance(outcome, type):
        with pytest.raises(outcome) as err:
            kube.event(raw, kube.nodes(), "watch nodes")
        assert "\n" not in str(err.value)
    else:
        got = kube.event(raw, kube.nodes(), "watch nodes")
        assert (got.type, got.resource_version, got.key) == (
            outcome.type, outcome.resource_version, outcome.key)


@pytest.mark.parametrize(("exc", "low", "high"), [
    (ApiError("x", None), 0.5, 1.0),
    (ApiError("x", 500), 0.5, 1.0),
    (ApiError("x", 429, retry_after=7), 7.0, 7.0),
    (ApiError("x", 429, retry_after=600), 30.0, 30.0),  # capped
    (ApiError("x", 401), 30.0, 30.0),  # a retry cannot fix it: wait the cap
    (ApiError("x", 403), 30.0, 30.0),
])
def test_wait_after(exc: ApiError, low: float, high: float) -> None:
    wait = kube.wait_after(exc, 1, 30.0)
    assert low <= wait <= high


def test_retrying_retries_only_what_may_pass() -> None:
    calls: list[int] = []

    def flaky(status: int) -> str:
        calls.append(status)
        raise ApiError("x", status)

    for status, tries in ((503, 3), (404, 1)):
        calls.clear()
        with pytest.raises(ApiError):
            kube.retrying(attempts=3, sleep=lambda s: None)(flaky, status)
        assert len(calls) == tries


def write_kubeconfig(path: Path, server: str, token: str = "t") -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": {"token": token}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
    return path


def test_kubeconfig_token_reaches_the_server(serve: Any, tmp_path: Path) -> None:
    server = serve(lambda p, q: json_reply({"gitVersion": "v1.35.0"}))
    cfg = KubernetesConfig(write_kubeconfig(tmp_path / "kc", server.url, "abc"))
    client = kube.Client.from_config(cfg)
    assert client.json("GET", "/version", what="version") == {"gitVersion": "v1.35.0"}
    assert server.requests[0][2]["authorization"] == "Bearer abc"
    assert server.requests[0][2]["user-agent"].startswith("lbsync/")


@pytest.mark.parametrize(("text", "message"), [
    ("clusters: [\n  - name: a\n  oops: {\n", r"kc: not valid YAML \(line \d+"),
    ("apiVersion: v1\nkind: Config\n", "kc: "),
    ("- just\n- a list\n", "kc: "),
])
def test_a_broken_kubeconfig_is_one_config_error_naming_it(tmp_path: Path, text: str,
                                                           message: str) -> None:
    path = tmp_path / "kc"
    path.write_text(text)
    with pytest.raises(ConfigError, match=f"kubernetes.kubeconfig: cannot load .*{message}") as e:
        kube.load_connection(KubernetesConfig(path))
    assert "\n" not in str(e.value)


# --- streamed lists (watch-list) -------------------------------------------------------------


def added(name: str, rv: str = "1", kind: str = "ADDED") -> bytes:
    return json.dumps({"type": kind, "object": node(name, rv)}).encode() + b"\n"


def bookmark(rv: str, end: bool = True) -> bytes:
    meta: dict[str, Any] = {"resourceVersion": rv}
    if end:
        meta["annotations"] = {"k8s.io/initial-events-end": "true"}
    return json.dumps({"type": "BOOKMARK", "object": {"metadata": meta}}).encode() + b"\n"


def page(*names: str) -> Reply:
    return json_reply({"items": [node(n) for n in names], "metadata": {"resourceVersion": "9"}})


def watch_list(stream_reply: Callable[[], Reply]) -> Script:
    """A server that answers a watch-list with `stream_reply`, and pages with a, b, c."""
    return lambda p, q: stream_reply() if "sendInitialEvents" in q else page("a", "b", "c")


def test_a_streamed_list_ends_at_its_bookmark(serve: Any) -> None:
    server = serve(watch_list(lambda: (200, {}, iter([
        added("a") + added("b")[:10], added("b")[10:] + added("c"),
        added("b", "3", "MODIFIED") + added("c", "4", "DELETED"),  # changes while listing
        bookmark("7"),
        added("after-the-bookmark")]))))
    client = server.client(streaming=None)
    listed = client.list(kube.nodes("pool=edge"))
    assert sorted(listed.items) == ["a", "b"] and listed.resource_version == "7"
    assert client.streaming is True and len(server.requests) == 1
    q = server.requests[0][1]
    assert (q["watch"], q["sendInitialEvents"], q["resourceVersionMatch"],
            q["allowWatchBookmarks"], q["labelSelector"]) == (
        ["1"], ["true"], ["NotOlderThan"], ["true"], ["pool=edge"])
    assert "resourceVersion" not in q and "limit" not in q  # a consistent read, no pages


@pytest.mark.parametrize("reply", [
    pytest.param(lambda: json_reply({"kind": "Status", "reason": "Invalid"}, 422), id="422"),
    pytest.param(lambda: json_reply({"kind": "Status"}, 400), id="400"),
    pytest.param(lambda: json_reply({"kind": "Status"}, 403), id="403: no watch right"),
    pytest.param(lambda: (200, {}, iter([added("a"), bookmark("5", end=False)])),
                 id="a plain bookmark first"),
    pytest.param(lambda: (200, {}, iter([added("a"), added("b")])), id="no bookmark, ended"),
])
def test_a_server_that_cannot_stream_gets_pages(serve: Any, reply: Callable[[], Reply]
                                                ) -> None:
    server = serve(watch_list(reply))
    client = server.client(streaming=None)
    listed = client.list(kube.nodes())
    assert sorted(listed.items) == ["a", "b", "c"] and listed.resource_version == "9"
    assert client.streaming is False
    client.list(kube.nodes())  # remembered: no second try
    assert ["sendInitialEvents" in r[1] for r in server.requests] == [True, False, False]


def test_a_stream_that_goes_silent_before_its_bookmark_gets_pages(
        serve: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kube, "STREAM_SILENCE", 0.3)

    def silent() -> Iterator[bytes]:
        yield added("a")
        time.sleep(3)  # a server that ignored sendInitialEvents: now it waits for changes

    server = serve(watch_list(lambda: (200, {}, silent())))
    client = server.client(streaming=None)
    start = time.monotonic()
    assert sorted(client.list(kube.nodes()).items) == ["a", "b", "c"]
    assert client.streaming is False and time.monotonic() - start < 2.5


@pytest.mark.parametrize(("reply", "error"), [
    (lambda: json_reply({"kind": "Status", "message": "etcd down"}, 503), "etcd down"),
    (lambda: (200, {}, iter([added("a"), b'{"type":"ERROR","object":{"code":500,'
                                          b'"message":"cache not ready"}}\n'])),
     "cache not ready"),
    (lambda: (200, {}, iter([b"<html>\n"])), "invalid JSON"),
])
def test_a_failing_stream_is_an_error_not_a_fallback(serve: Any, reply: Callable[[], Reply],
                                                     error: str) -> None:
    server = serve(watch_list(reply))
    client = server.client(streaming=None)
    with pytest.raises(ApiError, match=error):
        client.list(kube.nodes())
    assert client.streaming is None and len(server.requests) == 1  # retried as a stream


def test_a_stream_is_bounded_like_pages(serve: Any) -> None:
    endless = (added(f"n{i}") for i in range(10**9))
    server = serve(watch_list(lambda: (200, {}, endless)))
    with pytest.raises(kube.ProtocolError, match="more than 120 objects"):
        server.client(streaming=None).list(kube.nodes(), max_objects=120)
    same = (added("n") for _ in range(10**9))
    server = serve(watch_list(lambda: (200, {}, same)))
    with pytest.raises(kube.ProtocolError, match="not done after"):
        server.client(streaming=None).list(kube.nodes(), deadline=0.3)


@pytest.mark.parametrize("chunks", [
    [b"a\nb\n"], [b"a", b"\n", b"b\n"], [b"a\nb"], [b"\n\na\n  \nb\n\n"],
    [b"a", b"", b"\nb", b"\n"], [b"a\r\n", b"b\r\n"],
])
def test_lines_are_split_wherever_the_chunks_break(chunks: list[bytes]) -> None:
    got = [line.strip() for line in kube.split_lines(iter(chunks), "x")]
    assert got == [b"a", b"b"]
