"""Reflectors alone, with plain functions as the list and the watch: list then watch, resume,
relist on 410, and survive anything a payload or a bug can throw."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry

from lbsync.cache import NODES, ClusterCache
from lbsync.errors import ApiError, Expired
from lbsync.metrics import Metrics
from lbsync.model import Event, Listed, Node
from lbsync.watch import Reflector


def n(name: str, ready: str = "True") -> Node:
    return Node(name, ready)


def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


class Script:
    """A lister and a watcher whose answers a test queues; records the calls."""

    def __init__(self) -> None:
        self.lists: list[Listed[Node] | BaseException] = []
        self.watches: list[list[Event[Node] | BaseException]] = []
        self.calls: list[tuple[str, str]] = []

    def lister(self) -> Listed[Node]:
        self.calls.append(("list", ""))
        item = self.lists.pop(0) if len(self.lists) > 1 else self.lists[0]
        if isinstance(item, BaseException):
            raise item
        return item

    def watcher(self, rv: str, timeout: int) -> Iterator[Event[Node]]:
        self.calls.append(("watch", rv))
        script = self.watches.pop(0) if self.watches else []
        for item in script:
            if isinstance(item, BaseException):
                raise item
            yield item
        if not self.watches:
            time.sleep(0.2)  # an idle watch


def start(script: Script, **kw: Any) -> tuple[Reflector, ClusterCache, Metrics,
                                               threading.Event]:
    stop = threading.Event()
    metrics = Metrics(CollectorRegistry())
    cache = ClusterCache({NODES}, lambda: None)
    r = Reflector(NODES, "nodes", script.lister, script.watcher, cache, metrics,
                  watch_timeout=kw.get("watch_timeout", 60), resync=kw.get("resync", 300),
                  stop=stop)
    r._wait = lambda state: 0.01  # no real backoff in a unit test
    r.start()
    return r, cache, metrics, stop


def nodes(cache: ClusterCache) -> dict[str, Node]:
    return dict(cache.take()[0].nodes)


def test_lists_then_watches_from_the_lists_version_and_resumes() -> None:
    s = Script()
    s.lists = [Listed({"a": n("a")}, "10")]
    s.watches = [[Event("ADDED", "11", "b", n("b")), Event("BOOKMARK", "15")],
                 [Event("DELETED", "16", "a")]]
    r, cache, _, stop = start(s)
    until(lambda: ("watch", "15") in s.calls)  # resumed from the bookmark's version
    until(lambda: sorted(nodes(cache)) == ["b"])
    assert s.calls[:2] == [("list", ""), ("watch", "10")]
    assert r.health.last_ok is not None and r.health.failing_since is None
    stop.set()
    r.thread.join(5)
    assert not r.thread.is_alive()


def test_a_410_relists() -> None:
    s = Script()
    s.lists = [Listed({"a": n("a")}, "10"), Listed({"c": n("c")}, "20")]
    s.watches = [[Expired("too old")]]
    _, cache, metrics, stop = start(s)
    until(lambda: ("watch", "20") in s.calls)
    assert sorted(nodes(cache)) == ["c"]
    assert metrics.watch_restarts.labels(kind="nodes", reason="expired")._value.get() == 1
    stop.set()


def test_any_exception_in_a_cycle_is_survived_counted_and_followed_by_a_relist() -> None:
    """A payload nobody foresaw (AttributeError, TypeError, RecursionError) must not kill the
    thread: before, one malformed event stopped all updates while health stayed green."""
    s = Script()
    s.lists = [Listed({"a": n("a")}, "10"), Listed({"a": n("a"), "b": n("b")}, "20")]
    s.watches = [[AttributeError("'list' object has no attribute 'get'")],
                 [RecursionError("maximum recursion depth exceeded")],
                 [Event("ADDED", "21", "c", n("c"))]]
    r, cache, metrics, stop = start(s)
    until(lambda: "c" in nodes(cache) or ("watch", "20") in s.calls, timeout=10)
    assert r.thread.is_alive()
    assert metrics.api_errors.labels(code="internal")._value.get() >= 1
    until(lambda: sorted(nodes(cache)) == ["a", "b", "c"], timeout=10)
    stop.set()


def test_api_errors_are_retried_and_reported_in_health() -> None:
    s = Script()
    s.lists = [ApiError("cannot reach the API server", None), Listed({"a": n("a")}, "10")]
    r, cache, metrics, stop = start(s)
    # The cache fills a moment before health says recovered: wait for both.
    until(lambda: "a" in nodes(cache) and r.health.failing_since is None)
    assert metrics.api_errors.labels(code="connection")._value.get() >= 1
    stop.set()


def test_a_source_that_keeps_failing_says_so() -> None:
    s = Script()
    s.lists = [ApiError("list nodes: forbidden (HTTP 403)", 403)]
    r, _, _, stop = start(s)
    until(lambda: r.health.failing_since is not None)
    assert "forbidden" in r.health.last_error and r.health.last_ok is None
    stop.set()
    r.thread.join(5)
    assert not r.thread.is_alive()


def test_the_backoff_starts_again_after_progress() -> None:
    """One watch call spans every reconnect of its stream: counted by its attempts, an
    outage's failures made the next incident, minutes later, start at the 30 s cap (a NotReady
    node went out 137 s late instead of 17 s in bench/churn.py). Progress resets the count."""
    s = Script()
    s.lists = [Listed({"a": n("a")}, "10")]
    down = ApiError("cannot reach the API server", None)
    s.watches = [[down]] * 6 + [[Event("ADDED", "11", "b", n("b")), ApiError("x", 500)],
                                [ApiError("x", 503)]]
    stop = threading.Event()
    r = Reflector(NODES, "nodes", s.lister, s.watcher, ClusterCache({NODES}, lambda: None),
                  Metrics(CollectorRegistry()), watch_timeout=60, resync=300, stop=stop)
    waits: list[float] = []
    backoff = r._wait
    r._wait = lambda state: waits.append(backoff(state)) or 0.0  # record, do not sleep
    r.start()
    until(lambda: len(waits) >= 8)
    stop.set()
    assert 16 <= waits[5] <= 16.5, waits  # the outage: 0.5 s doubled five times
    # After the stream delivered an event, the next failures wait as a first and second do.
    assert waits[6] <= 1.0 and waits[7] <= 1.5, waits
