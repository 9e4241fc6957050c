"""A plan re-decides only the nodes that changed, whatever the cluster's size, and shares the
rest with the plan before it (the daemon holds both during a pass)."""

from __future__ import annotations

import dataclasses
from typing import Any

from lbsync import config
from lbsync.desired import Reason, plan
from lbsync.model import Node, Snapshot

CFG = config.Config(upstreams=(config.UpstreamConfig(name="u", node_port=30080),))


def cluster(count: int, **changed: Any) -> dict[str, Node]:
    nodes = {f"n{i}": Node(f"n{i}", "True",
                           addresses=(("InternalIP", f"10.{i // 250}.{i % 250}.1"),))
             for i in range(count)}
    for name, ready in changed.items():
        nodes[name] = dataclasses.replace(nodes[name], ready=ready)
    return nodes


def test_unchanged_nodes_keep_their_verdict_objects() -> None:
    nodes = cluster(20_000)  # larger than any fixed-size cache of the past
    first = plan(Snapshot(nodes), CFG)
    second = plan(Snapshot({**nodes, "n7": dataclasses.replace(nodes["n7"], ready="False")}), CFG)
    by_name = {v.name: v for v in second.verdicts}
    assert by_name["n7"].reason is Reason.NOT_READY
    reused = sum(a is b for a, b in zip(first.verdicts, second.verdicts, strict=True))
    assert reused == 20_000 - 1


def test_equal_copies_of_nodes_reuse_verdicts_too() -> None:
    first = plan(Snapshot(cluster(100)), CFG)
    second = plan(Snapshot(cluster(100)), CFG)  # a relist: new objects, equal values
    assert all(a is b for a, b in zip(first.verdicts, second.verdicts, strict=True))


def test_a_mapping_changed_in_place_is_decided_again() -> None:
    nodes = cluster(10)
    plan(Snapshot(nodes), CFG)
    nodes["n3"] = dataclasses.replace(nodes["n3"], ready="False")
    assert [v.name for v in plan(Snapshot(nodes), CFG).verdicts if not v.eligible] == ["n3"]


def test_other_rules_decide_again() -> None:
    nodes = cluster(10, n3="Unknown")
    strict = plan(Snapshot(nodes), CFG)
    lenient = plan(Snapshot(nodes), dataclasses.replace(
        CFG, nodes=config.NodesConfig(require_ready=False)))
    assert [v.name for v in strict.verdicts if not v.eligible] == ["n3"]
    assert all(v.eligible for v in lenient.verdicts)


def test_servers_carry_their_host_port_once() -> None:
    nodes = {"a": Node("a", "True", addresses=(("InternalIP", "fd00::1"),)),
             "b": Node("b", "True", addresses=(("InternalIP", "10.0.0.2"),))}
    servers = plan(Snapshot(nodes), CFG).upstreams[0].servers
    assert [s.hostport for s in servers] == ["10.0.0.2:30080", "[fd00::1]:30080"]
    assert servers[0].hostport is servers[0].hostport
    assert not hasattr(servers[0], "__dict__")  # slotted: the daemon holds 2 per node
