"""lbsync as the cluster's load balancer: which Services of type LoadBalancer it serves, the
listener each Service port gets, what their status should show, and the stream file. Pure.

A Service is served when it is of type LoadBalancer and its spec.loadBalancerClass is the
configured class (or it carries the configured annotation set to "true"), the way MetalLB or
a cloud controller selects its Services. Each TCP or UDP port becomes one NGINX `stream`
listener on the gateway's addresses, balancing across the eligible nodes on that port's
nodePort (TLS passes through untouched). Two Services wanting one port: the older one keeps
it. A port NGINX must not take (reserved, out of range), a port without a nodePort, or an
unsupported protocol is left out with a Problem (an Event on the Service, a log line, a
metric), never breaking the other Services' listeners.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from lbsync import __version__
from lbsync.config import LoadBalancerConfig, ProbeConfig
from lbsync.health import Target, TargetState, target_for
from lbsync.health import up as health_up
from lbsync.model import Service


@dataclass(frozen=True)
class Backend:
    address: str  # canonical IP text, validated by the node rules
    hostport: str
    node: str


@dataclass(frozen=True)
class Listener:
    service: str  # namespace/name
    port: int  # the Service port: what NGINX listens on
    protocol: str  # TCP or UDP
    node_port: int
    upstream: str  # the stream upstream's name
    servers: tuple[Backend, ...]

    def as_dict(self) -> dict[str, object]:
        return {"service": self.service, "port": self.port, "protocol": self.protocol,
                "node_port": self.node_port, "servers": [b.hostport for b in self.servers]}


@dataclass(frozen=True)
class Problem:
    service: str
    reason: str  # a CamelCase Event reason
    message: str


@dataclass(frozen=True)
class LBPlan:
    listeners: tuple[Listener, ...]
    served: tuple[str, ...]  # Services that get the gateway's ingress
    clear: tuple[str, ...]  # Services showing our ingress that are no longer served
    problems: tuple[Problem, ...]
    ingress: tuple[str, ...]  # what status.loadBalancer.ingress should hold
    targets: frozenset[Target]


def selected(service: Service, cfg: LoadBalancerConfig) -> bool:
    if service.type != "LoadBalancer":
        return False
    if service.load_balancer_class == cfg.load_balancer_class:
        return True
    return bool(cfg.annotation) and service.annotation(cfg.annotation) == "true"


def upstream_name(service: str, protocol: str, port: int) -> str:
    """A stream upstream name that is valid in NGINX and unique per Service port."""
    slug = re.sub(r"[^A-Za-z0-9]+", "_", service)[:40]
    digest = hashlib.sha256(f"{service}/{protocol}/{port}".encode()).hexdigest()[:8]
    return f"lb_{slug}_{protocol.lower()}_{port}_{digest}"


def plan_lb(services: Mapping[str, Service], backends: Sequence[Backend],
            cfg: LoadBalancerConfig, probe: ProbeConfig,
            health: Mapping[Target, TargetState] | None,
            unavailable: frozenset[tuple[str, int]] = frozenset()) -> LBPlan:
    """The listeners, statuses and problems for every selected Service. `unavailable`:
    (protocol, port) that NGINX could not listen on lately (another process holds it)."""
    ours = tuple(cfg.addresses) if not cfg.hostname else (cfg.hostname,)
    chosen = sorted((s for s in services.values() if selected(s, cfg)),
                    key=lambda s: (s.created, s.namespace, s.name))
    listeners: list[Listener] = []
    problems: list[Problem] = []
    taken: dict[tuple[str, int], str] = {}
    targets: set[Target] = set()
    served = []
    for svc in chosen:
        got = _listeners(svc, backends, cfg, taken, problems, unavailable)
        for listener in got:
            kept, checks = _probed(listener, probe, health)
            targets.update(checks)
            listeners.append(kept)
        if got:
            served.append(svc.ref)
    clear = sorted(s.ref for s in services.values()
                   if s.ref not in served and s.ingress and set(s.ingress) <= set(ours))
    return LBPlan(tuple(listeners), tuple(served), tuple(clear), tuple(problems), ours,
                  frozenset(targets))


def _listeners(svc: Service, backends: Sequence[Backend], cfg: LoadBalancerConfig,
               taken: dict[tuple[str, int], str], problems: list[Problem],
               unavailable: frozenset[tuple[str, int]]) -> list[Listener]:
    out = []
    for p in svc.ports:
        why = _refused(svc, p.port, p.protocol, p.node_port, cfg, taken)
        if why is None and (p.protocol, p.port) in unavailable:
            why = ("PortUnavailable", f"NGINX could not listen on port {p.port}/{p.protocol} "
                                      "(another process on the gateway holds it?); retried "
                                      "in a few minutes")
        if why is not None:
            problems.append(Problem(svc.ref, *why))
            continue
        assert p.node_port is not None
        taken[(p.protocol, p.port)] = svc.ref
        servers = tuple(Backend(b.address, _hostport(b.address, p.node_port), b.node)
                        for b in backends)
        out.append(Listener(svc.ref, p.port, p.protocol, p.node_port,
                            upstream_name(svc.ref, p.protocol, p.port), servers))
    return out


def _refused(svc: Service, port: int, protocol: str, node_port: int | None,
             cfg: LoadBalancerConfig, taken: Mapping[tuple[str, int], str]
             ) -> tuple[str, str] | None:
    if protocol not in ("TCP", "UDP"):
        return "UnsupportedProtocol", f"port {port}/{protocol}: NGINX streams TCP and UDP only"
    if node_port is None:
        return "NoNodePort", (f"port {port}/{protocol} has no nodePort "
                              "(allocateLoadBalancerNodePorts: false?)")
    if port in cfg.reserved_ports:
        return "PortReserved", f"port {port} is reserved on the gateway (loadbalancer." \
                               "reserved_ports)"
    if not cfg.ports[0] <= port <= cfg.ports[1]:
        return "PortOutOfRange", (f"port {port} is outside loadbalancer.ports "
                                  f"{cfg.ports[0]}-{cfg.ports[1]}")
    owner = taken.get((protocol, port))
    if owner is not None:
        return "PortConflict", f"port {port}/{protocol} is already served for {owner}"
    return None


def _hostport(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _probed(listener: Listener, probe: ProbeConfig,
            health: Mapping[Target, TargetState] | None) -> tuple[Listener, set[Target]]:
    """Leave out backends whose TCP probe fails (UDP ports are not probed), never all."""
    if not probe.enabled or listener.protocol != "TCP":
        return listener, set()
    checks = {b: target_for(b.address, listener.node_port, None, "tcp", "/", (0, 0))
              for b in listener.servers}
    if health is None:
        return listener, set(checks.values())
    ok = tuple(b for b in listener.servers if health_up(health, checks[b]))
    if not ok:  # every probe fails at once: more likely the gateway's network (fail static)
        return listener, set(checks.values())
    return Listener(listener.service, listener.port, listener.protocol, listener.node_port,
                    listener.upstream, ok), set(checks.values())


def render_stream(lb: LBPlan, addresses: Sequence[str], server_options: str) -> str:
    """The stream file: an upstream and a server block per listener. Deterministic."""
    out = [f"# LoadBalancer Services, generated by lbsync {__version__}. Do not edit."]
    for li in sorted(lb.listeners, key=lambda x: (x.protocol, x.port)):
        if not li.servers:
            continue
        out.append(f"# {li.service} port {li.port}/{li.protocol} -> node port {li.node_port}")
        out.append(f"upstream {li.upstream} {{")
        opts = f" {server_options}" if server_options else ""
        out.extend(f"    server {b.hostport}{opts};  # {b.node}" for b in li.servers)
        out.append("}")
        out.append("server {")
        udp = " udp" if li.protocol == "UDP" else ""
        out.extend(f"    listen {_hostport(a, li.port)}{udp};" for a in addresses)
        out.append(f"    proxy_pass {li.upstream};")
        out.append("}")
    return "\n".join(out) + "\n"


def ingress_entries(lb: LBPlan, hostname: str) -> list[dict[str, str]]:
    """status.loadBalancer.ingress as the API wants it."""
    if hostname:
        return [{"hostname": hostname}]
    return [{"ip": address} for address in lb.ingress]


def status_writes(lb: LBPlan, services: Mapping[str, Service]
                  ) -> list[tuple[Service, tuple[str, ...]]]:
    """The Services whose status differs from what it should be, and what it should be:
    the gateway's ingress for a served Service, nothing for one we stopped serving."""
    out = []
    for ref in lb.served:
        svc = services.get(ref)
        if svc is not None and svc.ingress != lb.ingress:
            out.append((svc, lb.ingress))
    for ref in lb.clear:
        svc = services.get(ref)
        if svc is not None:
            out.append((svc, ()))
    return out
