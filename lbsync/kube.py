"""The Kubernetes edge: the only module that talks to the API server, and the only one that
imports the `kubernetes` client. The daemon and the bootstrap both go through it.

It owns four things:
- configuration: `lbsync.kubeconfig` reads the common one-file kubeconfigs (token, client
  certificate, CA, insecure) without importing the client; anything else (exec and
  auth-provider plugins, several files in $KUBECONFIG, the in-cluster account) goes to the
  official client's loader, which is what the client is good at. Importing the client costs
  0.25-0.4 s and 35-45 MB RSS, so it is imported only then;
- transport: one urllib3 pool built from that `Connection`, raw bytes in and out. The
  generated API classes are not used: their import alone costs ~0.8 s on kubernetes 37, their
  call signatures differ between 22.6 (Debian 12) and 37, and models cost seconds and hundreds
  of MB at 5,000 nodes;
- errors: every failure is one `ApiError` line naming what was asked and the server's reason;
  every bound on what the server may send (body, line, objects, time) fails the same way;
- the retry policy (exponential backoff with jitter, Retry-After) that every caller shares.

Lists of big kinds (Nodes) are streamed where the server can (a watch with
`sendInitialEvents=true`, ended by the bookmark annotated `k8s.io/initial-events-end`, what
client-go's WatchList does, KEP-3157): one event per line, each parsed and reduced to a
`lbsync.model` value as it arrives, so memory stays flat in the cluster's size and no page of
thousands of objects is ever parsed at once. A server without the feature answers with an
error, or streams without the bookmark; either way the list falls back, for the life of the
client, to pages (`limit`/`continue`).
"""

from __future__ import annotations

import gc
import json
import os
import pickle
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar
from urllib.parse import quote, urlencode

import urllib3

from lbsync import __version__, files, kubeconfig
from lbsync.config import KubernetesConfig
from lbsync.errors import ApiError, ConfigError, Expired
from lbsync.kubeconfig import Connection
from lbsync.model import Event, Listed, Node, Service, node_from_json, service_from_json
from lbsync.text import first_line

if TYPE_CHECKING:
    import ssl

T = TypeVar("T")

PAGE_SIZE = 500
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0
# What the server may send us. A real object is at most ~1.5 MB (etcd's request limit), a
# page of 500 realistic Nodes ~4 MB: these bounds are far above both, and far below what
# would hurt the gateway host.
MAX_BODY = 64 << 20
MAX_LINE = 16 << 20
MAX_ERROR_BODY = 64 << 10
LIST_DEADLINE = 120.0  # seconds for a whole list, paginated or streamed
MAX_OBJECTS = 200_000  # four times the official 5,000-node/10,000-Service scale limits
# A streamed list from a server that ignores `sendInitialEvents` (no watch-list support, but
# no error either) sends the objects and then nothing: no bookmark will come. A server that
# supports it sends the bookmark right after the objects; kube-apiserver waits at most ~3 s
# for its watch cache to catch up before it starts. Silence this long means: fall back.
STREAM_SILENCE = 10.0
INITIAL_EVENTS_END = "k8s.io/initial-events-end"
# Answers of a server that does not stream lists (kube-apiserver before 1.27, or with the
# WatchList feature gate off: 422 Invalid; proxies and older servers: 400/404/405/501), and
# 403 (RBAC allows list but not watch): a paginated list may still work.
_NO_STREAMING = frozenset({400, 403, 404, 405, 406, 415, 422, 501})


class ProtocolError(ApiError):
    """The server sent something no API server sends (bad JSON, too much): may be transient
    (a proxy in the way), so it is retried with backoff like a 5xx."""

    def __init__(self, message: str) -> None:
        super().__init__(message, None)

    @property
    def code(self) -> str:
        return "invalid"


class _NoStreaming(Exception):
    """The server cannot stream this list: page through it instead."""


# --- configuration --------------------------------------------------------------------------


def load_connection(cfg: KubernetesConfig, key: str = "kubernetes.kubeconfig") -> Connection:
    """Where the API server is and how to authenticate: the kubeconfig (read here when it is
    a common one, else by the official loader), the in-cluster account, or defaults.

    Any failure of the loader is a configuration problem: one line naming the file, exit 2.
    """
    in_cluster = cfg.kubeconfig is None and cfg.context is None and \
        bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
    if not in_cluster:
        path = str(cfg.kubeconfig) if cfg.kubeconfig is not None else kubeconfig.default_path()
        found = kubeconfig.read(path, cfg.context)
        if found is not None:
            return found
    return _official(cfg, key, in_cluster)


