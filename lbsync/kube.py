"""The Kubernetes edge: the only module that talks to the API server, and the only one that
imports the `kubernetes` client. The daemon and the bootstrap both go through it.

It owns four things:
- configuration: the official client's loader reads the kubeconfig (or the in-cluster
  account), with its auth plugins and TLS settings: that is what the client is good at;
- transport: one urllib3 pool built from that configuration, raw bytes in and out. The
  generated API classes are not used: their import alone costs ~0.8 s on kubernetes 37, their
  call signatures differ between 22.6 (Debian 12) and 37, and models cost seconds and hundreds
  of MB at 5,000 nodes;
- errors: every failure is one `ApiError` line naming what was asked and the server's reason;
  every bound on what the server may send (body, line, pages, time) fails the same way;
- the retry policy (exponential backoff with jitter, Retry-After) that every caller shares.

Lists and watches of the kinds the daemon reads are reduced to `lbsync.model` values page by
page, as they arrive, so memory stays flat however big each object is.
"""

from __future__ import annotations

import json
import os
import pickle
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import quote, urlencode

import tenacity
import urllib3

from lbsync import __version__
from lbsync.config import KubernetesConfig
from lbsync.errors import ApiError, ConfigError, Expired
from lbsync.model import Event, Listed, Node, Service, node_from_json, service_from_json
from lbsync.text import first_line

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
LIST_DEADLINE = 120.0  # seconds for a whole paginated list
MAX_OBJECTS = 200_000  # four times the official 5,000-node/10,000-Service scale limits


class ProtocolError(ApiError):
    """The server sent something no API server sends (bad JSON, too much): may be transient
    (a proxy in the way), so it is retried with backoff like a 5xx."""

    def __init__(self, message: str) -> None:
        super().__init__(message, None)

    @property
    def code(self) -> str:
        return "invalid"


# --- configuration --------------------------------------------------------------------------


