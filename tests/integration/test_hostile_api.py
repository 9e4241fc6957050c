"""A hostile or broken API server against the daemon: malformed payloads, endless lines,
endless continue tokens. The daemon must survive each, keep the last good file, and say
honestly on /readyz that its view of the cluster is not current."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from lbsync_lab.hostile import HostileApi, Reply, json_reply, lines
from lbsync_lab.inprocess import Running, eventually
from lbsync_lab.nginx import PrivateNginx, free_port
from lbsync_lab.rig import hp, write_config
from lbsync_lab.sim import objects

from lbsync import kube
from lbsync.notify import Notifier

NODES, SERVICES = "/api/v1/nodes", "/api/v1/namespaces/kong/services"


def node(name: str, i: int, rv: str) -> dict[str, Any]:
    n = objects.node(name, hp(i).split(":")[0])
    n["metadata"]["resourceVersion"] = rv
    return n


def proxy(kind: str = "NodePort") -> dict[str, Any]:
    port: dict[str, Any] = {"name": "http", "port": 80, "protocol": "TCP"}
    if kind == "NodePort":
        port["nodePort"] = 32001
    svc = objects.service("kong", "kong-gateway-proxy", ports=[port])
    svc["metadata"]["resourceVersion"] = "1"
    svc["spec"]["type"] = kind
    return svc


class Cluster:
    """A scripted cluster: lists serve `nodes`; each watch of nodes plays the next script."""

    def __init__(self) -> None:
        self.nodes = {"node-1": node("node-1", 1, "10")}
        self.service = proxy()
        self.node_watches: list[Reply] = []
        self.lock = threading.Lock()
        self.list_override: Callable[[], Reply] | None = None

    def __call__(self, path: str, query: dict[str, list[str]]) -> Reply:
        watching = query.get("watch") == ["1"]
        if path == SERVICES:
            if watching:
                return lines(then=_idle())
            return json_reply({"items": [self.service],
                               "metadata": {"resourceVersion": "1"}})
        if path == NODES and not watching:
            if self.list_override is not None:
                return self.list_override()
            return json_reply({"items": list(self.nodes.values()),
                               "metadata": {"resourceVersion": "20"}})
        with self.lock:
            script = self.node_watches.pop(0) if self.node_watches else None
        return script or lines(then=_idle())


def _idle() -> Iterator[bytes]:
    """A watch with nothing to say: a bookmark every quarter second, as a real server sends
    them (about once a minute), then a clean end after a second."""
    for _ in range(4):
        time.sleep(0.25)
        yield event("BOOKMARK", {"metadata": {"resourceVersion": "20"}})


def relist() -> Reply:
    """A watch that answers 410 Gone: the reflector lists again."""
    return lines(json.dumps({"type": "ERROR", "object": {
        "kind": "Status", "code": 410, "message": "too old resource version"}}).encode()
        + b"\n")


def event(kind: str, obj: Any) -> bytes:
    return json.dumps({"type": kind, "object": obj}).encode() + b"\n"


@pytest.fixture
def daemon(tmp_path: Path, nginx: PrivateNginx) -> Iterator[tuple[Running, Cluster, HostileApi]]:
    cluster = Cluster()
    with HostileApi(cluster) as api:
        path = write_config(
            tmp_path / "config.yaml", api.kubeconfig(tmp_path / "kc"), nginx,
            http={"listen": f"127.0.0.1:{free_port()}"},
            sync={"debounce": 0.05, "max_delay": 0.5, "min_reload_interval": 0.1,
                  "ready_after_failure": 1.0, "watch_timeout": 5, "resync": 60})
        running = Running.start(path, nginx)
        try:
            yield running, cluster, api
        finally:
            running.stop()


def ready(d: Running) -> bool:
    return d.get("/readyz")[0] == 200


@pytest.mark.parametrize(("bad", "unreadable"), [
    # AttributeError in the reflector thread before the fix; now a nameless node, refused.
    (event("MODIFIED", {"metadata": [1]}), False),
    (event("MODIFIED", {"metadata": {"name": {"x": 1}}, "status": "x"}), False),
    (b'{"type": "MODIFIED", "object": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n", True),
    (b"<html>502 Bad Gateway</html>\n", True),
    (event("SURPRISE", {}), True),
], ids=["metadata-list", "name-object", "nested-200k", "html", "unknown-type"])
# Short ids: pytest puts the test id in PYTEST_CURRENT_TEST, and a 200 KB one in the
# environment leaves nginx's exec with "Argument list too long".
def test_a_malformed_event_does_not_blind_the_daemon(
        daemon: tuple[Running, Cluster, HostileApi], bad: bytes, unreadable: bool) -> None:
    d, cluster, api = daemon
    d.converged(hp(1))
    lists = api.count(NODES)  # lists only, not watches
    cluster.nodes["node-2"] = node("node-2", 2, "30")  # only a relist can see this one
    # The poisoned watch, then a watch that brings a third node.
    cluster.node_watches += [lines(bad), lines(event("ADDED", node("node-3", 3, "40")),
                                               then=_idle())]
    # An unreadable event may have hidden a change: the reflector relists to catch up.
    d.converged(hp(1), hp(2), hp(3)) if unreadable else d.converged(hp(1), hp(3))
    assert (api.count(NODES) > lists) is unreadable
    assert all(r.thread.is_alive() for r in d.daemon.watchers.reflectors)  # type: ignore[union-attr]
    assert ready(d)


def test_an_event_line_that_never_ends_is_cut_and_readiness_says_so(
        daemon: tuple[Running, Cluster, HostileApi], monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: 74 -> 370 MB of RSS in 35 s, /readyz 200 throughout."""
    monkeypatch.setattr(kube, "MAX_LINE", 1 << 20)
    d, cluster, _ = daemon
    d.converged(hp(1))
    endless = iter(lambda: b"x" * 65536, None)
    cluster.node_watches += [lines(b'{"type": "ADDED", "object": {"metadata": ', then=endless)
                             for _ in range(200)]
    eventually(lambda: not ready(d), 15, "readiness to fail")
    status = json.loads(d.get("/readyz")[1])
    assert "nodes" in status["reason"] and "longer than 1 MB" in status["reason"]
    assert d.servers() == {hp(1)}  # the last good file stays
    cluster.node_watches.clear()
    eventually(lambda: ready(d), 40, "readiness to recover")


