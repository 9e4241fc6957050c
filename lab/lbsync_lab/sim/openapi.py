"""The real OpenAPI documents: what the emulator serves and what its schemas come from.

This module owns the Kubernetes OpenAPI v2 document (the real one, from the shared test data:
`lbsync_lab.data.OPENAPI_V2`; missing, it fails loudly with :class:`MissingTestData`) and
everything derived from it:

* :func:`builtin_types` - the resources a default 1.3x server serves (GA versions only),
  read from the document's paths (verbs from ``x-kubernetes-action``, kinds from
  ``x-kubernetes-group-version-kind``);
* :func:`definition_for` - the schema of a built-in kind, for validation and strategic merge;
* :class:`OpenAPI` - the documents served at ``/openapi/v2``, ``/openapi/v3`` and
  ``/openapi/v3/<group-version>`` (converted from v2 the way kube-apiserver publishes v3, plus
  one document per custom resource group-version built from the CRDs' schemas).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from lbsync_lab import data

Obj = dict[str, Any]
DEF = "#/definitions/"
SCHEMAS = "#/components/schemas/"
_GA = re.compile(r"v\d+$")
_VERBS = {"get": "get", "list": "list", "watchlist": "watch", "post": "create", "put": "update",
          "patch": "patch", "delete": "delete", "deletecollection": "deletecollection"}
OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


@functools.cache
def v2_document() -> Obj:
    """The real OpenAPI v2 document (parsed once per process)."""
    with open(data.path(data.OPENAPI_V2), "rb") as f:
        doc: Obj = json.load(f)
    return doc


@functools.cache
def _gvk_index() -> dict[tuple[str, str, str], str]:
    out: dict[tuple[str, str, str], str] = {}
    for name, schema in v2_document()["definitions"].items():
        for gvk in schema.get("x-kubernetes-group-version-kind") or []:
            out[(gvk.get("group", ""), gvk["version"], gvk["kind"])] = name
    return out


def definition_for(group: str, version: str, kind: str) -> str | None:
    """The name of the v2 definition of a built-in kind (None for kinds it does not have)."""
    return _gvk_index().get((group, version, kind))


def definitions() -> Obj:
    defs: Obj = v2_document()["definitions"]
    return defs


# -- the served resource types ---------------------------------------------------------------

@dataclass(frozen=True)
class TypeInfo:
    """One resource as the document describes it (before short names and the like)."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    verbs: tuple[str, ...]
    subresources: tuple[str, ...]


_PATH = re.compile(r"^/(?:api/(?P<cv>v1)|apis/(?P<g>[^/]+)/(?P<v>[^/]+))"
                   r"(?P<ns>/namespaces/\{namespace\})?/(?P<plural>[a-z0-9]+)"
                   r"(?P<item>/\{name\}(?:/(?P<sub>[a-z]+))?)?$")


@functools.cache
def builtin_types() -> tuple[TypeInfo, ...]:
    """Every GA resource of the document, with its verbs and subresources."""
    found: dict[tuple[str, str, str], dict[str, Any]] = {}
    for path, ops in v2_document()["paths"].items():
        # the deprecated /watch/ paths are where the document declares the watch verb
        m = _PATH.match(path.replace("/watch/", "/", 1))
        if m is None:
            continue
        group = m.group("g") or ""
        version = m.group("cv") or m.group("v")
        if not _GA.match(version):
            continue
        plural, sub = m.group("plural"), m.group("sub")
        if plural == "namespaces" and m.group("ns"):
            continue  # /namespaces/{namespace}/namespaces does not exist; guard anyway
        entry = found.setdefault((group, version, plural), {
            "kind": None, "namespaced": False, "verbs": set(), "subs": set()})
        if m.group("ns"):
            entry["namespaced"] = True
        for method, op in ops.items():
            if not isinstance(op, dict) or method == "parameters":
                continue
            action = op.get("x-kubernetes-action", "")
            if sub is not None:
                entry["subs"].add(sub)
                continue
            verb = _VERBS.get(action)
            if verb is not None:
                entry["verbs"].add(verb)
            gvk = op.get("x-kubernetes-group-version-kind")
            if gvk and (entry["kind"] is None or m.group("item")):
                entry["kind"] = gvk["kind"]
    out = []
    for (group, version, plural), e in found.items():
        if e["kind"] is None or not e["verbs"]:
            continue
        verbs = tuple(v for v in ("create", "delete", "deletecollection", "get", "list",
                                  "patch", "update", "watch") if v in e["verbs"])
        out.append(TypeInfo(group, version, plural, e["kind"], e["namespaced"], verbs,
                            tuple(sorted(e["subs"]))))
    return tuple(out)


