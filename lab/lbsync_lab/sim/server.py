"""The HTTP(S) front end: routing, auth, lists, watches, faults; and the ApiServer facade.

This module owns the wire behaviour of the emulated kube-apiserver: bearer-token
authentication and RBAC checks (through :mod:`lbsync_lab.sim.auth`), discovery documents
(legacy and aggregated), the OpenAPI endpoints, paged lists assembled from cached JSON bytes
(or printed as Tables), chunked watch streams (replay from a resourceVersion, bookmarks,
watch-list's initial-events-end bookmark, timeouts, 410 Expired as an ERROR event), dry runs
(query or DeleteOptions), Status error bodies, ``Warning`` headers, and fault injection at the
connection level (outage, dropped watches, latency, failing requests). :class:`ApiServer` is
the facade tests and stand-in controllers use.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import re
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from lbsync_lab.sim import negotiate, objects, tables
from lbsync_lab.sim.auth import (
    ADMIN,
    Attributes,
    Authorizer,
    Tokens,
    User,
    forbidden_message,
)
from lbsync_lab.sim.faults import Faults
from lbsync_lab.sim.negotiate import Wanted
from lbsync_lab.sim.openapi import OpenAPI
from lbsync_lab.sim.ops import Operations
from lbsync_lab.sim.registry import ResourceType, builtin_registry, version_priority
from lbsync_lab.sim.reviews import Reviews
from lbsync_lab.sim.selectors import (
    Predicate,
    SelectorError,
    parse_field_selector,
    parse_label_selector,
)
from lbsync_lab.sim.status import ApiError, not_found, status
from lbsync_lab.sim.store import Event, Expired, Obj, Store, Stored, dumps, encode_continue
from lbsync_lab.sim.tlsgen import make_certs

# The version whose OpenAPI document the emulator serves (lbsync_lab.data.OPENAPI_V2).
VERSION_INFO = {
    "major": "1", "minor": "35", "emulationMajor": "1", "emulationMinor": "35",
    "minCompatibilityMajor": "1", "minCompatibilityMinor": "34", "gitVersion": "v1.35.2",
    "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
    "buildDate": "2026-02-10T00:00:00Z", "goVersion": "go1.25.6", "compiler": "gc",
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


@dataclass
class _Request:
    """One parsed request."""

    method: str
    parts: list[str]
    q: dict[str, str]
    raw: bytes
    user: User
    wanted: Wanted


@dataclass
class _Target:
    """The resource a request addresses."""

    rt: ResourceType
    namespace: str | None
    name: str | None
    sub: str | None

    @property
    def ns(self) -> str:
        return (self.namespace or "default") if self.rt.namespaced else ""


_NOT_FOUND = "the server could not find the requested resource"
_TRUE = ("1", "true", "True")


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
        headers = dict(headers or {})
        self.send_header("Content-Type", headers.pop("Content-Type", "application/json"))
        self.send_header("Cache-Control", "no-cache, private")
        for k, v in headers.items():
            self.send_header(k, v)
        for w in self._warnings:
            self.send_header("Warning", f'299 - "{_quote(w)}"')
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_error(self, err: ApiError, headers: dict[str, str] | None = None) -> None:
        self._send(err.code, dumps(err.body), headers)

    def _dispatch(self, method: str) -> None:
        api = self.api
        self._warnings: list[str] = []
        try:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if api.faults.outage:
                raise _Abort()
            user = api.authenticate(self.headers.get("Authorization", ""))
            if user is None:
                self._send_error(ApiError(401, "Unauthorized"))
                return
            code = api.faults.take(self.path)
            if code is not None:
                headers = {"Retry-After": "1"} if code == 429 else None
                msg = ("Too many requests, please try again later." if code == 429
                       else f"injected failure ({code})")
                self._send_error(ApiError(code, msg), headers)
                return
            url = urlsplit(self.path)
            q = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
            parts = [p for p in url.path.split("/") if p]
            self._route(_Request(method, parts, q, raw, user,
                                 negotiate.accept(self.headers.get("Accept"))))
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

    def _route(self, req: _Request) -> None:
        parts = req.parts
        is_api = (parts[:2] == ["api", "v1"] and len(parts) > 2) or (
            len(parts) > 3 and parts[0] == "apis")
        if not is_api:
            self._non_resource(req)
            return
        target, verb = self._target(req)
        name = target.name or ""
        if not name and verb in ("list", "watch"):
            # kube-apiserver's RequestInfo: a list or watch selecting one name by field is
            # authorized as a request for that name, so RBAC resourceNames can allow it.
            name = _selected_name(req.q.get("fieldSelector") or "")
        self._authorize(req.user, Attributes(
            verb, target.rt.group, target.rt.plural, target.sub or "",
            name, target.name if target.rt.kind == "Namespace" and target.name
            else (target.namespace or "")))
        if target.rt.virtual or target.sub == "token":
            self._answer_review(req, target)
        elif req.method == "GET":
            self._read(req, target)
        else:
            self._write(req, target)

    def _authorize(self, user: User, attrs: Attributes) -> None:
        if not self.api.authorizer.allowed(user, attrs):
            details: dict[str, Any] = {}
            if attrs.is_resource:
                details = {"name": attrs.name, "group": attrs.group, "kind": attrs.resource}
                details = {k: v for k, v in details.items() if v}
            raise ApiError(403, forbidden_message(user, attrs), details=details or None)

    def _non_resource(self, req: _Request) -> None:
        if req.method != "GET":
            self._authorize(req.user, Attributes(req.method.lower(), path=self._url_path()))
            raise ApiError(404, _NOT_FOUND)
        self._authorize(req.user, Attributes("get", path=self._url_path()))
        parts, api, reg = req.parts, self.api, self.api.registry
        if parts and parts[0] in ("healthz", "readyz", "livez"):
            self._send(200, b"ok", {"Content-Type": "text/plain; charset=utf-8"})
            return
        if parts and parts[0] == "openapi":
            self._openapi(parts[1:])
            return
        if req.wanted.as_ == "APIGroupDiscoveryList" and parts in (["api"], ["apis"]):
            self._send(200, dumps(reg.aggregated(core=parts == ["api"])),
                       {"Content-Type": negotiate.AGGREGATED})
            return
        doc: Any = None
        if parts == ["version"]:
            doc = VERSION_INFO
        elif parts == ["api"]:
            doc = {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": api.address}]}
        elif parts == ["apis"]:
            doc = reg.api_group_list()
        elif parts == ["api", "v1"]:
            doc = reg.resource_list("", "v1")
        elif len(parts) == 2 and parts[0] == "apis":
            doc = reg.api_group(parts[1])
        elif len(parts) == 3 and parts[0] == "apis":
            doc = reg.resource_list(parts[1], parts[2])
        if doc is None:
            raise ApiError(404, _NOT_FOUND)
        self._send(200, dumps(doc))

    def _url_path(self) -> str:
        return urlsplit(self.path).path or "/"

    def _openapi(self, rest: list[str]) -> None:
        docs = self.api.ops.openapi
        if rest == ["v2"]:
            accepts = self.headers.get("Accept") or ""
            if "json" not in accepts and "*/*" not in accepts and accepts:
                raise ApiError(406, "the emulator serves /openapi/v2 as application/json only",
                               reason="NotAcceptable")
            self._send(200, docs.v2())
            return
        if rest == ["v3"]:
            self._send(200, dumps(docs.v3_root()))
            return
        if len(rest) >= 3 and rest[0] == "v3":
            gv = rest[1:]
            group, version = ("", gv[1]) if gv[0] == "api" and len(gv) == 2 else (
                (gv[1], gv[2]) if gv[0] == "apis" and len(gv) == 3 else ("", ""))
            body = docs.v3(group, version) if version else None
            if body is not None:
                # a request carrying the document's hash may be cached for good, as the real
                # server allows
                cache = ("public, immutable" if "hash=" in self.path else "no-cache, private")
                self._send(200, body, {"Cache-Control": cache})
                return
        raise ApiError(404, _NOT_FOUND)

    def _target(self, req: _Request) -> tuple[_Target, str]:
        parts = req.parts
        if parts[0] == "api":
            group, version, rest = "", "v1", parts[2:]
        else:
            group, version, rest = parts[1], parts[2], parts[3:]
        namespace: str | None = None
        if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] not in ("status", "finalize"):
            namespace, rest = rest[1], rest[2:]
        rt = self.api.registry.get(group, version, rest[0])
        if rt is None or (namespace is not None and not rt.namespaced) or len(rest) > 3:
            raise ApiError(404, _NOT_FOUND)
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if sub is not None and not ((sub == "status" and rt.has_status)
                                    or sub in rt.subresources):
            raise ApiError(404, _NOT_FOUND)
        target = _Target(rt, namespace, name, sub)
        return target, self._verb(req, target)

    @staticmethod
    def _verb(req: _Request, t: _Target) -> str:
        if req.method == "GET":
            if t.name is not None:
                return "get"
            return "watch" if req.q.get("watch") in _TRUE else "list"
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(
            req.method, "")
        if verb == "delete" and t.name is None:
            verb = "deletecollection"
        if t.sub is not None:
            return verb
        if verb not in t.rt.verbs or (t.name is None) != (verb in ("create",
                                                                    "deletecollection")):
            raise ApiError(405, f"{req.method} is not supported on {t.rt.plural}",
                           reason="MethodNotAllowed")
        return verb

    # -- reviews and token requests ---------------------------------------------------------

    def _answer_review(self, req: _Request, t: _Target) -> None:
        if req.method != "POST":
            raise ApiError(405, f"{req.method} is not supported on {t.rt.plural}",
                           reason="MethodNotAllowed")
        body = negotiate.body(req.raw, self.headers.get("Content-Type"))
        reviews = self.api.reviews
        if t.sub == "token":
            assert t.name is not None
            answer = reviews.token_request(t.ns, t.name, body)
        else:
            answer = reviews.answer(t.rt.kind, body, req.user, t.namespace)
        self._send(201, dumps(answer))

    # -- reads ------------------------------------------------------------------------------

    def _read(self, req: _Request, t: _Target) -> None:
        if t.name is None:
            if req.q.get("watch") in _TRUE:
                self._watch(req, t)
            else:
                self._list(req, t)
            return
        s = self.api.store.get(t.rt, t.ns, t.name)
        if s is None:
            raise not_found(t.rt.plural, t.name, t.rt.group)
        if req.wanted.as_:
            self._send(200, dumps(self._render([s.obj], req, str(s.obj["metadata"].get(
                "resourceVersion", "")), single=True)))
            return
        self._send(200, s.full)

    def _render(self, objs: list[Obj], req: _Request, rv: str, *, single: bool = False,
                headers: bool = True, cont: str = "", remaining: int | None = None) -> Obj:
        """Objects as the Table or PartialObjectMetadata(List) the client asked for."""
        full = [dict(o, kind=o.get("kind"), apiVersion=o.get("apiVersion")) for o in objs]
        if req.wanted.as_ == "Table":
            rt = self._rt_of(objs[0]) if objs else None
            printer = self.api.printer(rt) if rt is not None else tables.printer_for("", "")
            return tables.table(printer, full, rv, headers=headers,
                                include_object=req.q.get("includeObject", "Metadata"),
                                continue_token=cont, remaining=remaining)
        if single:
            return negotiate.partial(full[0], req.wanted.version)
        meta: Obj = {"resourceVersion": rv}
        if cont:
            meta["continue"] = cont
        return {"kind": "PartialObjectMetadataList",
                "apiVersion": f"meta.k8s.io/{req.wanted.version}", "metadata": meta,
                "items": [negotiate.partial(o, req.wanted.version) for o in full]}

    def _rt_of(self, obj: Obj) -> ResourceType | None:
        return self.api.registry.by_kind(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))

    # -- writes -----------------------------------------------------------------------------

    def _field_manager(self, req: _Request) -> str | None:
        fm = req.q.get("fieldManager") or None
        ctype = self.headers.get("Content-Type", "")
        if (fm is None and req.method in ("POST", "PUT")) or (
                req.method == "PATCH" and "apply-patch" not in ctype):
            # non-apply writes are owned by a manager named after the client, as in a real
            # server (e.g. "OpenAPI-Generator" for the Python client)
            fm = fm or (self.headers.get("User-Agent") or "unknown").split("/")[0] or "unknown"
        return fm

    def _write(self, req: _Request, t: _Target) -> None:
        ops = self.api.ops
        delete_opts: Obj = {}
        if req.method == "DELETE" and req.raw.strip():
            delete_opts = negotiate.body(req.raw, self.headers.get("Content-Type"))
        dry = _dry_run(req.q.get("dryRun"), delete_opts.get("dryRun"))
        with ops.dry_run(dry), ops.field_validation(req.q.get("fieldValidation") or "Warn") as w:
            self._warnings = w
            if req.method == "DELETE":
                self._delete(req, t, delete_opts)
            else:
                self._modify(req, t)

    def _modify(self, req: _Request, t: _Target) -> None:
        ops, fm = self.api.ops, self._field_manager(req)
        ctype = self.headers.get("Content-Type", "")
        if req.method == "POST":
            stored = ops.create(t.rt, t.namespace, negotiate.body(req.raw, ctype), fm)
            self._send(201, stored.full)
        elif req.method == "PUT":
            assert t.name is not None
            stored = ops.replace(t.rt, t.namespace, t.name, negotiate.body(req.raw, ctype),
                                 t.sub, fm)
            self._send(200, stored.full)
        else:
            assert t.name is not None
            force = req.q.get("force") in _TRUE
            stored, created = ops.patch(t.rt, t.namespace, t.name, ctype, req.raw, t.sub, fm,
                                        force)
            self._send(201 if created else 200, stored.full)

    def _delete(self, req: _Request, t: _Target, opts: Obj) -> None:
        ops, store = self.api.ops, self.api.store
        if t.name is None:
            pred = _predicates(t.rt, t.namespace, req.q)
            with store.cond:
                doomed = [s for s in store.sorted_items(t.rt) if pred is None or pred(s.obj)]
                for s in doomed:
                    ops.delete(t.rt, s.namespace or None, s.name)
            self._send(200, dumps({"kind": "Status", "apiVersion": "v1", "metadata": {},
                                   "status": "Success"}))
            return
        if t.sub is not None:
            raise ApiError(405, f"DELETE is not supported on {t.rt.plural}/{t.sub}",
                           reason="MethodNotAllowed")
        pre = opts.get("preconditions") or {}
        gone = ops.delete(t.rt, t.namespace, t.name, pre.get("resourceVersion"), pre.get("uid"))
        details: dict[str, Any] = {"name": t.name, "kind": t.rt.plural,
                                   "uid": gone.obj["metadata"].get("uid")}
        if t.rt.group:
            details["group"] = t.rt.group
        if t.rt.kind == "Namespace":  # answered as still terminating, like a real server
            obj = json.loads(gone.full)
            obj["metadata"]["deletionTimestamp"] = objects.now_rfc3339()
            obj["status"] = {"phase": "Terminating"}
            self._send(200, dumps(obj))
        else:
            self._send(200, dumps({"kind": "Status", "apiVersion": "v1", "metadata": {},
                                   "status": "Success", "details": details}))

    # -- lists ----------------------------------------------------------------------------

    def _list(self, req: _Request, t: _Target) -> None:
        store, rt, q = self.api.store, t.rt, req.q
        pred = _predicates(rt, t.namespace, q)
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
        out: list[Stored] = []
        i = offset
        n = len(items)
        while i < n and (limit <= 0 or len(out) < limit):
            s = items[i]
            i += 1
            if pred is None or pred(s.obj):
                out.append(s)
        meta: dict[str, Any] = {"resourceVersion": str(snap.rv)}
        if limit > 0 and i < n:
            if not sid:
                sid = store.save_snapshot(snap)
            meta["continue"] = encode_continue(snap.rv, sid, i)
            if pred is None:
                meta["remainingItemCount"] = n - i
        if req.wanted.as_:
            self._send(200, dumps(self._render(
                [s.obj for s in out], req, str(snap.rv), cont=meta.get("continue", ""),
                remaining=meta.get("remainingItemCount"))))
            return
        head = dumps({"kind": rt.list_kind, "apiVersion": rt.api_version, "metadata": meta})
        body = head[:-1] + b',"items":[' + b",".join(s.body for s in out) + b"]}"
        self._send(200, body)

    # -- watches --------------------------------------------------------------------------

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _watch(self, req: _Request, t: _Target) -> None:
        api, store, rt, q = self.api, self.api.store, t.rt, req.q
        pred = _predicates(rt, t.namespace, q)
        opts = _watch_options(q, api.watch_list)
        initial: list[Stored] = []
        expired: str | None = None
        with store.cond:
            generation = store.generation
            if opts.start_rv is None or opts.initial_events:
                initial = [s for s in store.sorted_items(rt) if pred is None or pred(s.obj)]
                pos = store.rv
            else:
                pos = opts.start_rv
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
            stream = _EventWriter(self, req)
            # Written as they are encoded, in chunks of ~64 KB, as kube-apiserver streams
            # them: a client parses while the server is still sending.
            pending: list[bytes] = []
            size = 0
            for s in initial:
                pending.append(stream.line("ADDED", s.obj, s))
                size += len(pending[-1])
                if size >= _STREAM_CHUNK:
                    self._chunk(b"".join(pending))
                    pending, size = [], 0
            if pending:
                self._chunk(b"".join(pending))
            if opts.initial_events:
                # the end of a watch-list's initial state (helm 4's --wait waits for it)
                self._chunk(_bookmark(rt, pos, initial_events_end=True))
            self._stream(rt, pred, pos, generation, opts, stream)
        finally:
            with api.conn_lock:
                api.watch_count -= 1

    def _stream(self, rt: ResourceType, pred: Predicate | None, pos: int, generation: int,
                opts: _WatchOptions, stream: _EventWriter) -> None:
        api = self.api
        store = api.store
        deadline = time.monotonic() + opts.timeout if opts.timeout is not None else None
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
                    if opts.bookmarks and now - last_sent >= interval:
                        bookmark_rv = pos = max(pos, store.rv)
                        break
                    wait = interval - (now - last_sent) if opts.bookmarks else 5.0
                    if deadline is not None:
                        wait = min(wait, deadline - now)
                    store.cond.wait(max(0.001, wait))
            if expired is not None:
                self._chunk(_expired_event(expired))
                break
            out = [line for e in events if e.key == rt.key
                   for line in [stream.filtered(e, pred)] if line]
            if bookmark_rv is not None:
                out.append(_bookmark(rt, bookmark_rv))
            if out:
                self._chunk(b"".join(out))
                last_sent = time.monotonic()
            elif not events:
                break  # deadline reached
        self.wfile.write(b"0\r\n\r\n")


@dataclass
class _WatchOptions:
    start_rv: int | None
    timeout: float | None
    bookmarks: bool
    initial_events: bool


_STREAM_CHUNK = 64 << 10
WATCH_LIST_MODES = ("on", "off", "ignored")


def _watch_options(q: dict[str, str], watch_list: str = "on") -> _WatchOptions:
    """``watch_list``: "on" serves watch-lists as kube-apiserver 1.35 does; "off" refuses them
    as 1.27-1.31 do with the WatchList feature gate off (older servers refuse
    ``resourceVersionMatch`` on a watch with the same 422); "ignored" takes them for a plain
    watch, as a server or proxy that drops the unknown parameters would: every object as
    ADDED, and no initial-events-end bookmark."""
    bookmarks = q.get("allowWatchBookmarks") in _TRUE
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
    initial = q.get("sendInitialEvents") in _TRUE
    if watch_list == "ignored":
        return _WatchOptions(start_rv, timeout, bookmarks, False)
    if watch_list == "off" and "sendInitialEvents" in q:
        raise ApiError(422, 'ListOptions.meta.k8s.io "" is invalid: sendInitialEvents: '
                       "Forbidden: sendInitialEvents is forbidden for watch unless the "
                       "WatchList feature gate is enabled", reason="Invalid")
    if initial and (q.get("resourceVersionMatch") != "NotOlderThan" or not bookmarks):
        raise ApiError(422, "sendInitialEvents=true requires resourceVersionMatch=NotOlderThan "
                       "and allowWatchBookmarks=true", reason="Invalid")
    return _WatchOptions(start_rv, timeout, bookmarks, initial)


class _EventWriter:
    """Watch event lines, as objects or as the Table / metadata the client asked for."""

    def __init__(self, handler: _Handler, req: _Request) -> None:
        self.handler, self.req = handler, req
        self.first = True

    def line(self, etype: str, obj: Obj, s: Stored | None = None) -> bytes:
        if not self.req.wanted.as_:
            assert s is not None
            return _event_line(etype, s)
        rendered = self.handler._render([obj], self.req, str(obj["metadata"].get(
            "resourceVersion", "")), single=True, headers=self.first)
        # column definitions come with the first event only, as kube-apiserver sends them
        self.first = False
        return dumps({"type": etype, "object": rendered}) + b"\n"

    def filtered(self, e: Event, pred: Predicate | None) -> bytes | None:
        etype = _event_type(e, pred)
        return None if etype is None else self.line(etype, e.new.obj, e.new)


def _selected_name(selector: str) -> str:
    """The name a field selector requires exactly (``metadata.name=x`` or ``==x``, alone or
    with other terms), as kube-apiserver's ``RequiresExactMatch("metadata.name")``; "" if
    none, or if the name is not a valid path segment."""
    for term in selector.split(","):
        m = re.match(r"^\s*metadata\.name\s*==?\s*(.*?)\s*$", term)
        if m and m[1] not in ("", ".", "..") and not set(m[1]) & {"/", "%"}:
            return m[1]
    return ""


def _dry_run(query: str | None, body: Any) -> bool:
    values = [query] if query else []
    if isinstance(body, list):
        values.extend(str(v) for v in body)
    for v in values:
        if v != "All":
            raise ApiError(400, f"unsupported dryRun value {v!r}: only All")
    return bool(values)


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _predicates(rt: ResourceType, namespace: str | None, q: dict[str, str]) -> Predicate | None:
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


def _bookmark(rt: ResourceType, rv: int, initial_events_end: bool = False) -> bytes:
    meta: Obj = {"resourceVersion": str(rv)}
    if initial_events_end:
        meta["annotations"] = {"k8s.io/initial-events-end": "true"}
    return dumps({"type": "BOOKMARK", "object": {
        "kind": rt.kind, "apiVersion": rt.api_version, "metadata": meta}}) + b"\n"


def _event_line(etype: str, s: Stored) -> bytes:
    return b'{"type":"' + etype.encode() + b'","object":' + s.full + b"}\n"


def _event_type(e: Event, pred: Predicate | None) -> str | None:
    """The event a watcher with ``pred`` sees for ``e`` (None: none), as a selector's
    transitions make objects appear and disappear."""
    if pred is None:
        return e.type
    now_match = pred(e.new.obj)
    was_match = e.prev is not None and pred(e.prev.obj)
    if e.type == "DELETED":
        return "DELETED" if now_match else None
    if now_match:
        return "MODIFIED" if was_match else "ADDED"
    return "DELETED" if was_match else None


def _expired_event(message: str) -> bytes:
    return dumps({"type": "ERROR", "object": status(410, message, "Expired")}) + b"\n"


class ApiServer:
    """An in-process Kubernetes API server emulator (see the package docstring)."""

    def __init__(self, workdir: Path, token: str | None = "secret", tls: bool = True,
                 bookmark_interval: float = 1.0, history: int = 1000,
                 host: str = "127.0.0.1", port: int = 0, watch_list: str = "on") -> None:
        if watch_list not in WATCH_LIST_MODES:
            raise ValueError(f"watch_list must be one of {WATCH_LIST_MODES}")
        self.watch_list = watch_list
        """Whether watch-lists (``sendInitialEvents``) are served: see ``_watch_options``."""
        self.workdir = Path(workdir)
        self.token = token
        self.tls = tls
        self.bookmark_interval = bookmark_interval
        self.host, self.port = host, port
        self.registry = builtin_registry()
        self.store = Store(self.registry, history=history)
        self.ops = Operations(self.store, OpenAPI())
        self.tokens = Tokens(self._lookup)
        """ServiceAccount tokens: ``tokens.legacy(namespace, account, secret)`` is what the
        token controller writes into a Secret; the emulator authenticates them."""
        self.authorizer = Authorizer(self._lookup, self._list_all)
        self.reviews = Reviews(self.authorizer, self.tokens, self._lookup, self.ops.denied)
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
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02},
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
        found = [rt for rt in self.registry.all() if (rt.kind == kind or rt.plural == kind)
                 and (api_version is None or rt.api_version == api_version)]
        if not found:
            raise KeyError(f"unknown kind {kind!r}")
        # the core group first (Event is v1 and events.k8s.io/v1), then the preferred version
        return min(found, key=lambda rt: (rt.group != "", version_priority(rt.version)))

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

    def list(self, kind: str, namespace: str | None = None,
             api_version: str | None = None) -> list[Obj]:
        """All stored objects of a kind (optionally in one namespace; ``api_version`` picks
        one of several versions, else the core group's or the preferred one)."""
        rt = self._rt(kind, api_version)
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

    # -- for stand-in controllers: optimistic writes and a feed of changes ------------------

    def update(self, obj: Obj) -> Obj:
        """Replace an existing object (status included) only if it still has the
        ``metadata.resourceVersion`` that ``obj`` carries; raises :class:`Conflict` (a 409
        ApiError) when someone wrote it since, or a 404 ApiError when it is gone. A controller
        re-reads and retries on Conflict, as one does against kube-apiserver."""
        rv = str((obj.get("metadata") or {}).get("resourceVersion") or "")
        if not rv:
            raise ValueError("update() needs metadata.resourceVersion (read the object first)")
        return self.ops.put(obj, expect_rv=rv, create=False).obj

    def create(self, obj: Obj) -> Obj:
        """Create an object; raises a 409 ApiError (AlreadyExists) when it exists."""
        rt = self._rt(str(obj.get("kind", "")), str(obj.get("apiVersion", "")) or None)
        return self.ops.create(rt, (obj.get("metadata") or {}).get("namespace"), obj).obj

    def changes(self) -> Changes:
        """A feed of every write from now on (see :class:`Changes`)."""
        return Changes(self.store)

    # -- authentication and the lookups auth needs ---------------------------------------

    def authenticate(self, authorization: str) -> User | None:
        """The user an ``Authorization`` header value stands for (None: 401)."""
        if self.token is None:
            return ADMIN
        if not authorization.startswith("Bearer "):
            return None
        token = authorization[len("Bearer "):].strip()
        if token == self.token:
            return ADMIN
        return self.tokens.authenticate(token)

    def _by_resource(self, resource: str) -> ResourceType | None:
        plural, _, group = resource.partition(".")
        found = [rt for rt in self.registry.by_plural(plural) if rt.group == group]
        return found[0] if found else None

    def _lookup(self, resource: str, namespace: str, name: str) -> Obj | None:
        rt = self._by_resource(resource)
        s = None if rt is None else self.store.get(rt, namespace if rt.namespaced else "", name)
        return None if s is None else s.obj

    def _list_all(self, resource: str) -> builtins.list[Obj]:
        rt = self._by_resource(resource)
        if rt is None:
            return []
        with self.store.cond:
            return [s.obj for s in self.store.sorted_items(rt)]

    def printer(self, rt: ResourceType) -> tables.Printer:
        """How ``kubectl get`` shows objects of ``rt`` (a CRD's printer columns for CRs)."""
        crd = None if rt.builtin else self.ops.openapi.crd_for(rt.group, rt.kind)
        return tables.printer_for(rt.group, rt.plural, crd, rt.version)

    def iter_requests(self, method: str | None = None, contains: str = "") -> Iterator[
            tuple[str, str, int]]:
        """Logged requests filtered by method and path substring."""
        for r in list(self.requests):
            if (method is None or r[0] == method) and contains in r[1]:
                yield r


@dataclass(frozen=True)
class Change:
    """One write seen by :class:`Changes`: ``type`` is ADDED, MODIFIED, DELETED, or RESYNC
    (writes were missed: list everything again); ``obj`` is a copy the caller may change."""

    type: str
    kind: str
    obj: Obj


class Changes:
    """Every write to the emulator since this feed was made, in order (a controller's
    informer). Thread-safe; one reader per feed."""

    def __init__(self, store: Store) -> None:
        self._store = store
        with store.cond:
            self._pos = store.rv

    def wait(self, timeout: float) -> list[Change]:
        """The changes since the last call, waiting up to ``timeout`` s for one."""
        store = self._store
        deadline = time.monotonic() + timeout
        with store.cond:
            while True:
                try:
                    events = store.events_after(self._pos)
                except Expired:
                    self._pos = store.rv
                    return [Change("RESYNC", "", {})]
                if events:
                    self._pos = events[-1].rv
                    return [Change(e.type, e.new.rt.kind, json.loads(e.new.full))
                            for e in events]
                left = deadline - time.monotonic()
                if left <= 0:
                    return []
                store.cond.wait(left)
