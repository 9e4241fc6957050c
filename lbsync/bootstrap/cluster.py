"""The bootstrap's view of a cluster: the kinds it touches, their API paths, and get, list,
server-side apply, delete and access reviews, over the one Kubernetes edge (`lbsync.kube`).

Owns the vocabulary (kind -> path) and the `Cluster` protocol the rest of the bootstrap is
written against. Transport, configuration, errors (`ApiError`) and the retry policy are
`lbsync.kube`'s. Discovery is deliberately not used: the kinds are known, and a discovery
cache would go stale the moment the bootstrap installs CRDs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from lbsync import kube
from lbsync.bootstrap.manifests import FIELD_MANAGER, Obj
from lbsync.config import KubernetesConfig
from lbsync.errors import ApiError, ConfigError

REQUEST_TIMEOUT = 15.0
# Every call the bootstrap makes is idempotent (GET, apply, DELETE, access reviews), so
# transient answers (429, 5xx, a dropped connection) are simply tried again.
ATTEMPTS = 3

# (apiVersion, kind) -> (plural, namespaced). The bootstrap's whole vocabulary.
RESOURCES: dict[tuple[str, str], tuple[str, bool]] = {
    ("v1", "Namespace"): ("namespaces", False),
    ("v1", "Node"): ("nodes", False),
    ("v1", "ServiceAccount"): ("serviceaccounts", True),
    ("v1", "Secret"): ("secrets", True),
    ("v1", "Service"): ("services", True),
    ("v1", "ConfigMap"): ("configmaps", True),
    ("apps/v1", "Deployment"): ("deployments", True),
    ("networking.k8s.io/v1", "IngressClass"): ("ingressclasses", False),
    ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration"):
        ("validatingwebhookconfigurations", False),
    ("discovery.k8s.io/v1", "EndpointSlice"): ("endpointslices", True),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): ("clusterroles", False),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): ("clusterrolebindings", False),
    ("rbac.authorization.k8s.io/v1", "Role"): ("roles", True),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): ("rolebindings", True),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"): ("customresourcedefinitions", False),
    ("gateway.networking.k8s.io/v1", "GatewayClass"): ("gatewayclasses", False),
    ("gateway.networking.k8s.io/v1", "Gateway"): ("gateways", True),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): ("httproutes", True),
    ("gateway.networking.k8s.io/v1beta1", "ReferenceGrant"): ("referencegrants", True),
}


def resource_path(api_version: str, kind: str, name: str | None = None,
                  namespace: str | None = None) -> str:
    try:
        plural, namespaced = RESOURCES[(api_version, kind)]
    except KeyError:
        raise ConfigError(f"{kind}: unsupported kind {api_version}/{kind}") from None
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    if namespaced and namespace:
        base += f"/namespaces/{quote(namespace, safe='')}"
    path = f"{base}/{plural}"
    return f"{path}/{quote(name, safe='')}" if name else path


def obj_path(obj: Obj) -> str:
    meta = obj.get("metadata", {})
    return resource_path(obj["apiVersion"], obj["kind"], meta.get("name"), meta.get("namespace"))


class Cluster(Protocol):
    """What the rest of the bootstrap needs from a cluster."""

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

    def subject_can(self, user: str, groups: Sequence[str], verb: str, group: str, resource: str,
                    namespace: str | None = None, name: str | None = None,
                    subresource: str | None = None) -> bool: ...

    def request_token(self, namespace: str, service_account: str,
                      seconds: int) -> tuple[str, str]: ...


@dataclass
class Endpoint:
    """Where the admin kubeconfig points: reused for the gateway host's kubeconfig."""

    server: str
    ca_pem: bytes | None
    insecure: bool


