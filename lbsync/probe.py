"""Probing servers from the gateway: TCP connects or HTTP GETs, in the background, bounded.

The edge that sends probes; `lbsync.health` decides what they mean. A prober thread keeps a
schedule (each target once per `interval`, new targets at once, the rest spread over the
interval so 5,000 nodes do not probe in one burst) and runs probes on a pool of at most
`concurrency` threads: 5,000 nodes never mean 5,000 sockets. A probe never blocks the sync
loop: when a target turns up or down, `on_change` marks the cluster view dirty, and the next
pass, level-triggered, recomputes everything with the new health as one more input.
"""

from __future__ import annotations

import http.client
import random
import socket
import threading
import time
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor, wait

from lbsync.config import ProbeConfig
from lbsync.health import Observation, Target, TargetState, observe

USER_AGENT = "lbsync-probe"


def check(target: Target, timeout: float) -> Observation:
    """One probe of one target; never raises."""
    start = time.monotonic()
    try:
        detail = _http(target, timeout) if target.kind == "http" else _tcp(target, timeout)
    except ConnectionRefusedError:
        detail = "refused"
    except TimeoutError:
        detail = "timeout"
    except (OSError, http.client.HTTPException) as exc:
        detail = f"error: {type(exc).__name__}"
    latency = time.monotonic() - start
    return Observation(detail == "ok", detail, latency, time.time())


def _tcp(target: Target, timeout: float) -> str:
    with socket.create_connection((target.address, target.port), timeout=timeout):
        return "ok"


def _http(target: Target, timeout: float) -> str:
    conn = http.client.HTTPConnection(target.address, target.port, timeout=timeout)
    try:
        # The whole exchange is bounded by the socket timeout per operation; the body is not
        # read (a status line is enough, and a hostile body costs nothing).
        conn.request("GET", target.path, headers={"User-Agent": USER_AGENT,
                                                  "Connection": "close"})
        status = conn.getresponse().status
    finally:
        conn.close()
    low, high = target.expect
    return "ok" if low <= status <= high else f"HTTP {status}"


def probe_once(targets: Collection[Target], cfg: ProbeConfig) -> dict[Target, TargetState]:
    """One round, for `lbsync once`: each target probed once, with the pool's bound."""
    with ThreadPoolExecutor(max_workers=cfg.concurrency) as pool:
        results = dict(zip(targets, pool.map(lambda t: check(t, cfg.timeout), targets),
                           strict=True))
    return {t: observe(None, obs, cfg.rise, cfg.fall) for t, obs in results.items()}


class Prober:
    """Background probes of a changing set of targets."""

    def __init__(self, cfg: ProbeConfig, on_change: Callable[[], None],
                 on_result: Callable[[Observation], None] = lambda _obs: None) -> None:
        self.cfg = cfg
        self.on_change, self.on_result = on_change, on_result
        self._lock = threading.Condition()
        self._states: dict[Target, TargetState] = {}
        self._due: dict[Target, float] = {}  # monotonic time of each target's next probe
        self._in_flight: set[Target] = set()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=cfg.concurrency,
                                        thread_name_prefix="probe")
        self._thread = threading.Thread(target=self._run, name="prober", daemon=True)
        self.alive_at = time.monotonic()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            self._lock.notify_all()
        self._thread.join(5)
        self._pool.shutdown(wait=False, cancel_futures=True)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() or self._stop.is_set()

    def states(self) -> dict[Target, TargetState]:
        with self._lock:
            return dict(self._states)

    def set_targets(self, targets: Collection[Target]) -> None:
        """Probe exactly these from now on: new ones at once, gone ones forgotten."""
        now = time.monotonic()
        wanted = set(targets)
        with self._lock:
            for t in set(self._due) - wanted:
                self._due.pop(t, None)
                self._states.pop(t, None)
            for t in wanted - set(self._due):
                self._due[t] = now
            self._lock.notify_all()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.alive_at = time.monotonic()
            batch = self._take_due()
            if batch:
                futures = [self._pool.submit(self._probe, t) for t in batch]
                # Bounded by the pool; waiting here keeps one round from piling on the next.
                wait(futures, timeout=self.cfg.timeout * (len(batch) + 1))

    def _take_due(self) -> list[Target]:
        with self._lock:
            now = time.monotonic()
            due = [t for t, at in self._due.items() if at <= now and t not in self._in_flight]
            if not due:
                nearest = min(self._due.values(), default=now + 1.0)
                self._lock.wait(timeout=max(0.01, min(1.0, nearest - now)))
                return []
            for t in due:
                self._in_flight.add(t)
                # The next probe one interval on, with a little jitter so that targets
                # added together drift apart instead of probing in lockstep forever.
                self._due[t] = now + self.cfg.interval * random.uniform(0.9, 1.1)
            return due

    def _probe(self, target: Target) -> None:
        obs = check(target, self.cfg.timeout)
        self.on_result(obs)
        with self._lock:
            self._in_flight.discard(target)
            if target not in self._due:
                return  # no longer wanted
            before = self._states.get(target)
            after = observe(before, obs, self.cfg.rise, self.cfg.fall)
            self._states[target] = after
            changed = (before is None and not after.up) or (before is not None and
                                                            before.up != after.up)
        if changed:
            self.on_change()
