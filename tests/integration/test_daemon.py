"""`lbsync run` in-process: convergence, faults, coalescing, readiness and metrics, against the
API emulator, a real nginx and stand-in nodes."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lbsync_lab.inprocess import Running, eventually
from lbsync_lab.nginx import PrivateNginx
from lbsync_lab.nodes import StandinPool
from lbsync_lab.rig import add_cluster, addr, hp
from lbsync_lab.sim import ApiServer, objects
from prometheus_client.parser import text_string_to_metric_families


def ready_node(name: str, address: str, ready: bool = True) -> dict[str, Any]:
    return objects.node(name, address, ready=ready)


def test_converges_on_add_delete_not_ready_and_ready(
    api: ApiServer, standins: StandinPool, run_daemon: Callable[..., Running]
) -> None:
    add_cluster(api, standins, 2)
    d = run_daemon()
    d.converged(hp(1), hp(2))
    assert d.get("/readyz")[0] == 200

    api.put(ready_node("node-3", addr(3)))
    d.converged(hp(1), hp(2), hp(3))
    api.put(ready_node("node-1", addr(1), ready=False))
    d.converged(hp(2), hp(3))
    api.delete("Node", "node-2")
    d.converged(hp(3))
    api.put(ready_node("node-1", addr(1)))
    d.converged(hp(1), hp(3))

    assert d.metric("lbsync_upstream_servers", upstream="k8s_cluster") == 2
    assert d.metric("lbsync_nodes", state="eligible") == 2
    assert d.metric("lbsync_reloads_total", result="success") >= 5
    assert d.metric("lbsync_event_to_reload_seconds_count") >= 4
    status = json.loads(d.get("/status")[1])
    assert [s["node"] for s in status["upstreams"][0]["servers"]] == ["node-1", "node-3"]


def test_service_node_port_change(
    api: ApiServer, standins: StandinPool, run_daemon: Callable[..., Running]
) -> None:
    add_cluster(api, standins, 2)
    d = run_daemon()
    d.converged(hp(1), hp(2))
    api.put(objects.service("kong", "kong-gateway-proxy", ports=[
        {"name": "kong-proxy", "port": 80, "targetPort": 8000, "nodePort": 32002,
         "protocol": "TCP"}]))
    d.converged(hp(1, 32002), hp(2, 32002))


def test_heartbeats_cause_no_pass(
    api: ApiServer, standins: StandinPool, run_daemon: Callable[..., Running]
) -> None:
    add_cluster(api, standins, 2)
    d = run_daemon()
    d.converged(hp(1), hp(2))
    eventually(lambda: d.daemon.watchers and d.daemon.watchers.cache.dirty is None)
    passes = d.metric("lbsync_syncs_total", result="reloaded") + d.metric(
        "lbsync_syncs_total", result="unchanged")
    for i in range(20):
        node = api.get("Node", "node-1")
        assert node is not None
        for cond in node["status"]["conditions"]:
            cond["lastHeartbeatTime"] = f"2026-11-26T00:00:{i:02d}Z"
        node["status"]["images"].append({"names": [f"img-{i}"], "sizeBytes": i})
        api.put(node)
    time.sleep(1.0)  # several debounce periods: a pass would have run by now
    after = d.metric("lbsync_syncs_total", result="reloaded") + d.metric(
        "lbsync_syncs_total", result="unchanged")
    assert after == passes


def test_dropped_watch_resumes_from_the_last_version(
    api: ApiServer, standins: StandinPool, run_daemon: Callable[..., Running]
) -> None:
    add_cluster(api, standins, 2)
    d = run_daemon()
    d.converged(hp(1), hp(2))
    def node_lists() -> int:
        return sum(1 for r in api.iter_requests("GET", "/api/v1/nodes") if "watch" not in r[1])

    lists_before = node_lists()
    api.faults.drop_watches()
    api.put(ready_node("node-3", addr(3)))
    d.converged(hp(1), hp(2), hp(3))
    # Resumed with a watch from the last resourceVersion seen, not with a new list.
    assert node_lists() == lists_before
    assert d.metric("lbsync_watch_restarts_total", kind="nodes", reason="error") >= 1


def test_expired_watch_relists(
    api: ApiServer, standins: StandinPool, run_daemon: Callable[..., Running]
) -> None:
    add_cluster(api, standins, 2)
    d = run_daemon()
    d.converged(hp(1), hp(2))
    api.put(ready_node("node-2", addr(2), ready=False))
    d.converged(hp(1))
    # History gone and the watch cut: resuming from the last version gets 410, so relist.
    api.compact()
    api.faults.drop_watches()
    api.put(ready_node("node-3", addr(3)))
    d.converged(hp(1), hp(3))
    eventually(lambda: d.metric("lbsync_watch_restarts_total", kind="nodes",
                                reason="expired") >= 1, what="an expired restart")


def test_injected_server_errors_are_retried(
    api: ApiServer, standins: StandinPool, run_daemon: Callable[..., Running]
) -> None:
    add_cluster(api, standins, 2)
    api.faults.fail_next(2, status=500, path_contains="/api/v1/nodes")
    d = run_daemon()
    d.converged(hp(1), hp(2))
    assert d.metric("lbsync_api_errors_total", code="500") >= 1
    api.faults.fail_next(3, status=429)
    api.faults.drop_watches()
    api.put(ready_node("node-3", addr(3)))
    d.converged(hp(1), hp(2), hp(3))


def test_outage_keeps_the_file_and_readiness_recovers(
    api: ApiServer, standins: StandinPool, run_daemon: Callable[..., Running]
) -> None:
    add_cluster(api, standins, 3)
    d = run_daemon()
    d.converged(hp(1), hp(2), hp(3))
    before = d.nginx.output.read_bytes()
    api.faults.set_outage(True)
    api.put(ready_node("node-2", addr(2), ready=False))  # changes while unreachable
    _, body = eventually(lambda: (r := d.get("/readyz"))[0] == 503 and r, 10,
                              "readyz to turn 503")
    assert "API unreachable" in json.loads(body)["reason"]
    assert d.nginx.output.read_bytes() == before  # the last good file stays
    assert d.get("/healthz")[0] == 200  # the process itself is fine
    assert d.metric("lbsync_ready") == 0
    api.faults.set_outage(False)
    d.converged(hp(1), hp(3), timeout=40)
    eventually(lambda: d.get("/readyz")[0] == 200, 10, "readyz back to 200")
    assert d.metric("lbsync_api_errors_total", code="connection") >= 1


def test_a_burst_of_1000_updates_gives_a_handful_of_reloads(
    api: ApiServer, standins: StandinPool, run_daemon: Callable[..., Running]
) -> None:
    add_cluster(api, standins, 10)
    d = run_daemon(sync={"debounce": 0.25, "max_delay": 2.0, "min_reload_interval": 0.5})
    d.converged(*(hp(i) for i in range(1, 11)))
    def passes() -> float:
        return sum(d.metric("lbsync_syncs_total", result=r)
                   for r in ("reloaded", "unchanged", "failed"))

    reloads, before = d.metric("lbsync_reloads_total", result="success"), passes()
    for i in range(1000):
        n = i % 10 + 1
        # Every update flips a node's readiness: each one changes the desired state.
        api.put(ready_node(f"node-{n}", addr(n), ready=(i // 10) % 2 == 1))
    api.put(ready_node("node-1", addr(1), ready=False))  # the end state differs
    d.converged(*(hp(i) for i in range(2, 11)), timeout=30)
    burst = d.metric("lbsync_reloads_total", result="success") - reloads
    assert 1 <= burst <= 10, f"{burst} reloads for 1001 updates"
    assert passes() - before <= 10


def test_too_few_nodes_keeps_the_file_then_recovers(
    api: ApiServer, standins: StandinPool, run_daemon: Callable[..., Running]
) -> None:
    add_cluster(api, standins, 2)
    d = run_daemon(nodes={"min_nodes": 2})
    d.converged(hp(1), hp(2))
    before = d.nginx.output.read_bytes()
    api.put(ready_node("node-1", addr(1), ready=False))
    eventually(lambda: d.metric("lbsync_syncs_total", result="failed") >= 1)
    assert d.nginx.output.read_bytes() == before
    status = json.loads(d.get("/status")[1])
    assert "nodes.min_nodes=2" in status["last_error"]
    api.put(ready_node("node-3", addr(3)))
    d.converged(hp(2), hp(3))


def test_metrics_are_preinitialised_and_typed(
    api: ApiServer, standins: StandinPool, run_daemon: Callable[..., Running]
) -> None:
    add_cluster(api, standins, 1)
    d = run_daemon()
    d.converged(hp(1))
    _, body = d.get("/metrics")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    assert families["lbsync_syncs"].type == "counter"
    assert families["lbsync_sync_duration_seconds"].type == "histogram"
    assert families["lbsync_event_to_reload_seconds"].type == "histogram"
    samples = d.metrics()
    for result in ("reloaded", "unchanged", "failed"):
        assert ("lbsync_syncs_total", (("result", result),)) in samples
    assert ("lbsync_watch_restarts_total", (("kind", "services"), ("reason", "expired"))) \
        in samples
    assert ("lbsync_api_errors_total", (("code", "429"),)) in samples
    assert d.metric("lbsync_config_held_back") == 0
    assert d.metric("lbsync_last_success_timestamp_seconds") > time.time() - 60
    assert any(name == "lbsync_build_info" for name, _ in samples)


def test_trigger_runs_a_pass_now(
    api: ApiServer, standins: StandinPool, run_daemon: Callable[..., Running]
) -> None:
    add_cluster(api, standins, 2)
    d = run_daemon()
    d.converged(hp(1), hp(2))
    record = d.daemon.trigger()
    assert record is not None and record.result == "unchanged"
    assert record.lines == ["k8s_cluster: 2 nodes (+0 -0), unchanged"]


def test_nothing_is_written_before_the_first_list_completes(
    api: ApiServer, standins: StandinPool, nginx: PrivateNginx,
    run_daemon: Callable[..., Running]
) -> None:
    add_cluster(api, standins, 2)
    before = nginx.output.read_bytes()
    api.faults.fail_next(1000, status=503, path_contains="services")
    d = run_daemon()
    time.sleep(1.5)
    assert nginx.output.read_bytes() == before
    assert d.get("/readyz")[0] == 503
    api.faults.clear()
    d.converged(hp(1), hp(2), timeout=40)


def test_a_steady_trickle_cannot_starve_passes_and_reloads_are_spaced(
    api: ApiServer, standins: StandinPool, run_daemon: Callable[..., Running]
) -> None:
    add_cluster(api, standins, 2)
    # A new node every 0.1 s never leaves 0.3 s of quiet: only max_delay lets passes run.
    d = run_daemon(sync={"debounce": 0.3, "max_delay": 0.6, "min_reload_interval": 1.0})
    d.converged(hp(1), hp(2))
    reloads = d.metric("lbsync_reloads_total", result="success")
    start = time.monotonic()
    i = 0
    seen_mid_trickle = set()
    while time.monotonic() - start < 3.0:
        i += 1
        api.put(ready_node(f"node-{10 + i}", addr(10 + i)))  # every state differs
        seen_mid_trickle.add(d.metric("lbsync_reloads_total", result="success"))
        time.sleep(0.1)
    during = d.metric("lbsync_reloads_total", result="success") - reloads
    assert len(seen_mid_trickle) >= 2, "no reload happened while events kept coming"
    # min_reload_interval=1.0 bounds 3 s of changes to about 3 reloads, not 30.
    assert 1 <= during <= 4, f"{during} reloads in 3 s"
    d.converged(hp(1), hp(2), *(hp(10 + k) for k in range(1, i + 1)))


def test_reload_with_a_broken_kubeconfig_is_held_back(
    tmp_path: Path, api: ApiServer, standins: StandinPool, run_daemon: Callable[..., Running]
) -> None:
    add_cluster(api, standins, 2)
    d = run_daemon()
    d.converged(hp(1), hp(2))
    broken = tmp_path / "broken-kubeconfig"
    broken.write_text("apiVersion: v1\nclusters: []\ncontexts: []\n")
    path = d.daemon.config_path
    assert path is not None
    good = path.read_text()
    path.write_text(good.replace(str(api.kubeconfig_path), str(broken)))
    d.daemon.request_reload()
    eventually(lambda: d.metric("lbsync_config_held_back") == 1, what="config held back")
    api.put(ready_node("node-3", addr(3)))  # still watching with the old client
    d.converged(hp(1), hp(2), hp(3))
    path.write_text(good.replace("debounce: 0.1", "debounce: 0.15"))
    d.daemon.request_reload()
    eventually(lambda: d.metric("lbsync_config_held_back") == 0, what="config accepted")
    assert d.daemon.cfg.sync.debounce == 0.15


def test_periodic_resync_relists_and_runs_a_pass(
    api: ApiServer, standins: StandinPool, run_daemon: Callable[..., Running]
) -> None:
    add_cluster(api, standins, 2)
    d = run_daemon(sync={"resync": 1.5})
    d.converged(hp(1), hp(2))
    eventually(lambda: d.metric("lbsync_watch_restarts_total", kind="nodes",
                                reason="resync") >= 1, 10, "a resync relist")
    # The safety-net pass finds nothing to change: no reload, but a fresh success.
    eventually(lambda: d.metric("lbsync_syncs_total", result="unchanged") >= 1, 10,
               "a resync pass")
    assert d.metric("lbsync_reloads_total", result="success") == 1


def test_readiness_fails_when_a_reflector_thread_is_dead(
    api: ApiServer, standins: StandinPool, run_daemon: Callable[..., Running]
) -> None:
    """Before: a reflector thread killed by one payload left /readyz at 200 for good."""
    add_cluster(api, standins, 1)
    d = run_daemon()
    d.converged(hp(1))
    assert d.get("/readyz")[0] == 200
    reflector = d.daemon.watchers.reflectors[0]  # type: ignore[union-attr]
    dead = threading.Thread(target=lambda: None)
    dead.start()
    dead.join()
    reflector.thread = dead  # what an uncaught exception would leave
    status, body = d.get("/readyz")
    assert status == 503 and "reflector thread died" in json.loads(body)["reason"]
    assert d.metric("lbsync_ready") == 0
