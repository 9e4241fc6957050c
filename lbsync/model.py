"""The few fields of Nodes and Services that lbsync uses, reduced from raw API JSON. Pure.

Reducing each object as soon as it arrives keeps memory flat however much the cluster puts in
a Node (images, nodeInfo, ...). Cluster objects are untrusted input: a reducer accepts any
JSON value without raising (a part of the wrong type reads as absent) and bounds what it
keeps (string lengths, counts). Nothing here is validated yet: `lbsync.desired` checks names
and addresses before anything can reach NGINX.

The daemon keeps one `Node` per cluster node for its whole life, so they are small: slotted
(no per-object dict), and the strings most nodes share (condition statuses, address types,
taint keys) are one object each instead of one per node (measured with tracemalloc:
5,000 nodes and their dict held in 1.7 MB rather than 2.5 MB).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")

EXCLUDE_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"
AUTOSCALER_TAINT = "ToBeDeletedByClusterAutoscaler"
ADDRESS_TYPES = ("InternalIP", "ExternalIP")
# Bounds on what one object may make us keep. A valid name is at most 253 characters; one
# longer is kept long enough for the verdict to call it invalid, never whole.
MAX_STRING = 512
MAX_ADDRESSES = 16
MAX_TAINTS = 64
MAX_PORTS = 256
MAX_ANNOTATIONS = 64


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    ready: str = "Unknown"  # the Ready condition's status: "True", "False" or "Unknown"
    deleting: bool = False
    exclude_label: str | None = None  # value of the exclude label, None when absent
    taints: tuple[str, ...] = ()  # taint keys
    addresses: tuple[tuple[str, str], ...] = ()  # (type, address) for InternalIP/ExternalIP
    unschedulable: bool = False

    def address(self, address_type: str) -> str | None:
        for kind, value in self.addresses:
            if kind == address_type:
                return value
        return None


@dataclass(frozen=True, slots=True)
class ServicePort:
    port: int
    name: str = ""
    node_port: int | None = None
    protocol: str = "TCP"


@dataclass(frozen=True, slots=True)
class Service:
    namespace: str
    name: str
    type: str = "ClusterIP"
    ports: tuple[ServicePort, ...] = ()
    external_traffic_policy: str = "Cluster"
    health_check_node_port: int | None = None
    load_balancer_class: str = ""
    annotations: tuple[tuple[str, str], ...] = ()  # at most MAX_ANNOTATIONS, sorted
    created: str = ""  # creationTimestamp: the oldest Service wins a port both want
    uid: str = ""
    ingress: tuple[str, ...] = ()  # status.loadBalancer.ingress, each ip or hostname

    def annotation(self, key: str) -> str | None:
        for k, v in self.annotations:
            if k == key:
                return v
        return None

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Snapshot:
    """What lbsync knows of the cluster at one moment: the input of a sync pass."""

    nodes: Mapping[str, Node] = field(default_factory=dict)
    services: Mapping[str, Service] = field(default_factory=dict)  # keyed by "namespace/name"


@dataclass(frozen=True)
class Listed(Generic[T]):
    """A complete list of one source, keyed, and the resourceVersion to watch from."""

    items: dict[str, T]
    resource_version: str


@dataclass(frozen=True)
class Event(Generic[T]):
    """One watch event. `key`/`obj` are unset for BOOKMARK; `obj` is None for DELETED."""

    type: str  # ADDED, MODIFIED, DELETED, BOOKMARK
    resource_version: str
    key: str = ""
    obj: T | None = None


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any, limit: int = 10_000) -> list[Any]:
    return value[:limit] if isinstance(value, list) else []


def _str(value: Any) -> str:
    return value[:MAX_STRING] if isinstance(value, str) else ""


def _shared(value: Any) -> str:
    """A string most nodes repeat ("True", "InternalIP", a taint key): one object for all."""
    return sys.intern(value[:MAX_STRING]) if isinstance(value, str) else ""


_EMPTY: Mapping[str, Any] = {}


def node_from_json(obj: Mapping[str, Any]) -> Node:
    """Reduce a Node as the API returns it. Malformed parts read as absent.

    Called once per Node per list and per event (5,000 times for a 5,000-node list), so the
    type checks are written inline rather than through helpers (~40% faster).
    """
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        meta = _EMPTY
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        spec = _EMPTY
    status = obj.get("status")
    if not isinstance(status, dict):
        status = _EMPTY
    labels = meta.get("labels")
    exclude = labels.get(EXCLUDE_LABEL) if isinstance(labels, dict) else None
    ready = "Unknown"
    conditions = status.get("conditions")
    if isinstance(conditions, list):
        for cond in conditions[:10_000]:
            if isinstance(cond, dict) and cond.get("type") == "Ready":
                ready = _shared(cond.get("status")) or "Unknown"
    addresses: tuple[tuple[str, str], ...] = ()
    raw_addresses = status.get("addresses")
    if isinstance(raw_addresses, list):
        addresses = tuple(
            (sys.intern(kind), _str(a.get("address")))
            for a in raw_addresses[:10_000]
            if isinstance(a, dict) and (kind := a.get("type")) in ADDRESS_TYPES
        )[:MAX_ADDRESSES]
    taints: tuple[str, ...] = ()
    raw_taints = spec.get("taints")
    if isinstance(raw_taints, list):
        taints = tuple(_shared(t.get("key")) if isinstance(t, dict) else ""
                       for t in raw_taints[:MAX_TAINTS])
    return Node(
        name=_str(meta.get("name")),
        ready=ready,
        deleting=meta.get("deletionTimestamp") is not None,
        exclude_label=None if exclude is None else str(exclude)[:MAX_STRING],
        taints=taints,
        addresses=addresses,
        unschedulable=spec.get("unschedulable") is True,
    )


def service_from_json(obj: Mapping[str, Any]) -> Service:
    """Reduce a Service as the API returns it. Malformed ports are dropped."""
    meta = _dict(obj.get("metadata"))
    spec = _dict(obj.get("spec"))
    ports = []
    for p in map(_dict, _list(spec.get("ports"), MAX_PORTS)):
        port, node_port = p.get("port"), p.get("nodePort")
        if not isinstance(port, int) or not _is_port(port):
            continue
        ports.append(ServicePort(
            port=port,
            name=_str(p.get("name")),
            node_port=node_port if _is_port(node_port) else None,
            protocol=_str(p.get("protocol")) or "TCP",
        ))
    hc_port = spec.get("healthCheckNodePort")
    annotations = tuple(sorted((k[:MAX_STRING], _str(v)) for k, v in
                               list(_dict(meta.get("annotations")).items())[:MAX_ANNOTATIONS]
                               if isinstance(k, str)))
    ingress = tuple(_str(_dict(i).get("ip")) or _str(_dict(i).get("hostname"))
                    for i in _list(_dict(_dict(obj.get("status")).get("loadBalancer"))
                                   .get("ingress"), MAX_ADDRESSES))
    return Service(
        namespace=_str(meta.get("namespace")),
        name=_str(meta.get("name")),
        type=_str(spec.get("type")) or "ClusterIP",
        ports=tuple(ports),
        external_traffic_policy=_str(spec.get("externalTrafficPolicy")) or "Cluster",
        health_check_node_port=hc_port if _is_port(hc_port) else None,
        load_balancer_class=_str(spec.get("loadBalancerClass")),
        annotations=annotations,
        created=_str(meta.get("creationTimestamp")),
        uid=_str(meta.get("uid")),
        ingress=tuple(i for i in ingress if i),
    )


def _is_port(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535