def _official(cfg: KubernetesConfig, key: str, in_cluster: bool) -> Connection:
    """The official client's loader, for every form `lbsync.kubeconfig` leaves to it."""
    import kubernetes  # here, not at import: 0.25-0.4 s and 35-45 MB

    configuration = kubernetes.client.Configuration()
    where = str(cfg.kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config")
    try:
        if cfg.kubeconfig is not None:
            kubernetes.config.load_kube_config(
                config_file=str(cfg.kubeconfig), context=cfg.context,
                client_configuration=configuration, persist_config=False)
        elif in_cluster:
            where = "the in-cluster service account"
            kubernetes.config.load_incluster_config(client_configuration=configuration)
        else:
            kubernetes.config.load_kube_config(
                context=cfg.context, client_configuration=configuration, persist_config=False)
    except Exception as exc:  # the loader raises ConfigException, YAML errors, bare Exception
        raise ConfigError(f"{key}: cannot load {where}: {_loader_reason(exc)}") from None
    return from_configuration(configuration)


def from_configuration(configuration: Any) -> Connection:
    """A `Connection` from a `kubernetes.client.Configuration` (both client lines)."""

    def headers() -> dict[str, str]:
        # auth_settings() runs the refresh hook of exec plugins and token files each time.
        return {auth["key"]: auth["value"]
                for auth in configuration.auth_settings().values()
                if auth.get("in") == "header" and auth.get("value")}

    return Connection(
        server=str(configuration.host).rstrip("/"),
        verify=bool(configuration.verify_ssl),
        ca_file=configuration.ssl_ca_cert or None,
        cert_file=configuration.cert_file or None,
        key_file=configuration.key_file or None,
        tls_server_name=getattr(configuration, "tls_server_name", None) or None,
        proxy=getattr(configuration, "proxy", None) or None,
        proxy_headers=getattr(configuration, "proxy_headers", None) or None,
        assert_hostname=configuration.assert_hostname,
        headers=headers,
        source="official",
    )


def _loader_reason(exc: BaseException) -> str:
    mark = getattr(exc, "problem_mark", None)  # a YAML error: say where
    if mark is not None:
        problem = getattr(exc, "problem", None) or "invalid YAML"
        return f"not valid YAML (line {mark.line + 1}: {problem})"
    return first_line(str(exc)) if str(exc).strip() else type(exc).__name__


def _tls_context(conn: Connection) -> ssl.SSLContext:
    """The TLS settings of a connection in one context, loaded once: CA (file or data),
    client certificate (file or data), verification. urllib3's own defaults otherwise."""
    import ssl

    from urllib3.util.ssl_ import create_urllib3_context

    ctx = create_urllib3_context(cert_reqs=ssl.CERT_REQUIRED if conn.verify else ssl.CERT_NONE)
    if conn.verify:
        if conn.ca_file or conn.ca_data:
            cadata: str | bytes | None = None
            if conn.ca_data is not None:
                try:
                    cadata = conn.ca_data.decode("ascii")  # PEM is text, DER is bytes
                except UnicodeDecodeError:
                    cadata = conn.ca_data
            ctx.load_verify_locations(cafile=conn.ca_file, cadata=cadata)
        else:
            ctx.load_default_certs()
    else:
        ctx.check_hostname = False
    if conn.cert_data is not None or conn.cert_file:
        # ssl loads a key pair only from files: embedded ones go through anonymous memory
        # files (memfd), never the disk, and are closed once loaded.
        with files.memory_file(conn.cert_data) as cert, files.memory_file(conn.key_data) as key:
            ctx.load_cert_chain(cert or str(conn.cert_file), key or conn.key_file)
    return ctx


def _pool(conn: Connection) -> urllib3.PoolManager:
    """A urllib3 pool with the connection's TLS and proxy settings."""
    args: dict[str, Any] = {"num_pools": 2, "maxsize": 4, "retries": False}
    if conn.server.startswith("https") or conn.proxy:
        import ssl

        try:
            args["ssl_context"] = _tls_context(conn)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f"kubernetes: cannot use the TLS settings for {conn.server}: "
                              f"{reason(exc)}") from None
        args["cert_reqs"] = "CERT_REQUIRED" if conn.verify else "CERT_NONE"
        # The context above holds every CA to trust. Debian's urllib3 1.26 would otherwise
        # load the whole system bundle into it again at each connection (19 ms each, and
        # every public CA trusted beside the kubeconfig's own).
        args["ca_certs"] = args["ca_cert_dir"] = None
        if conn.tls_server_name:
            args["server_hostname"] = conn.tls_server_name
        if not conn.verify:
            args["assert_hostname"] = False
        elif conn.assert_hostname is not None:
            args["assert_hostname"] = conn.assert_hostname
    if conn.proxy:
        return urllib3.ProxyManager(proxy_url=conn.proxy, proxy_headers=conn.proxy_headers,
                                    **args)
    return urllib3.PoolManager(**args)


