"""Active probes and the blast-radius guard in the running daemon, against the emulator, a real
nginx and stand-in nodes that crash, hang and recover while the API still calls them Ready."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from lbsync_lab.inprocess import Running, eventually
from lbsync_lab.nodes import HealthCheckPort, StandinPool
from lbsync_lab.rig import add_cluster, addr, hp
from lbsync_lab.sim import ApiServer, objects

PROBES: dict[str, Any] = {"probe": {"enabled": True}}  # FAST_PROBES: 0.2 s, fall 2, rise 2


def test_a_crashed_node_still_ready_in_the_api_leaves_within_the_probe_bound(
        api: ApiServer, standins: StandinPool, run_daemon: Callable[..., Running]) -> None:
    add_cluster(api, standins, 3)
    d = run_daemon(nodes=PROBES)
    d.converged(hp(1), hp(2), hp(3))
    start = time.monotonic()
    standins.nodes["node-2"].crash()
    d.converged(hp(1), hp(3), timeout=10)
    took = time.monotonic() - start
    # interval x fall + timeout, plus a debounced pass and a reload: ~0.55 s + ~0.3 s here.
    assert took < 3.0, took
    assert d.metric("lbsync_probes_total", result="refused") >= 2
    status = json.loads(d.get("/status")[1])
    assert [s["node"] for s in status["upstreams"][0]["down"]] == ["node-2"]
    assert any(p["target"].endswith(f"{hp(2)}/") and p["up"] is False and p["last"] == "refused"
               for p in status["probes"])
    standins.nodes["node-2"].recover()
    d.converged(hp(1), hp(2), hp(3), timeout=10)


def test_a_hung_node_leaves_too(
        api: ApiServer, standins: StandinPool, run_daemon: Callable[..., Running]) -> None:
    """A hung node still accepts TCP (its kernel does): only the HTTP probe sees it."""
    add_cluster(api, standins, 3)
    d = run_daemon(nodes=PROBES)
    d.converged(hp(1), hp(2), hp(3))
    standins.nodes["node-3"].hang()
    d.converged(hp(1), hp(2), timeout=10)
    failures = sum(d.metric("lbsync_probes_total", result=r) for r in ("timeout", "error"))
    assert d.metric("lbsync_probes_total", result="timeout") >= 1 and failures >= 2
    assert d.metric("lbsync_probe_targets", state="down") == 1
    standins.nodes["node-3"].recover()
    d.converged(hp(1), hp(2), hp(3), timeout=10)


def test_when_every_probe_fails_at_once_the_upstream_stays(
        api: ApiServer, standins: StandinPool, run_daemon: Callable[..., Running]) -> None:
    """The gateway's own network failing looks like every node failing: fail static."""
    add_cluster(api, standins, 3)
    d = run_daemon(nodes=PROBES)
    d.converged(hp(1), hp(2), hp(3))
    for node in standins.nodes.values():
        node.crash()
    eventually(lambda: d.metric("lbsync_probe_targets", state="down") == 3, 10)
    time.sleep(0.5)  # passes ran with every probe down
    assert d.servers() == {hp(1), hp(2), hp(3)}
    status = json.loads(d.get("/status")[1])
    assert "fail static" in status["upstreams"][0]["note"]


def test_a_big_drop_is_held_back_until_it_lasts(
        api: ApiServer, standins: StandinPool, run_daemon: Callable[..., Running]) -> None:
    add_cluster(api, standins, 4)
    d = run_daemon(nodes={"shrink_confirm": 2.0})
    d.converged(hp(1), hp(2), hp(3), hp(4))
    for i in (2, 3, 4):  # three of four NotReady at once: a control-plane hiccup?
        api.put(objects.node(f"node-{i}", addr(i), ready=False))
    eventually(lambda: d.metric("lbsync_held_back_removals") == 3, 10, "the hold")
    assert d.servers() == {hp(1), hp(2), hp(3), hp(4)}  # the last good set serves on
    status, body = d.get("/readyz")
    assert status == 200 and "holding back 3 of 4 removals" in json.loads(body)["reason"]
    assert json.loads(d.get("/status")[1])["held_back"][0]["servers"] == [
        hp(2), hp(3), hp(4)]
    d.converged(hp(1), timeout=10)  # it lasted nodes.shrink_confirm: applied
    assert d.metric("lbsync_held_back_removals") == 0
    assert json.loads(d.get("/readyz")[1])["reason"] == "ok"


def test_a_short_drop_never_reaches_nginx(
        api: ApiServer, standins: StandinPool, run_daemon: Callable[..., Running]) -> None:
    add_cluster(api, standins, 4)
    d = run_daemon(nodes={"shrink_confirm": 3.0})
    d.converged(hp(1), hp(2), hp(3), hp(4))
    workers = d.nginx.settled_workers()  # type: ignore[union-attr]
    for i in (2, 3, 4):
        api.put(objects.node(f"node-{i}", addr(i), ready=False))
    eventually(lambda: d.metric("lbsync_held_back_removals") == 3, 10)
    for i in (2, 3, 4):
        api.put(objects.node(f"node-{i}", addr(i)))
    eventually(lambda: d.metric("lbsync_held_back_removals") == 0, 10)
    time.sleep(3.5)  # past the confirm time
    assert d.servers() == {hp(1), hp(2), hp(3), hp(4)}
    assert d.nginx.worker_pids() == workers  # type: ignore[union-attr]


def test_external_traffic_policy_local_sends_traffic_only_where_kong_runs(
        api: ApiServer, standins: StandinPool, run_daemon: Callable[..., Running]) -> None:
    """A `Local` Service: kube-proxy's healthCheckNodePort answers 200 only on nodes with a
    ready local endpoint; only those get traffic (and the client's address reaches Kong)."""
    names = add_cluster(api, standins, 3)
    svc = api.get("Service", "kong-gateway-proxy", "kong")
    assert svc is not None
    svc["spec"]["externalTrafficPolicy"] = "Local"
    svc["spec"]["healthCheckNodePort"] = 31999
    api.put(svc)
    checks = [HealthCheckPort(addr(i), 31999, local_endpoint=i != 2)
              for i in range(1, len(names) + 1)]
    try:
        d = run_daemon(nodes=PROBES)
        d.converged(hp(1), hp(3), timeout=10)
        status = json.loads(d.get("/status")[1])
        assert any(p["target"] == f"http://{addr(2)}:31999/healthz" and p["last"] == "HTTP 503"
                   for p in status["probes"])
        checks[1].set(True)  # Kong scheduled on node-2
        d.converged(hp(1), hp(2), hp(3), timeout=10)
    finally:
        for c in checks:
            c.stop()
