"""The daemon's HTTP endpoints: /healthz, /readyz, /metrics, /status, and POST /sync.

Listens on loopback by default: the gateway host faces the internet. It serves whatever
implements `Served` (the daemon), so it depends on no daemon module.
"""

from __future__ import annotations

import json
import threading
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


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

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
        record = self.server.daemon.trigger()
        if record is None:
            self._json(504, {"ok": False, "error": "the sync pass did not finish in time"})
            return
        self._json(200 if record.result != "failed" else 500, {
            "ok": record.result != "failed", "result": record.result,
            "lines": record.lines, "error": record.error,
        })

    def _json(self, code: int, body: Any) -> None:
        self._send(code, "application/json", (json.dumps(body, indent=1) + "\n").encode())

    def _send(self, code: int, content_type: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # requests are not worth a log line each


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, daemon: Served, host: str, port: int) -> None:
        self.daemon = daemon
        if ":" in host:
            import socket

            self.address_family = socket.AF_INET6
        super().__init__((host, port), _Handler)


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
