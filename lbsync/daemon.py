"""The daemon (`lbsync run`): reflectors feed the cache; debounced passes keep NGINX in step.

One loop thread decides when a pass runs: `sync.debounce` after the last change, but never
later than `sync.max_delay` after the first, never sooner than `sync.min_reload_interval` after
the last reload, and only once every source has been listed. A failed pass leaves the last good
file in place and is retried with backoff. Signals: SIGTERM/SIGINT stop, SIGHUP re-reads the
configuration (a bad one is logged and the old one kept).
"""

from __future__ import annotations

import contextlib
import functools
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from lbsync import config as config_mod
from lbsync import files, kube, logs, nginxctl
from lbsync.cache import NODES, ClusterCache, Dirty
from lbsync.config import Config
from lbsync.desired import Plan, plan
from lbsync.errors import ApplyError, ConfigError, LbsyncError, SyncError
from lbsync.guard import Held
from lbsync.leader import Elector
from lbsync.metrics import Metrics
from lbsync.model import Snapshot
from lbsync.notify import Notifier
from lbsync.probe import Prober
from lbsync.statuswriter import StatusWriter
from lbsync.sync import PassResult, load_template, sync_pass
from lbsync.text import printable
from lbsync.watch import Reflector

TICK = 1.0  # the loop wakes at least this often: watchdog, readiness, retries
PORT_QUARANTINE = 300.0  # seconds a port NGINX could not listen on is left out
MAX_PASS_BACKOFF = 30.0
# A new prober's first round: each probe takes at most probe.timeout, plus this for the
# probe thread to start and report.
FIRST_PROBES_SLACK = 0.5


@dataclass
class PassRecord:
    """What the last pass did, for /status, `lbsync once` and logs."""

    at: float  # unix time
    result: str  # reloaded | unchanged | failed
    duration: float
    lines: list[str] = field(default_factory=list)
    error: str = ""


@dataclass
class _Trigger:
    done: threading.Event = field(default_factory=threading.Event)
    record: PassRecord | None = None


class Watchers:
    """One generation of reflectors and the cache they feed; replaced when the config's
    cluster-facing parts change on SIGHUP."""

    def __init__(self, cfg: Config, client: kube.Client, metrics: Metrics,
                 on_change: Callable[[], None]) -> None:
        self.stop = threading.Event()
        services = sorted({u.service_ref for u in cfg.upstreams if u.service is not None})
        everything = ["services:all"] if cfg.loadbalancer.enabled else []
        self.cache = ClusterCache({NODES, *(f"service:{s}" for s in services), *everything},
                                  on_change)
        sync = cfg.sync
        common: dict[str, Any] = {"watch_timeout": sync.watch_timeout, "resync": sync.resync,
                                  "stop": self.stop}
        sources: list[tuple[str, str, kube.Source[Any]]] = [
            (NODES, "nodes", kube.nodes(cfg.nodes.label_selector))]
        for ref in services:
            ns, name = ref.split("/", 1)
            sources.append((f"service:{ref}", "services", kube.service(ns, name)))
        if everything:  # loadbalancer mode: every Service, to find the LoadBalancer ones
            sources.append(("services:all", "services", kube.services_all()))
        self.reflectors = [
            Reflector(name, kind, functools.partial(client.list, src),
                      functools.partial(client.watch, src), self.cache, metrics, **common)
            for name, kind, src in sources
        ]

    def start(self) -> None:
        for r in self.reflectors:
            r.start()

    def close(self) -> None:
        self.stop.set()


def _cluster_key(cfg: Config) -> tuple[Any, ...]:
    """The settings that decide what is watched: a change needs new reflectors."""
    services = sorted(u.service_ref for u in cfg.upstreams if u.service is not None)
    return (cfg.kubernetes, cfg.nodes.label_selector, tuple(services), cfg.sync.watch_timeout,
            cfg.sync.resync, cfg.loadbalancer.enabled)


