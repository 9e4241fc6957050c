"""The probe engine against real sockets on loopback: what each kind of server makes of a
probe, the timeout, the concurrency bound, and the background prober's schedule and clean
stop. (How probes change the upstreams is tests/integration/test_probes.py.)"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from lbsync_lab.rig import addr

from lbsync import probe
from lbsync.config import ProbeConfig
from lbsync.health import Target


class Server:
    """A listening socket on a free loopback address that answers each connection with
    `reply(conn)` (None: accept and never answer; a hung node)."""

    def __init__(self, address: str, reply: Callable[[socket.socket], None] | None,
                 accept: bool = True) -> None:
        self.sock = socket.socket()
        self.sock.bind((address, 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.stopped = False
        if accept:
            threading.Thread(target=self._serve, args=(reply,), daemon=True).start()

    def _serve(self, reply: Callable[[socket.socket], None] | None) -> None:
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            if reply is not None:
                conn.recv(4096)
                reply(conn)
                conn.close()

    def close(self) -> None:
        self.stopped = True
        self.sock.close()
        for c in self.conns:
            c.close()


def send(data: bytes) -> Callable[[socket.socket], None]:
    return lambda conn: conn.sendall(data)


@pytest.fixture
def address() -> str:
    return addr(60)  # in this process's free block; servers take free ports on it


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for s in started:
        s.close()


def http(address: str, port: int, expect: tuple[int, int] = (200, 499)) -> Target:
    return Target(address, port, "http", "/healthz", expect)


@pytest.mark.parametrize(("reply", "detail"), [
    (send(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), "ok"),
    (send(b"HTTP/1.1 404 Not Found\r\n\r\n{\"message\":\"no Route matched\"}"), "ok"),
    (send(b"HTTP/1.1 503 Service Unavailable\r\n\r\n"), "HTTP 503"),
    (send(b"HTTP/1.0 200 OK\n\n"), "ok"),  # a bare LF still ends the line
    (send(b"SSH-2.0-OpenSSH_9.2\r\n"), "error: not HTTP"),
    (send(b"HTTP/1.1 200" + b"x" * 10_000), "error: no status line"),
    (send(b""), "error: closed before answering"),
    (None, "timeout"),  # accepts, never answers
])
def test_what_a_server_makes_of_an_http_probe(address: str, servers: list[Server],
                                              reply: Callable[[socket.socket], None] | None,
                                              detail: str) -> None:
    servers.append(Server(address, reply))
    obs = probe.check(http(address, servers[-1].port), timeout=0.3)
    assert (obs.ok, obs.detail) == (detail == "ok", detail)
    assert obs.latency < 2.0


def test_the_request_is_one_get_of_the_path(address: str, servers: list[Server]) -> None:
    got: list[bytes] = []

    def record(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\n\r\n")

    server = Server(address, None, accept=False)
    servers.append(server)

    def serve() -> None:
        conn, _ = server.sock.accept()
        got.append(conn.recv(4096))
        record(conn)
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    assert probe.check(http(address, server.port), 2.0).ok
    assert got == [f"GET /healthz HTTP/1.1\r\nHost: {address}:{server.port}\r\n"
                   "User-Agent: lbsync-probe\r\nConnection: close\r\n\r\n".encode()]


def test_refused_and_tcp(address: str, servers: list[Server]) -> None:
    closed = socket.socket()
    closed.bind((address, 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    assert probe.check(Target(address, port, "tcp"), 1.0).detail == "refused"
    assert probe.check(http(address, port), 1.0).detail == "refused"
    servers.append(Server(address, None))
    # A hung node still completes TCP handshakes (its kernel does): tcp says ok.
    assert probe.check(Target(address, servers[-1].port, "tcp"), 1.0).ok


def test_concurrency_bounds_the_sockets_in_flight(address: str, servers: list[Server]) -> None:
    """30 hung servers, 0.2 s timeout, 5 at a time: six waves of timeouts. Unbounded, all 30
    would time out together in 0.2 s."""
    hung = [Server(address, None) for _ in range(30)]
    servers.extend(hung)
    start = time.monotonic()
    results = probe.probe_all([http(address, s.port) for s in hung], 0.2, 5)
    elapsed = time.monotonic() - start
    assert {r.detail for r in results.values()} == {"timeout"} and len(results) == 30
    assert elapsed >= 6 * 0.2 * 0.95, elapsed


def test_the_prober_follows_its_targets_and_stops_cleanly(address: str,
                                                          servers: list[Server]) -> None:
    ok = Server(address, send(b"HTTP/1.1 200 OK\r\n\r\n"))
    bad = Server(address, send(b"HTTP/1.1 500 Oops\r\n\r\n"))
    servers.extend([ok, bad])
    fds = len(os.listdir("/proc/self/fd"))
    changes: list[int] = []
    cfg = ProbeConfig(interval=0.1, timeout=0.05, rise=1, fall=1)
    prober = probe.Prober(cfg, lambda: changes.append(1))
    prober.start()
    good_t, bad_t = http(address, ok.port), http(address, bad.port)
    prober.set_targets([good_t, bad_t])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        states = prober.states()
        if good_t in states and bad_t in states and states[good_t].probed:
            break
        time.sleep(0.02)
    states = prober.states()
    assert states[good_t].up and not states[bad_t].up and changes
    last = states[bad_t].last
    assert last is not None and last.detail == "HTTP 500"
    probed = len(ok.conns)
    time.sleep(0.35)
    assert len(ok.conns) >= probed + 2  # about every 0.1 s
    prober.set_targets([good_t])  # bad is forgotten
    assert bad_t not in prober.states()
    prober.stop()
    assert not prober._thread.is_alive()
    assert len(os.listdir("/proc/self/fd")) <= fds  # every socket and the wake pipe closed


@pytest.mark.parametrize(("data", "verdict"), [
    (b"", None),
    (b"HTTP/1.1 20", None),
    (b"HTTP/1.1 204 No Content\r\n", "HTTP 204"),
    (b"HTTP/1.1 200\r\n", "HTTP 200"),  # the reason phrase may be empty
    (b"HTTP/2 200\r\n", "error: not HTTP"),  # not what an HTTP/1.1 request gets
    (b"HTTP/1.1 2000 x\r\n", "error: not HTTP"),
    (b"x" * 4096, "error: no status line"),
])
def test_status_of(data: bytes, verdict: str | None) -> None:
    assert probe.status_of(data) == verdict
