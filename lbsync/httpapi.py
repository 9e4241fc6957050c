"""The daemon's HTTP endpoints: /healthz, /readyz, /metrics, /status, and POST /sync.

Listens on loopback by default: the gateway host faces the internet. It serves whatever
implements `Served` (the daemon), so it depends on no daemon module. Every connection costs
a file descriptor and a thread, and the daemon needs descriptors for its passes (nginx -t,
the API), so clients are bounded: at most MAX_CONNECTIONS at once (more are closed at once),
each idle at most IDLE_TIMEOUT and alive at most MAX_LIFETIME (a client trickling one byte a
second is cut too); POST /sync, which runs a pass past the failure backoff, is rate-limited.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


class Record(Protocol):
    result: str
    lines: list[str]
    error: str


class Served(Protocol):
    """What the endpoints ask of the daemon."""

    registry: CollectorRegistry

    def alive(self) -> bool: ...

    def readiness(self) -> tuple[bool, str]: ...

    def status(self) -> dict[str, Any]: ...

    def trigger(self, timeout: float = 30.0) -> Record | None: ...


MAX_CONNECTIONS = 64
IDLE_TIMEOUT = 5.0
MAX_LIFETIME = 15.0
# POST /sync: a burst of 3, then one a second.
SYNC_BURST, SYNC_RATE = 3.0, 1.0


class RateLimit:
    """A token bucket: `take()` is True while requests stay within the rate."""

    def __init__(self, burst: float, rate: float, clock: Any = time.monotonic) -> None:
        self.burst, self.rate, self.clock = burst, rate, clock
        self.tokens, self.at = burst, clock()
        self.lock = threading.Lock()

    def take(self) -> bool:
        with self.lock:
            now = self.clock()
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
            self.at = now
            if self.tokens < 1:
                return False
            self.tokens -= 1
            return True


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT  # per read: an idle connection is closed after this

    def do_GET(self) -> None:
        daemon = self.server.daemon
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            alive = daemon.alive()
            self._json(200 if alive else 503, {"alive": alive})
        elif path == "/readyz":
            ready, reason = daemon.readiness()
            self._json(200 if ready else 503, {"ready": ready, "reason": reason})
        elif path == "/metrics":
            self._send(200, CONTENT_TYPE_LATEST, generate_latest(daemon.registry))
        elif path == "/status":
            self._json(200, daemon.status())
        else:
            self._json(404, {"error": f"no such endpoint: {path}"})

    def do_POST(self) -> None:
        if self.path.split("?", 1)[0] != "/sync":
            self._json(404, {"error": "no such endpoint"})
            return
        if not self.server.sync_limit.take():
            self._json(429, {"ok": False, "error": "too many sync requests; retry in a second"},
                       {"Retry-After": "1"})
            return
        record = self.server.daemon.trigger()
        if record is None:
            self._json(504, {"ok": False, "error": "the sync pass did not finish in time"})
            return
        self._json(200 if record.result != "failed" else 500, {
            "ok": record.result != "failed", "result": record.result,
            "lines": record.lines, "error": record.error,
        })

    def _json(self, code: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self._send(code, "application/json", (json.dumps(body, indent=1) + "\n").encode(),
                   headers)

    def _send(self, code: int, content_type: str, body: bytes,
              headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # requests are not worth a log line each


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = MAX_CONNECTIONS

    def __init__(self, daemon: Served, host: str, port: int) -> None:
        self.daemon = daemon
        self.sync_limit = RateLimit(SYNC_BURST, SYNC_RATE)
        self.open: dict[socket.socket, float] = {}  # each connection and when it came
        self.open_lock = threading.Lock()
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, port), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.open_lock:
            self._reap(time.monotonic())
            full = len(self.open) >= MAX_CONNECTIONS
            if not full:
                self.open[request] = time.monotonic()
        if full:
            self.shutdown_request(request)  # closed at once: a descriptor is not held
            return
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.open_lock:
            self.open.pop(request, None)
        super().shutdown_request(request)

    def _reap(self, now: float) -> None:
        """Cut connections older than MAX_LIFETIME (caller holds open_lock)."""
        for sock, since in list(self.open.items()):
            if now - since > MAX_LIFETIME:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)  # the handler's read fails; it cleans up
                self.open.pop(sock, None)

    def service_actions(self) -> None:
        with self.open_lock:
            self._reap(time.monotonic())


class HttpApi:
    def __init__(self, daemon: Served, host: str, port: int) -> None:
        self.server = _Server(daemon, host, port)
        self.port = int(self.server.server_address[1])

    def start(self) -> None:
        threading.Thread(target=self.server.serve_forever, args=(0.2,), name="http",
                         daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