# -- v2 to v3 --------------------------------------------------------------------------------

def _to_v3_schema(schema: Any) -> Any:
    """A v2 schema as kube-apiserver's v3 spells it: component refs, and a ref with siblings
    wrapped in allOf (a $ref ignores its siblings in OpenAPI 3.0)."""
    if isinstance(schema, list):
        return [_to_v3_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _to_v3_schema(v) for k, v in schema.items() if k != "$ref"}
    ref = schema.get("$ref")
    if isinstance(ref, str):
        ref = ref.replace(DEF, SCHEMAS)
        if not out:
            return {"$ref": ref}
        out["allOf"] = [{"$ref": ref}]
        out.setdefault("default", {})
    return out


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                yield v.rsplit("/", 1)[-1]
            else:
                yield from _refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _refs(v)


def _closure(names: set[str], defs: Obj) -> set[str]:
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen or name not in defs:
            continue
        seen.add(name)
        todo.extend(_refs(defs[name]))
    return seen


def _parameter(p: Obj, params: Obj) -> Obj:
    if "$ref" in p:
        p = params[p["$ref"].rsplit("/", 1)[-1]]
    out = {k: v for k, v in p.items() if k in ("name", "in", "description", "required")}
    schema = {k: v for k, v in p.items() if k in ("type", "uniqueItems", "items", "format")}
    if schema:
        out["schema"] = schema
    return out


def _operation(op: Obj, params: Obj) -> Obj:
    out: Obj = {k: v for k, v in op.items() if k in ("description", "operationId", "tags")
                or k.startswith("x-kubernetes-")}
    plain, body = [], None
    for p in op.get("parameters") or []:
        resolved = params[p["$ref"].rsplit("/", 1)[-1]] if "$ref" in p else p
        if resolved.get("in") == "body":
            body = resolved
        else:
            plain.append(_parameter(p, params))
    if plain:
        out["parameters"] = plain
    if body is not None:
        schema = _to_v3_schema(body.get("schema") or {})
        out["requestBody"] = {"content": {c: {"schema": schema}
                                          for c in op.get("consumes") or ["*/*"]},
                              "required": bool(body.get("required"))}
    responses: Obj = {}
    for code, resp in (op.get("responses") or {}).items():
        r: Obj = {"description": resp.get("description", "")}
        if "schema" in resp:
            schema = _to_v3_schema(resp["schema"])
            r["content"] = {c: {"schema": schema} for c in op.get("produces") or ["*/*"]}
        responses[code] = r
    out["responses"] = responses
    return out


def _path_item(item: Obj, params: Obj) -> Obj:
    out: Obj = {}
    for method, op in item.items():
        if method == "parameters":
            out["parameters"] = [_parameter(p, params) for p in op]
        elif isinstance(op, dict):
            out[method] = _operation(op, params)
    return out


def _gv_prefix(group: str, version: str) -> str:
    return f"/api/{version}" if not group else f"/apis/{group}/{version}"


