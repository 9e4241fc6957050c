"""The resource registry: which (group, version, plural) the emulator serves.

This module owns resource *types* (kind, namespaced flag, verbs, subresources,
supported field selectors) and answers the discovery documents (``/api``,
``/apis``, ``/api/v1``, ``/apis/{group}[/{version}]``) from them. The built-in
types are registered by :func:`builtin_registry`; custom resource definitions
add more at run time through :meth:`Registry.add`.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
ResKey = tuple[str, str, str]  # (group, version, plural)


@dataclass(frozen=True)
class ResourceType:
    """One served resource (``group`` is "" for the core API)."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    has_status: bool = False
    field_selectors: frozenset[str] = frozenset({"metadata.name", "metadata.namespace"})
    builtin: bool = True  # built-in lists omit kind/apiVersion on items; CRs keep them
    categories: tuple[str, ...] = ()

    @property
    def key(self) -> ResKey:
        return (self.group, self.version, self.plural)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    def discovery_entries(self) -> list[dict[str, Any]]:
        """APIResource entries for this type (plus its status subresource)."""
        entry: dict[str, Any] = {
            "name": self.plural,
            "singularName": self.singular or self.kind.lower(),
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": list(self.verbs),
        }
        if self.short_names:
            entry["shortNames"] = list(self.short_names)
        if self.categories:
            entry["categories"] = list(self.categories)
        out = [entry]
        if self.has_status:
            out.append(
                {
                    "name": self.plural + "/status",
                    "singularName": "",
                    "namespaced": self.namespaced,
                    "kind": self.kind,
                    "verbs": ["get", "patch", "update"],
                }
            )
        return out


@dataclass
class Registry:
    """Thread-safe map of served resource types."""

    _types: dict[ResKey, ResourceType] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, rt: ResourceType) -> None:
        with self._lock:
            self._types[rt.key] = rt

    def remove(self, key: ResKey) -> None:
        with self._lock:
            self._types.pop(key, None)

    def get(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._types.get((group, version, plural))

    def by_kind(self, api_version: str, kind: str) -> ResourceType | None:
        group, _, version = api_version.rpartition("/")
        for rt in list(self._types.values()):
            if rt.group == group and rt.version == version and rt.kind == kind:
                return rt
        return None

    def by_plural(self, plural: str) -> list[ResourceType]:
        return [rt for rt in list(self._types.values()) if rt.plural == plural]

    def all(self) -> list[ResourceType]:
        return list(self._types.values())

    # -- discovery documents ---------------------------------------------------------------

    def group_versions(self) -> dict[str, list[str]]:
        """Non-core groups and their versions (insertion order, preferred first)."""
        out: dict[str, list[str]] = {}
        for rt in self.all():
            if rt.group:
                versions = out.setdefault(rt.group, [])
                if rt.version not in versions:
                    versions.append(rt.version)
        return {g: sorted(vs, key=version_priority) for g, vs in out.items()}


    def api_group(self, group: str) -> dict[str, Any] | None:
        versions = self.group_versions().get(group)
        if not versions:
            return None
        vs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {
            "kind": "APIGroup",
            "apiVersion": "v1",
            "name": group,
            "versions": vs,
            "preferredVersion": vs[0],
        }

    def api_group_list(self) -> dict[str, Any]:
        groups = []
        for group in self.group_versions():
            g = self.api_group(group)
            if g is not None:
                del g["kind"], g["apiVersion"]
                groups.append(g)
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}

    def resource_list(self, group: str, version: str) -> dict[str, Any] | None:
        resources: list[dict[str, Any]] = []
        for rt in self.all():
            if rt.group == group and rt.version == version:
                resources.extend(rt.discovery_entries())
        if not resources:
            return None
        gv = f"{group}/{version}" if group else version
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
                "resources": resources}


_NODE_FIELDS = frozenset({"metadata.name", "spec.unschedulable"})
_NS_FIELDS = frozenset({"metadata.name", "status.phase"})
_SVC_FIELDS = frozenset({"metadata.name", "metadata.namespace"})
_SECRET_FIELDS = frozenset({"metadata.name", "metadata.namespace", "type"})


def builtin_registry() -> Registry:
    """The built-in resource types the emulator serves."""
    reg = Registry()
    core = [
        ResourceType("", "v1", "namespaces", "Namespace", False, short_names=("ns",),
                     has_status=True, field_selectors=_NS_FIELDS,
                     verbs=("create", "delete", "get", "list", "patch", "update", "watch")),
        ResourceType("", "v1", "nodes", "Node", False, short_names=("no",), has_status=True,
                     field_selectors=_NODE_FIELDS),
        ResourceType("", "v1", "services", "Service", True, short_names=("svc",),
                     has_status=True, field_selectors=_SVC_FIELDS, categories=("all",),
                     verbs=("create", "delete", "deletecollection", "get", "list", "patch",
                            "update", "watch")),
        ResourceType("", "v1", "endpoints", "Endpoints", True, short_names=("ep",)),
        ResourceType("", "v1", "configmaps", "ConfigMap", True, short_names=("cm",)),
        ResourceType("", "v1", "secrets", "Secret", True, field_selectors=_SECRET_FIELDS),
        ResourceType("", "v1", "serviceaccounts", "ServiceAccount", True, short_names=("sa",)),
        ResourceType("", "v1", "pods", "Pod", True, short_names=("po",), has_status=True,
                     categories=("all",)),
    ]
    others = [
        ResourceType("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True),
        ResourceType("apps", "v1", "deployments", "Deployment", True, short_names=("deploy",),
                     has_status=True, categories=("all",)),
        ResourceType("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
        ResourceType("rbac.authorization.k8s.io", "v1", "clusterrolebindings",
                     "ClusterRoleBinding", False),
        ResourceType("rbac.authorization.k8s.io", "v1", "roles", "Role", True),
        ResourceType("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True),
        ResourceType("apiextensions.k8s.io", "v1", "customresourcedefinitions",
                     "CustomResourceDefinition", False, short_names=("crd", "crds"),
                     has_status=True),
        ResourceType("authorization.k8s.io", "v1", "selfsubjectaccessreviews",
                     "SelfSubjectAccessReview", False, verbs=("create",)),
    ]
    for rt in core + others:
        reg.add(rt)
    return reg


def version_priority(version: str) -> tuple[int, int, int, str]:
    """Sort key giving Kubernetes version priority: GA > beta > alpha, higher numbers first."""
    m = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", version)
    if not m:
        return (3, 0, 0, version)
    stage = {None: 0, "beta": 1, "alpha": 2}[m.group(2)]
    return (stage, -int(m.group(1)), -int(m.group(3) or 0), version)
