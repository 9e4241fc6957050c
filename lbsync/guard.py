"""The blast-radius guard: how much of an upstream one pass may take away. Pure.

When most servers vanish at once, the cause is more often a control-plane or network outage
than most of the fleet failing together; cloud load balancers ride such events out the same
way. So a pass that would remove more than `nodes.max_shrink` of an upstream's servers keeps
them (the last good set) until the drop has lasted `nodes.shrink_confirm` seconds. Additions
always go through. The daemon keeps the time the drop began; `lbsync once`, which has no
memory between runs, holds a big drop unless told `--force-shrink`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace

from lbsync.desired import Plan, Server, Upstream


@dataclass(frozen=True)
class Held:
    """Removals held back in one upstream."""

    upstream: str
    kept: tuple[str, ...]  # host:port of the servers kept although the plan removes them
    before: int  # servers before the pass

    def describe(self, max_shrink: float) -> str:
        return (f"{self.upstream}: holding back {len(self.kept)} of {self.before} removals "
                f"(more than nodes.max_shrink {max_shrink:.0%})")


@dataclass(frozen=True)
class Guarded:
    plan: Plan
    held: tuple[Held, ...]

    @property
    def holding(self) -> bool:
        return bool(self.held)


def limit_shrink(decided: Plan, previous: Mapping[str, Collection[str]] | None,
                 max_shrink: float, confirmed: bool) -> Guarded:
    """The plan with big drops held back, unless the drop is `confirmed` (it has lasted)."""
    if previous is None or confirmed:
        return Guarded(decided, ())
    upstreams, held = [], []
    # Held servers keep their node's name (the node is usually still there, NotReady), so
    # that a hold changes no byte of the file and causes no reload.
    names = {v.shown_address: v.name for v in decided.verdicts}
    for up in decided.upstreams:
        before = set(previous.get(up.name, ()))
        # Nodes that go, by address: a Service's new node port moves every server, and that
        # is no drop at all.
        staying = {str(s.address) for s in up.servers}
        removed = {h for h in before if _address(h) not in staying}
        if before and len(removed) > max_shrink * len(before):
            upstreams.append(_keep(up, removed, names))
            held.append(Held(up.name, tuple(sorted(removed)), len(before)))
        else:
            upstreams.append(up)
    return Guarded(replace(decided, upstreams=tuple(upstreams)), tuple(held))


def _keep(up: Upstream, hostports: Collection[str], names: Mapping[str, str]) -> Upstream:
    kept = [s for s in (_server(h, names) for h in hostports) if s is not None]
    return replace(up, servers=tuple(sorted([*up.servers, *kept], key=Server.sort_key)))


def _address(hostport: str) -> str:
    return hostport.rpartition(":")[0].strip("[]")


def _server(hostport: str, names: Mapping[str, str]) -> Server | None:
    """A server the record names (host:port as lbsync wrote it); None if it is not one."""
    host, _, port = hostport.rpartition(":")
    try:
        address = ipaddress.ip_address(host.strip("[]"))
        return Server(address, int(port), names.get(str(address), "held-back"))
    except ValueError:
        return None
