"""The resource registry: which (group, version, plural) the emulator serves.

This module owns resource *types* (kind, namespaced flag, verbs, subresources,
supported field selectors) and answers the discovery documents (``/api``,
``/apis``, ``/api/v1``, ``/apis/{group}[/{version}]``, and the aggregated
``apidiscovery.k8s.io/v2`` lists) from them. The built-in types come from the real
OpenAPI document (:func:`lbsync_lab.sim.openapi.builtin_types`) plus what discovery adds
to it (short names, categories, group order); custom resource definitions add more at
run time through :meth:`Registry.add`.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any

from lbsync_lab.sim import openapi

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
    virtual: bool = False  # answered, never stored (access reviews, SelfSubjectReview)
    subresources: tuple[str, ...] = ()  # besides status: "token" for serviceaccounts

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
        for sub, kind, verbs in self._subresources():
            out.append({"name": f"{self.plural}/{sub}", "singularName": "",
                        "namespaced": self.namespaced, "kind": kind["kind"],
                        "verbs": list(verbs), **({"group": kind["group"],
                                                  "version": kind["version"]}
                                                 if kind["group"] != self.group else {})})
        return out

    def _subresources(self) -> list[tuple[str, dict[str, str], tuple[str, ...]]]:
        me = {"group": self.group, "version": self.version, "kind": self.kind}
        out: list[tuple[str, dict[str, str], tuple[str, ...]]] = []
        if self.has_status:
            out.append(("status", me, ("get", "patch", "update")))
        if "token" in self.subresources:
            out.append(("token", {"group": "authentication.k8s.io", "version": "v1",
                                  "kind": "TokenRequest"}, ("create",)))
        return out

    def aggregated_entry(self) -> dict[str, Any]:
        """This type as an apidiscovery.k8s.io/v2 APIResourceDiscovery."""
        entry: dict[str, Any] = {
            "resource": self.plural,
            "responseKind": {"group": self.group, "version": self.version, "kind": self.kind},
            "scope": "Namespaced" if self.namespaced else "Cluster",
            "singularResource": self.singular or self.kind.lower(),
            "verbs": list(self.verbs),
        }
        if self.short_names:
            entry["shortNames"] = list(self.short_names)
        if self.categories:
            entry["categories"] = list(self.categories)
        subs = [{"subresource": sub, "responseKind": kind, "verbs": list(verbs)}
                for sub, kind, verbs in self._subresources()]
        if subs:
            entry["subresources"] = subs
        return entry


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
        """Non-core groups and their versions, in kube-apiserver's order (built-in groups by
        priority, then custom resource groups by name; preferred version first)."""
        out: dict[str, list[str]] = {}
        for rt in self.all():
            if rt.group:
                versions = out.setdefault(rt.group, [])
                if rt.version not in versions:
                    versions.append(rt.version)

        def rank(group: str) -> tuple[int, str]:
            return (GROUP_ORDER.index(group) if group in GROUP_ORDER else len(GROUP_ORDER),
                    group)

        return {g: sorted(out[g], key=version_priority) for g in sorted(out, key=rank)}

    def aggregated(self, core: bool) -> dict[str, Any]:
        """The apidiscovery.k8s.io/v2 APIGroupDiscoveryList of /api (core) or /apis."""
        groups = {"": ["v1"]} if core else self.group_versions()
        items = []
        for group, versions in groups.items():
            vs = []
            for v in versions:
                resources = sorted((rt.aggregated_entry() for rt in self.all()
                                    if rt.group == group and rt.version == v),
                                   key=lambda e: str(e["resource"]))
                vs.append({"version": v, "resources": resources, "freshness": "Current"})
            items.append({"metadata": {"name": group, "creationTimestamp": None},
                          "versions": vs})
        return {"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2",
                "metadata": {}, "items": items}

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
_SECRET_FIELDS = frozenset({"metadata.name", "metadata.namespace", "type"})
_EVENT_FIELDS = frozenset({"metadata.name", "metadata.namespace", "involvedObject.kind",
                           "involvedObject.namespace", "involvedObject.name",
                           "involvedObject.uid", "involvedObject.apiVersion",
                           "involvedObject.resourceVersion", "involvedObject.fieldPath",
                           "reason", "reportingComponent", "source", "type"})
_POD_FIELDS = frozenset({"metadata.name", "metadata.namespace", "spec.nodeName",
                         "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
                         "spec.hostNetwork", "status.phase", "status.podIP",
                         "status.nominatedNodeName"})
FIELD_SELECTORS = {("", "nodes"): _NODE_FIELDS, ("", "namespaces"): _NS_FIELDS,
                   ("", "secrets"): _SECRET_FIELDS, ("", "events"): _EVENT_FIELDS,
                   ("", "pods"): _POD_FIELDS}

# Facts kube-apiserver adds to discovery that the OpenAPI document does not carry.
SHORT_NAMES = {
    ("", "configmaps"): ("cm",), ("", "endpoints"): ("ep",), ("", "events"): ("ev",),
    ("", "limitranges"): ("limits",), ("", "namespaces"): ("ns",), ("", "nodes"): ("no",),
    ("", "persistentvolumeclaims"): ("pvc",), ("", "persistentvolumes"): ("pv",),
    ("", "pods"): ("po",), ("", "replicationcontrollers"): ("rc",),
    ("", "resourcequotas"): ("quota",), ("", "serviceaccounts"): ("sa",),
    ("", "services"): ("svc",), ("apps", "daemonsets"): ("ds",),
    ("apps", "deployments"): ("deploy",), ("apps", "replicasets"): ("rs",),
    ("apps", "statefulsets"): ("sts",), ("autoscaling", "horizontalpodautoscalers"): ("hpa",),
    ("batch", "cronjobs"): ("cj",), ("certificates.k8s.io", "certificatesigningrequests"):
    ("csr",), ("events.k8s.io", "events"): ("ev",), ("networking.k8s.io", "ingresses"):
    ("ing",), ("networking.k8s.io", "networkpolicies"): ("netpol",),
    ("policy", "poddisruptionbudgets"): ("pdb",), ("scheduling.k8s.io", "priorityclasses"):
    ("pc",), ("storage.k8s.io", "storageclasses"): ("sc",),
    ("apiextensions.k8s.io", "customresourcedefinitions"): ("crd", "crds"),
}
CATEGORIES = {("", "pods"): ("all",), ("", "services"): ("all",),
              ("", "replicationcontrollers"): ("all",), ("apps", "deployments"): ("all",),
              ("apps", "replicasets"): ("all",), ("apps", "statefulsets"): ("all",),
              ("apps", "daemonsets"): ("all",), ("batch", "jobs"): ("all",),
              ("batch", "cronjobs"): ("all",),
              ("autoscaling", "horizontalpodautoscalers"): ("all",),
              ("apiextensions.k8s.io", "customresourcedefinitions"): ("api-extensions",),
              ("admissionregistration.k8s.io", "validatingwebhookconfigurations"):
              ("api-extensions",),
              ("admissionregistration.k8s.io", "mutatingwebhookconfigurations"):
              ("api-extensions",),
              ("apiregistration.k8s.io", "apiservices"): ("api-extensions",)}
# Kinds that are answered, never stored (reviews, token requests).
VIRTUAL_KINDS = frozenset({"SelfSubjectAccessReview", "SelfSubjectRulesReview",
                           "SubjectAccessReview", "LocalSubjectAccessReview",
                           "SelfSubjectReview", "TokenReview"})
# The subresources the emulator implements (a real server has more: log, exec, eviction...).
SERVED_SUBRESOURCES = frozenset({"status", "token"})
# kube-apiserver's group priority: the order of /apis and of aggregated discovery.
GROUP_ORDER = ("apiregistration.k8s.io", "apps", "events.k8s.io", "authentication.k8s.io",
               "authorization.k8s.io", "autoscaling", "batch", "certificates.k8s.io",
               "networking.k8s.io", "policy", "rbac.authorization.k8s.io", "storage.k8s.io",
               "admissionregistration.k8s.io", "apiextensions.k8s.io", "scheduling.k8s.io",
               "coordination.k8s.io", "node.k8s.io", "discovery.k8s.io",
               "flowcontrol.apiserver.k8s.io", "resource.k8s.io")


def builtin_registry() -> Registry:
    """The built-in resource types a default 1.3x server serves, from the real OpenAPI
    document (raises MissingTestData when the document is not there)."""
    reg = Registry()
    for t in openapi.builtin_types():
        gp = (t.group, t.plural)
        subs = tuple(s for s in t.subresources if s in SERVED_SUBRESOURCES)
        reg.add(ResourceType(
            t.group, t.version, t.plural, t.kind, t.namespaced,
            short_names=SHORT_NAMES.get(gp, ()), verbs=t.verbs, has_status="status" in subs,
            field_selectors=FIELD_SELECTORS.get(gp, frozenset({"metadata.name",
                                                               "metadata.namespace"})),
            categories=CATEGORIES.get(gp, ()), virtual=t.kind in VIRTUAL_KINDS,
            subresources=subs))
    return reg


def version_priority(version: str) -> tuple[int, int, int, str]:
    """Sort key giving Kubernetes version priority: GA > beta > alpha, higher numbers first."""
    m = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", version)
    if not m:
        return (3, 0, 0, version)
    stage = {None: 0, "beta": 1, "alpha": 2}[m.group(2)]
    return (stage, -int(m.group(1)), -int(m.group(3) or 0), version)