def _v3_document(paths: Obj, schemas: Obj) -> Obj:
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.35.2"},
            "paths": paths,
            "components": {"schemas": schemas, "securitySchemes": {"BearerToken": {
                "type": "apiKey", "description": "Bearer Token authentication",
                "name": "authorization", "in": "header"}}}}


@functools.cache
def _builtin_v3(group: str, version: str) -> bytes:
    doc = v2_document()
    params, defs = doc["parameters"], doc["definitions"]
    prefix = _gv_prefix(group, version)
    paths = {p: _path_item(item, params) for p, item in doc["paths"].items()
             if p == prefix or p.startswith(prefix + "/")}
    used = _closure(set(_refs([doc["paths"][p] for p in paths])), defs)
    schemas = {name: _to_v3_schema(defs[name]) for name in sorted(used)}
    return json.dumps(_v3_document(paths, schemas), separators=(",", ":")).encode()


def _digest(body: bytes) -> str:
    return hashlib.sha512(body).hexdigest().upper()


# -- custom resources ------------------------------------------------------------------------

def _reverse_group(group: str) -> str:
    return ".".join(reversed(group.split(".")))


def crd_definition_name(group: str, version: str, kind: str) -> str:
    """The schema name kube-apiserver gives a custom resource (reversed group, version, kind)."""
    return f"{_reverse_group(group)}.{version}.{kind}"


def crd_schema(crd: Obj, version: str) -> Obj | None:
    """The openAPIV3Schema of one version of a CRD (None when it has none)."""
    for v in (crd.get("spec") or {}).get("versions") or []:
        if v.get("name") == version:
            schema = (v.get("schema") or {}).get("openAPIV3Schema")
            return schema if isinstance(schema, dict) else None
    return None


def _cr_schema(crd: Obj, version: str) -> Obj:
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    schema = copy.deepcopy(crd_schema(crd, version) or {"type": "object"})
    props = schema.setdefault("properties", {})
    props["apiVersion"] = {"type": "string", "description": "APIVersion defines the versioned "
                           "schema of this representation of an object."}
    props["kind"] = {"type": "string", "description": "Kind is a string value representing "
                     "the REST resource this object represents."}
    props["metadata"] = {"allOf": [{"$ref": SCHEMAS + OBJECT_META}], "default": {}}
    schema["x-kubernetes-group-version-kind"] = [
        {"group": spec.get("group", ""), "kind": names.get("kind", ""), "version": version}]
    return schema


def _cr_paths(crd: Obj, version: str) -> Obj:
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group, plural, kind = spec.get("group", ""), names.get("plural", ""), names.get("kind", "")
    ns = "/namespaces/{namespace}" if spec.get("scope") == "Namespaced" else ""
    ref = {"$ref": SCHEMAS + crd_definition_name(group, version, kind)}
    gvk = {"group": group, "version": version, "kind": kind}
    item_params = [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}]
    if ns:
        item_params.append({"name": "namespace", "in": "path", "required": True,
                            "schema": {"type": "string"}})
    write_params = [{"name": n, "in": "query", "schema": {"type": "string"}}
                    for n in ("dryRun", "fieldManager", "fieldValidation")]

    def op(action: str, verb: str, body: bool = False, params: list[Obj] | None = None) -> Obj:
        out: Obj = {"operationId": f"{verb}{kind}", "x-kubernetes-action": action,
                    "x-kubernetes-group-version-kind": gvk,
                    "responses": {"200": {"description": "OK", "content": {
                        "application/json": {"schema": ref}}}}}
        if params:
            out["parameters"] = params
        if body:
            out["requestBody"] = {"content": {"application/json": {"schema": ref}},
                                  "required": True}
        return out

    base = f"/apis/{group}/{version}{ns}/{plural}"
    return {
        base: {"get": op("list", "list"), "post": op("post", "create", True, write_params)},
        base + "/{name}": {"parameters": item_params, "get": op("get", "read"),
                           "put": op("put", "replace", True, write_params),
                           "patch": op("patch", "patch", True, [*write_params, {
                               "name": "force", "in": "query", "schema": {"type": "boolean"}}]),
                           "delete": op("delete", "delete")},
    }