def test_endless_continue_tokens_end_in_an_error_not_a_hang(
        daemon: tuple[Running, Cluster, HostileApi], monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: 18,000 list requests in 20 s while ready."""
    monkeypatch.setattr(kube, "LIST_DEADLINE", 0.5)
    d, cluster, api = daemon
    d.converged(hp(1))
    cluster.list_override = lambda: json_reply({"items": [],
                                                "metadata": {"continue": "again"}})
    cluster.node_watches.append(relist())
    eventually(lambda: not ready(d), 20, "readiness to fail")
    reason = json.loads(d.get("/readyz")[1])["reason"]
    assert "list nodes: not done after" in reason
    before = api.count(NODES)
    time.sleep(2.0)
    # Backed off: a few lists a second at most, not thousands.
    assert api.count(NODES) - before < 40
    assert d.servers() == {hp(1)}


def test_items_that_are_not_a_list_fail_the_list_cleanly(
        daemon: tuple[Running, Cluster, HostileApi]) -> None:
    d, cluster, _ = daemon
    d.converged(hp(1))
    cluster.list_override = lambda: json_reply({"items": 5,
                                                "metadata": {"resourceVersion": "1"}})
    cluster.node_watches.append(relist())
    eventually(lambda: not ready(d), 20, "readiness to fail")
    assert "not a list response" in json.loads(d.get("/readyz")[1])["reason"]
    assert d.servers() == {hp(1)}


def test_a_service_type_cannot_forge_systemd_notifications(tmp_path: Path,
                                                           nginx: PrivateNginx) -> None:
    """Before: a spec.type with newlines reached sd_notify's STATUS= and added
    WATCHDOG=trigger and STOPPING=1 to the datagram (a real API server refuses such a type;
    a hostile one or a man in the middle does not)."""
    cluster = Cluster()
    cluster.service = proxy("NodePort\nWATCHDOG=trigger\nSTOPPING=1\x1b[2J")
    notify = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify))
    sock.settimeout(0.2)
    with sock, HostileApi(cluster) as api:
        path = write_config(tmp_path / "config.yaml", api.kubeconfig(tmp_path / "kc"), nginx,
                            http={"listen": f"127.0.0.1:{free_port()}"},
                            sync={"debounce": 0.05, "min_reload_interval": 0.1})
        running = Running.start(path, nginx, Notifier({"NOTIFY_SOCKET": str(notify)}))
        try:
            datagrams = _datagrams_until(sock, lambda d: "WATCHDOG=trigger" in d)
        finally:
            running.stop()
    said = [d for d in datagrams if "WATCHDOG=trigger" in d]
    assert said, datagrams  # the daemon did report the Service, escaped
    for datagram in said:
        assert datagram.split("\n") == [datagram] and datagram.startswith("STATUS=")
        assert "\x1b" not in datagram


def _datagrams_until(sock: socket.socket, seen: Callable[[str], bool],
                     timeout: float = 10) -> list[str]:
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not any(seen(d) for d in got):
        with contextlib.suppress(TimeoutError):
            got.append(sock.recv(65536).decode())
    return got
