"""The Kubernetes edge: a small typed facade over the official client, portable across versions.

Owns API paths for the kinds the bootstrap touches, server-side apply, get/list/delete,
SelfSubjectAccessReview, and turning API errors into one-line `KubeError`s. Everything goes
through `DynamicClient.request(..., serialize=False)` with JSON parsed here: that call has the
same contract in client 22.x and 37.x, while the generated model APIs and `ApiClient.call_api`
do not. Discovery is deliberately not used: the kinds are known, and a discovery cache would go
stale the moment the bootstrap installs CRDs.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from lbsync.bootstrap.manifests import FIELD_MANAGER, Obj

REQUEST_TIMEOUT = 15.0
RETRIES = 3
RETRY_BACKOFF = 0.3
RETRY_STATUSES = {429, 500, 502, 503, 504}
# Server-side apply's media type, with a parameter the API server drops (it cuts at ";") but the
# client's REST layer sees: for exactly "application/apply-patch+yaml" kubernetes 30.x (Debian
# 13) json.dumps() even a str body (the server gets a JSON string: "apply patch must be an
# object"), and 22.x refuses a dict; with the parameter, 22.x, 30.x and 37.x send a str as is.
APPLY_CONTENT_TYPE = "application/apply-patch+yaml; charset=utf-8"

# (apiVersion, kind) -> (plural, namespaced). The bootstrap's whole vocabulary.
RESOURCES: dict[tuple[str, str], tuple[str, bool]] = {
    ("v1", "Namespace"): ("namespaces", False),
    ("v1", "Node"): ("nodes", False),
    ("v1", "ServiceAccount"): ("serviceaccounts", True),
    ("v1", "Secret"): ("secrets", True),
    ("v1", "Service"): ("services", True),
    ("v1", "ConfigMap"): ("configmaps", True),
    ("apps/v1", "Deployment"): ("deployments", True),
    ("discovery.k8s.io/v1", "EndpointSlice"): ("endpointslices", True),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): ("clusterroles", False),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): ("clusterrolebindings", False),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"): ("customresourcedefinitions", False),
    ("gateway.networking.k8s.io/v1", "GatewayClass"): ("gatewayclasses", False),
    ("gateway.networking.k8s.io/v1", "Gateway"): ("gateways", True),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): ("httproutes", True),
    ("gateway.networking.k8s.io/v1beta1", "ReferenceGrant"): ("referencegrants", True),
}


class KubeError(Exception):
    """An API call failed; `str()` is one line naming the object and the server's reason."""

    def __init__(self, what: str, status: int | None, message: str) -> None:
        self.what, self.status, self.message = what, status, message
        code = f" (HTTP {status})" if status else ""
        super().__init__(f"{what}: {message}{code}")


def resource_path(api_version: str, kind: str, name: str | None = None,
                  namespace: str | None = None) -> str:
    try:
        plural, namespaced = RESOURCES[(api_version, kind)]
    except KeyError:
        raise KubeError(f"{kind}", None, f"unsupported kind {api_version}/{kind}") from None
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    if namespaced and namespace:
        base += f"/namespaces/{namespace}"
    path = f"{base}/{plural}"
    return f"{path}/{name}" if name else path


def obj_path(obj: Obj) -> str:
    meta = obj.get("metadata", {})
    return resource_path(obj["apiVersion"], obj["kind"], meta.get("name"), meta.get("namespace"))


class Cluster(Protocol):
    """What the rest of the bootstrap needs from a cluster; tests can substitute a fake."""

    def get(self, api_version: str, kind: str, name: str,
            namespace: str | None = None) -> Obj | None: ...

    def list(self, api_version: str, kind: str, namespace: str | None = None,
             label_selector: str | None = None) -> list[Obj]: ...

    def apply(self, obj: Obj, *, force: bool = False, dry_run: bool = False) -> Obj: ...

    def delete(self, api_version: str, kind: str, name: str,
               namespace: str | None = None) -> bool: ...

    def version(self) -> Obj: ...

    def can_i(self, verb: str, group: str, resource: str,
              namespace: str | None = None) -> bool: ...


@dataclass
class Endpoint:
    """Where the admin kubeconfig points: reused for the gateway host's kubeconfig."""

    server: str
    ca_pem: bytes | None
    insecure: bool


