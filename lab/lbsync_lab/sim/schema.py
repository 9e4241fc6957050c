"""Schemas at work: field validation (unknown fields) and strategic merge patch.

This module owns what the emulator does with the real schemas (:mod:`lbsync_lab.sim.openapi`
for built-in kinds, a CRD's ``openAPIV3Schema`` for custom resources):

* :func:`prune_unknown` - find the fields a schema does not declare and drop them, as
  kube-apiserver's decoding (built-ins) and pruning (custom resources) do; the server turns
  the list into a 400 (``fieldValidation=Strict``), ``Warning`` headers (``Warn``, the
  default) or nothing (``Ignore``);
* :func:`strategic_merge` - ``application/strategic-merge-patch+json`` with the patch
  strategies and merge keys of the real schemas (``x-kubernetes-patch-strategy``,
  ``x-kubernetes-patch-merge-key``) and the directives client-go's three-way patches carry
  (``$patch``, ``$retainKeys``, ``$setElementOrder/``, ``$deleteFromPrimitiveList/``).
"""

from __future__ import annotations

import copy
from typing import Any

from lbsync_lab.sim import openapi

Obj = dict[str, Any]
_ORDER = "$setElementOrder/"
_DELETE_PRIMITIVE = "$deleteFromPrimitiveList/"


def resolve(schema: Any) -> Obj:
    """Follow ``$ref`` (v2 or v3 spelling) and single-element ``allOf`` wrappers."""
    seen = 0
    while isinstance(schema, dict) and seen < 50:
        seen += 1
        ref = schema.get("$ref")
        if isinstance(ref, str):
            schema = openapi.definitions().get(ref.rsplit("/", 1)[-1], {})
            continue
        all_of = schema.get("allOf")
        if isinstance(all_of, list) and len(all_of) == 1 and not schema.get("properties"):
            merged = dict(resolve(all_of[0]))
            merged.update({k: v for k, v in schema.items() if k != "allOf"})
            schema = merged
            continue
        return schema
    return schema if isinstance(schema, dict) else {}


def builtin_schema(group: str, version: str, kind: str) -> Obj | None:
    name = openapi.definition_for(group, version, kind)
    return None if name is None else resolve({"$ref": openapi.DEF + name})


def custom_schema(crd: Obj, version: str) -> Obj:
    """A custom resource's schema with the parts every object has (apiVersion, kind,
    metadata as ObjectMeta) filled in, as the API server treats them."""
    schema = copy.deepcopy(openapi.crd_schema(crd, version) or {
        "type": "object", "x-kubernetes-preserve-unknown-fields": True})
    props = schema.setdefault("properties", {})
    props["apiVersion"] = {"type": "string"}
    props["kind"] = {"type": "string"}
    props["metadata"] = {"$ref": openapi.DEF + openapi.OBJECT_META}
    return schema


# -- unknown fields --------------------------------------------------------------------------