# --- the client ------------------------------------------------------------------------------


# A 401 makes the client read its kubeconfig again (a renewed token copied in place), at
# most this often: a token the server keeps refusing must not mean a file read per request.
REREAD_AFTER_401 = 10.0


class Client:
    """Raw API calls against one API server. Thread-safe (urllib3 pools are; `use` swaps
    the connection and pool in one assignment each, read once per request)."""

    def __init__(self, connection: Connection,
                 reload: Callable[[], Connection] | None = None) -> None:
        self.connection = connection
        self.server = connection.server
        self._pool = _pool(connection)
        self._user_agent = f"lbsync/{__version__}"
        # Whether the server streams lists: unknown until the first try, then remembered.
        self.streaming: bool | None = None
        self._reload = reload
        self._reread_at = float("-inf")

    @classmethod
    def from_config(cls, cfg: KubernetesConfig, key: str = "kubernetes.kubeconfig") -> Client:
        return cls(load_connection(cfg, key), lambda: load_connection(cfg, key))

    def use(self, connection: Connection) -> None:
        """Talk with these credentials from the next request on (SIGHUP, a renewed token);
        requests in flight, watches included, finish on the old ones."""
        self._pool, self.connection = _pool(connection), connection
        self.server = connection.server

    def close(self) -> None:
        self._pool.clear()

    def _unauthorized(self) -> None:
        """The server refused the credentials: read the kubeconfig again, in case a renewed
        token was copied in (`lbsync bootstrap renew-token`), so no restart is needed."""
        now = time.monotonic()
        if self._reload is None or now - self._reread_at < REREAD_AFTER_401:
            return
        self._reread_at = now
        try:
            fresh = self._reload()
        except ConfigError:
            return  # a broken file mid-copy: the next 401 tries again
        self.use(fresh)  # the token lives in `headers`, which equality does not see

    def _headers(self, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": self._user_agent}
        if content_type:
            headers["Content-Type"] = content_type
        headers.update(self.connection.headers())
        return headers

    def _open(self, method: str, path: str, query: Mapping[str, Any] | None,
              body: bytes | None, content_type: str | None, timeout: tuple[float, float],
              what: str) -> Any:
        url = self.server + path
        params = {k: v for k, v in (query or {}).items() if v is not None}
        if params:
            url += "?" + urlencode(params)
        try:
            return self._pool.request(
                method, url, body=body, headers=self._headers(content_type),
                preload_content=False, redirect=False,
                timeout=urllib3.Timeout(connect=timeout[0], read=timeout[1]))
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ApiError(f"cannot reach the API server {self.server} ({what}): "
                           f"{reason(exc)}", None) from None

    def call(self, method: str, path: str, *, what: str,
             query: Mapping[str, Any] | None = None, body: bytes | None = None,
             content_type: str | None = None,
             timeout: tuple[float, float] = (CONNECT_TIMEOUT, READ_TIMEOUT),
             max_bytes: int = MAX_BODY) -> bytes:
        """One request; the response body, at most `max_bytes`. Raises ApiError."""
        response = self._open(method, path, query, body, content_type, timeout, what)
        complete = False
        try:
            self._check_status(response, what)
            data = _read(response, max_bytes, what)
            complete = True
            return data
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ApiError(f"{what}: the connection broke: {reason(exc)}", None) from None
        finally:
            _done(response, complete)

    def _check_status(self, response: Any, what: str) -> None:
        """Raise the API's error for a status of 400 or more (a 401 first re-reads the
        kubeconfig, at most every REREAD_AFTER_401 seconds)."""
        if response.status < 400:
            return
        if response.status == 401:
            self._unauthorized()
        raise status_error(response.status, _read(response, MAX_ERROR_BODY, what, truncate=True),
                           response.headers, what)

    def json(self, method: str, path: str, *, what: str, **kwargs: Any) -> dict[str, Any]:
        return parse_json(self.call(method, path, what=what, **kwargs), what)

    def lines(self, path: str, query: Mapping[str, Any], timeout: float, what: str,
              read_timeout: float | None = None) -> Iterator[bytes]:
        """A streamed GET (a watch): its newline-delimited lines, each at most MAX_LINE.

        The read timeout exceeds the server-side one, so a silent dead connection is noticed
        without cutting healthy watches short.
        """
        response = self._open("GET", path, query, None, None,
                              (CONNECT_TIMEOUT, read_timeout or timeout + READ_TIMEOUT), what)
        try:
            self._check_status(response, what)
            yield from split_lines(response.stream(256 << 10, decode_content=True), what)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            if isinstance(exc, urllib3.exceptions.ReadTimeoutError) and read_timeout:
                raise _Silent from None
            raise ApiError(f"{what} broke: {reason(exc)}", None) from None
        finally:
            # A watch is abandoned mid-stream whenever its reader stops: never reuse that.
            _done(response, False)

    # --- the daemon's reads ----------------------------------------------------------------

    def list(self, source: Source[T], *, deadline: float | None = None,
             max_objects: int = MAX_OBJECTS) -> Listed[T]:
        """Every object of a source and the resourceVersion to watch from: streamed where the
        server can, else paged. An expired continue token starts the list again, once. The
        deadline (LIST_DEADLINE unless given) is read at call time."""
        seconds = LIST_DEADLINE if deadline is None else deadline
        if source.stream and self.streaming is not False:
            try:
                listed = self._stream_list(source, time.monotonic() + seconds, max_objects)
            except _NoStreaming:
                self.streaming = False
            else:
                self.streaming = True
                return listed
        for attempt in range(2):
            try:
                return self._list_pages(source, time.monotonic() + seconds, max_objects)
            except Expired:
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _stream_list(self, src: Source[T], deadline: float, max_objects: int) -> Listed[T]:
        """A watch-list: the initial events, up to the bookmark that ends them."""
        what = f"list {src.what}"
        query = {**src.query, "watch": "1", "sendInitialEvents": "true",
                 "resourceVersionMatch": "NotOlderThan", "allowWatchBookmarks": "true",
                 "timeoutSeconds": int(LIST_DEADLINE)}
        items: dict[str, T] = {}
        try:
            for line in self.lines(src.path, query, LIST_DEADLINE, what, STREAM_SILENCE):
                raw = parse_json(line, what)
                if raw.get("type") == "BOOKMARK":
                    obj = raw.get("object")
                    meta = obj.get("metadata") if isinstance(obj, dict) else None
                    meta = meta if isinstance(meta, dict) else {}
                    notes = meta.get("annotations")
                    if isinstance(notes, dict) and notes.get(INITIAL_EVENTS_END) == "true":
                        return Listed(items, _str(meta.get("resourceVersion")))
                    raise _NoStreaming  # a plain bookmark first: the server ignored the ask
                ev = event(raw, src, what)
                if ev.type == "DELETED":
                    items.pop(ev.key, None)
                elif ev.obj is not None:
                    items[ev.key] = ev.obj
                if len(items) > max_objects:
                    raise ProtocolError(f"{what}: more than {max_objects} objects")
                if time.monotonic() > deadline:
                    raise ProtocolError(f"{what}: not done after {LIST_DEADLINE:g}s")
        except _Silent:
            raise _NoStreaming from None
        except ApiError as exc:
            if exc.status in _NO_STREAMING:
                raise _NoStreaming from None
            raise
        raise _NoStreaming  # the stream ended without the bookmark

    def _list_pages(self, src: Source[T], deadline: float, max_objects: int) -> Listed[T]:
        items: dict[str, T] = {}
        token: str | None = None
        pages = 0
        while True:
            if time.monotonic() > deadline:
                raise ProtocolError(f"list {src.what}: not done after {pages} pages")
            body = self.call("GET", src.path, what=f"list {src.what}", query={
                **src.query, "limit": PAGE_SIZE, "continue": token})
            pages += 1
            with _collector_paused():
                page = parse_json(body, f"list {src.what}")
                del body
                raw_items, meta = page.get("items"), page.get("metadata")
                if not isinstance(raw_items, list | type(None)) or not isinstance(meta, dict):
                    raise ProtocolError(f"list {src.what}: not a list response")
                reduced = [src.reduce(raw) for raw in raw_items or () if isinstance(raw, dict)]
                token = _str(meta.get("continue")) or None
                rv = _str(meta.get("resourceVersion"))
                del page, raw_items
            for obj in detached(reduced):
                items[src.key(obj)] = obj
            if len(items) > max_objects:
                raise ProtocolError(f"list {src.what}: more than {max_objects} objects")
            if token is None:
                return Listed(items, rv)

    def watch(self, src: Source[T], resource_version: str, timeout: int) -> Iterator[Event[T]]:
        """Stream events until the server ends the watch. Raises Expired on 410."""
        what = f"watch {src.what}"
        query = {**src.query, "watch": "1", "allowWatchBookmarks": "true",
                 "resourceVersion": resource_version, "timeoutSeconds": timeout}
        for line in self.lines(src.path, query, timeout, what):
            yield event(parse_json(line, what), src, what)


class _Silent(Exception):
    """A streamed list went quiet before its bookmark."""


class _collector_paused:
    """The cyclic garbage collector off while one list page is parsed and reduced.

    Parsing a page builds ~100,000 containers that all survive until the page is reduced;
    CPython runs a full collection over them again and again as they pile up. JSON has no
    cycles, so reference counting frees all of it anyway: measured at 5,000 Nodes, 10 pages
    parse in 230 ms instead of 570 ms. Re-enabled only by whoever disabled it, so two threads
    cannot leave it off.
    """

    def __enter__(self) -> None:
        self.was_enabled = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc: object) -> None:
        if self.was_enabled:
            gc.enable()


