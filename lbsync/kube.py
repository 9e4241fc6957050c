"""Talking to Kubernetes: client configuration, paginated lists and watches of raw JSON.

The only module that touches the API. Objects are read as raw JSON (`_preload_content=False`),
not generated models, and reduced to `lbsync.model` dataclasses page by page: at 5,000 nodes
the models cost seconds and hundreds of MB. Only the call signatures shared by the `kubernetes`
client 22.6 (Debian 12) and 37.x are used.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import kubernetes
import tenacity
import urllib3
from kubernetes.client.rest import ApiException
from kubernetes.config.config_exception import ConfigException

from lbsync.config import KubernetesConfig
from lbsync.errors import ConfigError, SyncError
from lbsync.model import Node, Service, node_from_json, service_from_json

PAGE_SIZE = 500
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0

T = TypeVar("T")


class ApiError(SyncError):
    """A failed API call. `status` is the HTTP status, or None when no answer came back."""

    def __init__(self, message: str, status: int | None, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        """Connection failures, 429 and 5xx may pass; 4xx will not without a change."""
        return self.status is None or self.status == 429 or self.status >= 500

    @property
    def code(self) -> str:
        """A short label for metrics: the HTTP status, or "connection"."""
        return "connection" if self.status is None else str(self.status)


class Expired(ApiError):
    """410: the resourceVersion or continue token is too old; list again."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 410)


@dataclass(frozen=True)
class Listed(Generic[T]):
    items: dict[str, T]
    resource_version: str


@dataclass(frozen=True)
class Event(Generic[T]):
    """One watch event. `key`/`obj` are unset for BOOKMARK; `obj` is None for DELETED."""

    type: str  # ADDED, MODIFIED, DELETED, BOOKMARK
    resource_version: str
    key: str = ""
    obj: T | None = None


def new_api_client(cfg: KubernetesConfig) -> Any:
    """An ApiClient from the configured kubeconfig, else in-cluster, else the usual defaults."""
    configuration = kubernetes.client.Configuration()
    try:
        if cfg.kubeconfig is not None:
            kubernetes.config.load_kube_config(
                config_file=str(cfg.kubeconfig), context=cfg.context,
                client_configuration=configuration, persist_config=False,
            )
        elif os.environ.get("KUBERNETES_SERVICE_HOST") and cfg.context is None:
            kubernetes.config.load_incluster_config(client_configuration=configuration)
        else:
            kubernetes.config.load_kube_config(
                context=cfg.context, client_configuration=configuration, persist_config=False
            )
    except (ConfigException, OSError, ValueError, TypeError) as exc:
        where = cfg.kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"kubernetes.kubeconfig: cannot load {where}: {message}") from None
    # Retrying is the caller's job (tenacity, with backoff); urllib3's own retries would
    # only hide an outage for a few more seconds.
    configuration.retries = 0
    return kubernetes.client.ApiClient(configuration)


@dataclass(frozen=True)
class _Source(Generic[T]):
    """What to call for one kind of object, and how to reduce and key what comes back."""

    call: Callable[..., Any]
    params: dict[str, Any]
    reduce: Callable[[dict[str, Any]], T]
    key: Callable[[T], str]
    what: str  # for messages: "nodes", "services in kong"


