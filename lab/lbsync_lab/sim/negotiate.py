"""Content negotiation: what a request body is in, and what the client asks to get back.

This module owns reading request bodies by ``Content-Type`` (JSON, YAML, Kubernetes protobuf;
anything else is a 415 as kube-apiserver answers) and reading ``Accept``: plain JSON, a
``meta.k8s.io`` Table or PartialObjectMetadata (``kubectl get``, metadata clients), or
aggregated discovery (``apidiscovery.k8s.io/v2``, asked for by current kubectl and helm on
``/api`` and ``/apis``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import yaml

from lbsync_lab.sim import protobuf
from lbsync_lab.sim.status import ApiError

Obj = dict[str, Any]
JSON = "application/json"
AGGREGATED = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"


@dataclass(frozen=True)
class Wanted:
    """What the response should be: ``as_`` is "" (the object), "Table",
    "PartialObjectMetadata" or "APIGroupDiscoveryList"."""

    as_: str = ""
    version: str = ""


def _media(text: str) -> tuple[str, dict[str, str]]:
    parts = [p.strip() for p in text.split(";")]
    params = {}
    for p in parts[1:]:
        k, _, v = p.partition("=")
        params[k.strip()] = v.strip()
    return parts[0].lower(), params


def accept(header: str | None) -> Wanted:
    """The first representation of ``Accept`` the emulator can serve (406 if none)."""
    if not header:
        return Wanted()
    for item in header.split(","):
        mtype, params = _media(item)
        if mtype not in ("application/json", "*/*", "application/*", "application/yaml",
                         "application/json;stream=watch"):
            continue
        kind = params.get("as", "")
        if not kind:
            return Wanted()
        group, version = params.get("g", ""), params.get("v", "")
        if kind in ("Table", "PartialObjectMetadata", "PartialObjectMetadataList") and (
                group == "meta.k8s.io" and version in ("v1", "v1beta1")):
            return Wanted(kind.removesuffix("List"), version)
        if kind == "APIGroupDiscoveryList" and group == "apidiscovery.k8s.io" and version == "v2":
            return Wanted(kind, version)
    raise ApiError(406, f"only the following media types are accepted: application/json, "
                   f"application/yaml (not {header})", reason="NotAcceptable")


def body(raw: bytes, content_type: str | None) -> Obj:
    """A create/update/delete body as a dict, by its Content-Type."""
    mtype, _ = _media(content_type or JSON)
    if mtype == protobuf.CONTENT_TYPE:
        return protobuf.decode(raw)
    if mtype in ("application/json", "", "*/*"):
        try:
            out = json.loads(raw or b"{}")
        except ValueError as exc:
            raise ApiError(400, f"couldn't get version/kind; json parse error: {exc}") from exc
    elif mtype == "application/yaml":
        try:
            out = yaml.safe_load(raw.decode() or "{}")
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise ApiError(400, f"error decoding YAML: {exc}") from exc
    else:
        raise ApiError(415, f"the body of the request was in an unknown format - accepted "
                       f"media types include: application/json, application/yaml, "
                       f"application/vnd.kubernetes.protobuf (not {mtype})",
                       reason="UnsupportedMediaType")
    if not isinstance(out, dict):
        raise ApiError(400, "request body must be an object")
    return out


def partial(obj: Obj, version: str = "v1") -> Obj:
    return {"kind": "PartialObjectMetadata", "apiVersion": f"meta.k8s.io/{version}",
            "metadata": obj.get("metadata") or {}}
