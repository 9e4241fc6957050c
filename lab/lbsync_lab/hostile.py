"""A hostile API server for attack tests: plain HTTP on loopback, answering each request
with whatever a test scripts (malformed events, endless bodies, continue tokens that never
end), where the emulator would answer like kube-apiserver.

    with HostileApi(script) as api:          # script(path, query) -> Reply
        api.kubeconfig(tmp_path / "kc")      # a kubeconfig lbsync can load
        api.requests                         # [(path, query, headers)]

A Reply is (status, headers, body chunks); the body is sent chunked, chunk by chunk, so a
test can stream forever or stop mid-line.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

Reply = tuple[int, dict[str, str], Iterator[bytes]]
Script = Callable[[str, dict[str, list[str]]], Reply]


def json_reply(doc: Any, status: int = 200, **headers: str) -> Reply:
    return status, {"Content-Type": "application/json", **headers}, iter(
        [json.dumps(doc).encode()])


def lines(*raw: bytes, then: Iterator[bytes] | None = None) -> Reply:
    """A watch stream: these lines, then whatever `then` yields (e.g. an endless stream)."""
    def chunks() -> Iterator[bytes]:
        yield from raw
        if then is not None:
            yield from then
    return 200, {"Content-Type": "application/json"}, chunks()


class HostileApi:
    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: list[tuple[str, dict[str, list[str]], dict[str, str]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = parse_qs(url.query)
                headers = {k.lower(): v for k, v in self.headers.items()}
                outer.requests.append((url.path, query, headers))
                status, reply_headers, chunks = outer.script(url.path, query)
                self.send_response(status)
                for k, v in reply_headers.items():
                    self.send_header(k, v)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    for chunk in chunks:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.write(b"0\r\n\r\n")
                except OSError:
                    pass  # the client gave up: what a bound is for

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def kubeconfig(self, path: Path, token: str = "hostile") -> Path:
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "hostile",
            "clusters": [{"name": "hostile", "cluster": {"server": self.url}}],
            "users": [{"name": "hostile", "user": {"token": token}}],
            "contexts": [{"name": "hostile",
                          "context": {"cluster": "hostile", "user": "hostile"}}]}))
        return path

    def count(self, path: str, *, watches: bool = False) -> int:
        """How many lists (or watches) of `path` were asked for."""
        return sum(1 for p, q, _ in self.requests
                   if p == path and (q.get("watch") == ["1"]) is watches)

    def __enter__(self) -> HostileApi:
        threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