class ApiCluster:
    """`Cluster` over a real API server via the official client."""

    def __init__(self, kubeconfig: str | None = None, context: str | None = None) -> None:
        # Imported here so `render` and `--help` work (and stay fast) without touching it.
        from kubernetes import config as kconfig
        from kubernetes.dynamic import DynamicClient

        try:
            api_client = kconfig.new_client_from_config(config_file=kubeconfig, context=context)
        except Exception as exc:  # the loader raises bare Exceptions and ConfigExceptions
            where = kubeconfig or "default kubeconfig"
            raise KubeError(f"kubeconfig {where}", None, _first_line(str(exc))) from None
        self._api = api_client
        self._dyn = DynamicClient(api_client, discoverer=_NoDiscovery)
        self.sleep: Callable[[float], None] = time.sleep

    def endpoint(self) -> Endpoint:
        conf = self._api.configuration
        ca_pem = Path(conf.ssl_ca_cert).read_bytes() if conf.ssl_ca_cert else None
        return Endpoint(server=str(conf.host), ca_pem=ca_pem, insecure=not conf.verify_ssl)

    def request(self, what: str, method: str, path: str, body: Any = None,
                **params: Any) -> Any:
        """One API call; returns parsed JSON. Raises KubeError with the server's message."""
        from kubernetes.client.rest import ApiException
        from urllib3.exceptions import HTTPError

        params.setdefault("_request_timeout", REQUEST_TIMEOUT)
        # Every call the bootstrap makes is idempotent (GET, apply, DELETE, access reviews),
        # so transient answers (429, 5xx, a dropped connection) are simply tried again.
        for attempt in range(1, RETRIES + 1):
            try:
                resp = self._dyn.request(method, path, body=body, serialize=False, **params)
                break
            except ApiException as exc:
                err = KubeError(what, exc.status, _status_message(exc.body, exc.reason))
                delay = _retry_after(exc.headers)
                if exc.status not in RETRY_STATUSES:
                    raise err from None
            except (HTTPError, OSError) as exc:  # refused, TLS, timeouts: urllib3's many kinds
                err = KubeError(what, None, f"cannot reach the API server ({_reason(exc)})")
                delay = None
            if attempt == RETRIES:
                raise err from None
            self.sleep(delay if delay is not None else RETRY_BACKOFF * attempt)
        data = resp.data
        return json.loads(data) if data else {}

    def get(self, api_version: str, kind: str, name: str,
            namespace: str | None = None) -> Obj | None:
        try:
            got: Obj = self.request(_what(kind, name, namespace), "GET",
                                    resource_path(api_version, kind, name, namespace))
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise
        return got

    def list(self, api_version: str, kind: str, namespace: str | None = None,
             label_selector: str | None = None) -> list[Obj]:
        try:
            got = self.request(f"{kind} list", "GET", resource_path(api_version, kind, None,
                                                                   namespace),
                               label_selector=label_selector)
        except KubeError as exc:
            if exc.status == 404:  # the kind's CRD is not installed: nothing of it exists
                return []
            raise
        items: list[Obj] = got.get("items") or []
        for item in items:  # lists leave these out of items; callers expect whole objects
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
        return items

    def apply(self, obj: Obj, *, force: bool = False, dry_run: bool = False) -> Obj:
        meta = obj["metadata"]
        params: dict[str, Any] = {"field_manager": FIELD_MANAGER}
        if force:
            params["force_conflicts"] = "true"
        if dry_run:
            params["dry_run"] = "All"
        # A pre-serialised body: both client generations pass a str through untouched, while a
        # dict would be sent as JSON by one and rejected by the other for this content type.
        applied: Obj = self.request(
            _what(obj["kind"], meta["name"], meta.get("namespace")), "PATCH", obj_path(obj),
            body=json.dumps(obj), content_type=APPLY_CONTENT_TYPE, **params)
        return applied

    def delete(self, api_version: str, kind: str, name: str,
               namespace: str | None = None) -> bool:
        try:
            self.request(_what(kind, name, namespace), "DELETE",
                         resource_path(api_version, kind, name, namespace),
                         body={"propagationPolicy": "Background"})
        except KubeError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def version(self) -> Obj:
        got: Obj = self.request("API server /version", "GET", "/version")
        return got

    def can_i(self, verb: str, group: str, resource: str,
              namespace: str | None = None) -> bool:
        attrs = {"verb": verb, "group": group, "resource": resource}
        if namespace:
            attrs["namespace"] = namespace
        review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                  "spec": {"resourceAttributes": attrs}}
        got = self.request(f"SelfSubjectAccessReview {verb} {resource}", "POST",
                           "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", body=review)
        return bool((got.get("status") or {}).get("allowed"))


class _NoDiscovery:
    """A discoverer that discovers nothing: `ApiCluster` builds paths itself (see module doc)."""

    def __init__(self, client: Any, cache_file: Any) -> None:
        self.client = client


def _what(kind: str, name: str, namespace: str | None) -> str:
    return f"{kind}/{namespace}/{name}" if namespace else f"{kind}/{name}"


def _status_message(body: Any, reason: Any) -> str:
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    try:
        message = json.loads(body).get("message") if body else None
    except (ValueError, AttributeError):
        message = None
    return _first_line(str(message or reason or "request failed"))


def _retry_after(headers: Any) -> float | None:
    """The server's Retry-After (seconds), capped: a bootstrap should not stall for long."""
    try:
        value = headers.get("Retry-After") if headers else None
        return min(float(value), 5.0) if value else None
    except (TypeError, ValueError, AttributeError):
        return None


def _reason(exc: BaseException) -> str:
    """The innermost cause of a urllib3 error, without its wrappers' reprs."""
    for _ in range(5):
        inner = getattr(exc, "reason", None)
        nested = [a for a in getattr(exc, "args", ()) if isinstance(a, BaseException)]
        if isinstance(inner, BaseException):
            exc = inner
        elif nested:
            exc = nested[-1]
        else:
            break
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    text = re.sub(r"^<[^>]*>:\s*", "", text)  # "<urllib3...HTTPConnection object at 0x..>: "
    return _first_line(text or exc.__class__.__name__)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:300] if text.strip() else "unknown error"
