"""The desired state: which nodes are eligible, and the upstreams built from them. Pure.

Node rules follow the Kubernetes cloud-provider service controller for external load balancers
(not deleting, no exclude label, no autoscaler deletion taint) and add health (Ready) because
NGINX open source has no active health checks. Cordoned nodes stay in, so draining a node does
not cut the connections it still carries. Every address is parsed and every name checked here:
cluster objects are untrusted input, and only what passes reaches the NGINX file. An address
that would point the public site at the gateway itself or at no real host (loopback,
link-local, multicast, broadcast, reserved, IPv4-mapped) is refused, as is a node port outside
the cluster's NodePort range.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from lbsync import serverlines
from lbsync.config import Config, NodesConfig, ProbeConfig, UpstreamConfig
from lbsync.errors import SyncError
from lbsync.health import Target, TargetState, target_for
from lbsync.health import up as health_up
from lbsync.loadbalancer import Backend, LBPlan, plan_lb
from lbsync.model import AUTOSCALER_TAINT, Node, Service, Snapshot
from lbsync.text import printable

# DNS-1123 subdomain: what Kubernetes allows for a Node name.
NODE_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
# What Go's strconv.ParseBool reads as false, as the service controller parses the label.
FALSE_VALUES = {"false", "f", "0", "FALSE", "False", "F"}

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Reason(StrEnum):
    """Why a node is in or out. The value is what status pages and logs show."""

    ELIGIBLE = "eligible"
    DELETING = "deleting"
    EXCLUDED_LABEL = "excluded-by-label"
    AUTOSCALER_TAINT = "to-be-deleted-by-autoscaler"
    NOT_READY = "not-ready"
    NO_ADDRESS = "no-address"
    BAD_ADDRESS = "bad-address"
    BAD_NAME = "bad-name"


# Slotted: the daemon holds a verdict and a server per node, in two plans during a pass
# (measured at 20,000 nodes: a plan took 7.5 MB, 2.6 MB slotted with shared verdicts).
@dataclass(frozen=True, slots=True)
class NodeVerdict:
    name: str
    reason: Reason
    address: IPAddress | None = None  # only for eligible nodes: what the server uses
    detail: str = ""
    shown_address: str = ""  # the node's address of the configured type, as the API gave it

    @property
    def eligible(self) -> bool:
        return self.reason is Reason.ELIGIBLE

    def as_dict(self) -> dict[str, Any]:
        """For /status and `lbsync status` (untrusted strings made printable)."""
        return {"name": printable(self.name), "eligible": self.eligible,
                "reason": self.reason.value,
                "address": str(self.address) if self.address is not None
                else printable(self.shown_address, 64) or None,
                "detail": printable(self.detail)}


@dataclass(frozen=True, slots=True)
class Server:
    address: IPAddress
    port: int
    node: str
    # Made once: rendering, the record and the diff all read it (three strings per server
    # and pass before, 60,000 at 20,000 nodes).
    hostport: str = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        text = (f"[{self.address}]:{self.port}" if self.address.version == 6
                else f"{self.address}:{self.port}")
        object.__setattr__(self, "hostport", text)

    def sort_key(self) -> tuple[int, int, int]:
        return (self.address.version, int(self.address), self.port)


@dataclass(frozen=True, slots=True)
class Upstream:
    name: str
    port: int
    servers: tuple[Server, ...]
    source: str  # "namespace/name:port" or "node_port"
    down: tuple[Server, ...] = ()  # eligible, but left out because their probes fail
    note: str = ""  # why a rule was not applied (e.g. every probe fails)

    def as_dict(self) -> dict[str, Any]:
        """For /status and `lbsync status`."""
        return {"name": self.name, "port": self.port, "source": self.source,
                "servers": [{"address": s.hostport, "node": s.node} for s in self.servers],
                "down": [{"address": s.hostport, "node": s.node} for s in self.down],
                "note": self.note}


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything a sync pass decided: the upstreams and the verdict for every node."""

    upstreams: tuple[Upstream, ...]
    verdicts: tuple[NodeVerdict, ...]
    targets: frozenset[Target] = frozenset()  # what to probe: every candidate server's check
    lb: LBPlan | None = None  # LoadBalancer Services, when loadbalancer.enabled

    @property
    def eligible_count(self) -> int:
        return sum(1 for v in self.verdicts if v.eligible)


