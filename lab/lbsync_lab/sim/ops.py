"""Write semantics of the API server: create, replace, patch, server-side apply, delete.

This module owns what a write does to an object before it reaches the
:class:`~lbsync_lab.sim.store.Store`: server-set metadata (uid, creationTimestamp,
generation), resourceVersion preconditions, merge / JSON patches, a simplified
server-side-apply field ownership model (``metadata.managedFields``), the status
subresource split, field validation against the real schemas (unknown fields dropped, and
refused or warned about as ``fieldValidation`` asks), strategic merge patch, and the side
effects of a few kinds that kube-apiserver itself has (CRDs register new resources and
schemas and get Established, Services get a clusterIP and nodePorts). What controllers do
(Deployments, tokens, garbage collection) is not here: see :mod:`lbsync_lab.controllers`.
"""

from __future__ import annotations

import contextlib
import copy
import json
import random
import string
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import yaml

from lbsync_lab.sim import objects, schema
from lbsync_lab.sim.openapi import OpenAPI
from lbsync_lab.sim.registry import ResourceType
from lbsync_lab.sim.status import ApiError, Conflict, not_found
from lbsync_lab.sim.store import Event, Obj, Store, Stored

Path_ = tuple[str, ...]

_SERVER_META = ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields",
                "selfLink", "deletionTimestamp")
# The built-in kinds whose strategies keep metadata.generation (bumped on spec changes).
_GENERATION_KINDS = frozenset({
    "Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "ReplicationController", "Pod",
    "Job", "CronJob", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Ingress",
    "IngressClass", "NetworkPolicy", "CustomResourceDefinition",
    "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration",
    "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "FlowSchema",
    "PriorityLevelConfiguration"})


def _tracks_generation(rt: ResourceType) -> bool:
    return (not rt.builtin) or rt.kind in _GENERATION_KINDS


def _conflict_rv(rt: ResourceType, name: str) -> Conflict:
    qual = f"{rt.plural}.{rt.group}" if rt.group else rt.plural
    return Conflict(409, f'Operation cannot be fulfilled on {qual} "{name}": the object has '
                    "been modified; please apply your changes to the latest version and try again",
                    details={"name": name, "group": rt.group, "kind": rt.plural})


# -- merge patch (RFC 7386) and JSON patch (RFC 6902) ----------------------------------------