# --- sources: what the daemon reads ----------------------------------------------------------


@dataclass(frozen=True)
class Source(Generic[T]):
    """One kind of object to list and watch: where, and how to reduce and key it."""

    path: str
    query: dict[str, str]
    reduce: Callable[[dict[str, Any]], T]
    key: Callable[[T], str]
    what: str  # for messages: "nodes", "services in kong"
    stream: bool = False  # list by streaming (big kinds), else by pages


def nodes(label_selector: str = "") -> Source[Node]:
    query = {"labelSelector": label_selector} if label_selector else {}
    return Source("/api/v1/nodes", query, node_from_json, _node_key, "nodes", stream=True)


def _node_key(node: Node) -> str:
    return node.name


def service(namespace: str, name: str) -> Source[Service]:
    # One Service, read as a list: a list carries the resourceVersion a watch starts from.
    return Source(f"/api/v1/namespaces/{quote(namespace, safe='')}/services",
                  {"fieldSelector": f"metadata.name={name}"}, service_from_json,
                  lambda s: s.ref, f"services in {namespace}")


def event(raw: dict[str, Any], src: Source[T], what: str) -> Event[T]:
    """One watch event, type-checked: anything malformed is a ProtocolError, never a crash."""
    kind, obj = raw.get("type"), raw.get("object")
    if not isinstance(obj, dict):
        raise ProtocolError(f"{what}: event without an object")
    if kind == "ERROR":
        message = first_line(_str(obj.get("message") or obj.get("reason")) or "watch error")
        code = obj.get("code")
        if code == 410:
            raise Expired(f"{what}: {message}")
        raise ApiError(f"{what}: {message}", code if isinstance(code, int) else 500)
    meta = obj.get("metadata")
    rv = _str(meta.get("resourceVersion")) if isinstance(meta, dict) else ""
    if kind == "BOOKMARK":
        return Event("BOOKMARK", rv)
    if kind not in ("ADDED", "MODIFIED", "DELETED"):
        raise ProtocolError(f"{what}: unknown event type {str(kind)[:40]!r}")
    reduced = src.reduce(obj)
    return Event(str(kind), rv, src.key(reduced), None if kind == "DELETED" else reduced)