def node_verdict(node: Node, rules: NodesConfig) -> NodeVerdict:
    """Decide one node. The first rule that fails names the reason."""
    raw = node.address(rules.address_type)

    def out(reason: Reason, detail: str = "") -> NodeVerdict:
        return NodeVerdict(node.name, reason, detail=detail, shown_address=raw or "")

    if len(node.name) > 253 or not NODE_NAME.fullmatch(node.name):
        return out(Reason.BAD_NAME, "not a valid node name")
    if node.deleting:
        return out(Reason.DELETING)
    if node.exclude_label is not None and node.exclude_label not in FALSE_VALUES:
        return out(Reason.EXCLUDED_LABEL)
    if AUTOSCALER_TAINT in node.taints:
        return out(Reason.AUTOSCALER_TAINT)
    if rules.require_ready and node.ready != "True":
        return out(Reason.NOT_READY, f"Ready={node.ready}")
    if raw is None:
        return out(Reason.NO_ADDRESS, f"no {rules.address_type}")
    address, why = check_address(raw, rules)
    if address is None:
        return out(Reason.BAD_ADDRESS, f"{rules.address_type} {raw[:64]!r}: {why}")
    # Cordoned (draining) nodes stay in: cutting them would cut the connections they carry.
    detail = "cordoned" if node.unschedulable else ""
    return NodeVerdict(node.name, Reason.ELIGIBLE, address=address, detail=detail,
                       shown_address=raw)


def parse_address(raw: str) -> IPAddress | None:
    """A plain IP address in canonical form, or None. Only ASCII digits: `ipaddress` would
    take other Unicode digits too, which nginx does not."""
    if not raw.isascii():
        return None
    try:
        return ipaddress.ip_address(raw)
    except ValueError:
        return None


def check_address(raw: str, rules: NodesConfig) -> tuple[IPAddress | None, str]:
    """The address if a server may use it, else None and why not."""
    address = parse_address(raw)
    if address is None:
        return None, "not an IP address"
    why = serverlines.address_problem(address, allow_loopback=rules.allow_loopback)
    if why:
        return None, why
    if rules.allowed_cidrs and not any(address in _network(c) for c in rules.allowed_cidrs):
        return None, "outside nodes.allowed_cidrs"
    return address, ""


