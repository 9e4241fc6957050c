"""A steady, bounded request load through the gateway, and what every request felt.

This module owns the lab's load generator and the arithmetic over its results; the churn
benchmark (`bench/churn.py`) and the churn tests (`tests/e2e/test_churn.py`) share both.

The generator runs in its own process (`python -m lbsync_lab.load`, started by `Load`), so that
the lab's other threads in the caller (stand-in nodes, the API emulator) cannot hold it back
through the GIL, and it measures its own overhead: how far behind schedule each request was
sent, and its own CPU time. It is open-loop: request i is due at start + i / rate whatever
happened to earlier ones, and its latency is counted from when it was due, not from when it
was sent, so a slow gateway cannot hide behind a slow generator (no coordinated omission).
Requests in flight are bounded (`max_in_flight`); a request that finds the bound reached is not
sent and is recorded as skipped, never silently dropped.

Connections are kept alive and reused, as browsers and HTTP libraries do. A reused connection
may have been closed by the server in the meantime (nginx closes idle keep-alive connections
when a reload retires its old workers); a careful client checks before reuse, and retries an
idempotent request once on a new connection when a reused one closes before any byte of the
answer (RFC 9112, 9.3.1). A POST is never retried: a failure there is a failure. Each retry
is recorded (`Outcome.reconnected`), so the tables can show them.

Every request's outcome is kept: when it was due, sent and done, its method, its HTTP status
(0 when no answer came), the error, and which stand-in node answered (`X-Node`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

HOST_HEADER = "worlds.com"
POST_BODY = b'{"order": "churn"}'


@dataclass(frozen=True)
class Outcome:
    """One request: times are `time.monotonic()` seconds (one clock for every process)."""

    due: float  # when the schedule said to send it
    sent: float  # when it was sent (0.0: skipped, never sent)
    done: float  # when the answer was complete, or the request gave up
    method: str
    status: int  # HTTP status; 0 when no answer came
    error: str = ""  # why there was no answer ("" when there was one)
    node: str = ""  # the stand-in node that answered (its X-Node header)
    reconnected: bool = False  # sent again on a new connection after a reused one closed
    seq: int = 0  # its path is /churn/SEQ, as nginx's error log names it

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def latency(self) -> float:
        """From when the request was due (see the module docstring) to its end."""
        return self.done - self.due

    def row(self) -> list[object]:
        return [self.due, self.sent, self.done, self.method, self.status, self.error,
                self.node, self.reconnected, self.seq]

    @classmethod
    def from_row(cls, row: Sequence[object]) -> Outcome:
        due, sent, done, method, status, error, node, reconnected, seq = row
        return cls(float(str(due)), float(str(sent)), float(str(done)), str(method),
                   int(str(status)), str(error), str(node), bool(reconnected), int(str(seq)))


@dataclass(frozen=True)
class Spec:
    """What load to send, and where."""

    port: int  # nginx's port on 127.0.0.1
    rate: float = 100.0  # requests per second
    post_share: float = 0.1  # share of POSTs, drawn at random (seeded: the same run each time)
    timeout: float = 30.0  # a client gives up after this long
    max_in_flight: int = 1000
    keepalive: bool = True
    idle_connections: int = 32  # idle keep-alive connections kept at most (nginx counts them)
    host: str = "127.0.0.1"
    seed: int = 11


@dataclass(frozen=True)
class Overhead:
    """The generator's own cost and accuracy, from inside its process."""

    duration: float  # seconds of sending
    cpu_seconds: float  # user + system CPU of the generator process over the run
    lag_p50: float  # sent - due, seconds
    lag_p99: float
    lag_max: float
    max_in_flight: int
    skipped: int  # due while max_in_flight requests were out: not sent

    @property
    def cpu_share(self) -> float:
        """Share of one core the generator used while sending."""
        return self.cpu_seconds / self.duration if self.duration > 0 else 0.0


@dataclass
class Run:
    outcomes: list[Outcome]
    overhead: Overhead

    def window(self, start: float, end: float) -> Window:
        return summarize(self.outcomes, start, end)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of values; 0.0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Window:
    """What the requests due in one window of time felt."""

    start: float
    end: float
    requests: int
    failed: int  # non-2xx answers and requests with no answer
    failed_get: int
    failed_post: int
    posts: int
    reconnected: int
    skipped: int
    p50: float
    p99: float
    max: float
    lag_max: float  # the longest a request waited to be sent: the generator's share of `max`
    statuses: dict[str, int] = field(default_factory=dict)  # "200", "502", "error: ..."
    nodes: dict[str, int] = field(default_factory=dict)  # node name -> answers

    def slower_than(self, outcomes: Iterable[Outcome], seconds: float) -> int:
        return sum(1 for o in outcomes if self.start <= o.due < self.end
                   and o.latency > seconds)