class Kube:
    """Lists and watches of Nodes and Services, returned as reduced dataclasses."""

    def __init__(self, api_client: Any) -> None:
        self.api_client = api_client
        self.core = kubernetes.client.CoreV1Api(api_client)
        self.server = str(api_client.configuration.host)

    @classmethod
    def from_config(cls, cfg: KubernetesConfig) -> Kube:
        return cls(new_api_client(cfg))

    def close(self) -> None:
        close = getattr(self.api_client, "close", None)
        if close is not None:
            close()

    # --- the two kinds of source lbsync reads ------------------------------------------

    def _nodes(self, label_selector: str) -> _Source[Node]:
        return _Source(self.core.list_node, {"label_selector": label_selector or None},
                       node_from_json, lambda n: n.name, "nodes")

    def _service(self, namespace: str, name: str) -> _Source[Service]:
        # One Service, read as a list: a list carries the resourceVersion a watch starts from.
        return _Source(self.core.list_namespaced_service,
                       {"namespace": namespace, "field_selector": f"metadata.name={name}"},
                       service_from_json, lambda s: s.ref, f"services in {namespace}")

    def list_nodes(self, label_selector: str = "") -> Listed[Node]:
        return self._list(self._nodes(label_selector))

    def list_service(self, namespace: str, name: str) -> Listed[Service]:
        return self._list(self._service(namespace, name))

    def watch_nodes(
        self, resource_version: str, timeout: int, label_selector: str = ""
    ) -> Iterator[Event[Node]]:
        return self._watch(self._nodes(label_selector), resource_version, timeout)

    def watch_service(
        self, namespace: str, name: str, resource_version: str, timeout: int
    ) -> Iterator[Event[Service]]:
        return self._watch(self._service(namespace, name), resource_version, timeout)

    # --- lists ---------------------------------------------------------------------------

    def _list(self, src: _Source[T]) -> Listed[T]:
        """Page through a list; an expired continue token starts the list again, once."""
        for attempt in range(2):
            try:
                return self._list_pages(src)
            except Expired:
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _list_pages(self, src: _Source[T]) -> Listed[T]:
        items: dict[str, T] = {}
        token: str | None = None
        while True:
            body = self._request(
                src.call, src.what, limit=PAGE_SIZE, _continue=token,
                _request_timeout=(CONNECT_TIMEOUT, READ_TIMEOUT), **src.params,
            )
            page = _json(body, src.what)
            del body
            reduced = [src.reduce(raw) for raw in page.get("items") or ()
                       if isinstance(raw, dict)]
            meta = page.get("metadata") or {}
            token = meta.get("continue") or None
            rv = str(meta.get("resourceVersion", ""))
            del page
            for obj in detached(reduced):
                items[src.key(obj)] = obj
            if token is None:
                return Listed(items, rv)

    def _request(self, call: Callable[..., Any], what: str, **kwargs: Any) -> bytes:
        response = None
        try:
            response = call(_preload_content=False, **kwargs)
            return bytes(response.data)
        except ApiException as exc:
            raise api_error(exc, what) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ApiError(f"cannot reach the API server {self.server} ({what}): "
                           f"{_reason(exc)}", None) from None
        finally:
            if response is not None:
                response.release_conn()

    # --- watches -------------------------------------------------------------------------

    def _watch(self, src: _Source[T], resource_version: str, timeout: int
               ) -> Iterator[Event[T]]:
        """Stream events until the server ends the watch. Raises Expired on 410.

        The client read timeout exceeds the server-side timeout, so a silent dead connection
        is noticed without cutting healthy watches short.
        """
        call, params, what = src.call, src.params, src.what
        try:
            response = call(
                watch=True, allow_watch_bookmarks=True, resource_version=resource_version,
                timeout_seconds=timeout, _preload_content=False,
                _request_timeout=(CONNECT_TIMEOUT, timeout + READ_TIMEOUT), **params,
            )
        except ApiException as exc:
            raise api_error(exc, f"watch {what}") from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ApiError(f"cannot reach the API server {self.server} (watch {what}): "
                           f"{_reason(exc)}", None) from None
        try:
            for line in _lines(response):
                yield _event(line, src.reduce, src.key, what)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ApiError(f"watch {what} broke: {_reason(exc)}", None) from None
        finally:
            response.release_conn()


