"""The cluster cache alone: level-triggered dirty marking, as a table of event sequences."""

from __future__ import annotations

from typing import Any

import pytest

from lbsync.cache import NODES, ClusterCache, Dirty
from lbsync.model import Event, Node


def n(name: str, ready: str = "True") -> Node:
    return Node(name, ready, addresses=(("InternalIP", "10.0.0.1"),))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def cache() -> tuple[ClusterCache, list[int], Clock]:
    calls: list[int] = []
    clock = Clock()
    c = ClusterCache({NODES, "service:kong/p"}, lambda: calls.append(1), clock)
    return c, calls, clock


def test_synced_only_when_every_source_listed() -> None:
    c, _, _ = cache()
    assert not c.synced
    c.replace(NODES, {"a": n("a")})
    assert not c.synced
    c.replace("service:kong/p", {})
    assert c.synced


@pytest.mark.parametrize(("events", "changed"), [
    ([Event("MODIFIED", "2", "a", n("a"))], False),  # a heartbeat: the reduced node is equal
    ([Event("MODIFIED", "2", "a", n("a", "False"))], True),
    ([Event("ADDED", "2", "b", n("b"))], True),
    ([Event("DELETED", "2", "a")], True),
    ([Event("DELETED", "2", "zzz")], False),  # deleting what we never had changes nothing
    ([Event("MODIFIED", "2", "a", n("a", "False")), Event("MODIFIED", "3", "a", n("a"))], True),
])
def test_only_changes_lbsync_uses_mark_dirty(events: list[Event[Any]], changed: bool) -> None:
    c, calls, _ = cache()
    c.replace(NODES, {"a": n("a")})
    c.replace("service:kong/p", {})
    c.take()
    calls.clear()
    for e in events:
        c.apply(NODES, e)
    assert (c.dirty is not None) is changed
    assert bool(calls) is changed


def test_dirty_keeps_the_first_change_and_take_clears_it() -> None:
    c, _, clock = cache()
    c.replace(NODES, {})
    clock.now = 101.0
    c.apply(NODES, Event("ADDED", "2", "a", n("a")))
    clock.now = 102.5
    c.apply(NODES, Event("ADDED", "3", "b", n("b")))
    assert c.dirty == Dirty(100.0, 102.5)
    snapshot, dirty = c.take()
    assert dirty == Dirty(100.0, 102.5) and c.dirty is None
    assert sorted(snapshot.nodes) == ["a", "b"]
    c.restore_dirty(dirty)  # the pass failed: its changes are still unsynced
    assert c.dirty == Dirty(100.0, 102.5)


def test_a_relist_that_changes_nothing_is_quiet_unless_forced() -> None:
    c, calls, _ = cache()
    c.replace(NODES, {"a": n("a")})
    c.take()
    calls.clear()
    assert c.replace(NODES, {"a": n("a")}) is False and c.dirty is None and not calls
    c.replace(NODES, {"a": n("a")}, force=True)
    assert c.dirty is not None and calls


def test_a_relist_keeps_the_objects_the_cache_already_holds() -> None:
    c, _, _ = cache()
    c.replace(NODES, {"a": n("a"), "b": n("b")})
    a, b = c.take()[0].nodes["a"], c.take()[0].nodes["b"]
    assert c.replace(NODES, {"a": n("a"), "b": n("b", "False"), "c": n("c")}) is True
    nodes = c.take()[0].nodes
    assert nodes["a"] is a  # equal: the cache's own object, the relist's copy is dropped
    assert nodes["b"] is not b and nodes["b"].ready == "False" and "c" in nodes


@pytest.mark.parametrize("after", [{"a": n("a")}, {"a": n("a"), "b": n("b"), "c": n("c")}])
def test_a_relist_with_fewer_or_more_objects_is_a_change(after: dict[str, Node]) -> None:
    c, _, _ = cache()
    c.replace(NODES, {"a": n("a"), "b": n("b")})
    c.take()
    assert c.replace(NODES, after) is True and c.dirty is not None