class Daemon:
    def __init__(
        self,
        cfg: Config,
        *,
        config_path: Path | None = None,
        registry: CollectorRegistry | None = None,
        notifier: Notifier | None = None,
        kube_factory: Callable[[Config], kube.Client] = lambda c: kube.Client.from_config(
            c.kubernetes),
    ) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = Metrics(self.registry)
        self.notifier = notifier or Notifier()
        self.kube_factory = kube_factory
        self.template = load_template(cfg)
        self.metrics.ready.set_function(lambda: 1.0 if self.readiness()[0] else 0.0)
        self.log = logs.get("lbsync")
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._reload_requested = False
        self._triggers: list[_Trigger] = []
        self._lock = threading.Lock()  # guards triggers and the status fields below
        self.kube: kube.Client | None = None
        self.watchers: Watchers | None = None
        # status
        self.started = time.time()
        self.loop_tick = time.monotonic()
        self.last_pass: PassRecord | None = None
        self.last_reload: float | None = None  # unix time
        self.last_success_mono: float | None = None
        self.failing_since: float | None = None  # monotonic, first failed pass of a streak
        self.last_error = ""
        self.plan: Plan | None = None
        self.prober: Prober | None = None
        self._prober_fresh = False  # it has no results yet: the next pass waits for a round
        self.elector: Elector | None = None
        self._listening: set[tuple[str, int]] = set()  # listeners NGINX runs
        self._port_trouble: dict[tuple[str, int], float] = {}  # left out since (monotonic)
        self.status_writer: StatusWriter | None = None
        self.held: tuple[Held, ...] = ()
        self._shrink_since: float | None = None  # monotonic: when a held-back drop began
        self._reloaded_mono = float("-inf")
        self._failed_at: float | None = None
        self._failures = 0
        self._ready_sent = False
        self._applied_once = False  # the first pass tests and reloads whatever the record says
        self._last_watchdog = 0.0

    # --- control, callable from any thread ---------------------------------------------

    def request_stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def request_reload(self) -> None:
        self._reload_requested = True
        self._wake.set()

    def trigger(self, timeout: float = 30.0) -> PassRecord | None:
        """Run a pass now (`lbsync once` against a running daemon) and return its record."""
        trig = _Trigger()
        with self._lock:
            self._triggers.append(trig)
        self._wake.set()
        trig.done.wait(timeout)
        return trig.record

    # --- main loop ---------------------------------------------------------------------

    def run(self, *, install_signals: bool = True, lock: bool = True,
            on_started: Callable[[], None] | None = None) -> int:
        """Run until stopped. `lock=False`: the caller already holds the output's lock."""
        if install_signals:
            signal.signal(signal.SIGTERM, lambda *_: self.request_stop())
            signal.signal(signal.SIGINT, lambda *_: self.request_stop())
            signal.signal(signal.SIGHUP, lambda *_: self.request_reload())
        nginx = self.cfg.nginx
        with (files.locked(nginx.servers_dir, nginx.state_dir) if lock
              else contextlib.nullcontext()):
            self.kube = self.kube_factory(self.cfg)
            self._start_watchers()
            self._start_prober()
            self._start_loadbalancer()
            if not self.cfg.http.is_loopback:
                self.log.warning("http.listen is not on loopback: /status and POST /sync are "
                                 "reachable from the network", listen=self.cfg.http.listen)
            self.log.info("started", servers_dir=str(self.cfg.nginx.servers_dir),
                          upstreams=[u.name for u in self.cfg.upstreams],
                          api=self.kube.server)
            self.notifier.status("listing the cluster")
            if on_started is not None:
                on_started()
            try:
                self._loop()
            finally:
                self.notifier.stopping()
                if self.watchers is not None:
                    self.watchers.close()
                if self.prober is not None:
                    self.prober.stop()
                if self.elector is not None:
                    self.elector.stop()
                self.log.info("stopped")
        return 0

    def _start_prober(self) -> None:
        """Probes feed the cache's dirty flag: a server turning up or down is one more
        change, picked up by the next (debounced, level-triggered) pass."""
        if self.prober is not None:
            self.prober.stop()
            self.prober = None
        if self.cfg.nodes.probe.enabled:
            self.prober = Prober(self.cfg.nodes.probe, self._mark_dirty,
                                 self.metrics.count_probe)
            self.prober.start()
            self._prober_fresh = True

    def _start_loadbalancer(self) -> None:
        """Loadbalancer mode: the status writer, and the election that decides whether this
        gateway is the one that writes."""
        if self.elector is not None:
            self.elector.stop()
            self.elector = None
        lb = self.cfg.loadbalancer
        self.status_writer = None
        if not lb.enabled:
            return
        assert self.kube is not None
        self.status_writer = StatusWriter(self.kube, self.metrics, lb.hostname)
        if lb.leader_election.enabled:
            self.elector = Elector(self.kube, lb.leader_election, self._leadership)
            self.elector.start()

    def _leadership(self, leading: bool) -> None:
        self.metrics.leader.set(1 if leading else 0)
        if leading:
            self._mark_dirty()  # a pass soon: write what the previous leader may not have

    @property
    def writes_status(self) -> bool:
        if self.status_writer is None:
            return False
        return self.elector is None or self.elector.leading

    def _mark_dirty(self) -> None:
        """One more input changed (a probe result, the leadership, a retry): the next
        debounced pass recomputes everything."""
        if self.watchers is not None:
            self.watchers.cache.mark_dirty()

    def _start_watchers(self) -> None:
        assert self.kube is not None
        if self.watchers is not None:
            self.watchers.close()
        self.watchers = Watchers(self.cfg, self.kube, self.metrics, self._wake.set)
        self.watchers.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._until_due())
            self._wake.clear()
            self.loop_tick = time.monotonic()
            if self._stop.is_set():
                break
            if self._reload_requested:
                self._reload_requested = False
                self._reload_config()
            self._watchdog()
            if self._due():
                self._pass()

    def _watchdog(self) -> None:
        interval = self.notifier.watchdog_interval
        if interval is not None and time.monotonic() - self._last_watchdog >= interval:
            self.notifier.watchdog()
            self._last_watchdog = time.monotonic()

    def _due_at(self) -> float | None:
        """Monotonic time the next pass may start, or None when there is nothing to do."""
        assert self.watchers is not None
        with self._lock:
            if self._triggers:
                return 0.0
        dirty = self.watchers.cache.dirty
        if dirty is None or not self.watchers.cache.synced:
            return None
        sync = self.cfg.sync
        due = min(dirty.last + sync.debounce, dirty.first + sync.max_delay)
        due = max(due, self._reloaded_mono + sync.min_reload_interval)
        if self._failed_at is not None and dirty.last <= self._failed_at:
            # Nothing new since the failure: retry with backoff, not in a tight loop.
            backoff = min(MAX_PASS_BACKOFF, 0.5 * 2 ** min(self._failures, 8))
            due = max(due, self._failed_at + backoff)
        return due

    def _due(self) -> bool:
        due = self._due_at()
        return due is not None and time.monotonic() >= due

    def _until_due(self) -> float:
        due = self._due_at()
        tick = min(TICK, self.notifier.watchdog_interval or TICK)
        if due is None:
            return tick
        return max(0.0, min(tick, due - time.monotonic()))

    # --- a pass ------------------------------------------------------------------------

    def _pass(self) -> None:
        assert self.watchers is not None
        with self._lock:
            triggers, self._triggers = self._triggers, []
        if not self.watchers.cache.synced:
            self._finish(triggers, PassRecord(time.time(), "failed", 0.0,
                                              error="the cluster has not been listed yet"))
            return
        snapshot, dirty = self.watchers.cache.take()
        if self._prober_fresh and self.prober is not None:
            self._prober_fresh = False
            self._first_probes(self.prober, snapshot)
        start = time.monotonic()
        health = self.prober.states() if self.prober is not None else None
        try:
            result = sync_pass(snapshot, self.cfg, self.template, force=not self._applied_once,
                               health=health, shrink_confirmed=self._shrink_confirmed(),
                               unavailable=self._unavailable_ports())
        except LbsyncError as exc:
            record = self._failed(exc, dirty, start)
        except Exception as exc:  # a bug must not stop the daemon keeping the last good file
            self.log.exception("sync pass crashed")
            record = self._failed(SyncError(f"internal error: {exc!r}"), dirty, start)
        else:
            record = self._succeeded(result, dirty, start, snapshot)
        self._finish(triggers, record)

    def _first_probes(self, prober: Prober, snapshot: Snapshot) -> None:
        """Probe every candidate server once before a new prober's first pass, for at most
        one probe timeout (and a little).

        Probe results do not survive a restart (or a new probe config), and a server never
        probed counts as up: without this round, the first pass put back every node the
        previous run's probes had taken out, until its first probe failed. A hung node then
        got traffic for a probe timeout and a pass, and nginx held each request sent to it
        for proxy_read_timeout (bench/churn.py, docs/reliability.md).
        """
        try:
            targets = plan(snapshot, self.cfg).targets
        except LbsyncError:
            return  # the pass itself fails, and says why
        prober.set_targets(targets)
        deadline = time.monotonic() + self.cfg.nodes.probe.timeout + FIRST_PROBES_SLACK
        while not self._stop.is_set() and time.monotonic() < deadline and \
                not targets <= prober.states().keys():
            time.sleep(0.01)

    def _succeeded(self, result: PassResult, dirty: Dirty | None, start: float,
                   snapshot: Snapshot) -> PassRecord:
        now = time.monotonic()
        duration = now - start
        m = self.metrics
        self._applied_once = True
        m.syncs.labels(result=result.outcome.value).inc()
        m.sync_duration.observe(duration)
        if result.reloaded:
            self._reloaded_mono = now
            self.last_reload = time.time()
            m.reloads.labels(result="success").inc()
            if dirty is not None:
                m.event_to_reload.observe(now - dirty.first)
        m.last_success.set(time.time())
        m.set_upstreams({c.name: c.servers for c in result.changes})
        if self.prober is not None:
            self.prober.set_targets(result.plan.targets)
            m.set_probe_targets(self.prober.states().values())
        self._track_hold(result)
        self._write_statuses(result, snapshot)
        counts: dict[str, int] = {}
        for v in result.plan.verdicts:
            counts[v.reason.value] = counts.get(v.reason.value, 0) + 1
        m.set_nodes(counts)
        with self._lock:
            self.plan = result.plan
            self.last_success_mono = now
            self.failing_since = None
            self.last_error = ""
            self._failed_at, self._failures = None, 0
        self.log.info(
            "sync", result=result.outcome.value, duration_ms=round(duration * 1000, 1),
            nodes=len(result.plan.verdicts), eligible=result.plan.eligible_count,
            upstreams={c.name: c.servers for c in result.changes},
            added=[a for c in result.changes for a in c.added],
            removed=[r for c in result.changes for r in c.removed],
            reloaded=result.reloaded,
        )
        if not self._ready_sent:
            self.notifier.ready(f"in sync: {', '.join(result.lines())}")
            self._ready_sent = True
        else:
            self.notifier.status(f"in sync: {', '.join(result.lines())}")
        return PassRecord(time.time(), result.outcome.value, duration, result.lines())

    def _unavailable_ports(self) -> frozenset[tuple[str, int]]:
        now = time.monotonic()
        self._port_trouble = {k: t for k, t in self._port_trouble.items()
                              if now - t < PORT_QUARANTINE}
        return frozenset(self._port_trouble)

    def _suspect_ports(self, exc: ApplyError) -> None:
        """A reload NGINX refused after this pass added listeners: the new ports are the
        likely cause (another process holds one). Leave them out for a while, so that every
        other Service's changes go through; the pass is retried at once without them."""
        refused = exc.plan
        if exc.stage != "reload" or not isinstance(refused, Plan) or refused.lb is None:
            return
        new = {(li.protocol, li.port) for li in refused.lb.listeners} - self._listening
        named = nginxctl.ports_refused(str(exc))
        if named:
            new = {k for k in new if k[1] in named}
        else:  # no error log to read (the packaged units): who holds a new port now?
            taken = nginxctl.held((proto, a, port) for proto, port in new
                                  for a in self.cfg.loadbalancer.addresses)
            new = taken or new
        if new:
            now = time.monotonic()
            self._port_trouble.update(dict.fromkeys(new, now))
            self.log.warning("listeners left out after a refused reload",
                             ports=sorted(f"{p}/{proto}" for proto, p in new))
            self._retry_soon()

    def _write_statuses(self, result: PassResult, snapshot: Snapshot) -> None:
        lb = result.plan.lb
        if lb is None:
            return
        self._listening = {(li.protocol, li.port) for li in lb.listeners}
        problems = {p.service for p in lb.problems}
        self.metrics.lb_services.labels(state="served").set(len(lb.served))
        self.metrics.lb_services.labels(state="problem").set(len(problems))
        if self.writes_status and self.status_writer is not None and \
                not self.status_writer.write(lb, snapshot.services):
            self._retry_soon()

    def _retry_soon(self) -> None:
        """A write failed: make another pass after a while, not in a loop."""
        self._pass_after(2.0)

    def _pass_after(self, seconds: float) -> None:
        """Mark the view dirty `seconds` from now: a pass then, without blocking the loop."""
        timer = threading.Timer(seconds, self._mark_dirty)
        timer.daemon = True
        timer.start()

    def _shrink_confirmed(self) -> bool:
        since = self._shrink_since
        return since is not None and time.monotonic() - since >= self.cfg.nodes.shrink_confirm

    def _track_hold(self, result: PassResult) -> None:
        """Start, keep or end the clock of a held-back drop; one warning per episode."""
        held = sum(len(h.kept) for h in result.held)
        self.metrics.held_back.set(held)
        with self._lock:
            self.held = result.held
        if not result.held:
            if self._shrink_since is not None and not self._shrink_confirmed():
                self.log.info("drop held back is over", held_for=round(
                    time.monotonic() - self._shrink_since, 1))
            self._shrink_since = None
            return
        if self._shrink_since is None:
            self._shrink_since = time.monotonic()
            for h in result.held:
                self.log.warning("removals held back", detail=h.describe(
                    self.cfg.nodes.max_shrink), confirm_after=self.cfg.nodes.shrink_confirm)
            # A pass once the drop has lasted shrink_confirm, to apply it if it still holds.
            self._pass_after(self.cfg.nodes.shrink_confirm + 0.01)

    def _failed(self, exc: LbsyncError, dirty: Dirty | None, start: float) -> PassRecord:
        assert self.watchers is not None
        now = time.monotonic()
        self.watchers.cache.restore_dirty(dirty)
        self.metrics.syncs.labels(result="failed").inc()
        self.metrics.sync_duration.observe(now - start)
        if isinstance(exc, ApplyError):
            stage = "test_failed" if exc.stage == "test" else "reload_failed"
            self.metrics.reloads.labels(result=stage).inc()
            self._suspect_ports(exc)
        with self._lock:
            if self.failing_since is None:
                self.failing_since = now
            self.last_error = str(exc)
            self._failed_at = now
            self._failures += 1
        self.log.error("sync", result="failed", error=str(exc),
                       duration_ms=round((now - start) * 1000, 1), reloaded=False)
        self.notifier.status(f"sync failing: {exc}")
        return PassRecord(time.time(), "failed", now - start, error=str(exc))

    def _finish(self, triggers: list[_Trigger], record: PassRecord) -> None:
        self.last_pass = record
        for trig in triggers:
            trig.record = record
            trig.done.set()

    # --- configuration reload ----------------------------------------------------------

    def _reload_config(self) -> None:
        self.notifier.reloading()
        try:
            self._apply_new_config()
        finally:
            self.notifier.send("READY=1")

    def _apply_new_config(self) -> None:
        if self.config_path is None:
            return
        old = self.cfg
        try:
            new = config_mod.load(self.config_path)
            template = load_template(new)
            if (new.nginx.servers_dir, new.nginx.state_dir) != (old.nginx.servers_dir,
                                                                old.nginx.state_dir):
                raise ConfigError("nginx.servers_dir: cannot change while running; restart "
                                  "lbsync")
            # The kubeconfig is read again before anything is swapped: a bad one is refused,
            # and a renewed token (same file) is taken without a restart.
            fresh = self.kube_factory(new)
        except ConfigError as exc:
            self.metrics.config_held_back.set(1)
            self.log.error("config rejected, keeping the previous one", error=str(exc))
            return
        if new.http != old.http:
            self.log.warning("http.listen changes take effect on restart")
        if new.log != old.log:
            logs.setup(new.log)
        self.cfg, self.template = new, template
        self.metrics.config_held_back.set(0)
        same_cluster = new.kubernetes == old.kubernetes and self.kube is not None
        if same_cluster and self.kube is not None:
            self.kube.use(fresh.connection)  # watches, status writer and Lease keep the client
            fresh.close()
            if self.watchers is not None:
                for reflector in self.watchers.reflectors:
                    reflector.retry_now()  # a 401 waited the longest backoff: try again now
        else:
            if self.kube is not None:
                self.kube.close()
            self.kube = fresh
        if new.nodes.probe != old.nodes.probe:
            self._start_prober()
        if new.loadbalancer != old.loadbalancer or not same_cluster:
            self._start_loadbalancer()  # its writer and Lease hold the client
        if _cluster_key(new) != _cluster_key(old):
            self._start_watchers()
        elif self.watchers is not None:
            self.watchers.cache.mark_dirty()
        self.log.info("config reloaded", path=str(self.config_path))

    # --- health and status -------------------------------------------------------------

    def alive(self) -> bool:
        return time.monotonic() - self.loop_tick < 10 * TICK

    def readiness(self) -> tuple[bool, str]:
        now = time.monotonic()
        grace = self.cfg.sync.ready_after_failure
        with self._lock:
            last_ok, failing_since, last_error = (self.last_success_mono, self.failing_since,
                                                  self.last_error)
        if self.watchers is not None:
            for r in self.watchers.reflectors:
                stale = self._source_stale(r, now, grace)
                if stale:
                    return False, stale
        if last_ok is None:
            detail = f": {last_error}" if last_error else ""
            return False, f"no successful sync yet{detail}"
        if failing_since is not None and now - failing_since >= grace:
            return False, f"sync failing for {now - failing_since:.0f}s: {last_error}"
        if now - last_ok > self.cfg.sync.resync + grace:
            return False, f"no successful sync for {now - last_ok:.0f}s"
        if self.prober is not None and not self.prober.alive:
            return False, "the prober thread died"
        held = self.held
        if held and self._shrink_since is not None:
            # Still serving, from the last good set: ready, and saying why it differs.
            return True, "; ".join(h.describe(self.cfg.nodes.max_shrink) for h in held) + (
                f" for {now - self._shrink_since:.0f}s of nodes.shrink_confirm "
                f"{self.cfg.nodes.shrink_confirm:g}s")
        return True, "ok"

    def _source_stale(self, r: Reflector, now: float, grace: float) -> str:
        """Why one source is not current, or "" when it is."""
        if not r.alive:
            return f"the {r.source} reflector thread died"
        since = r.health.failing_since
        if since is not None and now - since >= grace:
            return f"API unreachable for {now - since:.0f}s ({r.source}): {r.health.last_error}"
        # A healthy watch hears from the server at least once per watch_timeout (a bookmark,
        # an event, or its clean end): silence for longer means it is stuck.
        bound = self.cfg.sync.watch_timeout + grace
        if r.health.last_ok is not None and now - r.health.last_ok > bound:
            return f"no word from the API for {now - r.health.last_ok:.0f}s ({r.source})"
        return ""

    def status(self) -> dict[str, Any]:
        ready, reason = self.readiness()
        with self._lock:
            plan, last = self.plan, self.last_pass
        nodes = [] if plan is None else [v.as_dict() for v in plan.verdicts]
        upstreams = [] if plan is None else [u.as_dict() for u in plan.upstreams]
        watches = []
        if self.watchers is not None:
            for r in self.watchers.reflectors:
                watches.append({"source": r.source, "ok": r.health.failing_since is None,
                                "last_error": r.health.last_error})
        probes = [] if self.prober is None else [
            {"target": t.describe(), **s.as_dict()}
            for t, s in sorted(self.prober.states().items(), key=lambda i: i[0].describe())]
        return {
            "ready": ready, "reason": reason, "servers_dir": str(self.cfg.nginx.servers_dir),
            "held_back": [{"upstream": h.upstream, "servers": list(h.kept)} for h in self.held],
            "loadbalancer": None if plan is None or plan.lb is None else {
                "leader": self.writes_status,
                "listeners": [li.as_dict() for li in plan.lb.listeners],
                "problems": [{"service": p.service, "reason": p.reason,
                              "message": printable(p.message)} for p in plan.lb.problems]},
            "probes": probes,
            "identity": self.cfg.identity, "config": str(self.config_path or ""),
            "started": self.started, "last_reload": self.last_reload,
            "last_sync": None if last is None else {
                "at": last.at, "result": last.result, "duration": round(last.duration, 4),
                "lines": last.lines, "error": last.error},
            "last_error": self.last_error, "upstreams": upstreams, "nodes": nodes,
            "watches": watches,
        }