# --- bytes -----------------------------------------------------------------------------------


def _done(response: Any, complete: bool) -> None:
    """Give the connection back for reuse only when its response was read to the end."""
    if not complete:
        response.close()
    response.release_conn()


def _read(response: Any, limit: int, what: str, *, truncate: bool = False) -> bytes:
    chunks: list[bytes] = []
    size = 0
    for chunk in response.stream(256 << 10, decode_content=True):
        size += len(chunk)
        if size > limit:
            if truncate:
                chunks.append(chunk[:limit - size + len(chunk)])
                break
            raise ProtocolError(f"{what}: response larger than {limit >> 20} MB")
        chunks.append(chunk)
    return b"".join(chunks)


def split_lines(chunks: Iterator[bytes], what: str) -> Iterator[bytes]:
    """Newline-delimited lines from a chunked stream, refusing a line that never ends.

    A line split over many chunks is gathered in a list and joined once (not appended to a
    growing bytes object, which copies it again for every chunk).
    """
    parts: list[bytes] = []
    size = 0
    for chunk in chunks:
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            line = chunk[start:end]
            if parts:
                parts.append(line)
                line = b"".join(parts)
                parts, size = [], 0
            if line and not line.isspace():
                yield line
            start = end + 1
        if start < len(chunk):
            parts.append(chunk[start:] if start else chunk)
            size += len(chunk) - start
            if size > MAX_LINE:
                raise ProtocolError(f"{what}: an event longer than {MAX_LINE >> 20} MB")
    line = b"".join(parts)
    if line and not line.isspace():
        yield line