class OpenAPI:
    """The documents one emulator serves: the built-in ones plus its CRDs' (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._crds: dict[str, Obj] = {}  # CRD name -> CRD object
        self._cache: dict[tuple[str, str], bytes] = {}

    def set_crd(self, name: str, crd: Obj | None) -> None:
        """Record (or forget, with None) a CRD whose schemas the documents carry."""
        with self._lock:
            if crd is None:
                self._crds.pop(name, None)
            else:
                self._crds[name] = crd
            self._cache = {}

    def crd_for(self, group: str, kind: str) -> Obj | None:
        with self._lock:
            for crd in self._crds.values():
                spec = crd.get("spec") or {}
                if spec.get("group") == group and (spec.get("names") or {}).get("kind") == kind:
                    return crd
        return None

    def _custom_gvs(self) -> dict[tuple[str, str], list[Obj]]:
        out: dict[tuple[str, str], list[Obj]] = {}
        with self._lock:
            crds = list(self._crds.values())
        for crd in crds:
            spec = crd.get("spec") or {}
            for v in spec.get("versions") or []:
                if v.get("served", True):
                    out.setdefault((spec.get("group", ""), v.get("name", "")), []).append(crd)
        return out

    def v2(self) -> bytes:
        """/openapi/v2 as JSON: the built-in document plus custom resources' definitions."""
        doc = v2_document()
        extra: Obj = {}
        for (group, version), crds in self._custom_gvs().items():
            for crd in crds:
                kind = ((crd.get("spec") or {}).get("names") or {}).get("kind", "")
                schema = _cr_schema(crd, version)
                extra[crd_definition_name(group, version, kind)] = json.loads(
                    json.dumps(schema).replace(SCHEMAS, DEF))
        if not extra:
            return _v2_bytes()
        merged = dict(doc, definitions={**doc["definitions"], **extra})
        return json.dumps(merged, separators=(",", ":")).encode()

    def group_versions(self) -> list[tuple[str, str]]:
        builtin = sorted({(t.group, t.version) for t in builtin_types()})
        return builtin + sorted(set(self._custom_gvs()) - set(builtin))

    def v3_root(self) -> Obj:
        """The /openapi/v3 discovery document: one entry per group-version, with its hash."""
        paths: Obj = {}
        for group, version in self.group_versions():
            key = _gv_prefix(group, version).lstrip("/")
            body = self.v3(group, version)
            if body is not None:
                paths[key] = {"serverRelativeURL": f"/{key}?hash={_digest(body)}".replace(
                    f"/{key}", f"/openapi/v3/{key}", 1)}
        return {"paths": paths}

    def v3(self, group: str, version: str) -> bytes | None:
        """The v3 document of one group-version (None when it is not served)."""
        if (group, version) in {(t.group, t.version) for t in builtin_types()}:
            return _builtin_v3(group, version)
        with self._lock:
            cached = self._cache.get((group, version))
        if cached is not None:
            return cached
        crds = self._custom_gvs().get((group, version))
        if not crds:
            return None
        paths: Obj = {}
        schemas: Obj = {}
        for crd in crds:
            kind = ((crd.get("spec") or {}).get("names") or {}).get("kind", "")
            paths.update(_cr_paths(crd, version))
            schemas[crd_definition_name(group, version, kind)] = _cr_schema(crd, version)
        defs = definitions()
        for name in _closure({OBJECT_META}, defs):
            schemas[name] = _to_v3_schema(defs[name])
        body = json.dumps(_v3_document(paths, schemas), separators=(",", ":")).encode()
        with self._lock:
            self._cache[(group, version)] = body
        return body


@functools.cache
def _v2_bytes() -> bytes:
    return json.dumps(v2_document(), separators=(",", ":")).encode()