def summarize(outcomes: Iterable[Outcome], start: float, end: float) -> Window:
    """Every request due in [start, end)."""
    inside = [o for o in outcomes if start <= o.due < end]
    latencies = [o.latency for o in inside if o.sent]
    statuses: dict[str, int] = {}
    nodes: dict[str, int] = {}
    for o in inside:
        key = str(o.status) if o.status else o.error or "no answer"
        statuses[key] = statuses.get(key, 0) + 1
        if o.node:
            nodes[o.node] = nodes.get(o.node, 0) + 1
    failed = [o for o in inside if not o.ok]
    return Window(
        start, end, len(inside), len(failed),
        sum(1 for o in failed if o.method != "POST"), sum(1 for o in failed if o.method == "POST"),
        sum(1 for o in inside if o.method == "POST"), sum(1 for o in inside if o.reconnected),
        sum(1 for o in inside if not o.sent),
        percentile(latencies, 50), percentile(latencies, 99), max(latencies, default=0.0),
        max((o.sent - o.due for o in inside if o.sent), default=0.0),
        dict(sorted(statuses.items())), dict(sorted(nodes.items())))


# --- the parent's side ---------------------------------------------------------------------


class Load:
    """The generator as a child process: `start()`, then `stop()` returns every outcome."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def start(self, timeout: float = 20.0) -> Load:
        lab = str(Path(__file__).resolve().parents[1])
        path = os.pathsep.join(filter(None, [lab, os.environ.get("PYTHONPATH")]))
        proc = self.proc = subprocess.Popen(
            [sys.executable, "-m", "lbsync_lab.load", json.dumps(asdict(self.spec))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": path})
        assert proc.stdout is not None
        # The first line says when sending began; a generator that cannot start is killed.
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            line = proc.stdout.readline()
        finally:
            timer.cancel()
        if not line.startswith(b"sending "):
            proc.kill()
            proc.wait()
            raise RuntimeError(f"the load generator did not start: {line!r}")
        self.started_at = float(line.split()[1])
        return self

    def stop(self) -> Run:
        """Stop sending, wait for the requests in flight (at most the client timeout), and
        return what every request felt."""
        assert self.proc is not None
        out, _ = self.proc.communicate(b"stop\n", timeout=self.spec.timeout + 30)
        if self.proc.returncode != 0:
            raise RuntimeError(f"the load generator failed (exit {self.proc.returncode})")
        doc = json.loads(out)
        return Run([Outcome.from_row(r) for r in doc["outcomes"]], Overhead(**doc["overhead"]))

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> Load:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()


# --- the child's side: the generator itself ------------------------------------------------


class _Closed(Exception):
    """A reused connection closed before any byte of the answer."""


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    def usable(self) -> bool:
        # What urllib3 checks before reusing a connection: the server has not closed it.
        return not (self.reader.at_eof() or self.writer.is_closing())

    def close(self) -> None:
        self.writer.close()


class Generator:
    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.outcomes: list[Outcome] = []
        self.idle: list[_Conn] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.skipped = 0
        self.lags: list[float] = []
        self.stop = asyncio.Event()

    async def run(self, started: threading.Event | None = None) -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        tasks: set[asyncio.Task[None]] = set()
        interval = 1.0 / self.spec.rate
        rng = random.Random(self.spec.seed)
        start = time.monotonic()
        sys.stdout.write(f"sending {start!r}\n")
        sys.stdout.flush()
        i = 0
        while not self.stop.is_set():
            due = start + i * interval
            wait = due - time.monotonic()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), wait)
                continue
            # At random, not every Nth: a period would line up with nginx's round robin and
            # send every POST to the same few nodes.
            method = "POST" if rng.random() < self.spec.post_share else "GET"
            i += 1
            if self.in_flight >= self.spec.max_in_flight:
                self.skipped += 1
                self.outcomes.append(Outcome(due, 0.0, due, method, 0, "skipped: in-flight bound",
                                             seq=i))
                continue
            task = loop.create_task(self.request(due, method, i))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        end = time.monotonic()
        if tasks:
            await asyncio.wait(tasks, timeout=self.spec.timeout + 5)
        for conn in self.idle:
            conn.close()
        return start, end

    async def connection(self) -> tuple[_Conn, bool]:
        while self.idle:
            conn = self.idle.pop()
            if conn.usable():
                return conn, True
            conn.close()
        reader, writer = await asyncio.open_connection(self.spec.host, self.spec.port)
        return _Conn(reader, writer), False

    def release(self, conn: _Conn, reusable: bool) -> None:
        if reusable and self.spec.keepalive and len(self.idle) < self.spec.idle_connections:
            self.idle.append(conn)
        else:
            conn.close()

    async def request(self, due: float, method: str, seq: int) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        sent = time.monotonic()
        self.lags.append(sent - due)
        status, error, node, reconnected = 0, "", "", False
        try:
            async with asyncio.timeout(self.spec.timeout):
                try:
                    status, node = await self.exchange(method, seq)
                except _Closed:
                    if method == "POST":
                        raise ConnectionResetError("reused connection closed") from None
                    reconnected = True
                    status, node = await self.exchange(method, seq, fresh=True)
        except TimeoutError:
            error = "client timeout"
        except (OSError, asyncio.IncompleteReadError, ValueError, _Closed) as exc:
            error = f"error: {type(exc).__name__}: {exc}"[:120]
        finally:
            self.in_flight -= 1
        self.outcomes.append(Outcome(due, sent, time.monotonic(), method, status, error, node,
                                     reconnected, seq))

    async def exchange(self, method: str, seq: int, fresh: bool = False) -> tuple[int, str]:
        if fresh or not self.spec.keepalive:
            reader, writer = await asyncio.open_connection(self.spec.host, self.spec.port)
            conn, reused = _Conn(reader, writer), False
        else:
            conn, reused = await self.connection()
        ok = False
        try:
            body = POST_BODY if method == "POST" else b""
            head = (f"{method} /churn/{seq} HTTP/1.1\r\nHost: {HOST_HEADER}\r\n"
                    f"User-Agent: lbsync-lab-load\r\n"
                    + ("" if self.spec.keepalive else "Connection: close\r\n")
                    + (f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                       if method == "POST" else "") + "\r\n").encode()
            conn.writer.write(head + body)
            try:
                await conn.writer.drain()
                raw = await conn.reader.readuntil(b"\r\n\r\n")
            except (ConnectionError, asyncio.IncompleteReadError) as exc:
                partial = getattr(exc, "partial", b"")
                if reused and not partial:
                    raise _Closed() from exc
                raise
            status, headers = _parse_head(raw)
            close = headers.get("connection", "").lower() == "close"
            if headers.get("transfer-encoding", "").lower() == "chunked":
                await _read_chunked(conn.reader)
            elif "content-length" in headers:
                await conn.reader.readexactly(int(headers["content-length"]))
            else:
                await conn.reader.read()
                close = True
            ok = not close
            return status, headers.get("x-node", "")
        finally:
            self.release(conn, ok)


def _parse_head(raw: bytes) -> tuple[int, dict[str, str]]:
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise ValueError(f"bad status line {lines[0][:60]!r}")
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers


async def _read_chunked(reader: asyncio.StreamReader) -> None:
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        await reader.readexactly(size + 2)
        if size == 0:
            return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the lab's load generator (see lbsync_lab.load)")
    parser.add_argument("spec", help="a Spec as JSON")
    spec = Spec(**json.loads(parser.parse_args(argv).spec))

    async def go() -> tuple[Generator, float, float]:
        gen = Generator(spec)
        loop = asyncio.get_running_loop()

        def wait_for_stop() -> None:
            sys.stdin.readline()  # "stop", or the parent went away
            loop.call_soon_threadsafe(gen.stop.set)

        threading.Thread(target=wait_for_stop, daemon=True).start()
        start, end = await gen.run()
        return gen, start, end

    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    gen, start, end = asyncio.run(go())
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    overhead = Overhead(
        end - start, (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime),
        percentile(gen.lags, 50), percentile(gen.lags, 99), max(gen.lags, default=0.0),
        gen.max_in_flight, gen.skipped)
    json.dump({"outcomes": [o.row() for o in gen.outcomes], "overhead": asdict(overhead)},
              sys.stdout, separators=(",", ":"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