def parse_json(body: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        raise ProtocolError(f"{what}: the API server sent invalid JSON") from None
    if not isinstance(value, dict):
        raise ProtocolError(f"{what}: the API server sent unexpected JSON")
    return value


def detached(objects: list[T]) -> list[T]:
    """Fresh copies of `objects`, made once the page they were parsed from is freed.

    The reduced objects keep a few strings of each parsed page. Left where the parser put
    them, they pin the page's memory: CPython returns an arena to the system only when all of
    it is free. Copied afterwards, they pack together (measured at 5,000 nodes: 15-17 MB less
    RSS). A pickle round trip is the simplest deep copy that really copies strings.
    """
    return list(pickle.loads(pickle.dumps(objects, protocol=pickle.HIGHEST_PROTOCOL)))


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


# --- errors ----------------------------------------------------------------------------------


def status_error(status: int, body: bytes, headers: Mapping[str, str], what: str) -> ApiError:
    """An HTTP error answer as one line: status, and the server's own message."""
    message = ""
    try:
        doc = json.loads(body)
        if isinstance(doc, dict):
            message = _str(doc.get("message"))
    except (ValueError, RecursionError):
        pass
    message = first_line(message) or _reason_phrase(status)
    if status == 410:
        return Expired(f"{what}: {message}")
    retry_after = None
    value = headers.get("Retry-After", "") if headers else ""
    if value.isdigit():
        retry_after = float(value)
    return ApiError(f"{what}: {message} (HTTP {status})", status, retry_after)


def _reason_phrase(status: int) -> str:
    import http

    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "error"


def reason(exc: BaseException) -> str:
    """The innermost useful text of a urllib3/socket error, without wrappers' reprs."""
    for _ in range(6):
        inner = getattr(exc, "reason", None)
        nested = [a for a in getattr(exc, "args", ()) if isinstance(a, BaseException)]
        if isinstance(inner, BaseException):
            exc = inner
        elif nested:
            exc = nested[-1]
        else:
            break
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    if ">: " in text and text.startswith("<"):  # "<urllib3...Connection object at 0x..>: x"
        text = text.split(">: ", 1)[1]
    if "Connection refused" in text:
        return "connection refused"
    return first_line(text) or type(exc).__name__


# --- the retry policy, shared by every caller ------------------------------------------------
#
# Written out rather than taken from tenacity: tenacity costs 40-80 ms of import for `once`,
# and these dozen lines are the whole policy. The daemon's reflectors run `wait_after` under
# tenacity, with their own count of failures (lbsync/watch.py).


MAX_BACKOFF = 30.0


def is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, ApiError) and exc.retryable and not isinstance(exc, Expired)


def backoff(attempt: int, max_wait: float) -> float:
    """Exponential from 0.5 s, capped, plus up to 0.5 s of jitter so clients spread out
    (tenacity's wait_exponential(multiplier=0.5, max) + wait_random(0, 0.5))."""
    return min(max_wait, 0.5 * 2.0 ** min(max(attempt - 1, 0), 64)) + random.uniform(0, 0.5)


