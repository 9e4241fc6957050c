"""The blast-radius guard, as a table: which removals one pass may apply."""

from __future__ import annotations

import pytest

from lbsync import config
from lbsync.desired import plan
from lbsync.guard import limit_shrink
from lbsync.model import Node, Service, ServicePort, Snapshot

CFG = config.parse({"upstreams": [{"name": "k8s", "service": "kong/proxy", "port": 80}],
                    "nodes": {"probe": {"enabled": False}}}, check_paths=False)
PROXY = Service("kong", "proxy", "NodePort", (ServicePort(80, "http", 32001),))


def snap(*ready: int) -> Snapshot:
    return Snapshot({f"n{i}": Node(f"n{i}", "True", addresses=(("InternalIP", f"10.0.0.{i}"),))
                     for i in ready}, {"kong/proxy": PROXY})


def hps(*nodes: int) -> list[str]:
    return [f"10.0.0.{i}:32001" for i in nodes]


@pytest.mark.parametrize(("before", "now", "confirmed", "servers", "held"), [
    (None, [1], False, hps(1), []),  # no record: nothing to compare with
    (hps(1, 2, 3, 4), [1, 2, 3, 4, 5], False, hps(1, 2, 3, 4, 5), []),  # growth goes through
    (hps(1, 2, 3, 4), [1, 2, 3], False, hps(1, 2, 3), []),  # 25%
    (hps(1, 2, 3, 4), [1, 2], False, hps(1, 2), []),  # 50%: at the limit
    (hps(1, 2, 3, 4), [1], False, hps(1, 2, 3, 4), hps(2, 3, 4)),  # 75%: held
    (hps(1, 2, 3, 4), [1], True, hps(1), []),  # it lasted: applied
    (hps(1, 2, 3, 4), [5], False, hps(1, 2, 3, 4, 5), hps(1, 2, 3, 4)),  # a swap, held
    # The same nodes on another node port (the Service changed): no drop.
    ([h.replace("32001", "32002") for h in hps(1, 2, 3)], [1, 2, 3], False, hps(1, 2, 3), []),
])
def test_limit_shrink(before: list[str] | None, now: list[int], confirmed: bool,
                      servers: list[str], held: list[str]) -> None:
    guarded = limit_shrink(plan(snap(*now), CFG), None if before is None else {"k8s": before},
                           0.5, confirmed)
    (up,) = guarded.plan.upstreams
    assert [s.hostport for s in up.servers] == servers
    assert [list(h.kept) for h in guarded.held] == ([held] if held else [])


def test_held_servers_are_valid_servers() -> None:
    guarded = limit_shrink(plan(snap(1), CFG), {"k8s": [*hps(1, 2, 3), "[fd00::9]:32001",
                                                        "garbage"]}, 0.5, False)
    (up,) = guarded.plan.upstreams
    assert [s.hostport for s in up.servers] == [*hps(1, 2, 3), "[fd00::9]:32001"]
    assert guarded.held[0].describe(0.5) == (
        "k8s: holding back 4 of 5 removals (more than nodes.max_shrink 50%)")
