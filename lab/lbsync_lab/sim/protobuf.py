"""Request bodies in Kubernetes' protobuf encoding (``application/vnd.kubernetes.protobuf``).

This module owns decoding what client-go sends for built-in kinds through typed clients
(helm's release Secrets and ``--create-namespace``, ``kubectl create configmap|secret|
namespace|serviceaccount|token|role...``, ``kubectl auth can-i|whoami``): the ``k8s\\x00``
magic, the ``runtime.Unknown`` envelope, then the object's message, into the JSON dict the
rest of the emulator works on.

Only the messages listed in :data:`MESSAGES` are known (field numbers as in the Kubernetes
API's generated.proto files). A kind outside them is refused with 415 UnsupportedMediaType,
as kube-apiserver refuses protobuf for kinds it cannot decode that way (custom resources); a
field number a known message does not have is a 400, so a wrong table shows up loudly rather
than as a silently dropped field.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from lbsync_lab.sim.status import ApiError

MAGIC = b"k8s\x00"
CONTENT_TYPE = "application/vnd.kubernetes.protobuf"

# A field: (JSON name, type, repeated). Types: "string", "bytes", "int", "bool", "time"
# (meta.v1.Time), "fields" (meta.v1.FieldsV1: raw JSON), "map" (string to string),
# "bmap" (string to bytes, base64 in JSON), "output" (a status the server fills: clients send
# it empty, it is dropped), or the name of another message here.
Field = tuple[str, str, bool]
MESSAGES: dict[str, dict[int, Field]] = {
    "TypeMeta": {1: ("apiVersion", "string", False), 2: ("kind", "string", False)},
    "Unknown": {1: ("typeMeta", "TypeMeta", False), 2: ("raw", "bytes", False),
                3: ("contentEncoding", "string", False), 4: ("contentType", "string", False)},
    "ObjectMeta": {
        1: ("name", "string", False), 2: ("generateName", "string", False),
        3: ("namespace", "string", False), 4: ("selfLink", "string", False),
        5: ("uid", "string", False), 6: ("resourceVersion", "string", False),
        7: ("generation", "int", False), 8: ("creationTimestamp", "time", False),
        9: ("deletionTimestamp", "time", False), 10: ("deletionGracePeriodSeconds", "int", False),
        11: ("labels", "map", False), 12: ("annotations", "map", False),
        13: ("ownerReferences", "OwnerReference", True), 14: ("finalizers", "string", True),
        17: ("managedFields", "ManagedFieldsEntry", True)},
    "OwnerReference": {1: ("kind", "string", False), 3: ("name", "string", False),
                       4: ("uid", "string", False), 5: ("apiVersion", "string", False),
                       6: ("controller", "bool", False),
                       7: ("blockOwnerDeletion", "bool", False)},
    "ManagedFieldsEntry": {1: ("manager", "string", False), 2: ("operation", "string", False),
                           3: ("apiVersion", "string", False), 4: ("time", "time", False),
                           6: ("fieldsType", "string", False), 7: ("fieldsV1", "fields", False),
                           8: ("subresource", "string", False)},
    "LabelSelector": {1: ("matchLabels", "map", False),
                      2: ("matchExpressions", "LabelSelectorRequirement", True)},
    "LabelSelectorRequirement": {1: ("key", "string", False), 2: ("operator", "string", False),
                                 3: ("values", "string", True)},
    "DeleteOptions": {1: ("gracePeriodSeconds", "int", False),
                      2: ("preconditions", "Preconditions", False),
                      3: ("orphanDependents", "bool", False),
                      4: ("propagationPolicy", "string", False), 5: ("dryRun", "string", True),
                      6: ("ignoreStoreReadErrorWithClusterBreakingPotential", "bool", False)},
    "Preconditions": {1: ("uid", "string", False), 2: ("resourceVersion", "string", False)},
    # core/v1
    "Secret": {1: ("metadata", "ObjectMeta", False), 2: ("data", "bmap", False),
               3: ("type", "string", False), 4: ("stringData", "map", False),
               5: ("immutable", "bool", False)},
    "ConfigMap": {1: ("metadata", "ObjectMeta", False), 2: ("data", "map", False),
                  3: ("binaryData", "bmap", False), 4: ("immutable", "bool", False)},
    "Namespace": {1: ("metadata", "ObjectMeta", False), 2: ("spec", "NamespaceSpec", False),
                  3: ("status", "NamespaceStatus", False)},
    "NamespaceSpec": {1: ("finalizers", "string", True)},
    "NamespaceStatus": {1: ("phase", "string", False)},
    "ServiceAccount": {1: ("metadata", "ObjectMeta", False),
                       2: ("secrets", "ObjectReference", True),
                       3: ("imagePullSecrets", "LocalObjectReference", True),
                       4: ("automountServiceAccountToken", "bool", False)},
    "ObjectReference": {1: ("kind", "string", False), 2: ("namespace", "string", False),
                        3: ("name", "string", False), 4: ("uid", "string", False),
                        5: ("apiVersion", "string", False), 6: ("resourceVersion", "string", False),
                        7: ("fieldPath", "string", False)},
    "LocalObjectReference": {1: ("name", "string", False)},
    # authentication.k8s.io/v1
    "TokenRequest": {1: ("metadata", "ObjectMeta", False), 2: ("spec", "TokenRequestSpec", False),
                     3: ("status", "output", False)},
    "TokenRequestSpec": {1: ("audiences", "string", True), 3: ("boundObjectRef",
                                                               "BoundObjectReference", False),
                         4: ("expirationSeconds", "int", False)},
    "BoundObjectReference": {1: ("kind", "string", False), 2: ("apiVersion", "string", False),
                             3: ("name", "string", False), 4: ("uid", "string", False)},
    "SelfSubjectReview": {1: ("metadata", "ObjectMeta", False), 2: ("status", "output", False)},
    # authorization.k8s.io/v1
    "SelfSubjectAccessReview": {1: ("metadata", "ObjectMeta", False),
                                2: ("spec", "SelfSubjectAccessReviewSpec", False),
                                3: ("status", "output", False)},
    "SelfSubjectAccessReviewSpec": {1: ("resourceAttributes", "ResourceAttributes", False),
                                    2: ("nonResourceAttributes", "NonResourceAttributes",
                                        False)},
    "ResourceAttributes": {1: ("namespace", "string", False), 2: ("verb", "string", False),
                           3: ("group", "string", False), 4: ("version", "string", False),
                           5: ("resource", "string", False), 6: ("subresource", "string", False),
                           7: ("name", "string", False),
                           8: ("fieldSelector", "SelectorAttributes", False),
                           9: ("labelSelector", "SelectorAttributes", False)},
    "SelectorAttributes": {1: ("rawSelector", "string", False),
                           2: ("requirements", "LabelSelectorRequirement", True)},
    "NonResourceAttributes": {1: ("path", "string", False), 2: ("verb", "string", False)},
    "SelfSubjectRulesReview": {1: ("metadata", "ObjectMeta", False),
                               2: ("spec", "SelfSubjectRulesReviewSpec", False),
                               3: ("status", "output", False)},
    "SelfSubjectRulesReviewSpec": {1: ("namespace", "string", False)},
    # rbac.authorization.k8s.io/v1
    "Role": {1: ("metadata", "ObjectMeta", False), 2: ("rules", "PolicyRule", True)},
    "ClusterRole": {1: ("metadata", "ObjectMeta", False), 2: ("rules", "PolicyRule", True),
                    3: ("aggregationRule", "AggregationRule", False)},
    "AggregationRule": {1: ("clusterRoleSelectors", "LabelSelector", True)},
    "PolicyRule": {1: ("verbs", "string", True), 2: ("apiGroups", "string", True),
                   3: ("resources", "string", True), 4: ("resourceNames", "string", True),
                   5: ("nonResourceURLs", "string", True)},
    "RoleBinding": {1: ("metadata", "ObjectMeta", False), 2: ("subjects", "Subject", True),
                    3: ("roleRef", "RoleRef", False)},
    "ClusterRoleBinding": {1: ("metadata", "ObjectMeta", False),
                           2: ("subjects", "Subject", True), 3: ("roleRef", "RoleRef", False)},
    "Subject": {1: ("kind", "string", False), 2: ("apiGroup", "string", False),
                3: ("name", "string", False), 4: ("namespace", "string", False)},
    "RoleRef": {1: ("apiGroup", "string", False), 2: ("kind", "string", False),
                3: ("name", "string", False)},
}
# The kinds whose top-level message is known, by (apiVersion, kind).
KINDS = {("v1", "Secret"), ("v1", "ConfigMap"), ("v1", "Namespace"), ("v1", "ServiceAccount"),
         ("authentication.k8s.io/v1", "TokenRequest"),
         ("authentication.k8s.io/v1", "SelfSubjectReview"),
         ("authorization.k8s.io/v1", "SelfSubjectAccessReview"),
         ("authorization.k8s.io/v1", "SelfSubjectRulesReview"),
         ("rbac.authorization.k8s.io/v1", "Role"), ("rbac.authorization.k8s.io/v1", "ClusterRole"),
         ("rbac.authorization.k8s.io/v1", "RoleBinding"),
         ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding")}


class _Reader:
    def __init__(self, buf: bytes) -> None:
        self.buf, self.pos = buf, 0

    def varint(self) -> int:
        out = shift = 0
        while True:
            if self.pos >= len(self.buf):
                raise ValueError("truncated varint")
            b = self.buf[self.pos]
            self.pos += 1
            out |= (b & 0x7F) << shift
            if not b & 0x80:
                return out
            shift += 7

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.buf):
            raise ValueError("truncated field")
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out

    def fields(self) -> list[tuple[int, int, Any]]:
        """(number, wire type, value) of every field: ints for varints, bytes otherwise."""
        out: list[tuple[int, int, Any]] = []
        while self.pos < len(self.buf):
            key = self.varint()
            number, wire = key >> 3, key & 7
            value: Any
            if wire == 0:
                value = self.varint()
            elif wire == 2:
                value = self.take(self.varint())
            elif wire == 1:
                value = self.take(8)
            elif wire == 5:
                value = self.take(4)
            else:
                raise ValueError(f"unsupported wire type {wire}")
            out.append((number, wire, value))
        return out


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _time(raw: bytes) -> str | None:
    seconds = 0
    for number, _wire, value in _Reader(raw).fields():
        if number == 1:
            seconds = _signed(value)
    if seconds == 0:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _map_entry(raw: bytes) -> tuple[str, bytes]:
    key, value = "", b""
    for number, _wire, v in _Reader(raw).fields():
        if number == 1:
            key = v.decode()
        elif number == 2:
            value = v
    return key, value


def _scalar(ftype: str, wire: int, value: Any) -> Any:
    if ftype == "string":
        return value.decode()
    if ftype == "bytes":
        return base64.b64encode(value).decode()
    if ftype == "int":
        return _signed(value)
    if ftype == "bool":
        return bool(value)
    if ftype == "time":
        return _time(value)
    if ftype == "fields":
        raw = dict((n, v) for n, _w, v in _Reader(value).fields()).get(1, b"{}")
        return json.loads(raw)
    return decode_message(ftype, value)


def decode_message(name: str, raw: bytes) -> dict[str, Any]:
    """One message as a JSON dict (zero strings and numbers left out, as JSON omits them)."""
    spec = MESSAGES[name]
    out: dict[str, Any] = {}
    for number, wire, value in _Reader(raw).fields():
        if number not in spec:
            raise ApiError(400, f"protobuf: field {number} of {name} is unknown to the "
                           "emulator's decoder")
        fname, ftype, repeated = spec[number]
        if ftype == "output":
            continue
        if ftype in ("map", "bmap"):
            k, v = _map_entry(value)
            out.setdefault(fname, {})[k] = (v.decode() if ftype == "map"
                                            else base64.b64encode(v).decode())
            continue
        decoded = _scalar(ftype, wire, value)
        if repeated:
            out.setdefault(fname, []).append(decoded)
        elif decoded not in ("", 0, None) or isinstance(decoded, bool):
            out[fname] = decoded
    return out


def decode(body: bytes) -> dict[str, Any]:
    """A whole request body (magic, envelope, object) as the object's JSON dict."""
    if not body.startswith(MAGIC):
        raise ApiError(400, "protobuf body does not start with the k8s magic number")
    try:
        envelope = decode_message("Unknown", body[len(MAGIC):])
        meta = envelope.get("typeMeta") or {}
        api_version, kind = meta.get("apiVersion", ""), meta.get("kind", "")
        if (api_version, kind) not in KINDS and kind != "DeleteOptions":
            raise ApiError(415, f"the body of the request was in an unknown format - accepted "
                           f"media types include: application/json, application/yaml "
                           f"(protobuf is not decoded by the emulator for {api_version}/{kind})",
                           reason="UnsupportedMediaType")
        raw = base64.b64decode(envelope.get("raw", ""))
        obj = decode_message(kind, raw)
    except (ValueError, UnicodeDecodeError, KeyError) as exc:
        raise ApiError(400, f"protobuf: cannot decode the body: {exc}") from exc
    return {"apiVersion": api_version, "kind": kind, **obj}
