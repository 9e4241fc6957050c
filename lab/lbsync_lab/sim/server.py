"""The HTTP(S) front end: routing, auth, lists, watches, faults; and the ApiServer facade.

This module owns the wire behaviour of the emulated kube-apiserver: bearer-token
auth, discovery documents, paged lists assembled from cached JSON bytes,
chunked watch streams (replay from a resourceVersion, bookmarks, timeouts,
410 Expired as an ERROR event), Status error bodies, and fault injection at the
connection level (outage, dropped watches, latency, failing requests).
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from lbsync_lab.sim import objects
from lbsync_lab.sim.faults import Faults
from lbsync_lab.sim.ops import Operations
from lbsync_lab.sim.registry import ResourceType, builtin_registry
from lbsync_lab.sim.selectors import (
    Predicate,
    SelectorError,
    parse_field_selector,
    parse_label_selector,
)
from lbsync_lab.sim.status import ApiError, not_found, status
from lbsync_lab.sim.store import Event, Expired, Obj, Store, Stored, dumps, encode_continue
from lbsync_lab.sim.tlsgen import make_certs

VERSION_INFO = {
    "major": "1", "minor": "30", "gitVersion": "v1.30.4", "gitCommit":
    "a51b3b711150f57ffc1f526a640ec058514ed596", "gitTreeState": "clean",
    "buildDate": "2024-08-14T19:02:46Z", "goVersion": "go1.22.5", "compiler": "gc",
    "platform": "linux/amd64",
}


class _Abort(Exception):
    """Close the connection abruptly (outage, dropped watch, shutdown)."""


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    api: ApiServer

    def finish_request(self, request: Any, client_address: Any) -> None:
        api = self.api
        if api.faults.outage or api.stopping:
            _reset(request)
            return
        conn = request
        if api.ssl_context is not None:
            try:
                request.settimeout(10)
                conn = api.ssl_context.wrap_socket(request, server_side=True)
                conn.settimeout(None)
            except (OSError, ssl.SSLError):
                _reset(request)
                return
        with api.conn_lock:
            api.connections.add(conn)
        try:
            super().finish_request(conn, client_address)
        except (OSError, ssl.SSLError):
            pass
        finally:
            with api.conn_lock:
                api.connections.discard(conn)

    def shutdown_request(self, request: Any) -> None:
        with contextlib.suppress(OSError):
            request.close()


def _reset(sock: socket.socket) -> None:
    """Close with RST so the peer sees 'connection reset'."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


