"""Prometheus metrics, registered on an injected registry (tests get a fresh one each).

Label values are pre-initialised so that dashboards and alerts see zeros, not missing series.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from lbsync import __version__
from lbsync.desired import Reason
from lbsync.health import Observation, TargetState, counts

SYNC_RESULTS = ("reloaded", "unchanged", "failed")
RELOAD_RESULTS = ("success", "test_failed", "reload_failed")
WATCH_KINDS = ("nodes", "services")
WATCH_REASONS = ("timeout", "expired", "error", "resync")
PROBE_RESULTS = ("ok", "refused", "timeout", "http_status", "error")
API_CODES = ("connection", "invalid", "internal", "401", "403", "404", "410", "429", "500",
             "503")

# Reload latency is dominated by debounce (0.25 s default) plus nginx: buckets around that.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.syncs = Counter("lbsync_syncs", "Sync passes by result.", ["result"],
                             registry=registry)
        self.sync_duration = Histogram(
            "lbsync_sync_duration_seconds", "Duration of a sync pass (plan, render, apply).",
            registry=registry, buckets=LATENCY_BUCKETS,
        )
        self.event_to_reload = Histogram(
            "lbsync_event_to_reload_seconds",
            "From the first cluster change not yet in NGINX to the reload that applied it.",
            registry=registry, buckets=LATENCY_BUCKETS,
        )
        self.reloads = Counter("lbsync_reloads", "NGINX reload attempts by result.", ["result"],
                               registry=registry)
        self.upstream_servers = Gauge("lbsync_upstream_servers",
                                      "Servers in each upstream as last written.", ["upstream"],
                                      registry=registry)
        self.nodes = Gauge("lbsync_nodes", "Nodes by eligibility state.", ["state"],
                           registry=registry)
        self.last_success = Gauge("lbsync_last_success_timestamp_seconds",
                                  "Unix time of the last successful sync pass.",
                                  registry=registry)
        self.watch_restarts = Counter("lbsync_watch_restarts",
                                      "Watches restarted, by kind and reason.",
                                      ["kind", "reason"], registry=registry)
        self.api_errors = Counter("lbsync_api_errors", "Failed Kubernetes API calls by code.",
                                  ["code"], registry=registry)
        self.config_held_back = Gauge(
            "lbsync_config_held_back",
            "1 while a changed configuration file was rejected and the previous one is in use.",
            registry=registry,
        )
        self.ready = Gauge("lbsync_ready", "1 while /readyz answers 200.", registry=registry)
        # Per result, not per node: 5,000 nodes must not mean 5,000 series. Which node fails
        # is in /status and `lbsync status`.
        self.probes = Counter("lbsync_probes", "Probes of servers by result.", ["result"],
                              registry=registry)
        self.probe_targets = Gauge("lbsync_probe_targets", "Probed servers by state.",
                                   ["state"], registry=registry)
        self.status_writes = Counter("lbsync_loadbalancer_status_writes",
                                     "Service status writes (loadbalancer mode) by result.",
                                     ["result"], registry=registry)
        self.lb_services = Gauge("lbsync_loadbalancer_services",
                                 "LoadBalancer Services selected, by state: served (at least "
                                 "one listener) or problem (a port left out).", ["state"],
                                 registry=registry)
        self.leader = Gauge("lbsync_leader",
                            "1 while this gateway holds the Lease and writes statuses.",
                            registry=registry)
        self.held_back = Gauge(
            "lbsync_held_back_removals",
            "Servers kept in NGINX although the cluster says remove them: a drop larger than "
            "nodes.max_shrink, held until it has lasted nodes.shrink_confirm.",
            registry=registry)
        Info("lbsync_build", "lbsync version.", registry=registry).info({"version": __version__})
        self._preinit()

    def _preinit(self) -> None:
        for result in SYNC_RESULTS:
            self.syncs.labels(result=result)
        for result in RELOAD_RESULTS:
            self.reloads.labels(result=result)
        for reason in Reason:
            self.nodes.labels(state=reason.value)
        for kind in WATCH_KINDS:
            for why in WATCH_REASONS:
                self.watch_restarts.labels(kind=kind, reason=why)
        for code in API_CODES:
            self.api_errors.labels(code=code)
        for result in PROBE_RESULTS:
            self.probes.labels(result=result)
        for state in ("up", "down"):
            self.probe_targets.labels(state=state)
        for result in ("written", "failed"):
            self.status_writes.labels(result=result)
        for state in ("served", "problem"):
            self.lb_services.labels(state=state)

    def count_probe(self, obs: Observation) -> None:
        result = obs.detail if obs.detail in PROBE_RESULTS else (
            "http_status" if obs.detail.startswith("HTTP ") else "error")
        self.probes.labels(result=result).inc()

    def set_probe_targets(self, states: Iterable[TargetState]) -> None:
        for state, n in counts(states).items():
            self.probe_targets.labels(state=state).set(n)

    def set_upstreams(self, counts: dict[str, int]) -> None:
        for name, count in counts.items():
            self.upstream_servers.labels(upstream=name).set(count)

    def set_nodes(self, counts: dict[str, int]) -> None:
        for reason in Reason:
            self.nodes.labels(state=reason.value).set(counts.get(reason.value, 0))