def load_configuration(cfg: KubernetesConfig, key: str = "kubernetes.kubeconfig") -> Any:
    """A `kubernetes.client.Configuration` from the kubeconfig, in-cluster, or defaults.

    Any failure of the loader is a configuration problem: one line naming the file, exit 2.
    """
    import kubernetes  # here, not at import: `--help` and pure commands stay fast

    configuration = kubernetes.client.Configuration()
    where = str(cfg.kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config")
    try:
        if cfg.kubeconfig is not None:
            kubernetes.config.load_kube_config(
                config_file=str(cfg.kubeconfig), context=cfg.context,
                client_configuration=configuration, persist_config=False)
        elif os.environ.get("KUBERNETES_SERVICE_HOST") and cfg.context is None:
            where = "the in-cluster service account"
            kubernetes.config.load_incluster_config(client_configuration=configuration)
        else:
            kubernetes.config.load_kube_config(
                context=cfg.context, client_configuration=configuration, persist_config=False)
    except Exception as exc:  # the loader raises ConfigException, YAML errors, bare Exception
        raise ConfigError(f"{key}: cannot load {where}: {_loader_reason(exc)}") from None
    return configuration


def _loader_reason(exc: BaseException) -> str:
    mark = getattr(exc, "problem_mark", None)  # a YAML error: say where
    if mark is not None:
        problem = getattr(exc, "problem", None) or "invalid YAML"
        return f"not valid YAML (line {mark.line + 1}: {problem})"
    return first_line(str(exc)) if str(exc).strip() else type(exc).__name__


def _pool(configuration: Any) -> urllib3.PoolManager:
    """A urllib3 pool with the configuration's TLS and proxy settings (both client lines)."""
    import ssl

    args: dict[str, Any] = {
        "num_pools": 2, "maxsize": 4, "retries": False,
        "cert_reqs": ssl.CERT_REQUIRED if configuration.verify_ssl else ssl.CERT_NONE,
        "ca_certs": configuration.ssl_ca_cert, "cert_file": configuration.cert_file,
        "key_file": configuration.key_file,
    }
    if getattr(configuration, "ca_cert_data", None):
        args["ca_cert_data"] = configuration.ca_cert_data
    if configuration.assert_hostname is not None:
        args["assert_hostname"] = configuration.assert_hostname
    if getattr(configuration, "tls_server_name", None):
        args["server_hostname"] = configuration.tls_server_name
    if getattr(configuration, "proxy", None):
        return urllib3.ProxyManager(proxy_url=configuration.proxy,
                                    proxy_headers=getattr(configuration, "proxy_headers", None),
                                    **args)
    return urllib3.PoolManager(**args)


# --- the client ------------------------------------------------------------------------------


class Client:
    """Raw API calls against one API server. Thread-safe (urllib3 pools are)."""

    def __init__(self, configuration: Any) -> None:
        self.configuration = configuration
        self.server = str(configuration.host).rstrip("/")
        self._pool = _pool(configuration)

    @classmethod
    def from_config(cls, cfg: KubernetesConfig, key: str = "kubernetes.kubeconfig") -> Client:
        return cls(load_configuration(cfg, key))

    def close(self) -> None:
        self._pool.clear()

    def _headers(self, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": f"lbsync/{__version__}"}
        if content_type:
            headers["Content-Type"] = content_type
        # auth_settings() runs the refresh hook of exec plugins and token files each time.
        for auth in self.configuration.auth_settings().values():
            if auth.get("in") == "header" and auth.get("value"):
                headers[auth["key"]] = auth["value"]
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
            if response.status >= 400:
                raise status_error(response.status, _read(response, MAX_ERROR_BODY, what,
                                                          truncate=True),
                                   response.headers, what)
            data = _read(response, max_bytes, what)
            complete = True
            return data
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ApiError(f"{what}: the connection broke: {reason(exc)}", None) from None
        finally:
            _done(response, complete)

    def json(self, method: str, path: str, *, what: str, **kwargs: Any) -> dict[str, Any]:
        return parse_json(self.call(method, path, what=what, **kwargs), what)

    def lines(self, path: str, query: Mapping[str, Any], timeout: float, what: str
              ) -> Iterator[bytes]:
        """A streamed GET (a watch): its newline-delimited lines, each at most MAX_LINE.

        The read timeout exceeds the server-side one, so a silent dead connection is noticed
        without cutting healthy watches short.
        """
        response = self._open("GET", path, query, None, None,
                              (CONNECT_TIMEOUT, timeout + READ_TIMEOUT), what)
        try:
            if response.status >= 400:
                raise status_error(response.status, _read(response, MAX_ERROR_BODY, what,
                                                          truncate=True),
                                   response.headers, what)
            yield from _split_lines(response.stream(64 << 10, decode_content=True), what)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ApiError(f"{what} broke: {reason(exc)}", None) from None
        finally:
            # A watch is abandoned mid-stream whenever its reader stops: never reuse that.
            _done(response, False)

    # --- the daemon's reads ----------------------------------------------------------------

    def list(self, source: Source[T], *, deadline: float | None = None,
             max_objects: int = MAX_OBJECTS) -> Listed[T]:
        """Page through a list; an expired continue token starts the list again, once."""
        seconds = LIST_DEADLINE if deadline is None else deadline
        for attempt in range(2):
            try:
                return self._list_pages(source, time.monotonic() + seconds, max_objects)
            except Expired:
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _list_pages(self, src: Source[T], deadline: float, max_objects: int) -> Listed[T]:
        items: dict[str, T] = {}
        token: str | None = None
        pages = 0
        while True:
            if time.monotonic() > deadline:
                raise ProtocolError(f"list {src.what}: not done after {pages} pages")
            page = self.json("GET", src.path, what=f"list {src.what}", query={
                **src.query, "limit": PAGE_SIZE, "continue": token})
            pages += 1
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


# --- sources: what the daemon reads ----------------------------------------------------------


@dataclass(frozen=True)
class Source(Generic[T]):
    """One kind of object to list and watch: where, and how to reduce and key it."""

    path: str
    query: dict[str, str]
    reduce: Callable[[dict[str, Any]], T]
    key: Callable[[T], str]
    what: str  # for messages: "nodes", "services in kong"


def nodes(label_selector: str = "") -> Source[Node]:
    query = {"labelSelector": label_selector} if label_selector else {}
    return Source("/api/v1/nodes", query, node_from_json, lambda n: n.name, "nodes")


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


def _split_lines(chunks: Iterator[bytes], what: str) -> Iterator[bytes]:
    """Newline-delimited lines from a chunked stream, refusing a line that never ends."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        yield from (line for line in complete if line.strip())
        if len(pending) > MAX_LINE:
            raise ProtocolError(f"{what}: an event longer than {MAX_LINE >> 20} MB")
    if pending.strip():
        yield pending


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


MAX_BACKOFF = 30.0


def is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, ApiError) and exc.retryable and not isinstance(exc, Expired)


def backoff(max_wait: float) -> Any:
    """Exponential from 0.5 s, capped, plus up to 0.5 s of jitter so clients spread out."""
    return tenacity.wait_exponential(multiplier=0.5, max=max_wait) + tenacity.wait_random(0, 0.5)


def wait_policy(max_wait: float = MAX_BACKOFF) -> Callable[[tenacity.RetryCallState], float]:
    """How long to wait before the next attempt after a failed call.

    Passing troubles (connection, 429, 5xx, garbage) back off exponentially with jitter and
    honour Retry-After; errors a retry cannot fix (401, 403, 404) wait the cap: someone has
    to fix RBAC or the config, and hammering the API will not help.
    """
    exponential = backoff(max_wait)

    def wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, ApiError) and not exc.retryable:
            return max_wait
        seconds = float(exponential(state))
        if isinstance(exc, ApiError) and exc.retry_after:
            seconds = max(seconds, min(exc.retry_after, max_wait))
        return seconds

    return wait


def retrying(*, attempts: int, max_wait: float = 2.0,
             sleep: Callable[[float], None] = time.sleep) -> tenacity.Retrying:
    """For one-shot commands (`once`, `render`, the bootstrap): a few quick tries of
    retryable errors, then the error. Others raise at once."""
    return tenacity.Retrying(
        retry=tenacity.retry_if_exception(is_retryable),
        wait=wait_policy(max_wait),
        stop=tenacity.stop_after_attempt(attempts),
        sleep=sleep,
        reraise=True,
    )


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
