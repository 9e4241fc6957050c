"""Kinds that are answered and never stored: access and token reviews, token requests.

This module owns the answers to ``POST`` of SelfSubjectAccessReview (``kubectl auth can-i``),
SelfSubjectRulesReview (``kubectl auth can-i --list``), SelfSubjectReview (``kubectl auth
whoami``), SubjectAccessReview, LocalSubjectAccessReview, TokenReview, and of the
``serviceaccounts/<name>/token`` subresource (TokenRequest: a bound, expiring token).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from lbsync_lab.sim.auth import Attributes, Authorizer, Tokens, User
from lbsync_lab.sim.status import ApiError, not_found

Obj = dict[str, Any]
Lookup = Callable[[str, str, str], Obj | None]

MIN_EXPIRATION = 600  # kube-apiserver refuses shorter TokenRequests
DEFAULT_EXPIRATION = 3600


def _attributes(spec: Obj, namespace_default: str = "") -> Attributes:
    res = spec.get("resourceAttributes")
    if res:
        return Attributes(str(res.get("verb", "")), str(res.get("group", "")),
                          str(res.get("resource", "")), str(res.get("subresource", "")),
                          str(res.get("name", "")),
                          str(res.get("namespace", "") or namespace_default))
    non = spec.get("nonResourceAttributes") or {}
    return Attributes(str(non.get("verb", "")), path=str(non.get("path", "")) or "/")


def _answered(body: Obj, kind: str, api_version: str, status: Obj) -> Obj:
    meta = dict(body.get("metadata") or {})
    meta.setdefault("creationTimestamp", None)
    out = {"kind": kind, "apiVersion": api_version, "metadata": meta}
    if "spec" in body:
        out["spec"] = body["spec"]
    out["status"] = status
    return out


class Reviews:
    """Answers the review kinds for one emulator."""

    def __init__(self, authorizer: Authorizer, tokens: Tokens, lookup: Lookup,
                 denied: set[tuple[str, str]]) -> None:
        self.authorizer, self.tokens, self.lookup = authorizer, tokens, lookup
        self.denied = denied  # ApiServer.deny(): (verb, resource) answered as not allowed

    def answer(self, kind: str, body: Obj, user: User, namespace: str | None) -> Obj:
        api_version = body.get("apiVersion") or ""
        if kind == "SelfSubjectAccessReview":
            return _answered(body, kind, api_version or "authorization.k8s.io/v1",
                             self._access(user, _attributes(body.get("spec") or {})))
        if kind == "SelfSubjectRulesReview":
            ns = str((body.get("spec") or {}).get("namespace") or "")
            rules = self.authorizer.rules(user, ns)
            return _answered(body, kind, api_version or "authorization.k8s.io/v1", {
                "resourceRules": rules.resource, "nonResourceRules": rules.non_resource,
                "incomplete": False})
        if kind == "SelfSubjectReview":
            return {"kind": kind, "apiVersion": api_version or "authentication.k8s.io/v1",
                    "metadata": {"creationTimestamp": None},
                    "status": {"userInfo": user.info()}}
        if kind in ("SubjectAccessReview", "LocalSubjectAccessReview"):
            spec = body.get("spec") or {}
            subject = User(str(spec.get("user", "")), tuple(spec.get("groups") or ()),
                           str(spec.get("uid", "")))
            attrs = _attributes(spec, namespace or "")
            if kind == "LocalSubjectAccessReview" and attrs.namespace != (namespace or ""):
                raise ApiError(400, "spec.resourceAttributes.namespace must match the "
                               "namespace of the request", reason="BadRequest")
            return _answered(body, kind, api_version or "authorization.k8s.io/v1",
                             self._access(subject, attrs))
        if kind == "TokenReview":
            token = str((body.get("spec") or {}).get("token", ""))
            found = self.tokens.authenticate(token)
            status: Obj = ({"authenticated": True, "user": found.info()} if found
                           else {"authenticated": False, "error": "invalid bearer token"})
            return _answered(body, kind, api_version or "authentication.k8s.io/v1", status)
        raise ApiError(404, f"{kind} is not answered by the emulator")

    def _access(self, user: User, attrs: Attributes) -> Obj:
        denied = any(v in (attrs.verb, "*") and r in (attrs.resource, "*")
                     for v, r in self.denied)
        if denied:
            return {"allowed": False, "reason": "denied by the emulator (ApiServer.deny)"}
        if self.authorizer.allowed(user, attrs):
            return {"allowed": True, "reason": "RBAC: allowed"}
        return {"allowed": False}

    def token_request(self, namespace: str, account: str, body: Obj) -> Obj:
        """A TokenRequest's answer: a bound token for ``namespace/account``."""
        sa = self.lookup("serviceaccounts", namespace, account)
        if sa is None:
            raise not_found("serviceaccounts", account)
        spec = dict(body.get("spec") or {})
        seconds = int(spec.get("expirationSeconds") or DEFAULT_EXPIRATION)
        if seconds < MIN_EXPIRATION:
            raise ApiError(422, f'TokenRequest.authentication.k8s.io "{account}" is invalid: '
                           "spec.expirationSeconds: Invalid value: "
                           f"{seconds}: may not specify a duration less than 10 minutes",
                           reason="Invalid")
        ref = spec.get("boundObjectRef") or None
        bound = None
        if ref:
            kind = str(ref.get("kind", ""))
            if kind not in ("Secret", "Pod", "Node"):
                raise ApiError(422, f"spec.boundObjectRef.kind: Unsupported value: {kind!r}",
                               reason="Invalid")
            bound = self.lookup(kind.lower() + "s", "" if kind == "Node" else namespace,
                                str(ref.get("name", "")))
            if bound is None:
                raise not_found(kind.lower() + "s", str(ref.get("name", "")))
            if ref.get("uid") and ref["uid"] != bound["metadata"].get("uid"):
                raise ApiError(409, "the UID in the bound object reference does not match")
            spec["boundObjectRef"] = dict(ref, uid=bound["metadata"].get("uid"))
        token, exp = self.tokens.bound(namespace, sa, spec.get("audiences") or [], seconds,
                                       bound, str((ref or {}).get("kind", "")))
        spec["expirationSeconds"] = seconds
        meta = dict(body.get("metadata") or {}, name=account, namespace=namespace)
        meta.setdefault("creationTimestamp", time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                           time.gmtime()))
        return {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
                "metadata": meta, "spec": spec,
                "status": {"token": token, "expirationTimestamp": time.strftime(
                    "%Y-%m-%dT%H:%M:%SZ", time.gmtime(exp))}}