def wait_after(exc: BaseException | None, attempt: int, max_wait: float = MAX_BACKOFF) -> float:
    """How long to wait before the next attempt after a failed call.

    Passing troubles (connection, 429, 5xx, garbage) back off exponentially with jitter and
    honour Retry-After; errors a retry cannot fix (401, 403, 404) wait the cap: someone has
    to fix RBAC or the config, and hammering the API will not help.
    """
    if isinstance(exc, ApiError) and not exc.retryable:
        return max_wait
    seconds = backoff(attempt, max_wait)
    if isinstance(exc, ApiError) and exc.retry_after:
        seconds = max(seconds, min(exc.retry_after, max_wait))
    return seconds


class Retrying:
    """For one-shot commands (`once`, `render`, the bootstrap): a few quick tries of
    retryable errors, then the error. Others raise at once. `retrying(...)(fn, *args)`."""

    def __init__(self, attempts: int, max_wait: float,
                 sleep: Callable[[float], None]) -> None:
        self.attempts, self.max_wait, self.sleep = attempts, max_wait, sleep

    def __call__(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        for attempt in range(1, self.attempts + 1):
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                if attempt >= self.attempts or not is_retryable(exc):
                    raise
                self.sleep(wait_after(exc, attempt, self.max_wait))
        raise AssertionError("unreachable")


def retrying(*, attempts: int, max_wait: float = 2.0,
             sleep: Callable[[float], None] = time.sleep) -> Retrying:
    return Retrying(attempts, max_wait, sleep)


# --- writes of LoadBalancer mode: Service status, Events, the leader Lease -----------------
# Only in loadbalancer mode, only by the Lease holder; each is one request, retried by the
# next pass (level-triggered), never in a loop here.

FIELD_MANAGER = "lbsync"
LEASES = "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases"


def services_all() -> Source[Service]:
    """Every Service in the cluster (loadbalancer mode picks the LoadBalancer ones): field
    selectors on Services only know names and namespaces, so the type is filtered here."""
    return Source("/api/v1/services", {}, service_from_json, lambda s: s.ref, "services")


def _ns(namespace: str) -> str:
    return quote(namespace, safe="")


def patch_service_status(client: Client, namespace: str, name: str,
                         ingress: list[dict[str, str]]) -> None:
    """Server-side apply of status.loadBalancer.ingress with lbsync's own field manager; an
    empty list gives up lbsync's entries (apply removes what a manager stops sending)."""
    body: dict[str, Any] = {"apiVersion": "v1", "kind": "Service",
                            "metadata": {"name": name, "namespace": namespace},
                            "status": {"loadBalancer": {"ingress": ingress} if ingress else {}}}
    client.call("PATCH", f"/api/v1/namespaces/{_ns(namespace)}/services/"
                f"{quote(name, safe='')}/status", what=f"status of Service {namespace}/{name}",
                query={"fieldManager": FIELD_MANAGER, "force": "true"},
                body=json.dumps(body).encode(), content_type="application/apply-patch+yaml")


def create_event(client: Client, service: Service, reason: str, message: str,
                 kind: str = "Warning") -> None:
    """A core/v1 Event about a Service, as controllers report what they could not do."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    body = {"apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{service.name[:200]}.lbsync-",
                         "namespace": service.namespace},
            "involvedObject": {"apiVersion": "v1", "kind": "Service", "name": service.name,
                               "namespace": service.namespace, "uid": service.uid},
            "reason": reason, "message": message[:1024], "type": kind,
            "source": {"component": "lbsync"}, "firstTimestamp": now, "lastTimestamp": now,
            "count": 1}
    client.call("POST", f"/api/v1/namespaces/{_ns(service.namespace)}/events",
                what=f"event on Service {service.ref}", body=json.dumps(body).encode(),
                content_type="application/json")


def get_lease(client: Client, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return client.json("GET", LEASES.format(ns=_ns(namespace)) + "/" + quote(name, safe=""),
                           what=f"Lease {namespace}/{name}")
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise


def write_lease(client: Client, lease: dict[str, Any], *, create: bool) -> dict[str, Any]:
    """Create the Lease, or replace it (the body's resourceVersion makes this fail with 409
    when another gateway wrote it first: optimistic concurrency, as client-go does)."""
    meta = lease["metadata"]
    path = LEASES.format(ns=_ns(meta["namespace"]))
    if not create:
        path += "/" + quote(meta["name"], safe="")
    return client.json("POST" if create else "PUT", path,
                       what=f"Lease {meta['namespace']}/{meta['name']}",
                       body=json.dumps(lease).encode(), content_type="application/json")
