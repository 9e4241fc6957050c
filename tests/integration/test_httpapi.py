"""The daemon's HTTP endpoints under abuse, with real sockets: idle and trickling connections
cannot exhaust the daemon's file descriptors or blind /healthz, and POST /sync is
rate-limited."""

from __future__ import annotations

import http.client
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from lbsync import httpapi
from lbsync.httpapi import HttpApi


@dataclass
class Record:
    result: str = "unchanged"
    lines: list[str] | None = None
    error: str = ""


class Served:
    """The protocol the endpoints serve, answered without a daemon."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.triggers = 0

    def alive(self) -> bool:
        return True

    def readiness(self) -> tuple[bool, str]:
        return True, "ok"

    def status(self) -> dict[str, Any]:
        return {"ready": True}

    def trigger(self, timeout: float = 30.0) -> Record:
        self.triggers += 1
        return Record(lines=[])


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[HttpApi, Served]]:
    monkeypatch.setattr(httpapi._Handler, "timeout", 1.0)
    monkeypatch.setattr(httpapi, "MAX_LIFETIME", 3.0)
    served = Served()
    server = HttpApi(served, "127.0.0.1", 0)
    server.start()
    yield server, served
    server.stop()


def get(port: int, path: str, method: str = "GET") -> tuple[int, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        resp.read()
        return resp.status, dict(resp.getheaders())
    finally:
        conn.close()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_thousand_idle_connections_neither_exhaust_descriptors_nor_blind_healthz(
        api: tuple[HttpApi, Served]) -> None:
    """Before: 1,023 idle connections (systemd's default soft limit is 1,024) made /healthz
    time out and passes fail with "Too many open files"."""
    server, _ = api
    before = open_fds()
    idle = []
    try:
        for _ in range(1100):  # connecting all at once, as an attacker would
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", server.port))
            idle.append(sock)
        time.sleep(0.5)
        # This test process holds the 1,100 client ends; the server holds at most its cap.
        assert open_fds() - before - len(idle) <= httpapi.MAX_CONNECTIONS + 8
        start = time.monotonic()
        deadline = start + 5
        while True:  # the idle ones time out (1 s here) and free their slots
            try:
                status, _ = get(server.port, "/healthz")
                break
            except OSError:
                assert time.monotonic() < deadline, "/healthz never answered"
        assert status == 200 and time.monotonic() - start < 3
    finally:
        for s in idle:
            s.close()


def test_a_trickling_client_is_cut_after_its_lifetime(api: tuple[HttpApi, Served]) -> None:
    server, _ = api
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\n")
        start = time.monotonic()
        closed = False
        while time.monotonic() - start < 8:
            try:
                s.sendall(b"X-Slow: 1\r\n")  # a header every half second, never the end
                time.sleep(0.5)
                if s.recv(1, socket.MSG_DONTWAIT) == b"":
                    closed = True
                    break
            except BlockingIOError:
                continue
            except OSError:
                closed = True
                break
        assert closed and time.monotonic() - start < 6


def test_post_sync_is_rate_limited(api: tuple[HttpApi, Served]) -> None:
    server, served = api
    answers = [get(server.port, "/sync", "POST") for _ in range(6)]
    codes = [code for code, _ in answers]
    assert codes[:3] == [200, 200, 200] and 429 in codes[3:]
    assert all(h.get("Retry-After") == "1" for c, h in answers if c == 429)
    assert served.triggers == codes.count(200)
    time.sleep(1.1)
    assert get(server.port, "/sync", "POST")[0] == 200


def test_rate_limit_refills_over_time() -> None:
    now = [0.0]
    limit = httpapi.RateLimit(2, 1.0, clock=lambda: now[0])
    assert [limit.take() for _ in range(3)] == [True, True, False]
    now[0] = 0.5
    assert limit.take() is False
    now[0] = 1.0
    assert limit.take() is True and limit.take() is False
