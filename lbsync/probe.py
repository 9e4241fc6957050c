"""Probing servers from the gateway: TCP connects or HTTP GETs, in the background, bounded.

The edge that sends probes; `lbsync.health` decides what they mean. One thread runs every
probe on non-blocking sockets (epoll): at most `concurrency` in flight, each bounded by
`timeout`, so 5,000 nodes never mean 5,000 sockets or threads. It keeps a schedule (each
target once per `interval`, with a little jitter; new targets at once). A probe never blocks
the sync loop: when a target turns up or down, `on_change` marks the cluster view dirty, and
the next pass, level-triggered, recomputes everything with the new health as one more input.

Why not a thread pool and http.client: at 5,000 nodes and the default 2 s interval that is
2,500 probes a second, and threads plus http.client's header parsing cost 35-40 % of a core
(bench/perf.py). An HTTP probe here reads the status line only: the request is one fixed
write, the answer's first line is all that is parsed, and a hostile body costs nothing.
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import os
import random
import re
import selectors
import socket
import threading
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field

from lbsync.config import ProbeConfig
from lbsync.health import Observation, Target, TargetState, observe

USER_AGENT = "lbsync-probe"
MAX_STATUS_LINE = 4096  # an HTTP status line longer than this is no HTTP server's
_STATUS = re.compile(rb"HTTP/\d\.\d (\d{3})[ \r\n]")
IN_PROGRESS = {0, errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK}


def describe_error(code: int) -> str:
    """An errno as a probe result: the two common ones by name, the rest as "error: ENAME"."""
    if code == errno.ECONNREFUSED:
        return "refused"
    if code == errno.ETIMEDOUT:
        return "timeout"
    return f"error: {errno.errorcode.get(code, str(code))}"


def status_of(buffer: bytes) -> str | None:
    """The probe's verdict from what an HTTP server sent so far (None: not enough yet)."""
    end = buffer.find(b"\n")
    if end < 0:
        return None if len(buffer) < MAX_STATUS_LINE else "error: no status line"
    match = _STATUS.match(buffer[:end + 1])
    return f"HTTP {int(match[1])}" if match else "error: not HTTP"


def _request(target: Target) -> bytes:
    host = target.hostport
    return (f"GET {target.path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {USER_AGENT}\r\n"
            "Connection: close\r\n\r\n").encode("ascii")


@dataclass(eq=False)
class _Flight:
    """One probe in progress."""

    target: Target
    sock: socket.socket
    started: float
    deadline: float
    request: bytes = b""  # what is left to send (http, once connected)
    buffer: bytes = b""
    connected: bool = False


@dataclass
class Engine:
    """Probes on non-blocking sockets, driven by `poll`; one thread owns it."""

    timeout: float
    concurrency: int
    selector: selectors.BaseSelector = field(default_factory=selectors.DefaultSelector)
    flights: dict[int, _Flight] = field(default_factory=dict)

    @property
    def free(self) -> int:
        return self.concurrency - len(self.flights)

    def start(self, target: Target) -> tuple[Target, Observation] | None:
        """Begin a probe; its result at once when the connect fails at once."""
        now = time.monotonic()
        family = socket.AF_INET6 if ":" in target.address else socket.AF_INET
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError as exc:  # out of descriptors: this probe fails, the next may not
            return target, _observation(describe_error(exc.errno or 0), now)
        sock.setblocking(False)
        code = sock.connect_ex((target.address, target.port))
        if code not in IN_PROGRESS:
            sock.close()
            return target, _observation(describe_error(code), now)
        flight = _Flight(target, sock, now, now + self.timeout,
                         _request(target) if target.kind == "http" else b"")
        self.flights[sock.fileno()] = flight
        self.selector.register(sock, selectors.EVENT_WRITE, flight)
        return None

    def next_deadline(self) -> float | None:
        return min((f.deadline for f in self.flights.values()), default=None)

    def poll(self, wait: float) -> list[tuple[Target, Observation]]:
        """Wait at most `wait` seconds for sockets; the probes that ended (timeouts too)."""
        done: list[tuple[Target, Observation]] = []
        for key, _ in self.selector.select(max(0.0, wait)):
            flight = key.data
            if isinstance(flight, _Flight):
                detail = self._step(flight)
                if detail is not None:
                    done.append(self._end(flight, detail))
        now = time.monotonic()
        for flight in [f for f in self.flights.values() if f.deadline <= now]:
            done.append(self._end(flight, "timeout"))
        return done

    def close(self) -> None:
        for flight in list(self.flights.values()):
            self._end(flight, "timeout")
        self.selector.close()

    def _step(self, flight: _Flight) -> str | None:
        """Advance one probe whose socket is ready; its verdict when it has one."""
        sock = flight.sock
        try:
            if not flight.connected:
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code:
                    return describe_error(code)
                flight.connected = True
                if flight.target.kind != "http":
                    return "ok"
            if flight.request:
                flight.request = flight.request[sock.send(flight.request):]
                if not flight.request:
                    self.selector.modify(sock, selectors.EVENT_READ, flight)
                return None
            data = sock.recv(MAX_STATUS_LINE)
        except BlockingIOError:
            return None
        except OSError as exc:
            return describe_error(exc.errno or 0)
        if not data:
            return "error: closed before answering"
        flight.buffer += data
        verdict = status_of(flight.buffer)
        if verdict is None or not verdict.startswith("HTTP "):
            return verdict
        low, high = flight.target.expect
        status = int(verdict[5:])
        return "ok" if low <= status <= high else verdict

    def _end(self, flight: _Flight, detail: str) -> tuple[Target, Observation]:
        self.flights.pop(flight.sock.fileno(), None)
        self.selector.unregister(flight.sock)
        flight.sock.close()
        return flight.target, _observation(detail, flight.started)


