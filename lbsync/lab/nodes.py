"""Stand-in nodes: small HTTP servers on loopback addresses (127.0.10.x) at the node port.

Each answers every request with its own name, so a test or the demo can send requests through
nginx and see which nodes serve. Every 127.x.y.z address binds on Linux loopback.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    server: _NodeServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = f"{self.server.node_name} {self.path}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Node", self.server.node_name)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _NodeServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: str, port: int, name: str) -> None:
        self.node_name = name
        super().__init__((address, port), _Handler)


class StandinNode:
    def __init__(self, name: str, address: str, port: int) -> None:
        self.name, self.address, self.port = name, address, port
        self._server: _NodeServer | None = None

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> None:
        if self._server is None:
            self._server = _NodeServer(self.address, self.port, self.name)
            threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True,
                             name=f"standin-{self.name}").start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class StandinPool:
    def __init__(self) -> None:
        self.nodes: dict[str, StandinNode] = {}

    def add(self, name: str, address: str, port: int) -> StandinNode:
        node = StandinNode(name, address, port)
        node.start()
        self.nodes[name] = node
        return node

    def stop_all(self) -> None:
        for node in self.nodes.values():
            node.stop()

    def __enter__(self) -> StandinPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()