def _hard_close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body (and each watch event's chunk) go out in separate writes; with Nagle's
    # algorithm on, each would wait ~40 ms for the client's delayed ACK, as a real API server
    # (Go sets TCP_NODELAY) never does.
    disable_nagle_algorithm = True
    server: _HTTPServer

    def version_string(self) -> str:
        return "lbsync-sim"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # -- plumbing -------------------------------------------------------------------------

    @property
    def api(self) -> ApiServer:
        return self.server.api

    def _send(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        if self.api.faults.latency > 0:
            time.sleep(self.api.faults.latency)
        if self.api.faults.outage:
            raise _Abort()
        self.api._log(self.command, self.path, code)
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-cache, private")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_error(self, err: ApiError, headers: dict[str, str] | None = None) -> None:
        self._send(err.code, dumps(err.body), headers)

    def _dispatch(self, method: str) -> None:
        api = self.api
        try:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if api.faults.outage:
                raise _Abort()
            auth = self.headers.get("Authorization", "")
            if api.token is not None and auth != f"Bearer {api.token}":
                self._send_error(ApiError(401, "Unauthorized"))
                return
            code = api.faults.take(self.path)
            if code is not None:
                headers = {"Retry-After": "1"} if code == 429 else None
                msg = ("Too many requests, please try again later." if code == 429
                       else f"injected failure ({code})")
                self._send_error(ApiError(code, msg), headers)
                return
            self._route(method, raw)
        except ApiError as err:
            self._send_error(err)
        except _Abort:
            self.close_connection = True
            _hard_close(self.connection)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, TimeoutError):
            self.close_connection = True
        except Exception as exc:  # a bug in the emulator: answer 500 so tests see it
            with contextlib.suppress(Exception):
                self._send_error(ApiError(500, f"emulator error: {exc!r}"))
            raise

    # -- routing --------------------------------------------------------------------------

    def _route(self, method: str, raw: bytes) -> None:
        url = urlsplit(self.path)
        q = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        parts = [p for p in url.path.split("/") if p]
        reg = self.api.registry
        if method == "GET":
            doc: Any = None
            if parts == ["version"]:
                doc = VERSION_INFO
            elif parts == ["api"]:
                doc = {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": self.api.address}]}
            elif parts == ["apis"]:
                doc = reg.api_group_list()
            elif parts in (["api", "v1"], ["healthz"], ["readyz"], ["livez"]) or (
                    len(parts) in (2, 3) and parts[0] == "apis"):
                if parts[0] in ("healthz", "readyz", "livez"):
                    self._send(200, b"ok", {"Content-Type": "text/plain"})
                    return
                doc = (reg.resource_list("", "v1") if parts[0] == "api"
                       else reg.api_group(parts[1]) if len(parts) == 2
                       else reg.resource_list(parts[1], parts[2]))
                if doc is None:
                    raise ApiError(404, "the server could not find the requested resource")
            if doc is not None:
                self._send(200, dumps(doc))
                return
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiError(404, "the server could not find the requested resource")
        namespace: str | None = None
        if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] not in ("status", "finalize"):
            namespace, rest = rest[1], rest[2:]
        if not rest:
            raise ApiError(404, "the server could not find the requested resource")
        rt = reg.get(group, version, rest[0])
        if rt is None or (namespace is not None and not rt.namespaced) or len(rest) > 3:
            raise ApiError(404, "the server could not find the requested resource")
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if sub is not None and (sub != "status" or not rt.has_status):
            raise ApiError(404, "the server could not find the requested resource")
        fm = q.get("fieldManager") or None
        if (fm is None and method in ("POST", "PUT")) or (
                method == "PATCH" and "apply-patch" not in self.headers.get("Content-Type", "")):
            # non-apply writes are owned by a manager named after the client, as in a real
            # server (e.g. "OpenAPI-Generator" for the Python client)
            fm = fm or (self.headers.get("User-Agent") or "unknown").split("/")[0] or "unknown"
        if method != "GET" and q.get("dryRun"):
            if q["dryRun"] != "All":
                raise ApiError(400, f"unsupported dryRun value {q['dryRun']!r}: only All")
            with self.api.ops.dry_run():
                self._write(method, rt, namespace, name, sub, fm, q, raw)
            return
        if name is None and method == "GET":
            if q.get("watch") in ("1", "true", "True"):
                self._watch(rt, namespace, q)
            else:
                self._list(rt, namespace, q)
            return
        if method == "GET":
            assert name is not None
            s = self.api.store.get(rt, (namespace or "default") if rt.namespaced else "", name)
            if s is None:
                raise not_found(rt.plural, name, rt.group)
            self._send(200, s.full)
            return
        self._write(method, rt, namespace, name, sub, fm, q, raw)

    def _write(self, method: str, rt: ResourceType, namespace: str | None, name: str | None,
               sub: str | None, fm: str | None, q: dict[str, str], raw: bytes) -> None:
        ops = self.api.ops
        if name is None:
            if method == "POST":
                self._check_verb("create", rt)
                stored = ops.create(rt, namespace, _json_body(raw), fm)
                self._send(201, stored.full)
                return
            if method == "DELETE":
                self._check_verb("deletecollection", rt)
                pred = self._predicates(rt, namespace, q)
                with self.api.store.cond:
                    doomed = [s for s in self.api.store.sorted_items(rt)
                              if pred is None or pred(s.obj)]
                    for s in doomed:
                        ops.delete(rt, s.namespace or None, s.name)
                self._send(200, dumps({"kind": "Status", "apiVersion": "v1", "metadata": {},
                                       "status": "Success"}))
                return
            raise ApiError(405, f"{method} is not supported on a collection",
                           reason="MethodNotAllowed")
        if method == "PUT":
            self._check_verb("update", rt)
            stored = ops.replace(rt, namespace, name, _json_body(raw), sub, fm)
            self._send(200, stored.full)
        elif method == "PATCH":
            self._check_verb("patch", rt)
            force = q.get("force") in ("true", "1", "True")
            stored, created = ops.patch(rt, namespace, name,
                                        self.headers.get("Content-Type", ""), raw, sub, fm, force)
            self._send(201 if created else 200, stored.full)
        elif method == "DELETE" and sub is None:
            self._check_verb("delete", rt)
            body = _json_body(raw) if raw.strip() else {}
            pre = (body.get("preconditions") or {}).get("resourceVersion")
            gone = ops.delete(rt, namespace, name, pre)
            details: dict[str, Any] = {"name": name, "kind": rt.plural,
                                       "uid": gone.obj["metadata"].get("uid")}
            if rt.group:
                details["group"] = rt.group
            if rt.kind == "Namespace":  # answered as still terminating, like a real server
                obj = json.loads(gone.full)
                obj["metadata"]["deletionTimestamp"] = objects.now_rfc3339()
                obj["status"] = {"phase": "Terminating"}
                self._send(200, dumps(obj))
            else:
                self._send(200, dumps({"kind": "Status", "apiVersion": "v1", "metadata": {},
                                       "status": "Success", "details": details}))
        else:
            raise ApiError(405, f"{method} is not supported", reason="MethodNotAllowed")

    @staticmethod
    def _check_verb(verb: str, rt: ResourceType) -> None:
        if verb not in rt.verbs:
            raise ApiError(405, f"{verb} is not supported on {rt.plural}",
                           reason="MethodNotAllowed")

    # -- lists ----------------------------------------------------------------------------

    @staticmethod
    def _predicates(rt: ResourceType, namespace: str | None,
                    q: dict[str, str]) -> Predicate | None:
        try:
            fields = rt.field_selectors | (frozenset({"metadata.namespace"}) if rt.namespaced
                                           else frozenset())
            preds = [p for p in (parse_label_selector(q.get("labelSelector")),
                                 parse_field_selector(q.get("fieldSelector"), fields)) if p]
        except SelectorError as exc:
            raise ApiError(400, str(exc)) from exc
        if namespace is not None:
            preds.append(lambda o: o.get("metadata", {}).get("namespace") == namespace)
        if not preds:
            return None
        return lambda o: all(p(o) for p in preds)

    def _list(self, rt: ResourceType, namespace: str | None, q: dict[str, str]) -> None:
        store = self.api.store
        pred = self._predicates(rt, namespace, q)
        try:
            limit = int(q.get("limit") or 0)
        except ValueError as exc:
            raise ApiError(400, "invalid limit") from exc
        token = q.get("continue") or ""
        if q.get("resourceVersion") == "0" and not token:
            limit = 0  # served from the watch cache, which ignores limit (as in v1.30)
        if token:
            try:
                snap, sid, offset = store.load_snapshot(rt, token)
            except Expired as exc:
                raise ApiError(410, "The provided continue parameter is too old to display a "
                               "consistent list result. You can start a new list without the "
                               "continue parameter.", reason="Expired") from exc
        else:
            snap, sid, offset = store.snapshot(rt), "", 0
        items = snap.items
        out: list[bytes] = []
        i = offset
        n = len(items)
        while i < n and (limit <= 0 or len(out) < limit):
            s = items[i]
            i += 1
            if pred is None or pred(s.obj):
                out.append(s.body)
        meta: dict[str, Any] = {"resourceVersion": str(snap.rv)}
        if limit > 0 and i < n:
            if not sid:
                sid = store.save_snapshot(snap)
            meta["continue"] = encode_continue(snap.rv, sid, i)
            if pred is None:
                meta["remainingItemCount"] = n - i
        head = dumps({"kind": rt.list_kind, "apiVersion": rt.api_version, "metadata": meta})
        body = head[:-1] + b',"items":[' + b",".join(out) + b"]}"
        self._send(200, body)

    # -- watches --------------------------------------------------------------------------

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _watch(self, rt: ResourceType, namespace: str | None, q: dict[str, str]) -> None:
        api = self.api
        store = api.store
        pred = self._predicates(rt, namespace, q)
        bookmarks = q.get("allowWatchBookmarks") in ("true", "1", "True")
        try:
            timeout = float(q.get("timeoutSeconds") or 0) or None
        except ValueError as exc:
            raise ApiError(400, "invalid timeoutSeconds") from exc
        if timeout is not None and timeout < 0:
            timeout = None
        rv_param = q.get("resourceVersion") or ""
        try:
            start_rv = int(rv_param) if rv_param not in ("", "0") else None
        except ValueError as exc:
            raise ApiError(400, f"invalid resourceVersion {rv_param!r}") from exc
        initial: list[Stored] = []
        expired: str | None = None
        with store.cond:
            generation = store.generation
            if start_rv is None:
                initial = [s for s in store.sorted_items(rt) if pred is None or pred(s.obj)]
                pos = store.rv
            else:
                pos = start_rv
                try:
                    store.events_after(pos)
                except Expired as exc:
                    expired = str(exc)
        if api.faults.latency > 0:
            time.sleep(api.faults.latency)
        if api.faults.outage:
            raise _Abort()
        api._log("GET", self.path, 200)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        with api.conn_lock:
            api.watch_count += 1
        try:
            if expired is not None:
                self._chunk(_expired_event(expired))
                self.wfile.write(b"0\r\n\r\n")
                return
            if initial:
                self._chunk(b"".join(_event_line("ADDED", s) for s in initial))
            self._stream(rt, pred, pos, generation, bookmarks, timeout)
        finally:
            with api.conn_lock:
                api.watch_count -= 1

    def _stream(self, rt: ResourceType, pred: Predicate | None, pos: int, generation: int,
                bookmarks: bool, timeout: float | None) -> None:
        api = self.api
        store = api.store
        deadline = time.monotonic() + timeout if timeout is not None else None
        interval = api.bookmark_interval
        last_sent = time.monotonic()
        while True:
            events: list[Event] = []
            bookmark_rv: int | None = None
            with store.cond:
                while True:
                    if store.generation != generation or api.faults.outage or api.stopping:
                        raise _Abort()
                    try:
                        events = store.events_after(pos)
                    except Expired as exc:
                        events = []
                        expired: str | None = str(exc)
                        break
                    expired = None
                    if events:
                        pos = events[-1].rv
                        break
                    now = time.monotonic()
                    if deadline is not None and now >= deadline:
                        break
                    if bookmarks and now - last_sent >= interval:
                        bookmark_rv = pos = max(pos, store.rv)
                        break
                    wait = interval - (now - last_sent) if bookmarks else 5.0
                    if deadline is not None:
                        wait = min(wait, deadline - now)
                    store.cond.wait(max(0.001, wait))
            if expired is not None:
                self._chunk(_expired_event(expired))
                break
            out = [line for e in events if e.key == rt.key
                   for line in [_filtered_line(e, pred)] if line]
            if bookmark_rv is not None:
                out.append(dumps({"type": "BOOKMARK", "object": {
                    "kind": rt.kind, "apiVersion": rt.api_version,
                    "metadata": {"resourceVersion": str(bookmark_rv)}}}) + b"\n")
            if out:
                self._chunk(b"".join(out))
                last_sent = time.monotonic()
            elif not events:
                break  # deadline reached
        self.wfile.write(b"0\r\n\r\n")


def _json_body(raw: bytes) -> Obj:
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        try:
            body = yaml.safe_load(raw.decode())
        except yaml.YAMLError as exc:
            raise ApiError(400, f"could not decode body: {exc}") from exc
    if not isinstance(body, dict):
        raise ApiError(400, "request body must be an object")
    return body


def _event_line(etype: str, s: Stored) -> bytes:
    return b'{"type":"' + etype.encode() + b'","object":' + s.full + b"}\n"


def _filtered_line(e: Event, pred: Predicate | None) -> bytes | None:
    if pred is None:
        return _event_line(e.type, e.new)
    now_match = pred(e.new.obj)
    was_match = e.prev is not None and pred(e.prev.obj)
    if e.type == "DELETED":
        return _event_line("DELETED", e.new) if now_match else None
    if now_match:
        return _event_line("MODIFIED" if was_match else "ADDED", e.new)
    if was_match:
        return _event_line("DELETED", e.new)
    return None


def _expired_event(message: str) -> bytes:
    return dumps({"type": "ERROR", "object": status(410, message, "Expired")}) + b"\n"


class ApiServer:
    """An in-process Kubernetes API server emulator (see the package docstring)."""

    def __init__(self, workdir: Path, token: str | None = "secret", tls: bool = True,
                 bookmark_interval: float = 1.0, history: int = 1000,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.workdir = Path(workdir)
        self.token = token
        self.tls = tls
        self.bookmark_interval = bookmark_interval
        self.host, self.port = host, port
        self.registry = builtin_registry()
        self.store = Store(self.registry, history=history)
        self.ops = Operations(self.store)
        self.faults = Faults(self._set_outage, self.store.wake_all)
        self.requests: list[tuple[str, str, int]] = []
        """(method, path+query, status) of every answered request, in order."""
        self.ssl_context: ssl.SSLContext | None = None
        self.connections: set[socket.socket] = set()
        self.conn_lock = threading.Lock()
        self.watch_count = 0
        self.stopping = False
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.kubeconfig_path = self.workdir / "kubeconfig"
        self.ca_path = self.workdir / "ca.crt"

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> ApiServer:
        """Bind, write ``workdir/kubeconfig`` (and ``ca.crt``), serve in a thread."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.tls:
            _ca, crt, key = make_certs(self.workdir)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(crt, key)
            self.ssl_context = ctx
        httpd = _HTTPServer((self.host, self.port), _Handler)
        httpd.api = self
        self._httpd = httpd
        self.port = httpd.server_address[1]
        self._write_kubeconfig()
        self.stopping = False
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="lbsync-sim-apiserver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every connection."""
        self.stopping = True
        self.store.wake_all()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        self._close_connections()

    def __enter__(self) -> ApiServer:
        return self.start() if self._httpd is None else self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.address}"

    def _write_kubeconfig(self) -> None:
        cluster: dict[str, Any] = {"server": self.url}
        if self.tls:
            cluster["certificate-authority"] = str(self.ca_path.resolve())
        user: dict[str, Any] = {"token": self.token} if self.token else {}
        cfg = {"apiVersion": "v1", "kind": "Config",
               "clusters": [{"name": "sim", "cluster": cluster}],
               "users": [{"name": "sim", "user": user}],
               "contexts": [{"name": "sim", "context": {"cluster": "sim", "user": "sim"}}],
               "current-context": "sim", "preferences": {}}
        self.kubeconfig_path.write_text(yaml.safe_dump(cfg, sort_keys=False))

    def _close_connections(self) -> None:
        with self.conn_lock:
            conns = list(self.connections)
        for c in conns:
            _hard_close(c)

    def _set_outage(self, down: bool) -> None:
        if down:
            self.store.wake_all()
            self._close_connections()

    def _log(self, method: str, path: str, code: int) -> None:
        self.requests.append((method, path, code))

    # -- objects --------------------------------------------------------------------------

    def _rt(self, kind: str, api_version: str | None = None) -> ResourceType:
        for rt in self.registry.all():
            if (rt.kind == kind or rt.plural == kind) and (
                    api_version is None or rt.api_version == api_version):
                return rt
        raise KeyError(f"unknown kind {kind!r}")

    def put(self, obj: Obj) -> Obj:
        """Create or replace (by kind/namespace/name); returns the stored object."""
        return self.ops.put(obj).obj

    def delete(self, kind: str, name: str, namespace: str | None = None) -> bool:
        """Delete an object; False if it did not exist."""
        rt = self._rt(kind)
        ns = (namespace or "default") if rt.namespaced else ""
        with self.store.cond:
            if self.store.get(rt, ns, name) is None:
                return False
            self.ops.delete(rt, ns, name)
        return True

    def get(self, kind: str, name: str, namespace: str | None = None) -> Obj | None:
        """The stored object (kind is e.g. "Node" or "nodes"), or None."""
        rt = self._rt(kind)
        s = self.store.get(rt, (namespace or "default") if rt.namespaced else "", name)
        return json.loads(s.full) if s else None

    def list(self, kind: str, namespace: str | None = None) -> list[Obj]:
        """All stored objects of a kind (optionally in one namespace)."""
        rt = self._rt(kind)
        with self.store.cond:
            items = self.store.sorted_items(rt)
        return [json.loads(s.full) for s in items if namespace is None or s.namespace == namespace]

    def compact(self) -> None:
        """Forget event history (and list snapshots): older RVs and continue tokens get 410."""
        self.store.compact()

    @property
    def resource_version(self) -> int:
        """The current (latest) resourceVersion."""
        return self.store.rv

    def deny(self, verb: str, resource: str) -> None:
        """Make SelfSubjectAccessReviews for (verb, resource) answer allowed=false ("*" ok)."""
        self.ops.denied.add((verb, resource))

    def iter_requests(self, method: str | None = None, contains: str = "") -> Iterator[
            tuple[str, str, int]]:
        """Logged requests filtered by method and path substring."""
        for r in list(self.requests):
            if (method is None or r[0] == method) and contains in r[1]:
                yield r
