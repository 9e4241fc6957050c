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
from lbsync import files, kube, logs
from lbsync.cache import NODES, ClusterCache, Dirty
from lbsync.config import Config
from lbsync.desired import Plan
from lbsync.errors import ApplyError, ConfigError, LbsyncError, SyncError
from lbsync.metrics import Metrics
from lbsync.notify import Notifier
from lbsync.sync import PassResult, load_template, sync_pass
from lbsync.watch import Reflector

TICK = 1.0  # the loop wakes at least this often: watchdog, readiness, retries
MAX_PASS_BACKOFF = 30.0


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
        self.cache = ClusterCache({NODES, *(f"service:{s}" for s in services)}, on_change)
        sync = cfg.sync
        common: dict[str, Any] = {"watch_timeout": sync.watch_timeout, "resync": sync.resync,
                                  "stop": self.stop}
        sources: list[tuple[str, str, kube.Source[Any]]] = [
            (NODES, "nodes", kube.nodes(cfg.nodes.label_selector))]
        for ref in services:
            ns, name = ref.split("/", 1)
            sources.append((f"service:{ref}", "services", kube.service(ns, name)))
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
            cfg.sync.resync)


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
                self.log.info("stopped")
        return 0

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
        start = time.monotonic()
        try:
            result = sync_pass(snapshot, self.cfg, self.template, force=not self._applied_once)
        except LbsyncError as exc:
            record = self._failed(exc, dirty, start)
        except Exception as exc:  # a bug must not stop the daemon keeping the last good file
            self.log.exception("sync pass crashed")
            record = self._failed(SyncError(f"internal error: {exc!r}"), dirty, start)
        else:
            record = self._succeeded(result, dirty, start)
        self._finish(triggers, record)

    def _succeeded(self, result: PassResult, dirty: Dirty | None, start: float) -> PassRecord:
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

    def _failed(self, exc: LbsyncError, dirty: Dirty | None, start: float) -> PassRecord:
        assert self.watchers is not None
        now = time.monotonic()
        self.watchers.cache.restore_dirty(dirty)
        self.metrics.syncs.labels(result="failed").inc()
        self.metrics.sync_duration.observe(now - start)
        if isinstance(exc, ApplyError):
            stage = "test_failed" if exc.stage == "test" else "reload_failed"
            self.metrics.reloads.labels(result=stage).inc()
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
            # A new kubeconfig is loaded before anything is swapped, so a bad one is refused.
            kube = self.kube_factory(new) if new.kubernetes != old.kubernetes else self.kube
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
        if kube is not self.kube:
            if self.kube is not None:
                self.kube.close()
            self.kube = kube
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
        return {
            "ready": ready, "reason": reason, "servers_dir": str(self.cfg.nginx.servers_dir),
            "identity": self.cfg.identity, "config": str(self.config_path or ""),
            "started": self.started, "last_reload": self.last_reload,
            "last_sync": None if last is None else {
                "at": last.at, "result": last.result, "duration": round(last.duration, 4),
                "lines": last.lines, "error": last.error},
            "last_error": self.last_error, "upstreams": upstreams, "nodes": nodes,
            "watches": watches,
        }

