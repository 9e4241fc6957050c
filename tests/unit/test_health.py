"""Probe results adding up to up and down, which check proves a server healthy, and the plan
with probes as one more input: tables of the pure core."""

from __future__ import annotations

from typing import Any

import pytest

from lbsync import config
from lbsync.desired import plan
from lbsync.health import Observation, Target, TargetState, observe, target_for
from lbsync.model import Node, Service, ServicePort, Snapshot

OK, FAIL = Observation(True, "ok", 0.001, 0.0), Observation(False, "refused", 0.001, 0.0)


def run(results: str, rise: int = 2, fall: int = 3) -> list[bool]:
    """`results` like "++-": the up/down state after each probe."""
    state: TargetState | None = None
    out = []
    for i, r in enumerate(results):
        state = observe(state, Observation(r == "+", "", 0.0, float(i)), rise, fall)
        out.append(state.up)
    return out


@pytest.mark.parametrize(("results", "states"), [
    ("+++", [True, True, True]),
    ("-", [False]),  # never seen up: out at the first failure
    ("+--", [True, True, True]),  # seen up: fall 3 needed
    ("+---", [True, True, True, False]),
    ("+---+", [True, True, True, False, False]),  # rise 2 to come back
    ("+---++", [True, True, True, False, False, True]),
    ("+-+--+--", [True] * 8),  # flapping below fall never takes it out
    ("-+", [False, False]),
    ("-++", [False, False, True]),
])
def test_rise_and_fall(results: str, states: list[bool]) -> None:
    assert run(results) == states


def test_since_marks_the_last_change() -> None:
    s = observe(None, Observation(True, "ok", 0.01, 5.0), 2, 3)
    assert s.up and s.since == 5.0
    for t in (6.0, 7.0, 8.0):
        s = observe(s, Observation(False, "timeout", 1.0, t), 2, 3)
    assert not s.up and s.since == 8.0 and s.last is not None and s.last.detail == "timeout"


def svc(policy: str = "Cluster", hc: int | None = None) -> Service:
    return Service("kong", "proxy", "NodePort", (ServicePort(80, "http", 32001),), policy, hc)


@pytest.mark.parametrize(("service", "want"), [
    (svc(), Target("10.0.0.1", 32001, "http", "/", (200, 499))),
    (None, Target("10.0.0.1", 32001, "http", "/", (200, 499))),
    # externalTrafficPolicy Local: kube-proxy's health check port says where endpoints are.
    (svc("Local", 31500), Target("10.0.0.1", 31500, "http", "/healthz", (200, 200))),
    (svc("Local", None), Target("10.0.0.1", 32001, "http", "/", (200, 499))),
])
def test_target_for(service: Service | None, want: Target) -> None:
    assert target_for("10.0.0.1", 32001, service, "http", "/", (200, 499)) == want


CFG = config.parse({"upstreams": [{"name": "k8s", "service": "kong/proxy", "port": 80}],
                    "nodes": {"min_nodes": 2}}, check_paths=False)
NODES = {f"n{i}": Node(f"n{i}", "True", addresses=(("InternalIP", f"10.0.0.{i}"),))
         for i in range(1, 5)}
SNAP = Snapshot(NODES, {"kong/proxy": svc()})


def health(**down: Any) -> dict[Target, TargetState]:
    """Every node up except the ones named."""
    return {Target(f"10.0.0.{i}", 32001, "http", "/", (200, 499)):
            TargetState(up=f"n{i}" not in down) for i in range(1, 5)}


@pytest.mark.parametrize(("state", "servers", "down", "note"), [
    (None, ["n1", "n2", "n3", "n4"], [], ""),  # no probe yet: every eligible node
    (health(), ["n1", "n2", "n3", "n4"], [], ""),
    (health(n2=1), ["n1", "n3", "n4"], ["n2"], ""),
    (health(n1=1, n2=1), ["n3", "n4"], ["n1", "n2"], ""),
    # Below nodes.min_nodes, or all down: probes are ignored (the gateway's network?).
    (health(n1=1, n2=1, n3=1), ["n1", "n2", "n3", "n4"], [], "fail static"),
    (health(n1=1, n2=1, n3=1, n4=1), ["n1", "n2", "n3", "n4"], [], "fail static"),
])
def test_the_plan_leaves_out_servers_whose_probes_fail(
        state: dict[Target, TargetState] | None, servers: list[str], down: list[str],
        note: str) -> None:
    (up,) = plan(SNAP, CFG, state).upstreams
    assert [s.node for s in up.servers] == servers
    assert [s.node for s in up.down] == down
    assert note in up.note and bool(up.note) == bool(note)


def test_the_plan_names_every_candidate_to_probe() -> None:
    decided = plan(SNAP, CFG)
    assert decided.targets == frozenset(health())
    off = config.parse({"upstreams": [{"name": "k8s", "service": "kong/proxy", "port": 80}],
                        "nodes": {"probe": {"enabled": False}}}, check_paths=False)
    assert plan(SNAP, off).targets == frozenset()