@functools.lru_cache(maxsize=64)
def _network(cidr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(cidr)


def node_port_for(upstream: UpstreamConfig, services: Mapping[str, Service],
                  port_range: tuple[int, int]) -> int:
    """The port an upstream's servers use: fixed, or the Service port's nodePort."""
    if upstream.node_port is not None:
        return upstream.node_port
    port = _service_node_port(upstream, services)
    if not port_range[0] <= port <= port_range[1]:
        raise SyncError(f"upstream {upstream.name}: Service {upstream.service_ref} node port "
                        f"{port} is outside nodes.port_range {port_range[0]}-{port_range[1]}")
    return port


def _service_node_port(upstream: UpstreamConfig, services: Mapping[str, Service]) -> int:
    service = services.get(upstream.service_ref)
    if service is None:
        raise SyncError(f"upstream {upstream.name}: Service {upstream.service_ref} not found")
    # A number names the Service port by number, a string by its name (as targetPort does).
    wanted = "port" if isinstance(upstream.port, int) else "name"
    for port in service.ports:
        if getattr(port, wanted) != upstream.port:
            continue
        if port.node_port is None:
            raise SyncError(
                f"upstream {upstream.name}: Service {service.ref} port {upstream.port} "
                f"has no nodePort (type {service.type})"
            )
        return port.node_port
    raise SyncError(
        f"upstream {upstream.name}: Service {service.ref} has no port {upstream.port!r}"
    )


# The last plan's nodes and verdicts, by name. A pass re-decides every node, but between two
# passes only a few changed, and a Node is an immutable value: this keeps a 5,000-node pass
# at a few milliseconds, and the two plans share their verdicts. Bounded by the cluster's
# size (the fixed-size LRU it replaces missed every time once the cluster outgrew it: at
# 20,000 nodes each pass re-decided all of them). Rebound whole by each plan, so plans on
# two threads can only miss it, never see half of one.
_last: tuple[NodesConfig | None, Mapping[str, Node], dict[str, NodeVerdict]] = (None, {}, {})


def _verdicts(nodes: Mapping[str, Node], rules: NodesConfig) -> tuple[NodeVerdict, ...]:
    global _last
    last_rules, last_nodes, last = _last
    same_rules = last_rules is rules or last_rules == rules
    now: dict[str, NodeVerdict] = {}
    for name in sorted(nodes):
        node = nodes[name]
        before = last_nodes.get(name) if same_rules else None
        if before is not None and (before is node or before == node):
            now[name] = last[name]
        else:
            now[name] = node_verdict(node, rules)
    _last = (rules, dict(nodes), now)  # a copy: the caller may change its mapping later
    return tuple(now.values())


def plan(snapshot: Snapshot, config: Config,
         health: Mapping[Target, TargetState] | None = None,
         unavailable: frozenset[tuple[str, int]] = frozenset()) -> Plan:
    """Turn a cluster snapshot (and the probes' results) into the upstreams to write.

    Raises SyncError when refusing. Without `health` (no probe has run), every eligible node
    is a server; the plan still names the probe targets of every candidate server.
    """
    verdicts = _verdicts(snapshot.nodes, config.nodes)
    eligible = [v for v in verdicts if v.eligible]
    if len(eligible) < config.nodes.min_nodes:
        raise SyncError(
            f"only {len(eligible)} eligible node(s) of {len(verdicts)}, "
            f"fewer than nodes.min_nodes={config.nodes.min_nodes}; keeping the current file"
        )
    upstreams = []
    targets: set[Target] = set()
    for up in config.upstreams:
        port = node_port_for(up, snapshot.services, config.nodes.port_range)
        candidates = [Server(v.address, port, v.name) for v in eligible if v.address is not None]
        service = snapshot.services.get(up.service_ref) if up.service is not None else None
        checks = {s: _target(s, service, config.nodes.probe, up.context) for s in candidates}
        targets.update(t for t in checks.values() if t is not None)
        source = "node_port" if up.node_port is not None else f"{up.service_ref}:{up.port}"
        upstreams.append(_probed(up.name, port, source, checks, health, config.nodes.min_nodes))
    lb = None
    if config.loadbalancer.enabled:
        backends = [Backend(str(v.address), "", v.name) for v in eligible
                    if v.address is not None]
        lb = plan_lb(snapshot.services, backends, config.loadbalancer, config.nodes.probe,
                     health, unavailable)
        targets.update(lb.targets)
    return Plan(tuple(upstreams), verdicts, frozenset(targets), lb)


def _target(server: Server, service: Service | None, probe: ProbeConfig,
            context: str = "http") -> Target | None:
    if not probe.enabled:
        return None
    kind = "tcp" if context == "stream" else probe.kind  # a stream port may not speak HTTP
    return target_for(str(server.address), server.port, service, kind, probe.path,
                      probe.expect)


def _up(health: Mapping[Target, TargetState], target: Target | None) -> bool:
    return target is None or health_up(health, target)


def _probed(name: str, port: int, source: str, checks: Mapping[Server, Target | None],
            health: Mapping[Target, TargetState] | None, min_nodes: int) -> Upstream:
    """The upstream's servers: those whose probe has not failed. Probes never take an
    upstream below nodes.min_nodes: when (nearly) every probe fails at once, the gateway's
    own network is the likelier culprit, so the probes are ignored (fail static) and NGINX's
    passive checks carry on alone."""
    servers = sorted(checks, key=Server.sort_key)
    if health is None:
        return Upstream(name, port, tuple(servers), source)
    ok = [s for s in servers if _up(health, checks[s])]
    down = [s for s in servers if not _up(health, checks[s])]
    if down and (not ok or len(ok) < min(min_nodes, len(servers))):
        return Upstream(name, port, tuple(servers), source,
                        note=f"probes fail for {len(down)} of {len(servers)} servers: ignored "
                             "(fail static)")
    return Upstream(name, port, tuple(ok), source, down=tuple(down))