def prune_unknown(obj: Any, schema: Obj) -> list[str]:
    """Drop, in place, the fields ``schema`` does not declare; return their paths
    (``spec.template.spec.containers[0].foo``) in document order."""
    out: list[str] = []
    _walk(obj, schema, "", out)
    return out


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _walk(value: Any, schema: Any, path: str, out: list[str]) -> None:
    schema = resolve(schema)
    if not schema or schema.get("x-kubernetes-preserve-unknown-fields"):
        return
    if isinstance(value, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        embedded = schema.get("x-kubernetes-embedded-resource")
        if props is None and not isinstance(extra, dict):
            return  # a free-form object (RawExtension, FieldsV1, type: object alone)
        for key in list(value):
            if props is not None and key in props:
                _walk(value[key], props[key], _join(path, key), out)
            elif isinstance(extra, dict):
                _walk(value[key], extra, _join(path, key), out)
            elif (embedded and key in ("apiVersion", "kind", "metadata")) or extra is True:
                continue
            else:
                out.append(_join(path, key))
                del value[key]
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for i, item in enumerate(value):
                _walk(item, items, f"{path}[{i}]", out)


# -- strategic merge patch -------------------------------------------------------------------

def _field_schema(schema: Obj, key: str) -> Obj:
    props = schema.get("properties") or {}
    if key in props:
        return props[key]  # type: ignore[no-any-return]
    extra = schema.get("additionalProperties")
    return extra if isinstance(extra, dict) else {}


def strategic_merge(original: Any, patch: Any, schema: Obj) -> Any:
    """Apply a strategic merge patch to ``original`` (not modified); returns the result."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    schema = resolve(schema)
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return None
    out: Obj = copy.deepcopy(original) if isinstance(original, dict) else {}
    orders: dict[str, list[Any]] = {}
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys"):
            continue
        if key.startswith(_ORDER):
            orders[key[len(_ORDER):]] = value
            continue
        if key.startswith(_DELETE_PRIMITIVE):
            field = key[len(_DELETE_PRIMITIVE):]
            if isinstance(out.get(field), list):
                out[field] = [v for v in out[field] if v not in value]
            continue
        sub = resolve(_field_schema(schema, key))
        if value is None:
            out.pop(key, None)
        elif isinstance(value, list):
            merged_list = _merge_list(out.get(key), value, sub)
            if merged_list or not out.get(key):
                out[key] = merged_list
            else:  # emptied by deletions: gone, as the typed object's omitempty drops it
                out.pop(key, None)
        elif isinstance(value, dict):
            merged = strategic_merge(out.get(key), value, sub)
            if merged is None:
                out.pop(key, None)
            else:
                out[key] = merged
        else:
            out[key] = copy.deepcopy(value)
    retain = patch.get("$retainKeys")
    if isinstance(retain, list):
        out = {k: v for k, v in out.items() if k in retain}
    for key, order in orders.items():
        if isinstance(out.get(key), list):
            out[key] = _ordered(out[key], order, resolve(_field_schema(schema, key)))
    return out


def _strategy(schema: Obj) -> tuple[bool, str]:
    strategies = str(schema.get("x-kubernetes-patch-strategy", "")).split(",")
    return "merge" in strategies, str(schema.get("x-kubernetes-patch-merge-key", ""))


def _merge_list(original: Any, patch: list[Any], schema: Obj) -> list[Any]:
    merge, key = _strategy(schema)
    if any(isinstance(p, dict) and p.get("$patch") == "replace" for p in patch):
        return [copy.deepcopy(p) for p in patch
                if not (isinstance(p, dict) and p.get("$patch") == "replace")]
    if not merge or not isinstance(original, list):
        return [copy.deepcopy(p) for p in patch
                if not (isinstance(p, dict) and "$patch" in p)]
    items = resolve(schema.get("items") or {})
    out = copy.deepcopy(original)
    if not key:  # a merged list of primitives: union
        out.extend(copy.deepcopy(p) for p in patch if p not in out)
        return out
    for p in patch:
        if not isinstance(p, dict):
            continue
        idx = next((i for i, o in enumerate(out)
                    if isinstance(o, dict) and o.get(key) == p.get(key)), None)
        if p.get("$patch") == "delete":
            if idx is not None:
                del out[idx]
        elif idx is None:
            out.append(strategic_merge({}, p, items))
        else:
            out[idx] = strategic_merge(out[idx], p, items)
    return out


def _ordered(values: list[Any], order: list[Any], schema: Obj) -> list[Any]:
    _merge, key = _strategy(schema)

    def ident(v: Any) -> Any:
        return v.get(key) if key and isinstance(v, dict) else v

    wanted = [ident(o) for o in order]
    rank = {repr(w): i for i, w in enumerate(wanted)}
    return sorted(values, key=lambda v: rank.get(repr(ident(v)), len(rank)))
