"""Reflectors: keep one source of the cache current with list-then-watch, as client-go does.

Each reflector lists (paginated), then watches from the list's resourceVersion with bookmarks
and a server-side timeout. A watch that ends or breaks resumes from the last version seen; a
410 Expired relists; errors back off exponentially with jitter (tenacity, `kube.wait_after`),
capped at 30 s, growing with the failures since the source last made progress (a list, an
event): a watch that streamed for an hour and then broke starts again at the shortest wait. A
relist every `sync.resync` seconds is the safety net. Nothing here ever raises to the caller,
and no payload can kill the thread: any exception in a cycle is logged, counted, backed off
and followed by a relist. `health` says when the source was last known current, so readiness
can tell a silent or dead reflector from a quiet cluster.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import tenacity

from lbsync import kube, logs
from lbsync.cache import ClusterCache
from lbsync.errors import ApiError, Expired
from lbsync.metrics import Metrics
from lbsync.model import Event, Listed

MAX_BACKOFF = kube.MAX_BACKOFF


@dataclass
class SourceHealth:
    """Whether a source is in step with the API; times are monotonic."""

    failing_since: float | None = None
    last_error: str = ""
    last_ok: float | None = None


class Reflector:
    def __init__(
        self,
        source: str,
        kind: str,  # metrics label: "nodes" or "services"
        lister: Callable[[], Listed[Any]],
        watcher: Callable[[str, int], Iterator[Event[Any]]],
        cache: ClusterCache,
        metrics: Metrics,
        *,
        watch_timeout: int,
        resync: float,
        stop: threading.Event,
    ) -> None:
        self.source, self.kind = source, kind
        self.lister, self.watcher = lister, watcher
        self.cache, self.metrics = cache, metrics
        self.watch_timeout, self.resync = watch_timeout, resync
        self.stop = stop
        self.health = SourceHealth()
        self.log = logs.get("lbsync.watch").bind(source=source)
        self.thread = threading.Thread(target=self._run, name=f"reflector-{source}", daemon=True)
        self._wait: Callable[[tenacity.RetryCallState], float] = self._backoff
        self._failures = 0  # failed calls since the last progress: what the backoff grows on
        self._crashes = 0
        self._kick = threading.Event()

    def start(self) -> None:
        self.thread.start()

    @property
    def alive(self) -> bool:
        return self.thread.is_alive() or self.stop.is_set()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                self._cycle()
            except _Stopped:
                return
            except Exception as exc:  # a bug or a payload nobody foresaw: never die of it
                self._crashed(exc)

    def _cycle(self) -> None:
        """One list, then watches until a relist is due or needed."""
        first = self.health.last_ok is None
        try:
            listed = self._retry(self.lister)
        except Expired:  # the list's continue token expired twice: list again
            self._restarted("expired")
            return
        self.cache.replace(self.source, listed.items, force=not first)
        # Listed; but after unreadable events, only a watch that works again means current.
        self._ok(recovered=self._crashes == 0)
        self._watch_until_resync(listed.resource_version)

    def _crashed(self, exc: Exception) -> None:
        self._crashes += 1
        self.health.failing_since = self.health.failing_since or time.monotonic()
        self.health.last_error = f"internal error: {type(exc).__name__}: {exc}"[:300]
        self.metrics.api_errors.labels(code="internal").inc()
        self._restarted("error")
        wait = min(MAX_BACKOFF, 0.5 * 2 ** min(self._crashes, 6))
        self.log.exception("reflector cycle failed, relisting", retry_in=wait)
        self._sleep(wait)

    def _watch_until_resync(self, resource_version: str) -> None:
        """Watch, resuming from the last version seen, until a relist is due or needed."""
        rv = resource_version
        resync_at = time.monotonic() + self.resync
        while not self.stop.is_set():
            left = resync_at - time.monotonic()
            if left <= 0:
                self._restarted("resync")
                return
            # The server ends the watch at resync time, so the relist needs no interruption.
            timeout = max(1, min(self.watch_timeout, int(left + 0.999)))
            began = time.monotonic()
            try:
                rv = self._retry(functools.partial(self._stream, rv, timeout), watch=True)
            except Expired as exc:
                self.log.info("watch expired, relisting", error=str(exc))
                self._restarted("expired")
                return
            except kube.ProtocolError as exc:
                # An event we could not read may have been a change we missed: only a relist
                # is sure to catch up. Backed off, so garbage cannot make a tight loop.
                self._garbled(exc)
                return
            self._crashes = 0
            self._ok()  # a watch the server ended cleanly: we were current until now
            self._restarted("timeout")
            if time.monotonic() - began < min(1.0, timeout / 2):
                # Ended cleanly long before its timeout (a proxy cutting streams?): pause, so
                # a misbehaving path cannot turn into a tight loop of watch requests.
                self._sleep(1.0)

    def _stream(self, rv: str, timeout: int) -> str:
        """One watch request; returns the last resourceVersion seen when the server ends it."""
        for event in self.watcher(rv, timeout):
            if self.stop.is_set():
                raise _Stopped
            rv = event.resource_version or rv
            if event.type != "BOOKMARK":
                self.cache.apply(self.source, event)
            self._crashes = 0
            self._ok()
        return rv

    def _garbled(self, exc: kube.ProtocolError) -> None:
        self._crashes += 1
        self.health.failing_since = self.health.failing_since or time.monotonic()
        self.health.last_error = str(exc)
        self.metrics.api_errors.labels(code=exc.code).inc()
        self._restarted("error")
        wait = min(MAX_BACKOFF, 0.5 * 2 ** min(self._crashes, 6))
        self.log.warning("unreadable watch event, relisting", error=str(exc), retry_in=wait)
        self._sleep(wait)

    def _retry(self, call: Callable[[], Any], *, watch: bool = False) -> Any:
        """Run `call` until it succeeds; 410 Expired passes through to trigger a relist, and
        so does garbage in a watch."""
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(
                lambda e: isinstance(e, ApiError) and not isinstance(e, Expired)
                and not (watch and isinstance(e, kube.ProtocolError))
            ),
            wait=self._wait,
            stop=lambda _state: self.stop.is_set(),
            sleep=self._sleep,
            before_sleep=self._failed,
            reraise=True,
        )
        try:
            return retrying(call)
        except ApiError:
            if self.stop.is_set():
                raise _Stopped from None
            raise

    def retry_now(self) -> None:
        """Cut a backoff short: the credentials changed (SIGHUP), and a 401 or 403 waits
        the longest backoff otherwise."""
        self._kick.set()

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            # Slices, so that both `stop` and `retry_now` end the wait within 0.2 s.
            if self.stop.wait(min(left, 0.2)):
                raise _Stopped
            if self._kick.is_set():
                self._kick.clear()
                return
        if self.stop.is_set():
            raise _Stopped

    def _backoff(self, state: tenacity.RetryCallState) -> float:
        """The wait before the next call. Not tenacity's attempt number: one watch call spans
        every reconnect of the stream, and an outage's attempts once made the next incident,
        minutes later, start at the 30 s cap (docs/reliability.md: a NotReady node 137 s late
        instead of 17 s). client-go's reflector resets its backoff too, after 2 quiet minutes."""
        self._failures += 1
        exc = state.outcome.exception() if state.outcome else None
        return kube.wait_after(exc, self._failures, MAX_BACKOFF)

    def _failed(self, state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        if not isinstance(exc, ApiError):
            return
        now = time.monotonic()
        if self.health.failing_since is None:
            self.health.failing_since = now
        self.health.last_error = str(exc)
        self.metrics.api_errors.labels(code=exc.code).inc()
        self._restarted("error")
        wait = state.next_action.sleep if state.next_action else 0.0
        level = self.log.warning if kube.is_retryable(exc) else self.log.error
        level("api error, retrying", error=str(exc), attempt=state.attempt_number,
              retry_in=round(wait, 2))

    def _ok(self, *, recovered: bool = True) -> None:
        self.health.last_ok = time.monotonic()
        self._failures = 0
        if not recovered:
            return
        if self.health.failing_since is not None:
            self.log.info("api reachable again",
                          down_for=round(time.monotonic() - self.health.failing_since, 2))
        self.health.failing_since = None

    def _restarted(self, reason: str) -> None:
        self.metrics.watch_restarts.labels(kind=self.kind, reason=reason).inc()


class _Stopped(Exception):
    """The daemon is stopping: unwind the reflector quietly."""