def _observation(detail: str, started: float) -> Observation:
    return Observation(detail == "ok", detail, time.monotonic() - started, time.time())


def probe_all(targets: Iterable[Target], timeout: float, concurrency: int
              ) -> dict[Target, Observation]:
    """Each target probed once, at most `concurrency` at a time (what `once` needs)."""
    engine = Engine(timeout, concurrency)
    todo, results = list(targets), {}
    try:
        while todo or engine.flights:
            while todo and engine.free > 0:
                ended = engine.start(todo.pop())
                if ended is not None:
                    results[ended[0]] = ended[1]
            deadline = engine.next_deadline()
            wait = 0.0 if deadline is None else deadline - time.monotonic()
            results.update(engine.poll(wait))
    finally:
        engine.close()
    return results


def check(target: Target, timeout: float) -> Observation:
    """One probe of one target; never raises."""
    return probe_all([target], timeout, 1)[target]


def probe_once(targets: Collection[Target], cfg: ProbeConfig) -> dict[Target, TargetState]:
    """One round, for `lbsync once`: each target probed once, with the concurrency bound."""
    results = probe_all(targets, cfg.timeout, cfg.concurrency)
    return {t: observe(None, obs, cfg.rise, cfg.fall) for t, obs in results.items()}


class Prober:
    """Background probes of a changing set of targets, in one thread."""

    def __init__(self, cfg: ProbeConfig, on_change: Callable[[], None],
                 on_result: Callable[[Observation], None] = lambda _obs: None) -> None:
        self.cfg = cfg
        self.on_change, self.on_result = on_change, on_result
        self._lock = threading.Lock()
        self._states: dict[Target, TargetState] = {}
        self._due: dict[Target, float] = {}  # monotonic time of each target's next probe
        self._queue: list[tuple[float, int, Target]] = []  # heap; stale entries skipped
        self._seq = 0
        self._in_flight: set[Target] = set()
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()  # set_targets and stop wake the poll
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._engine = Engine(cfg.timeout, cfg.concurrency)
        self._engine.selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._thread = threading.Thread(target=self._run, name="prober", daemon=True)
        self.alive_at = time.monotonic()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake()
        self._thread.join(5)
        if not self._thread.is_alive():
            self._engine.close()
            os.close(self._wake_r)
            os.close(self._wake_w)

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
                del self._due[t]
                self._states.pop(t, None)
            for t in wanted - set(self._due):
                self._schedule(t, now)
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # already awake (the pipe is full), or stopped
            os.write(self._wake_w, b"x")

    def _schedule(self, target: Target, at: float) -> None:
        self._due[target] = at
        self._seq += 1
        heapq.heappush(self._queue, (at, self._seq, target))

    def _run(self) -> None:
        while not self._stop.is_set():
            self.alive_at = time.monotonic()
            for target in self._take_due():
                ended = self._engine.start(target)
                if ended is not None:
                    self._record(*ended)
            for target, obs in self._engine.poll(self._wait()):
                self._record(target, obs)
            self._drain_wake()

    def _take_due(self) -> list[Target]:
        """Targets due now, as many as there are free slots; each rescheduled one interval
        on, with jitter so that targets added together drift apart."""
        now, due = time.monotonic(), list[Target]()
        with self._lock:
            while self._queue and self._queue[0][0] <= now and len(due) < self._engine.free:
                at, _, target = heapq.heappop(self._queue)
                if self._due.get(target) != at or target in self._in_flight:
                    continue  # forgotten, rescheduled, or still running
                self._in_flight.add(target)
                self._schedule(target, now + self.cfg.interval * random.uniform(0.9, 1.1))
                due.append(target)
        return due

    def _wait(self) -> float:
        """How long the poll may sleep: until the next due probe or probe deadline (or at
        most a second, for alive_at)."""
        now = time.monotonic()
        times = [now + 1.0]
        with self._lock:
            if self._queue and self._engine.free > 0:
                times.append(self._queue[0][0])
        deadline = self._engine.next_deadline()
        if deadline is not None:
            times.append(deadline)
        return max(0.0, min(times) - now)

    def _drain_wake(self) -> None:
        with contextlib.suppress(OSError):  # nothing to read
            os.read(self._wake_r, 4096)

    def _record(self, target: Target, obs: Observation) -> None:
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