def merge_patch(target: Any, patch: Any) -> Any:
    """Apply an RFC 7386 JSON merge patch; returns a new value."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    return [p.replace("~1", "/").replace("~0", "~") for p in path.lstrip("/").split("/")]


def json_patch(doc: Any, ops: list[dict[str, Any]]) -> Any:
    """Apply an RFC 6902 JSON patch (add, remove, replace, test, copy, move)."""
    doc = copy.deepcopy(doc)

    def parent(path: str) -> tuple[Any, str]:
        parts = _pointer(path)
        cur = doc
        for p in parts[:-1]:
            cur = cur[int(p)] if isinstance(cur, list) else cur[p]
        return cur, parts[-1]

    def read(path: str) -> Any:
        cur = doc
        for p in _pointer(path):
            cur = cur[int(p)] if isinstance(cur, list) else cur[p]
        return cur

    try:
        for op in ops:
            kind, path = op["op"], op["path"]
            if kind == "test":
                if read(path) != op["value"]:
                    raise ApiError(422, f"the server rejected our request due to an error in "
                                   f"our request: test failed at {path}")
                continue
            if kind in ("copy", "move"):
                value = copy.deepcopy(read(op["from"]))
                if kind == "move":
                    c, k = parent(op["from"])
                    del c[int(k) if isinstance(c, list) else k]
                kind, op = "add", {"value": value}
            else:
                value = op.get("value")
            c, k = parent(path)
            if kind == "add":
                if isinstance(c, list):
                    c.insert(len(c) if k == "-" else int(k), value)
                else:
                    c[k] = value
            elif kind == "replace":
                c[int(k) if isinstance(c, list) else k] = value
            elif kind == "remove":
                del c[int(k) if isinstance(c, list) else k]
            else:
                raise ApiError(400, f"unknown JSON patch operation {kind!r}")
    except (KeyError, IndexError, ValueError, TypeError) as exc:
        raise ApiError(422, f"the server rejected our request due to an error in our "
                       f"request: {exc}") from exc
    return doc


# -- field ownership for server-side apply ---------------------------------------------------

def leaf_paths(obj: Any, prefix: Path_ = ()) -> set[Path_]:
    """Paths of the leaves of an applied config (lists are atomic leaves)."""
    out: set[Path_] = set()
    if isinstance(obj, dict) and obj:
        for k, v in obj.items():
            if not prefix and k in ("apiVersion", "kind"):
                continue
            if prefix == ("metadata",) and k in ("name", "namespace", *_SERVER_META):
                continue
            out |= leaf_paths(v, (*prefix, k))
    elif prefix:
        out.add(prefix)
    return out


def to_fields_v1(paths: set[Path_]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for path in sorted(paths):
        cur = root
        for p in path:
            cur = cur.setdefault("f:" + p, {})
    return root


def from_fields_v1(fields: dict[str, Any], prefix: Path_ = ()) -> set[Path_]:
    out: set[Path_] = set()
    for k, v in fields.items():
        if not k.startswith("f:"):
            continue
        path = (*prefix, k[2:])
        if isinstance(v, dict) and v:
            out |= from_fields_v1(v, path)
        else:
            out.add(path)
    return out


def _lookup(obj: Any, path: Path_) -> tuple[bool, Any]:
    cur = obj
    for p in path:
        if not isinstance(cur, dict) or p not in cur:
            return False, None
        cur = cur[p]
    return True, cur


def _remove(obj: Obj, path: Path_) -> None:
    cur: Any = obj
    for p in path[:-1]:
        if not isinstance(cur, dict) or p not in cur:
            return
        cur = cur[p]
    if isinstance(cur, dict):
        cur.pop(path[-1], None)


def _overlaps(a: Path_, b: Path_) -> bool:
    n = min(len(a), len(b))
    return a[:n] == b[:n]


VALIDATION = ("Strict", "Warn", "Ignore")


class Operations:
    """Write operations against a store, with the API server's semantics."""

    def __init__(self, store: Store, openapi: OpenAPI | None = None,
                 now: Callable[[], str] = objects.now_rfc3339) -> None:
        self.store = store
        self.openapi = openapi or OpenAPI()
        self.now = now
        self._node_ports: set[int] = set()
        self.denied: set[tuple[str, str]] = set()
        self.crd_delay = 0.1
        # Unused since Deployments are made available by lbsync_lab.controllers'
        # DeploymentController, as kube-controller-manager does; kept while callers set it.
        self.deployment_delay = 0.2
        self._local = threading.local()

    # -- helpers --------------------------------------------------------------------------

    def _ns_name(self, rt: ResourceType, obj: Obj, namespace: str | None) -> tuple[str, str]:
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise ApiError(400, "metadata must be an object")
        name = meta.get("name")
        if not name and meta.get("generateName"):
            suffix = "".join(random.choices(string.ascii_lowercase + string.digits, k=5))
            name = meta["name"] = meta["generateName"] + suffix
        if not name:
            raise ApiError(422, f"{rt.kind} \"\" is invalid: metadata.name: Required value: "
                           "name or generateName is required", reason="Invalid")
        if rt.namespaced:
            body_ns = meta.get("namespace")
            if namespace and body_ns and body_ns != namespace:
                raise ApiError(400, "the namespace of the provided object does not match the "
                               "namespace sent on the request")
            ns = namespace or body_ns or "default"
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
            ns = ""
        obj["kind"], obj["apiVersion"] = rt.kind, rt.api_version
        return ns, str(name)

    def _check_namespace(self, rt: ResourceType, ns: str) -> None:
        if not rt.namespaced:
            return
        nsrt = self.store.registry.get("", "v1", "namespaces")
        if nsrt is not None and self.store.get(nsrt, "", ns) is None:
            raise not_found("namespaces", ns)

    def _fresh_meta(self, rt: ResourceType, obj: Obj) -> None:
        meta = obj["metadata"]
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", self.now())
        if _tracks_generation(rt):
            meta["generation"] = 1

    def _carry_meta(self, rt: ResourceType, old: Obj, new: Obj) -> None:
        """Keep server-owned metadata of ``old`` in ``new``; bump generation on spec change."""
        om, nm = old["metadata"], new["metadata"]
        for k in ("uid", "creationTimestamp", "deletionTimestamp", "managedFields"):
            if k in om and k not in nm:
                nm[k] = copy.deepcopy(om[k])
            elif k in ("uid", "creationTimestamp") and k in om:
                nm[k] = om[k]
        if _tracks_generation(rt):
            changed = {k: v for k, v in new.items() if k not in ("metadata", "status")} != {
                k: v for k, v in old.items() if k not in ("metadata", "status")}
            nm["generation"] = int(om.get("generation", 1)) + (1 if changed else 0)

    @contextlib.contextmanager
    def field_validation(self, directive: str) -> Iterator[list[str]]:
        """Within this block (on this thread) writes check unknown fields: ``Strict`` refuses
        them (400), ``Warn`` and ``Ignore`` drop them; the yielded list collects the Warning
        texts (``Warn`` only)."""
        if directive not in VALIDATION:
            raise ApiError(400, f"fieldValidation: invalid value {directive!r}: must be one "
                           "of Strict, Warn, Ignore")
        before = getattr(self._local, "validation", None)
        warnings: list[str] = []
        self._local.validation = (directive, warnings)
        try:
            yield warnings
        finally:
            self._local.validation = before

    def schema_of(self, rt: ResourceType) -> dict[str, Any] | None:
        """The schema objects of ``rt`` are checked against (None: not known)."""
        if rt.builtin:
            return schema.builtin_schema(rt.group, rt.version, rt.kind)
        crd = self.openapi.crd_for(rt.group, rt.kind)
        return None if crd is None else schema.custom_schema(crd, rt.version)

    def _validate(self, rt: ResourceType, obj: Obj, applying: bool = False) -> None:
        """Drop unknown fields of ``obj`` in place, refusing or warning as asked."""
        setting = getattr(self._local, "validation", None)
        sch = self.schema_of(rt)
        if sch is None:
            return
        unknown = schema.prune_unknown(obj, sch)
        if not unknown or setting is None:
            return
        directive, warnings = setting
        if directive == "Strict":
            if applying:
                raise ApiError(400, "; ".join(f".{p}: field not declared in schema"
                                              for p in unknown))
            listed = ", ".join(f'unknown field "{p}"' for p in unknown)
            raise ApiError(400, f'{rt.kind} in version "{rt.version}" cannot be handled as a '
                           f"{rt.kind}: strict decoding error: {listed}")
        if directive == "Warn":
            warnings.extend(f'unknown field "{p}"' for p in unknown)

    @property
    def dry(self) -> bool:
        """Whether writes on this thread are a dry run."""
        return bool(getattr(self._local, "dry", False))

    @contextlib.contextmanager
    def dry_run(self, enabled: bool = True) -> Iterator[None]:
        """Within this block (on this thread) writes are computed and answered, not stored."""
        before = getattr(self._local, "dry", False)
        self._local.dry = enabled
        try:
            yield
        finally:
            self._local.dry = before

    def _commit(self, rt: ResourceType, obj: Obj | None, ns: str, name: str) -> Event:
        if self.dry:
            prev = self.store.get(rt, ns, name)
            if obj is None:
                assert prev is not None
                return Event(self.store.rv, rt.key, "DELETED", prev, prev)
            if prev is not None:
                obj["metadata"]["resourceVersion"] = prev.obj["metadata"]["resourceVersion"]
            else:
                obj["metadata"].pop("resourceVersion", None)
            stored = Stored(obj, self.store._serialize(rt, obj), rt)
            return Event(self.store.rv, rt.key, "MODIFIED" if prev else "ADDED", stored, prev)
        event = self.store.write(rt, obj, ns, name)
        self._after_write(rt, event)
        return event

    # -- plain writes (Python API) --------------------------------------------------------

    def put(self, obj: Obj, expect_rv: str | None = None, create: bool = True) -> Stored:
        """Create or replace without checks (the Python API). With ``expect_rv`` the stored
        object must still have that resourceVersion (else 409 Conflict); without ``create``
        it must exist (else 404)."""
        rt = self.store.registry.by_kind(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
        if rt is None:
            raise KeyError(f"unknown kind {obj.get('apiVersion')}/{obj.get('kind')}")
        obj = json.loads(json.dumps(obj))  # a deep copy, faster than copy.deepcopy
        ns, name = self._ns_name(rt, obj, None)
        with self.store.cond:
            old = self.store.get(rt, ns, name)
            if old is None and not create:
                raise not_found(rt.plural, name, rt.group)
            if expect_rv is not None and (
                    old is None or old.obj["metadata"]["resourceVersion"] != expect_rv):
                raise _conflict_rv(rt, name)
            if old is None:
                self._fresh_meta(rt, obj)
            else:
                self._carry_meta(rt, old.obj, obj)
            if rt.kind == "Service" and rt.group == "":
                for p in obj.get("spec", {}).get("ports") or []:
                    if p.get("nodePort"):
                        self._node_ports.add(int(p["nodePort"]))
            return self._commit(rt, obj, ns, name).new

    # -- HTTP verbs -----------------------------------------------------------------------

    def create(self, rt: ResourceType, namespace: str | None, body: Obj,
               field_manager: str | None = None) -> Stored:
        obj = copy.deepcopy(body)
        self._check_kind(rt, obj)
        self._validate(rt, obj)
        ns, name = self._ns_name(rt, obj, namespace)
        with self.store.cond:
            self._check_namespace(rt, ns)
            if self.store.get(rt, ns, name) is not None:
                qual = f"{rt.plural}.{rt.group}" if rt.group else rt.plural
                raise ApiError(409, f'{qual} "{name}" already exists', reason="AlreadyExists",
                               details={"name": name, "group": rt.group, "kind": rt.plural})
            for k in _SERVER_META:
                obj["metadata"].pop(k, None)
            self._fresh_meta(rt, obj)
            self._default(rt, obj, None)
            if field_manager:
                self._record_update(rt, None, obj, field_manager, None)
            return self._commit(rt, obj, ns, name).new

    def replace(self, rt: ResourceType, namespace: str | None, name: str, body: Obj,
                subresource: str | None = None, field_manager: str | None = None) -> Stored:
        obj = copy.deepcopy(body)
        self._check_kind(rt, obj)
        self._validate(rt, obj)
        ns, body_name = self._ns_name(rt, obj, namespace)
        if body_name != name:
            raise ApiError(400, f"the name of the object ({body_name}) does not match the name "
                           f"on the URL ({name})")
        with self.store.cond:
            old = self.store.get(rt, ns, name)
            if old is None:
                raise not_found(rt.plural, name, rt.group)
            want_rv = obj["metadata"].get("resourceVersion")
            if want_rv and want_rv != old.obj["metadata"]["resourceVersion"]:
                raise _conflict_rv(rt, name)
            obj = self._split_status(rt, old.obj, obj, subresource)
            self._carry_meta(rt, old.obj, obj)
            self._default(rt, obj, old.obj)
            if field_manager:
                self._record_update(rt, old.obj, obj, field_manager, subresource)
            return self._commit(rt, obj, ns, name).new

    def patch(self, rt: ResourceType, namespace: str | None, name: str, content_type: str,
              raw: bytes, subresource: str | None = None, field_manager: str | None = None,
              force: bool = False) -> tuple[Stored, bool]:
        """PATCH; returns (object, created)."""
        ctype = content_type.split(";")[0].strip().lower()
        ns = (namespace or "default") if rt.namespaced else ""
        if ctype == "application/apply-patch+yaml":
            if not field_manager:
                raise ApiError(400, "PATCH /apply: fieldManager is required for apply requests")
            try:
                applied = yaml.safe_load(raw.decode() or "{}")
            except yaml.YAMLError as exc:
                raise ApiError(400, f"error decoding YAML: {exc}") from exc
            if not isinstance(applied, dict):
                raise ApiError(400, "apply patch must be an object")
            return self.apply(rt, ns, name, applied, field_manager, force, subresource)
        try:
            patch = json.loads(raw or b"{}")
        except ValueError as exc:
            raise ApiError(400, f"error decoding patch: {exc}") from exc
        with self.store.cond:
            old = self.store.get(rt, ns, name)
            if old is None:
                raise not_found(rt.plural, name, rt.group)
            if ctype == "application/json-patch+json":
                if not isinstance(patch, list):
                    raise ApiError(400, "json patch must be a list")
                new = json_patch(old.obj, patch)
            elif ctype == "application/merge-patch+json":
                if not isinstance(patch, dict):
                    raise ApiError(400, "merge patch must be an object")
                new = merge_patch(old.obj, patch)
            elif ctype == "application/strategic-merge-patch+json" and rt.builtin:
                if not isinstance(patch, dict):
                    raise ApiError(400, "strategic merge patch must be an object")
                new = schema.strategic_merge(old.obj, patch, self.schema_of(rt) or {})
            else:
                raise ApiError(415, "the body of the request was in an unknown format - "
                               "accepted media types include: application/json-patch+json, "
                               "application/merge-patch+json, "
                               "application/apply-patch+yaml", reason="UnsupportedMediaType")
            want_rv = (patch.get("metadata") or {}).get("resourceVersion") if isinstance(
                patch, dict) else None
            if want_rv and want_rv != old.obj["metadata"]["resourceVersion"]:
                raise _conflict_rv(rt, name)
            self._validate(rt, new)
            new = self._split_status(rt, old.obj, new, subresource)
            new["metadata"]["name"] = name
            if rt.namespaced:
                new["metadata"]["namespace"] = ns
            self._carry_meta(rt, old.obj, new)
            self._default(rt, new, old.obj)
            if new == old.obj:
                return old, False
            if field_manager:
                self._record_update(rt, old.obj, new, field_manager, subresource)
            return self._commit(rt, new, ns, name).new, False

    def apply(self, rt: ResourceType, ns: str, name: str, applied: Obj, manager: str,
              force: bool, subresource: str | None = None) -> tuple[Stored, bool]:
        """Server-side apply (simplified: lists are atomic, ownership per leaf path)."""
        applied = copy.deepcopy(applied)
        meta = applied.setdefault("metadata", {})
        if meta.get("name") and meta["name"] != name:
            raise ApiError(400, "the name of the object does not match the name on the URL")
        meta["name"] = name
        if rt.namespaced and meta.get("namespace") and meta["namespace"] != ns:
            raise ApiError(400, "the namespace of the provided object does not match the "
                           "namespace sent on the request")
        if applied.get("kind", rt.kind) != rt.kind:
            raise ApiError(400, f"apply: kind {applied.get('kind')} does not match {rt.kind}")
        if subresource != "status" and rt.has_status:
            applied.pop("status", None)
        self._validate(rt, applied, applying=True)
        paths = leaf_paths(applied)
        with self.store.cond:
            old = self.store.get(rt, ns, name)
            if old is None:
                if subresource:
                    raise not_found(rt.plural, name, rt.group)
                obj = copy.deepcopy(applied)
                self._ns_name(rt, obj, ns or None)
                self._check_namespace(rt, ns)
                for k in _SERVER_META:
                    obj["metadata"].pop(k, None)
                self._fresh_meta(rt, obj)
                self._default(rt, obj, None)
                self._record_manager(obj, manager, "Apply", paths, rt)
                return self._commit(rt, obj, ns, name).new, True
            cur = old.obj
            managers = copy.deepcopy(cur["metadata"].get("managedFields") or [])
            conflicts: list[str] = []
            for entry in managers:
                if entry.get("manager") == manager and entry.get("operation") == "Apply":
                    continue
                owned = from_fields_v1(entry.get("fieldsV1") or {})
                lost: set[Path_] = set()
                for p in paths:
                    for q in owned:
                        if not _overlaps(p, q):
                            continue
                        same = _lookup(cur, q) == _lookup(applied, q)
                        if not same:
                            if force:
                                lost.add(q)
                            else:
                                conflicts.append(f'conflict with "{entry.get("manager")}": '
                                                 f'.{".".join(q)}')
                if lost:
                    entry["fieldsV1"] = to_fields_v1(owned - lost)
            if conflicts:
                raise ApiError(409, f"Apply failed with {len(conflicts)} conflict(s): "
                               + "; ".join(sorted(set(conflicts))), reason="Conflict",
                               details={"name": name, "group": rt.group, "kind": rt.plural,
                                        "causes": [{"reason": "FieldManagerConflict",
                                                    "message": c} for c in conflicts]})
            new = merge_patch(cur, {k: v for k, v in applied.items()
                                    if k not in ("kind", "apiVersion")})
            # fields this manager applied before but no longer does, and nobody else owns
            prior: set[Path_] = set()
            others: set[Path_] = set()
            for entry in managers:
                owned = from_fields_v1(entry.get("fieldsV1") or {})
                if entry.get("manager") == manager and entry.get("operation") == "Apply":
                    prior |= owned
                else:
                    others |= owned
            for p in prior - paths:
                if not any(_overlaps(p, q) for q in others) and not any(
                        _overlaps(p, q) for q in paths):
                    _remove(new, p)
            new["metadata"]["managedFields"] = [e for e in managers if e.get("fieldsV1")]
            new = self._split_status(rt, cur, new, subresource)
            self._carry_meta(rt, cur, new)
            self._default(rt, new, cur)
            self._record_manager(new, manager, "Apply", paths, rt, subresource,
                                 keep_time_from=cur)
            if new == cur:
                return old, False
            self._record_manager(new, manager, "Apply", paths, rt, subresource)
            return self._commit(rt, new, ns, name).new, False

    def _record_update(self, rt: ResourceType, old: Obj | None, new: Obj, manager: str,
                       subresource: str | None) -> None:
        """Give ``manager`` (operation Update) the fields this write changed, taking them
        from other managers, as a real server does for non-apply writes."""
        changed = {p for p in leaf_paths(new) if old is None or _lookup(new, p) != _lookup(old, p)}
        if rt.has_status:
            changed = {p for p in changed if (p[0] == "status") == (subresource == "status")}
        if not changed:
            return
        entries = []
        for entry in new["metadata"].get("managedFields") or []:
            owned = from_fields_v1(entry.get("fieldsV1") or {})
            keep = {q for q in owned if not any(_overlaps(q, p) for p in changed)}
            if keep != owned:
                entry = dict(entry, fieldsV1=to_fields_v1(keep))
            if keep:
                entries.append(entry)
        new["metadata"]["managedFields"] = entries
        self._record_manager(new, manager, "Update", changed, rt, subresource)

    def _record_manager(self, obj: Obj, manager: str, operation: str, paths: set[Path_],
                        rt: ResourceType, subresource: str | None = None,
                        keep_time_from: Obj | None = None) -> None:
        entries = obj["metadata"].setdefault("managedFields", [])
        existing = next((e for e in entries if e.get("manager") == manager
                         and e.get("operation") == operation
                         and e.get("subresource") == subresource), None)
        if operation == "Update" and existing is not None:
            paths = paths | from_fields_v1(existing.get("fieldsV1") or {})
        entry: Obj = {"manager": manager, "operation": operation, "apiVersion": rt.api_version,
                      "time": self.now(), "fieldsType": "FieldsV1",
                      "fieldsV1": to_fields_v1(paths)}
        if subresource:
            entry["subresource"] = subresource
        if keep_time_from is not None and existing is not None:
            entry["time"] = existing.get("time", entry["time"])
        if existing is not None:
            entries[entries.index(existing)] = entry
        else:
            entries.append(entry)

    def delete(self, rt: ResourceType, namespace: str | None, name: str,
               precondition_rv: str | None = None, precondition_uid: str | None = None
               ) -> Stored:
        ns = (namespace or "default") if rt.namespaced else ""
        with self.store.cond:
            old = self.store.get(rt, ns, name)
            if old is None:
                raise not_found(rt.plural, name, rt.group)
            if precondition_rv and precondition_rv != old.obj["metadata"]["resourceVersion"]:
                raise _conflict_rv(rt, name)
            if precondition_uid and precondition_uid != old.obj["metadata"].get("uid"):
                qual = f"{rt.plural}.{rt.group}" if rt.group else rt.plural
                raise ApiError(409, f'Operation cannot be fulfilled on {qual} "{name}": '
                               f"Precondition failed: UID in precondition: {precondition_uid}, "
                               f"UID in object meta: {old.obj['metadata'].get('uid')}",
                               details={"name": name, "group": rt.group, "kind": rt.plural})
            if rt.kind == "Namespace":
                for other in self.store.registry.all():
                    if other.namespaced:
                        for item in list(self.store.sorted_items(other)):
                            if item.namespace == name:
                                self._commit(other, None, item.namespace, item.name)
            if rt.kind == "Service":
                for p in old.obj.get("spec", {}).get("ports") or []:
                    if not self.dry:
                        self._node_ports.discard(int(p.get("nodePort") or 0))
            return self._commit(rt, None, ns, name).new

    # -- status subresource, defaulting, side effects ---------------------------------------

    @staticmethod
    def _split_status(rt: ResourceType, old: Obj, new: Obj, subresource: str | None) -> Obj:
        if not rt.has_status:
            return new
        if subresource == "status":
            out = copy.deepcopy(old)
            if "status" in new:
                out["status"] = new["status"]
            else:
                out.pop("status", None)
            out["metadata"] = new["metadata"] if "managedFields" in new["metadata"] else dict(
                old["metadata"])
            return out
        out = dict(new)
        if "status" in old:
            out["status"] = old["status"]
        else:
            out.pop("status", None)
        return out

    def _default(self, rt: ResourceType, obj: Obj, old: Obj | None) -> None:
        if rt.kind == "Service" and rt.group == "":
            spec = obj.setdefault("spec", {})
            stype = spec.setdefault("type", "ClusterIP")
            if old is not None and old.get("spec", {}).get("clusterIP"):
                spec.setdefault("clusterIP", old["spec"]["clusterIP"])
            if not spec.get("clusterIP"):
                spec["clusterIP"] = f"10.96.{random.randint(1, 254)}.{random.randint(1, 254)}"
            spec.setdefault("clusterIPs", [spec["clusterIP"]])
            spec.setdefault("sessionAffinity", "None")
            spec.setdefault("ipFamilies", ["IPv4"])
            spec.setdefault("ipFamilyPolicy", "SingleStack")
            spec.setdefault("internalTrafficPolicy", "Cluster")
            old_ports = {p.get("name"): p.get("nodePort")
                         for p in (old or {}).get("spec", {}).get("ports") or []}
            for p in spec.get("ports") or []:
                p.setdefault("protocol", "TCP")
                p.setdefault("targetPort", p.get("port"))
                if stype in ("NodePort", "LoadBalancer"):
                    if not p.get("nodePort") and old_ports.get(p.get("name")):
                        p["nodePort"] = old_ports[p.get("name")]
                    if not p.get("nodePort"):
                        free = [n for n in range(30087, 32768) if n not in self._node_ports]
                        p["nodePort"] = random.choice(free)
                    elif (p["nodePort"] in self._node_ports
                          and p["nodePort"] not in old_ports.values()):
                        raise ApiError(422, f'Service "{obj["metadata"]["name"]}" is invalid: '
                                       f"spec.ports[0].nodePort: Invalid value: {p['nodePort']}:"
                                       " provided port is already allocated", reason="Invalid")
                    if not self.dry:
                        self._node_ports.add(int(p["nodePort"]))
            if stype in ("NodePort", "LoadBalancer"):
                spec.setdefault("externalTrafficPolicy", "Cluster")
            obj.setdefault("status", {"loadBalancer": {}})
        elif rt.kind == "Namespace" and rt.group == "":
            obj["metadata"].setdefault("labels", {})[
                "kubernetes.io/metadata.name"] = obj["metadata"]["name"]
            obj.setdefault("spec", {"finalizers": ["kubernetes"]})
            obj.setdefault("status", {"phase": "Active"})

    @staticmethod
    def _check_kind(rt: ResourceType, obj: Obj) -> None:
        api_version = obj.get("apiVersion")
        if api_version and api_version != rt.api_version:
            raise ApiError(400, f"the API version in the data ({api_version}) does not match "
                           f"the expected API version ({rt.api_version})")
        if obj.get("kind") and obj["kind"] != rt.kind:
            raise ApiError(400, f"the kind in the data ({obj['kind']}) does not match the "
                           f"expected kind ({rt.kind})")

    def _after_write(self, rt: ResourceType, event: Event) -> None:
        if rt.kind == "CustomResourceDefinition" and rt.group == "apiextensions.k8s.io":
            self._crd_changed(event)

    def _later(self, delay: float, fn: Callable[..., None], *args: Any) -> None:
        t = threading.Timer(delay, fn, args)
        t.daemon = True
        t.start()

    def _crd_changed(self, event: Event) -> None:
        reg = self.store.registry
        crd = event.new.obj
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        group = str(spec.get("group", ""))
        plural = str(names.get("plural", ""))
        old_versions = {str(v.get("name")) for v in ((event.prev.obj.get("spec") or {}).get(
            "versions") or [])} if event.prev else set()
        self.openapi.set_crd(event.new.name, None if event.type == "DELETED" else crd)
        if event.type == "DELETED":
            for v in old_versions | {str(v.get("name")) for v in spec.get("versions") or []}:
                rt = reg.get(group, v, plural)
                if rt is not None:
                    for item in list(self.store.sorted_items(rt)):
                        self.store.write(rt, None, item.namespace, item.name)
                    reg.remove(rt.key)
            return
        served = [v for v in spec.get("versions") or [] if v.get("served", True)]
        for v in old_versions - {str(v.get("name")) for v in served}:
            reg.remove((group, v, plural))
        for v in served:
            has_status = "status" in (v.get("subresources") or {})
            reg.add(ResourceType(
                group, str(v.get("name")), plural, str(names.get("kind", "")),
                spec.get("scope") == "Namespaced", singular=str(names.get("singular", "")),
                short_names=tuple(names.get("shortNames") or ()), has_status=has_status,
                builtin=False, categories=tuple(names.get("categories") or ())))
        if event.prev is None or (crd.get("status") or {}).get("acceptedNames") != names:
            self._later(self.crd_delay, self._crd_established, event.new)

    def _crd_established(self, stored: Stored) -> None:
        rt = stored.rt
        with self.store.cond:
            cur = self.store.get(rt, "", stored.name)
            if cur is None:
                return
            obj = copy.deepcopy(cur.obj)
            names = (obj.get("spec") or {}).get("names") or {}
            now = self.now()
            obj["status"] = {
                "conditions": [
                    {"type": "NamesAccepted", "status": "True", "lastTransitionTime": now,
                     "reason": "NoConflicts", "message": "no conflicts found"},
                    {"type": "Established", "status": "True", "lastTransitionTime": now,
                     "reason": "InitialNamesAccepted",
                     "message": "the initial names have been accepted"},
                ],
                "acceptedNames": names,
                "storedVersions": [v.get("name") for v in obj["spec"].get("versions") or []
                                   if v.get("storage")],
            }
            self.store.write(rt, obj, "", stored.name)
