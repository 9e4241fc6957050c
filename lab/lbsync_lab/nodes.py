"""Stand-in nodes: small HTTP servers on free loopback addresses at the node port.

Each answers every request (GET, and POST with a body) with its own name, so a test or the demo
can send requests through nginx and see which nodes serve. A node can fail the ways real ones
do: `crash()` (nothing listens: connection refused, and the connections it had are closed, as
the kernel closes a dead process's sockets), `hang()` (the kernel still accepts connections,
the server never answers), `recover()`. `HealthCheckPort` stands in for kube-proxy's
`healthCheckNodePort` of an `externalTrafficPolicy: Local` Service: 200 where the node has a
local endpoint, 503 elsewhere. Every 127.x.y.z address binds on Linux loopback; a block of
addresses is picked at random and checked free, never a fixed one another run may hold.
"""

from __future__ import annotations

import contextlib
import errno
import random
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Handler(BaseHTTPRequestHandler):
    server: _NodeServer
    protocol_version = "HTTP/1.1"
    # TCP_NODELAY, as Kong (nginx) sets it: with Nagle, a write after a small one waited for
    # nginx's delayed ACK, 40 ms on about half the requests.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._answer()

    def _answer(self) -> None:
        if self.server.hung.is_set():
            self.server.released.wait()  # never answer while hung
            return
        status = self.server.status
        body = f"{self.server.node_name} {self.path}\n".encode()
        head = (f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}\r\n"
                f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
                f"X-Node: {self.server.node_name}\r\n\r\n")
        # Headers and body in one write, as nginx sends a small answer: written apart, a
        # crash between the two left nginx with headers it had passed on and no body (the
        # churn suite's client saw a cut answer, which no retry can mend).
        self.wfile.write(head.encode() + body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _NodeServer(ThreadingHTTPServer):
    daemon_threads = True
    # SO_REUSEADDR only skips TIME_WAIT leftovers: on Linux a bind still fails while another
    # socket listens on the address, which is what tells us another run holds it.
    allow_reuse_address = True
    # Kong (nginx) listens with a backlog of 511; socketserver's default is 5. With 5, a busy
    # lab process (lbsync restarting, the machine loaded) dropped SYNs to healthy stand-ins:
    # nginx waited its 1 s proxy_connect_timeout, or saw resets, on nodes that were fine.
    request_queue_size = 511

    def __init__(self, address: str, port: int, name: str, status: int = 200) -> None:
        self.node_name = name
        self.status = status
        self.hung = threading.Event()
        self.released = threading.Event()
        self.open: set[socket.socket] = set()  # established connections (nginx keeps some)
        self.open_lock = threading.Lock()
        super().__init__((address, port), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.open_lock:
            self.open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.open_lock:
            self.open.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet about connections that end under a request: a crash ends them on purpose
        (and nginx may give up on one); anything else is a bug in the lab, and printed."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def close_connections(self) -> None:
        """End every established connection, as the kernel does when the process dies
        (a keep-alive connection left open would go on answering for a 'crashed' node)."""
        with self.open_lock:
            conns = list(self.open)
        for sock in conns:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _bindable(address: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL):
                return False
            raise
    return True


def free_block(count: int, port: int, *, attempts: int = 200) -> str:
    """A `127.X.Y` prefix whose addresses .1 to .count are all free on `port`.

    X stays above 63: the low part of 127/8 is where other software (and older fixed lab
    addresses such as 127.0.10.x) tends to bind.
    """
    rng = random.SystemRandom()
    for _ in range(attempts):
        prefix = f"127.{rng.randint(64, 254)}.{rng.randint(0, 255)}"
        if all(_bindable(f"{prefix}.{i}", port) for i in range(1, count + 1)):
            return prefix
    raise OSError(errno.EADDRINUSE, f"no free block of {count} loopback addresses on port {port}")


class StandinNode:
    def __init__(self, name: str, address: str, port: int) -> None:
        self.name, self.address, self.port = name, address, port
        self._server: _NodeServer | None = None

    @property
    def hostport(self) -> str:
        return f"{self.address}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> None:
        if self._server is None:
            self._server = _NodeServer(self.address, self.port, self.name)
            threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True,
                             name=f"standin-{self.name}").start()

    def stop(self) -> None:
        """Nothing answers any more: the listener and every established connection close."""
        if self._server is not None:
            self._server.released.set()
            self._server.shutdown()
            self._server.server_close()
            self._server.close_connections()
            self._server = None

    def crash(self) -> None:
        """Nothing listens any more: connections are refused, established ones end."""
        self.stop()

    def hang(self) -> None:
        """Still accepting connections (the kernel does that), never answering."""
        assert self._server is not None
        self._server.released.clear()
        self._server.hung.set()

    def recover(self) -> None:
        if self._server is None:
            self.start()
        else:
            self._server.hung.clear()
            self._server.released.set()


class HealthCheckPort:
    """kube-proxy's health check for a `Local` Service on one node: /healthz answers 200
    while the node has a local endpoint, 503 otherwise."""

    def __init__(self, address: str, port: int, local_endpoint: bool = True) -> None:
        self.node = StandinNode("healthz", address, port)
        self.node.start()
        self.set(local_endpoint)

    def set(self, local_endpoint: bool) -> None:
        assert self.node._server is not None
        self.node._server.status = 200 if local_endpoint else 503

    def stop(self) -> None:
        self.node.stop()


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


class EchoNode:
    """A raw TCP service on a node port: echoes what it reads, prefixed with its name (what a
    TLS-passthrough or database Service looks like to the gateway: bytes, not HTTP)."""

    def __init__(self, name: str, address: str, port: int) -> None:
        import socketserver

        outer_name = name

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                data = self.request.recv(4096)
                if data:
                    self.request.sendall(outer_name.encode() + b" " + data)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server((address, port), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