class ApiCluster:
    """`Cluster` over a real API server, through `lbsync.kube`."""

    def __init__(self, kubeconfig: str | None = None, context: str | None = None) -> None:
        cfg = KubernetesConfig(Path(kubeconfig) if kubeconfig else None, context)
        self.client = kube.Client.from_config(cfg, key="--kubeconfig")
        self.sleep: Callable[[float], None] = time.sleep

    def endpoint(self) -> Endpoint:
        conn = self.client.connection
        return Endpoint(server=self.client.server, ca_pem=conn.ca_pem(), insecure=not conn.verify)

    def request(self, what: str, method: str, path: str, body: Any = None,
                content_type: str = "application/json", **query: Any) -> Any:
        """One API call, retried when transient; parsed JSON. Raises ApiError."""
        data = None if body is None else json.dumps(body).encode()
        retrying = kube.retrying(attempts=ATTEMPTS, sleep=lambda s: self.sleep(s))
        got = retrying(self.client.call, method, path, what=what, query=query or None,
                       body=data, content_type=content_type if data is not None else None,
                       timeout=(kube.CONNECT_TIMEOUT, REQUEST_TIMEOUT))
        return kube.parse_json(got, what) if got.strip() else {}

    def get(self, api_version: str, kind: str, name: str,
            namespace: str | None = None) -> Obj | None:
        try:
            got: Obj = self.request(_what(kind, name, namespace), "GET",
                                    resource_path(api_version, kind, name, namespace))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return got

    def list(self, api_version: str, kind: str, namespace: str | None = None,
             label_selector: str | None = None) -> list[Obj]:
        try:
            got = self.request(f"{kind} list", "GET",
                               resource_path(api_version, kind, None, namespace),
                               labelSelector=label_selector)
        except ApiError as exc:
            if exc.status == 404:  # the kind's CRD is not installed: nothing of it exists
                return []
            raise
        items: list[Obj] = [i for i in got.get("items") or [] if isinstance(i, dict)]
        for item in items:  # lists leave these out of items; callers expect whole objects
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
        return items

    def apply(self, obj: Obj, *, force: bool = False, dry_run: bool = False) -> Obj:
        meta = obj["metadata"]
        query: dict[str, Any] = {"fieldManager": FIELD_MANAGER}
        if force:
            query["force"] = "true"
        if dry_run:
            query["dryRun"] = "All"
        # JSON is YAML: an apply patch may be sent as JSON text.
        applied: Obj = self.request(
            _what(obj["kind"], meta["name"], meta.get("namespace")), "PATCH", obj_path(obj),
            body=obj, content_type="application/apply-patch+yaml", **query)
        return applied

    def delete(self, api_version: str, kind: str, name: str,
               namespace: str | None = None) -> bool:
        try:
            self.request(_what(kind, name, namespace), "DELETE",
                         resource_path(api_version, kind, name, namespace),
                         body={"propagationPolicy": "Background"})
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def version(self) -> Obj:
        got: Obj = self.request("API server /version", "GET", "/version")
        return got

    def can_i(self, verb: str, group: str, resource: str,
              namespace: str | None = None) -> bool:
        resource, _, sub = resource.partition("/")  # e.g. serviceaccounts/token
        attrs = {"verb": verb, "group": group, "resource": resource}
        if sub:
            attrs["subresource"] = sub
        if namespace:
            attrs["namespace"] = namespace
        review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                  "spec": {"resourceAttributes": attrs}}
        got = self.request(f"SelfSubjectAccessReview {verb} {resource}", "POST",
                           "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", body=review)
        return bool((got.get("status") or {}).get("allowed"))

    def subject_can(self, user: str, groups: Sequence[str], verb: str, group: str, resource: str,
                    namespace: str | None = None, name: str | None = None,
                    subresource: str | None = None) -> bool:
        """A SubjectAccessReview: may `user` (in `groups`) do this? (What `kubectl auth can-i
        --as` asks, without impersonation rights.)"""
        attrs = {"verb": verb, "group": group, "resource": resource}
        if namespace:
            attrs["namespace"] = namespace
        if name:
            attrs["name"] = name
        if subresource:
            attrs["subresource"] = subresource
        review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                  "spec": {"user": user, "groups": [*groups], "resourceAttributes": attrs}}
        got = self.request(f"SubjectAccessReview {user} {verb} {resource}", "POST",
                           "/apis/authorization.k8s.io/v1/subjectaccessreviews", body=review)
        return bool((got.get("status") or {}).get("allowed"))

    def request_token(self, namespace: str, service_account: str,
                      seconds: int) -> tuple[str, str]:
        """A TokenRequest: a bound token for the ServiceAccount, valid `seconds` or less (the
        server may cap it). Returns the token and its expirationTimestamp. Not retried: each
        call makes a new token."""
        what = f"TokenRequest for ServiceAccount/{namespace}/{service_account}"
        path = resource_path("v1", "ServiceAccount", service_account, namespace) + "/token"
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"expirationSeconds": seconds}}
        got = self.client.call("POST", path, what=what, body=json.dumps(body).encode(),
                               content_type="application/json",
                               timeout=(kube.CONNECT_TIMEOUT, REQUEST_TIMEOUT))
        status = kube.parse_json(got, what).get("status") or {}
        token = status.get("token")
        if not isinstance(token, str) or not token:
            raise ApiError(f"{what}: the answer has no token")
        return token, str(status.get("expirationTimestamp") or "")


def _what(kind: str, name: str, namespace: str | None) -> str:
    return f"{kind}/{namespace}/{name}" if namespace else f"{kind}/{name}"
