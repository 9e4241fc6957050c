"""Node health as the gateway sees it: what to probe for each server, and how results add up
to up or down (rise and fall counts). Pure: `lbsync.probe` sends the probes.

The Ready condition takes ~40-50 s to turn False after a node dies, and NGINX open source has
no active checks: until then every request that lands on a crashed node pays a retry, and one
that lands on a hung node waits for NGINX's timeouts. So each server is probed from the gateway
itself: a TCP connect (or an HTTP GET) of the port the server uses; for a Service with
`externalTrafficPolicy: Local`, kube-proxy's `healthCheckNodePort` instead, which answers 200
only on nodes with a ready local endpoint (what cloud load balancers use).

A target nobody has probed yet counts as up (a Ready node joins at once, no waiting for a
probe round); its first failure takes it out (fall 1 until it has passed once). After that, a
target goes down after `fall` failures in a row and comes back after `rise` successes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from lbsync.model import Service


@dataclass(frozen=True)
class Target:
    """One probe: a kind of check of address:port."""

    address: str  # canonical IP text
    port: int
    kind: str = "tcp"  # "tcp" or "http"
    path: str = "/"  # http only
    expect: tuple[int, int] = (200, 399)  # http only: accepted status range

    @property
    def hostport(self) -> str:
        return f"[{self.address}]:{self.port}" if ":" in self.address else \
            f"{self.address}:{self.port}"

    def describe(self) -> str:
        return f"http://{self.hostport}{self.path}" if self.kind == "http" else \
            f"tcp {self.hostport}"


@dataclass(frozen=True)
class Observation:
    ok: bool
    detail: str  # "ok", "refused", "timeout", "HTTP 503", ...
    latency: float  # seconds
    at: float  # unix time


@dataclass(frozen=True)
class TargetState:
    up: bool = True
    probed: bool = False  # has it ever answered a probe?
    successes: int = 0  # in a row
    failures: int = 0  # in a row
    since: float = 0.0  # unix time of the last change of `up`
    last: Observation | None = None

    def as_dict(self) -> dict[str, object]:
        last = self.last
        return {"up": self.up, "since": self.since or None,
                "last": None if last is None else last.detail,
                "latency_ms": None if last is None else round(last.latency * 1000, 1),
                "at": None if last is None else last.at}


def observe(state: TargetState | None, obs: Observation, rise: int, fall: int) -> TargetState:
    """The state after one more probe result."""
    s = state or TargetState(since=obs.at)
    if obs.ok:
        s = replace(s, successes=s.successes + 1, failures=0, probed=True, last=obs)
        if not s.up and s.successes >= rise:
            s = replace(s, up=True, since=obs.at)
        return s
    s = replace(s, failures=s.failures + 1, successes=0, last=obs)
    if s.up and s.failures >= (fall if s.probed else 1):
        s = replace(s, up=False, since=obs.at)
    return s


def target_for(address: str, node_port: int, service: Service | None, kind: str, path: str,
               expect: tuple[int, int]) -> Target:
    """What proves a server at address:node_port can take traffic."""
    if service is not None and service.external_traffic_policy == "Local" and \
            service.health_check_node_port is not None:
        # kube-proxy answers 200 here only where a ready endpoint of the Service runs.
        return Target(address, service.health_check_node_port, "http", "/healthz", (200, 200))
    return Target(address, node_port, kind, path if kind == "http" else "/", expect)


def up(states: Mapping[Target, TargetState], target: Target) -> bool:
    """Whether a server may get traffic: up, or not probed yet."""
    state = states.get(target)
    return state is None or state.up


def counts(states: Iterable[TargetState]) -> dict[str, int]:
    out = {"up": 0, "down": 0}
    for s in states:
        out["up" if s.up else "down"] += 1
    return out
