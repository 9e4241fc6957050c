"""Who is asking, and may they: bearer-token authentication and RBAC authorization.

This module owns

* :class:`User` - an authenticated user (name, groups, uid, extra), as kube-apiserver's
  ``user.Info``;
* :class:`Tokens` - ServiceAccount tokens: signed JWTs the emulator issues (legacy Secret-bound
  tokens for the token controller, bound expiring tokens for the TokenRequest subresource)
  and verifies (signature, expiry, and that the ServiceAccount, Secret or bound object still
  exists with the same uid);
* :class:`Authorizer` - RBAC: Roles, ClusterRoles and their bindings as stored objects
  (verbs, apiGroups, resources with subresources, resourceNames, nonResourceURLs), the
  bootstrap policy every authenticated user has (discovery, self reviews), and
  ``system:masters`` which may do everything (the emulator's admin kubeconfig);
* the Status message a real server sends with a 403.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]
Lookup = Callable[[str, str, str], Obj | None]  # (plural with group, namespace, name)
Lister = Callable[[str], list[Obj]]  # plural with group -> every object

MASTERS = "system:masters"
AUTHENTICATED = "system:authenticated"
ISSUER = "https://kubernetes.default.svc.cluster.local"


@dataclass(frozen=True)
class User:
    """An authenticated user, as a SelfSubjectReview reports it."""

    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def info(self) -> Obj:
        out: Obj = {"username": self.name, "groups": list(self.groups)}
        if self.uid:
            out["uid"] = self.uid
        if self.extra:
            out["extra"] = {k: list(v) for k, v in self.extra}
        return out


ADMIN = User("kubernetes-admin", (MASTERS, AUTHENTICATED))


def service_account_user(namespace: str, name: str) -> str:
    return f"system:serviceaccount:{namespace}:{name}"


# -- tokens ----------------------------------------------------------------------------------

def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Tokens:
    """Issues and verifies ServiceAccount tokens (HS256 JWTs with a per-emulator key)."""

    def __init__(self, lookup: Lookup) -> None:
        self._key = secrets.token_bytes(32)
        self._kid = _b64(hashlib.sha256(self._key).digest()[:12])
        self._lookup = lookup

    def _sign(self, claims: Obj) -> str:
        header = _b64(json.dumps({"alg": "HS256", "kid": self._kid}).encode())
        payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
        sig = hmac.new(self._key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        return f"{header}.{payload}.{_b64(sig)}"

    def legacy(self, namespace: str, account: Obj, secret: Obj) -> str:
        """A never-expiring token bound to a ``kubernetes.io/service-account-token`` Secret
        (what the token controller writes into the Secret)."""
        return self._sign({
            "iss": "kubernetes/serviceaccount", "sub": service_account_user(
                namespace, account["metadata"]["name"]),
            "kubernetes.io": {"namespace": namespace,
                              "serviceaccount": _ref(account), "secret": _ref(secret)},
        })

    def bound(self, namespace: str, account: Obj, audiences: Sequence[str],
              expiration_seconds: int, bound_object: Obj | None = None,
              bound_kind: str = "") -> tuple[str, int]:
        """A TokenRequest token: expires, optionally bound to a Secret or Pod. Returns the
        token and its expiry (unix seconds)."""
        now = int(time.time())
        exp = now + expiration_seconds
        claims: Obj = {
            "iss": ISSUER, "sub": service_account_user(namespace, account["metadata"]["name"]),
            "aud": list(audiences) or [ISSUER], "iat": now, "nbf": now, "exp": exp,
            "jti": str(uuid.uuid4()),
            "kubernetes.io": {"namespace": namespace, "serviceaccount": _ref(account)}}
        if bound_object is not None:
            claims["kubernetes.io"][bound_kind.lower()] = _ref(bound_object)
        return self._sign(claims), exp

    def claims(self, token: str) -> Obj | None:
        """The verified claims of a token this emulator issued, or None."""
        parts = token.split(".")
        if len(parts) != 3:
            return None
        want = hmac.new(self._key, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
        try:
            if not hmac.compare_digest(want, _unb64(parts[2])):
                return None
            claims: Obj = json.loads(_unb64(parts[1]))
        except ValueError:
            return None
        return claims

    def authenticate(self, token: str) -> User | None:
        """The ServiceAccount user of a valid token (None: unknown, expired or revoked)."""
        claims = self.claims(token)
        if claims is None:
            return None
        if "exp" in claims and claims["exp"] < time.time():
            return None
        k8s = claims.get("kubernetes.io") or {}
        ns = str(k8s.get("namespace", ""))
        sa = k8s.get("serviceaccount") or {}
        if not self._exists("serviceaccounts", ns, sa):
            return None
        extra: list[tuple[str, tuple[str, ...]]] = []
        for kind in ("secret", "pod"):
            ref = k8s.get(kind)
            if ref is not None:
                if not self._exists(kind + "s", ns, ref):
                    return None
                extra.append((f"authentication.kubernetes.io/{kind}-name", (ref["name"],)))
                extra.append((f"authentication.kubernetes.io/{kind}-uid", (ref["uid"],)))
        if "jti" in claims:
            extra.append(("authentication.kubernetes.io/credential-id", (f"JTI={claims['jti']}",)))
        return User(service_account_user(ns, sa["name"]),
                    ("system:serviceaccounts", f"system:serviceaccounts:{ns}", AUTHENTICATED),
                    str(sa.get("uid", "")), tuple(sorted(extra)))

    def _exists(self, plural: str, ns: str, ref: Obj) -> bool:
        obj = self._lookup(plural, ns, str(ref.get("name", "")))
        return obj is not None and obj["metadata"].get("uid") == ref.get("uid")


def _ref(obj: Obj) -> Obj:
    return {"name": obj["metadata"]["name"], "uid": obj["metadata"].get("uid", "")}


# -- authorization ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Attributes:
    """What a request does, as RBAC sees it (``path`` for non-resource requests)."""

    verb: str
    group: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    namespace: str = ""
    path: str = ""

    @property
    def is_resource(self) -> bool:
        return not self.path


@dataclass
class Rules:
    """The rules a user has in one namespace (a SelfSubjectRulesReview's status)."""

    resource: list[Obj] = field(default_factory=list)
    non_resource: list[Obj] = field(default_factory=list)


# What kube-apiserver's bootstrap policy gives every authenticated user (system:basic-user,
# system:discovery, system:public-info-viewer), kept here rather than as stored objects.
BASE_RESOURCE_RULES: tuple[Obj, ...] = (
    {"verbs": ["create"], "apiGroups": ["authorization.k8s.io"],
     "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]},
    {"verbs": ["create"], "apiGroups": ["authentication.k8s.io"],
     "resources": ["selfsubjectreviews"]},
)
BASE_NON_RESOURCE_RULES: tuple[Obj, ...] = (
    {"verbs": ["get"], "nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/healthz",
                                           "/livez", "/openapi", "/openapi/*", "/readyz",
                                           "/version", "/version/"]},
)
ALL_RULES = Rules([{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
                  [{"verbs": ["*"], "nonResourceURLs": ["*"]}])


def _has(values: Iterable[str], want: str) -> bool:
    return any(v in ("*", want) for v in values)


def _resource_matches(rule: Obj, a: Attributes) -> bool:
    wanted = a.resource + (f"/{a.subresource}" if a.subresource else "")
    for r in rule.get("resources") or []:
        if r in ("*", wanted):
            return True
        if a.subresource and r == f"*/{a.subresource}":
            return True
        if a.subresource and r == f"{a.resource}/*":
            return True
    return False


def rule_allows(rule: Obj, a: Attributes) -> bool:
    """Whether one PolicyRule allows a request."""
    if not _has(rule.get("verbs") or [], a.verb):
        return False
    if not a.is_resource:
        return any(u == "*" or u == a.path or (u.endswith("*") and a.path.startswith(u[:-1]))
                   for u in rule.get("nonResourceURLs") or [])
    if not _has(rule.get("apiGroups") or [], a.group) or not _resource_matches(rule, a):
        return False
    names = rule.get("resourceNames") or []
    return not names or a.name in names


def _subject_matches(subject: Obj, user: User, binding_ns: str) -> bool:
    kind, name = subject.get("kind"), subject.get("name")
    if kind == "User":
        return bool(name == user.name)
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        ns = subject.get("namespace") or binding_ns
        return user.name == service_account_user(str(ns), str(name))
    return False


class Authorizer:
    """RBAC over the stored (Cluster)Roles and (Cluster)RoleBindings."""

    def __init__(self, lookup: Lookup, lister: Lister) -> None:
        self._lookup = lookup
        self._list = lister

    def _role_rules(self, ref: Obj, namespace: str) -> list[Obj]:
        kind, name = ref.get("kind"), str(ref.get("name", ""))
        role = (self._lookup("clusterroles.rbac.authorization.k8s.io", "", name)
                if kind == "ClusterRole"
                else self._lookup("roles.rbac.authorization.k8s.io", namespace, name))
        return list((role or {}).get("rules") or [])

    def rules(self, user: User, namespace: str) -> Rules:
        """Every rule that applies to ``user`` in ``namespace`` (cluster-wide ones too)."""
        if MASTERS in user.groups:
            return ALL_RULES
        out = Rules()
        if AUTHENTICATED in user.groups:
            out.resource.extend(BASE_RESOURCE_RULES)
            out.non_resource.extend(BASE_NON_RESOURCE_RULES)
        granted: list[Obj] = []
        for b in self._list("clusterrolebindings.rbac.authorization.k8s.io"):
            if any(_subject_matches(s, user, "") for s in b.get("subjects") or []):
                granted.extend(self._role_rules(b.get("roleRef") or {}, ""))
        if namespace:
            for b in self._list("rolebindings.rbac.authorization.k8s.io"):
                ns = b["metadata"].get("namespace", "")
                if ns == namespace and any(_subject_matches(s, user, ns)
                                           for s in b.get("subjects") or []):
                    granted.extend(self._role_rules(b.get("roleRef") or {}, ns))
        for rule in granted:
            if rule.get("nonResourceURLs"):
                out.non_resource.append({k: rule[k] for k in ("verbs", "nonResourceURLs")})
            else:
                out.resource.append({k: v for k, v in rule.items() if k in (
                    "verbs", "apiGroups", "resources", "resourceNames")})
        return out

    def allowed(self, user: User, a: Attributes) -> bool:
        if MASTERS in user.groups:
            return True
        if not a.is_resource:
            return any(rule_allows(r, a) for r in self.rules(user, "").non_resource)
        # A namespaced request may be allowed by a RoleBinding there; cluster-scoped ones
        # only by ClusterRoleBindings.
        return any(rule_allows(r, a) for r in self.rules(user, a.namespace).resource)


def forbidden_message(user: User, a: Attributes) -> str:
    """kube-apiserver's 403 message for a request RBAC refused."""
    if not a.is_resource:
        return f'forbidden: User "{user.name}" cannot {a.verb} path "{a.path}"'
    qual = f"{a.resource}.{a.group}" if a.group else a.resource
    who = f'{qual} "{a.name}"' if a.name else qual
    res = a.resource + (f"/{a.subresource}" if a.subresource else "")
    where = f'in the namespace "{a.namespace}"' if a.namespace else "at the cluster scope"
    return (f'{who} is forbidden: User "{user.name}" cannot {a.verb} resource "{res}" in API '
            f'group "{a.group}" {where}')