def _event(
    line: bytes, reduce: Callable[[dict[str, Any]], T], key: Callable[[T], str], what: str
) -> Event[T]:
    raw = _json(line, f"watch {what}")
    kind, obj = raw.get("type"), raw.get("object")
    if not isinstance(obj, dict):
        raise ApiError(f"watch {what}: event without an object", 500)
    if kind == "ERROR":
        message = str(obj.get("message") or obj.get("reason") or "watch error")
        if obj.get("code") == 410:
            raise Expired(f"watch {what}: {message}")
        code = obj.get("code")
        raise ApiError(f"watch {what}: {message}", code if isinstance(code, int) else 500)
    rv = str((obj.get("metadata") or {}).get("resourceVersion", ""))
    if kind == "BOOKMARK":
        return Event("BOOKMARK", rv)
    if kind not in ("ADDED", "MODIFIED", "DELETED"):
        raise ApiError(f"watch {what}: unknown event type {kind!r}", 500)
    reduced = reduce(obj)
    return Event(str(kind), rv, key(reduced), None if kind == "DELETED" else reduced)


def _lines(response: Any) -> Iterator[bytes]:
    """Newline-delimited JSON from a streamed (chunked) response."""
    pending = b""
    for chunk in response.stream(None, decode_content=True):
        pending += chunk
        *complete, pending = pending.split(b"\n")
        yield from (line for line in complete if line.strip())
    if pending.strip():
        yield pending


def detached(objects: list[T]) -> list[T]:
    """Fresh copies of `objects`, made once the page they were parsed from is freed.

    The reduced objects keep a few strings of each parsed page. Left where the parser put
    them, they pin the page's memory: CPython returns an arena to the system only when all of
    it is free. Copied afterwards, they pack together (measured at 5,000 nodes: 15-17 MB less
    RSS). A pickle round trip is the simplest deep copy that really copies strings.
    """
    return list(pickle.loads(pickle.dumps(objects, protocol=pickle.HIGHEST_PROTOCOL)))


def _json(body: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except ValueError:
        raise ApiError(f"{what}: the API server sent invalid JSON", 500) from None
    if not isinstance(value, dict):
        raise ApiError(f"{what}: the API server sent unexpected JSON", 500)
    return value


def api_error(exc: ApiException, what: str) -> ApiError:
    """An ApiException as one line: status, reason and the server's message."""
    status = int(exc.status) if exc.status else None
    message = str(exc.reason or "")
    body = exc.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str) and body:
        with contextlib.suppress(ValueError, AttributeError):
            message = str(json.loads(body).get("message") or message)
    if status == 410:
        return Expired(f"{what}: {message}")
    retry_after = None
    headers = exc.headers or {}
    if status == 429 and headers.get("Retry-After", "").isdigit():
        retry_after = float(headers["Retry-After"])
    if status is None or status == 0:
        return ApiError(f"cannot reach the API server ({what}): {message}", None)
    return ApiError(f"API error {status} ({what}): {message}", status, retry_after)


def _reason(exc: BaseException) -> str:
    """The innermost useful text of a urllib3/socket error."""
    reason = getattr(exc, "reason", None) or exc
    text = str(reason)
    # urllib3 wraps: "HTTPSConnectionPool(...): Max retries exceeded ... (Caused by X)".
    if "Caused by" in text:
        text = text.split("Caused by", 1)[1].strip(" ()")
    if "Connection refused" in text:
        return "connection refused"
    return text.splitlines()[0] if text else type(exc).__name__


def is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, ApiError) and exc.retryable and not isinstance(exc, Expired)


def backoff(max_wait: float) -> Any:
    """Exponential from 0.5 s, capped, plus up to 0.5 s of jitter so clients spread out."""
    return tenacity.wait_exponential(multiplier=0.5, max=max_wait) + tenacity.wait_random(0, 0.5)


def retrying(*, attempts: int | None, max_wait: float = 30.0) -> tenacity.Retrying:
    """Exponential backoff with jitter for retryable API errors; others raise at once.

    `attempts=None` retries forever (the daemon); a number bounds `lbsync once`.
    """
    stop = tenacity.stop_never if attempts is None else tenacity.stop_after_attempt(attempts)
    return tenacity.Retrying(
        retry=tenacity.retry_if_exception(is_retryable),
        wait=backoff(max_wait),
        stop=stop,
        reraise=True,
    )
