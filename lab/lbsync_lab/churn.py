"""The churn rig: `lbsync run` as a process, a lab, a steady load, and the events nodes go through.

This module owns what the reliability suite does to a running gateway and how it reads the
result; `bench/churn.py` (the figures in docs/reliability.md) and `tests/e2e/test_churn.py`
(the fast part, in CI) share it. `ChurnLab` stands up the lab (`lbsync_lab.rig.Lab`: the API
emulator, stand-in nodes, a private nginx running the recommended site configuration), starts
`lbsync run` as its own process with the given probe and sync timing, and watches nginx (its
servers file and its worker generations) from a thread, so that every event knows when lbsync
acted. Each event method runs one event from start to settled and returns an `Event`: its
window of time, the steps taken and what lbsync did at each. Putting things back afterwards
(`restore`) happens outside the window. The bounds each event is held to are computed from
the settings (`Bounds`), never from a measurement.
"""

from __future__ import annotations

import json
import math
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from lbsync_lab.load import Load, Outcome, Run, Spec
from lbsync_lab.nginx import SITE, free_port, servers_in
from lbsync_lab.nodes import StandinNode
from lbsync_lab.rig import Lab, addr, child_env, hp
from lbsync_lab.sim import objects

# --- settings and the bounds they imply -------------------------------------------------------

_TIME = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m)?$")


def nginx_seconds(value: str) -> float:
    """An nginx time value ("10s", "500ms", "1m", "15") in seconds."""
    match = _TIME.match(value.strip())
    if match is None:
        raise ValueError(f"not an nginx time: {value!r}")
    number, unit = float(match.group(1)), match.group(2) or "s"
    return number * {"ms": 0.001, "s": 1.0, "m": 60.0}[unit]


@dataclass(frozen=True)
class Site:
    """The recommended site configuration's proxy timeouts and retries, read from the file the
    lab's nginx runs (config/nginx/worlds.com.conf), so the bounds follow the file."""

    next_upstream: tuple[str, ...]
    tries: int  # 0: unlimited
    next_upstream_timeout: float  # 0: unlimited
    connect_timeout: float
    read_timeout: float
    send_timeout: float

    @classmethod
    def read(cls, path: Path = SITE / "worlds.com.conf") -> Site:
        text = re.sub(r"#[^\n]*", "", path.read_text())

        def directive(name: str, default: str) -> str:
            found = re.findall(rf"^\s*{name}\s+([^;]+);", text, re.M)
            return found[-1].strip() if found else default

        return cls(tuple(directive("proxy_next_upstream", "error timeout").split()),
                   int(directive("proxy_next_upstream_tries", "0")),
                   nginx_seconds(directive("proxy_next_upstream_timeout", "0")),
                   nginx_seconds(directive("proxy_connect_timeout", "60s")),
                   nginx_seconds(directive("proxy_read_timeout", "60s")),
                   nginx_seconds(directive("proxy_send_timeout", "60s")))


@dataclass(frozen=True)
class Timing:
    """lbsync's timing (config sections `nodes.probe` and `sync`) and the events' pacing."""

    interval: float = 2.0  # nodes.probe.*: lbsync's defaults
    timeout: float = 1.0
    rise: int = 2
    fall: int = 3
    debounce: float = 0.25  # sync.*: lbsync's defaults
    max_delay: float = 2.0
    min_reload_interval: float = 0.5
    restart_after: float = 5.0  # SIGKILL to restart: lbsync.service's RestartSec
    grace: float = 2.0  # drain: lbsync removed the node; the machine stops this much later
    outage: float = 12.0  # how long the API stays unreachable
    settle: float = 2.0  # quiet time after an event before its window closes

    def config(self) -> dict[str, Any]:
        return {"nodes": {"probe": {"enabled": True, "interval": self.interval,
                                    "timeout": self.timeout, "rise": self.rise,
                                    "fall": self.fall}},
                "sync": {"debounce": self.debounce, "max_delay": self.max_delay,
                         "min_reload_interval": self.min_reload_interval}}


# One pass after the probes have decided: nginx -t through the publisher, the reload and its
# confirmation took 0.2-0.4 s here (docs/performance.md); the rest is room for a loaded machine.
PASS_ALLOWANCE = 1.5
# The prober schedules each target `interval` apart, with up to 10 % jitter (lbsync.probe).
JITTER = 1.1


@dataclass(frozen=True)
class Bounds:
    """What each event may cost, derived from the settings alone."""

    timing: Timing
    site: Site

    @property
    def detect(self) -> float:
        """A failing node is down in lbsync's eyes within fall probes: the first starts at most
        one (jittered) interval after the failure, each takes at most probe.timeout."""
        t = self.timing
        return t.fall * t.interval * JITTER + t.timeout

    @property
    def leave(self) -> float:
        """...and out of nginx within one more pass: debounce, the reload spacing, the pass."""
        t = self.timing
        return self.detect + t.debounce + t.min_reload_interval + PASS_ALLOWANCE

    @property
    def join(self) -> float:
        """A Ready node (or a recovered one, after rise probes) is in nginx within this."""
        t = self.timing
        return t.rise * t.interval * JITTER + t.timeout + t.max_delay + t.min_reload_interval \
            + PASS_ALLOWANCE

    @property
    def api_change(self) -> float:
        """A change in the API (NotReady, deleted, a new Ready node) is in nginx within one
        debounced pass: at most sync.max_delay, the reload spacing, the pass."""
        t = self.timing
        return t.max_delay + t.min_reload_interval + PASS_ALLOWANCE

    def hung_delayed(self, rate: float, servers: int) -> int:
        """Requests a hung node can hold: nginx sends it 1/servers of the requests until lbsync
        takes it out (round robin), and its passive check (max_fails) only counts a timeout
        after proxy_read_timeout, which is longer than `leave` with the settings used here."""
        return math.ceil(rate / servers * min(self.leave, self.site.read_timeout)) + 1

    @property
    def hung_latency(self) -> float:
        """A request on a hung node waits proxy_read_timeout, then nginx sends it to the next
        node (one connect and one answer away); 1 s of room for a loaded machine."""
        return self.site.read_timeout + self.site.connect_timeout + 1.0


# --- lbsync as a process ---------------------------------------------------------------------


class LbsyncProcess:
    """`python -m lbsync -c CONFIG run`, as systemd runs it (with a log file)."""

    def __init__(self, config: Path, port: int, log: Path) -> None:
        self.config, self.port, self.log = config, port, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "lbsync", "-c", str(self.config), "run"],
                stdout=out, stderr=subprocess.STDOUT, env=child_env())
        self.starts += 1

    def get(self, path: str) -> tuple[int, dict[str, Any]]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}",
                                        timeout=5) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")
        except (OSError, ValueError):
            return 0, {}

    def ready(self) -> bool:
        return self.get("/readyz")[0] == 200

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of /metrics (empty when lbsync does not answer)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics",
                                        timeout=5) as resp:
                text = resp.read().decode()
        except OSError:
            return {}
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text) for s in family.samples}

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(30)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)


# --- watching nginx ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    at: float
    servers: frozenset[str]


class NginxWatch:
    """A thread that notes every change of the servers file nginx includes and every new
    generation of nginx workers (a reload), with the time it saw it (polled every 5 ms)."""

    def __init__(self, lab: Lab) -> None:
        assert lab.nginx is not None
        self.nginx = lab.nginx
        self.changes: list[Change] = []
        self.reloads: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nginx-watch", daemon=True)

    def start(self) -> None:
        self.changes.append(Change(time.monotonic(), frozenset(self.nginx.servers())))
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        workers = self.nginx.worker_pids()
        while not self._stop.wait(0.005):
            try:
                now = frozenset(servers_in(self.nginx.output.read_text()))
            except OSError:
                continue
            if now != self.changes[-1].servers:
                self.changes.append(Change(time.monotonic(), now))
            current = self.nginx.worker_pids()
            if current - workers:
                self.reloads.append(time.monotonic())
            workers = current

    @property
    def servers(self) -> frozenset[str]:
        return self.changes[-1].servers

    def served_between(self, start: float, end: float) -> list[frozenset[str]]:
        """Every servers set nginx's file held at some time in [start, end]."""
        held = [c.servers for c in self.changes if start <= c.at <= end]
        before = [c.servers for c in self.changes if c.at < start]
        return before[-1:] + held

    def reloads_between(self, start: float, end: float) -> int:
        return sum(1 for t in self.reloads if start <= t <= end)

    def since(self, holds: Callable[[frozenset[str]], bool]) -> float:
        """When the servers file began to satisfy `holds`, which it does now."""
        at = self.changes[-1].at
        for change in reversed(self.changes):
            if not holds(change.servers):
                break
            at = change.at
        return at

    def unexplained_reloads(self, start: float, end: float) -> int:
        """Reloads in [start, end] beyond one per change of the servers set: what a change
        that should not touch nginx (a cordon) cost. A probe that flapped meanwhile on a
        loaded machine changes the set, and its reload is not counted against the cordon."""
        changes = sum(1 for c in self.changes if start <= c.at <= end)
        return max(0, self.reloads_between(start, end) - changes)


# --- events ------------------------------------------------------------------------------------


@dataclass
class Step:
    at: float
    action: str
    lbsync: str = ""  # what lbsync did about it


@dataclass
class Event:
    key: str
    title: str
    start: float = 0.0
    end: float = 0.0
    steps: list[Step] = field(default_factory=list)
    facts: dict[str, float] = field(default_factory=dict)  # seconds, counts
    node: str = ""  # the node the event is about
    servers: int = 0  # servers in the upstream when it began

    def step(self, action: str, lbsync: str = "") -> Step:
        s = Step(time.monotonic(), action, lbsync)
        self.steps.append(s)
        return s


class TimedOut(AssertionError):
    pass


class ChurnLab:
    """A lab with `nodes` nodes, `lbsync run` as a process, and a load generator."""

    def __init__(self, workdir: Path, *, nodes: int = 4, timing: Timing | None = None,
                 rate: float = 100.0, post_share: float = 0.1,
                 extra: dict[str, Any] | None = None) -> None:
        self.workdir = workdir
        self.count = nodes
        self.timing = timing or Timing()
        self.site = Site.read()
        self.bounds = Bounds(self.timing, self.site)
        self.rate, self.post_share = rate, post_share
        self.lab = Lab(workdir)
        self.extra = extra or {}
        self.http_port = free_port()
        self.lbsync: LbsyncProcess | None = None
        self.watch: NginxWatch | None = None
        self.load: Load | None = None

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> ChurnLab:
        self.lab.start()
        try:
            self.lab.add_cluster(self.count)
            cfg = self.timing.config()
            sections = {**cfg, **self.extra}
            sections["nodes"] = {**cfg["nodes"], **self.extra.get("nodes", {})}
            config = self.lab.write_config(http={"listen": f"127.0.0.1:{self.http_port}"},
                                           **sections)
            # The watch first, so that it sees nginx's first reload: a load started when the
            # file changed, before the new workers ran, met the placeholder's "no live
            # upstreams" (502) on its first requests.
            self.watch = NginxWatch(self.lab)
            self.watch.start()
            self.lbsync = LbsyncProcess(config, self.http_port, self.workdir / "lbsync.log")
            self.lbsync.start()
            self._reloaded(lambda servers: servers == self.all_servers(), 30,
                           "lbsync's first sync")
            self.wait(self.lbsync_ready, 30, "lbsync ready")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.load is not None:
            self.load.kill()
        if self.lbsync is not None:
            self.lbsync.stop()
        if self.watch is not None:
            self.watch.stop()
        self.lab.stop()

    def __enter__(self) -> ChurnLab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start_load(self, rate: float | None = None) -> Load:
        assert self.lab.nginx is not None
        self.load = Load(Spec(self.lab.nginx.port, rate=rate or self.rate,
                              post_share=self.post_share)).start()
        return self.load

    def stop_load(self) -> Run:
        assert self.load is not None
        run, self.load = self.load.stop(), None
        return run

    # --- what the gateway looks like ---------------------------------------------------------

    @property
    def servers(self) -> frozenset[str]:
        assert self.watch is not None
        return self.watch.servers

    def all_servers(self) -> frozenset[str]:
        return frozenset(hp(i) for i in range(1, self.count + 1))

    def lbsync_ready(self) -> bool:
        return self.lbsync is not None and self.lbsync.ready()

    @staticmethod
    def wait(check: Callable[[], bool], timeout: float, what: str) -> float:
        """Poll until `check()`; the time it first held."""
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise TimedOut(f"timed out after {timeout:.1f} s waiting for {what}")
            time.sleep(0.005)
        return time.monotonic()

    def wait_out(self, i: int, timeout: float) -> float:
        """When nginx ran new workers without node i (the file changes just before)."""
        return self._reloaded(lambda servers: hp(i) not in servers, timeout,
                              f"node-{i} out of nginx's file")

    def wait_in(self, i: int, timeout: float) -> float:
        """When nginx ran new workers with node i."""
        return self._reloaded(lambda servers: hp(i) in servers, timeout,
                              f"node-{i} in nginx's file")

    def _reloaded(self, holds: Callable[[frozenset[str]], bool], timeout: float,
                  what: str) -> float:
        """The first new generation of nginx workers after the file last began to satisfy
        `holds` (which may be before this call: a restarted lbsync's first pass)."""
        assert self.watch is not None
        watch = self.watch
        self.wait(lambda: holds(watch.servers), timeout, what)
        changed = watch.since(holds)
        self.wait(lambda: bool(watch.reloads) and watch.reloads[-1] >= changed, 30,
                  "nginx's reload")
        return next(t for t in watch.reloads if t >= changed)

    def standin(self, i: int) -> StandinNode:
        assert self.lab.standins is not None
        return self.lab.standins.nodes[f"node-{i}"]

    def put_node(self, i: int, **options: Any) -> None:
        self.lab.api.put(objects.node(f"node-{i}", addr(i), **options))

    def _begin(self, key: str, title: str, node: int | None = None) -> Event:
        event = Event(key, title, start=time.monotonic(), servers=len(self.servers))
        if node is not None:
            event.node = f"node-{node}"
        return event

    def _close(self, event: Event, settle: float | None = None) -> Event:
        time.sleep(self.timing.settle if settle is None else settle)
        event.end = time.monotonic()
        return event

    def restore(self, i: int) -> None:
        """Node i Ready, schedulable and answering again, and in nginx (outside any window)."""
        assert self.lab.standins is not None
        node = self.lab.standins.nodes.get(f"node-{i}")
        if node is not None:
            node.recover()
        self.lab.add_node(i)
        self.wait(lambda: self.servers == self.all_servers(), self.bounds.join + 10,
                  "every node back in nginx")
        self.quiet()

    def reset(self) -> None:
        """Every node Ready, schedulable, answering and in nginx, lbsync running and ready."""
        assert self.lbsync is not None and self.lab.standins is not None
        self.lab.api.faults.set_outage(False)
        self.lab.api.faults.clear()
        if self.lbsync.proc is None or self.lbsync.proc.poll() is not None:
            self.lbsync.start()
        for i in range(1, self.count + 1):
            node = self.lab.standins.nodes.get(f"node-{i}")
            if node is not None:
                node.recover()
            self.lab.add_node(i)
        self.wait(lambda: self.servers == self.all_servers() and self.lbsync_ready(),
                  self.bounds.join + 20, "every node in nginx, lbsync ready")
        self.quiet()

    def quiet(self, seconds: float = 0.5) -> None:
        """Until nginx has reloaded since the file last changed, and `seconds` of calm."""
        assert self.watch is not None
        watch = self.watch

        def calm() -> bool:
            changed = watch.changes[-1].at
            last = max([changed, *watch.reloads[-1:]])
            reloaded = bool(watch.reloads) and watch.reloads[-1] >= changed
            return reloaded and time.monotonic() - last >= seconds

        self.wait(calm, 30, "nginx to settle")

    # --- the events ------------------------------------------------------------------------

    def baseline(self, seconds: float) -> Event:
        event = self._begin("baseline", "steady load, nothing happens")
        return self._close(event, seconds)

    def drain(self, i: int, ending: str = "not-ready") -> Event:
        """kubectl drain: cordon, evict, then the node turns NotReady (kubelet's graceful
        shutdown marks it so) or is deleted; the machine stops `grace` seconds after lbsync has
        taken it out. Ends with node i stopped; `restore(i)` brings it back."""
        assert self.watch is not None
        t = self.timing
        title = "graceful drain: cordon, drain, " + (
            "NotReady" if ending == "not-ready" else "Node deleted")
        event = self._begin(f"drain-{ending}", title, i)
        s = event.step("cordon (spec.unschedulable, taint node.kubernetes.io/unschedulable)")
        self.put_node(i, unschedulable=True)
        # A cordon changes the Node; lbsync's pass must keep the server and not reload.
        time.sleep(t.debounce + t.min_reload_interval + 0.5)
        kept = hp(i) in self.servers
        reloads = self.watch.unexplained_reloads(s.at, time.monotonic())
        s.lbsync = f"{'keeps it' if kept else 'takes it OUT'}, {reloads} reload(s)"
        event.facts.update(cordon_kept=float(kept), cordon_reloads=float(reloads))
        s = event.step("drain: pods evicted; the node still forwards (kube-proxy sends its "
                       "traffic to Kong on other nodes)")
        time.sleep(1.0)
        kept = hp(i) in self.servers
        s.lbsync = "keeps it: it still answers" if kept else "takes it OUT"
        event.facts["drain_kept"] = float(kept)
        if ending == "not-ready":
            s = event.step("kubelet shuts down: Ready=False (the node still answers)")
            self.put_node(i, ready=False, unschedulable=True)
        else:
            s = event.step("Node deleted (the node still answers)")
            self.lab.api.delete("Node", f"node-{i}")
        out = self.wait_out(i, self.bounds.leave + 10)
        event.facts["left_after"] = out - s.at
        s.lbsync = f"takes it out, reloads nginx ({out - s.at:.2f} s)"
        time.sleep(t.grace)
        s = event.step(f"the machine stops, {t.grace:g} s later: connections refused")
        self.standin(i).crash()
        s.lbsync = "nothing to do: nginx sends it nothing"
        event.facts["reloads"] = float(self.watch.reloads_between(event.start, math.inf))
        return self._close(event)

    def crash(self, i: int) -> Event:
        """The node's Kong/kube-proxy dies (connection refused); the API still says Ready."""
        event = self._begin("crash", "crashed node (connection refused), still Ready", i)
        s = event.step("node stops answering: connection refused; still Ready in the API")
        self.standin(i).crash()
        out = self.wait_out(i, self.bounds.leave + 10)
        event.facts["left_after"] = out - s.at
        s.lbsync = f"probes fail; out of nginx after {out - s.at:.2f} s"
        return self._close(event)

    def hang(self, i: int) -> Event:
        """The node accepts connections and never answers; the API still says Ready. The window
        closes once lbsync has taken it out; the requests it held end proxy_read_timeout later,
        and the event waits for them before `restore`."""
        event = self._begin("hang", "hung node (accepts, never answers), still Ready", i)
        s = event.step("node hangs: accepts TCP, never answers; still Ready in the API")
        self.standin(i).hang()
        out = self.wait_out(i, self.bounds.leave + 10)
        event.facts["left_after"] = out - s.at
        s.lbsync = f"HTTP probes time out; out of nginx after {out - s.at:.2f} s"
        self._close(event)
        # Requests the node held end at most hung_latency after they were due.
        time.sleep(max(0.0, event.start + self.bounds.hung_latency - time.monotonic()))
        return event

    def scale_up(self, i: int) -> Event:
        """A new node joins: Ready in the API, answering. `first_answer` comes from the load's
        outcomes (see `first_answer`)."""
        event = self._begin("scale-up", "scale-up: a new node joins", i)
        s = event.step("new node Ready in the API (its Kong answers)")
        self.lab.add_node(i)
        t_in = self.wait_in(i, self.bounds.join + 10)
        event.facts["in_after"] = t_in - s.at
        s.lbsync = f"adds it and reloads nginx ({t_in - s.at:.2f} s)"
        self.count = max(self.count, i)
        return self._close(event)

    def api_outage_drain(self, i: int) -> Event:
        """A drain while the API server is unreachable: lbsync sees the cordon, then nothing;
        the node is deleted and its machine stops during the outage."""
        t = self.timing
        api = self.lab.api
        event = self._begin("outage-drain", "API outage during a drain", i)
        s = event.step("cordon")
        self.put_node(i, unschedulable=True)
        time.sleep(t.debounce + t.min_reload_interval + 0.5)
        s.lbsync = "keeps it" if hp(i) in self.servers else "took it OUT"
        s = event.step("API server unreachable (connections reset)")
        api.faults.set_outage(True)
        outage_start = s.at
        try:
            time.sleep(1.0)
            s = event.step("drain ends, Node deleted (lbsync cannot see it), machine stops")
            api.delete("Node", f"node-{i}")
            self.standin(i).crash()
            out = self.wait_out(i, self.bounds.leave + 10)
            event.facts["left_after"] = out - s.at
            s.lbsync = f"probes fail; out of nginx after {out - s.at:.2f} s, without the API"
            time.sleep(max(0.0, outage_start + t.outage - time.monotonic()))
            event.facts["ready_during_outage"] = float(self.lbsync_ready())
        finally:
            s = event.step(f"API server back ({t.outage:g} s of outage)")
            api.faults.set_outage(False)
        back = s.at
        self.wait(lambda: self._sees_node_gone(i), 30, "lbsync to list the cluster again")
        s.lbsync = f"lists again, sees the Node gone ({time.monotonic() - back:.2f} s)"
        return self._close(event)

    def _sees_node_gone(self, i: int) -> bool:
        assert self.lbsync is not None
        status, body = self.lbsync.get("/status")
        names = {n.get("name") for n in body.get("nodes", [])} if status == 200 else {"?"}
        return f"node-{i}" not in names and bool(names)

    def api_faults(self, i: int, errors: int = 8, *, again: bool = False) -> Event:
        """The API forgets its history (410 Gone on the next watch), drops every watch, and
        answers the next requests with 5xx; meanwhile node i turns NotReady (still answering).
        `again`: the same soon after an API outage (the backoff must have forgotten it)."""
        api = self.lab.api
        title = f"API: 410 Gone and {errors} 5xx, a node NotReady" + (
            ", soon after the outage" if again else "")
        event = self._begin("api-faults-again" if again else "api-faults", title, i)
        assert self.lbsync is not None
        before = self.lbsync.metrics()
        s = event.step(f"API compacts (410 on re-watch), drops every watch, next {errors} "
                       "requests 500/503")
        api.faults.fail_next(errors // 2, 500)
        api.faults.fail_next(errors - errors // 2, 503)
        api.compact()
        api.faults.drop_watches()
        s = event.step("node NotReady meanwhile (still answering)")
        self.put_node(i, ready=False)
        # lbsync backs off up to 30 s between failed calls (kube.MAX_BACKOFF), per reflector.
        out = self.wait_out(i, errors * 30.0 + 60)
        event.facts["left_after"] = out - s.at
        s.lbsync = f"relists after the errors, takes it out ({out - s.at:.2f} s)"
        after = self.lbsync.metrics()
        for (name, labels), value in after.items():
            if name in ("lbsync_api_errors_total", "lbsync_watch_restarts_total"):
                key = name.removeprefix("lbsync_").removesuffix("_total") + "".join(
                    f" {v}" for _k, v in labels)
                event.facts[key] = value - before.get((name, labels), 0.0)
        return self._close(event)

    def sigkill(self, *, crash_while_down: int | None = None,
                hung: int | None = None) -> Event:
        """SIGKILL lbsync under load; systemd restarts it `restart_after` seconds later.
        `crash_while_down`: node i crashes while lbsync is dead. `hung`: node i hangs first
        and is out of nginx before the kill (a restart must not put it back)."""
        assert self.lbsync is not None and self.watch is not None
        t = self.timing
        if hung is not None and hp(hung) in self.servers:
            self.standin(hung).hang()
            self.wait_out(hung, self.bounds.leave + 10)
            time.sleep(self.bounds.hung_latency)  # the requests it held before are over
        key = "sigkill" + ("-crash" if crash_while_down else "-hung" if hung else "")
        title = "lbsync SIGKILLed, restarted " + (
            "(a node crashes meanwhile)" if crash_while_down else
            "(a hung node already out)" if hung else "under load")
        event = self._begin(key, title, crash_while_down or hung)
        s = event.step("SIGKILL lbsync")
        self.lbsync.kill(signal.SIGKILL)
        s.lbsync = "dead; nginx runs on with the last file"
        if crash_while_down is not None:
            time.sleep(0.5)
            s = event.step("a node crashes while lbsync is dead")
            self.standin(crash_while_down).crash()
            s.lbsync = "none running: nginx's retries and max_fails carry"
        time.sleep(max(0.0, event.start + t.restart_after - time.monotonic()))
        s = event.step(f"restarted ({t.restart_after:g} s later, as systemd would)")
        self.lbsync.start()
        ready = self.wait(self.lbsync_ready, 30, "lbsync ready after the restart")
        s.lbsync = f"ready after {ready - s.at:.2f} s"
        event.facts["ready_after"] = ready - s.at
        if crash_while_down is not None:
            out = self.wait_out(crash_while_down, self.bounds.leave + 10)
            event.facts["left_after"] = out - s.at
            s.lbsync += f"; crashed node out {out - s.at:.2f} s after the restart"
        self._close(event)
        if hung is not None:
            back = any(hp(hung) in servers
                       for servers in self.watch.served_between(event.start, event.end))
            event.facts["hung_back_in_nginx"] = float(back)
            if back:  # the requests it held meanwhile end proxy_read_timeout later
                time.sleep(max(0.0, event.end + self.bounds.hung_latency - time.monotonic()))
        return event


def first_answer(run: Run, node: str, after: float) -> float | None:
    """When the first request answered by `node` after `after` was complete."""
    times = [o.done for o in run.outcomes if o.node == node and o.done >= after and o.ok]
    return min(times) - after if times else None


def in_flight_at(run: Run, moment: float, method: str | None = None) -> int:
    """Requests sent before `moment` and not done by then (of `method`, if given)."""
    return sum(1 for o in run.outcomes if o.sent and o.sent <= moment < o.done
               and (method is None or o.method == method))


# --- targets -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One target of one event: what it asks, what was measured, and whether it holds."""

    target: str
    measured: str
    met: bool


def _count(n: int, what: str) -> str:
    return f"{n} {what}" if n == 1 else f"{n} {what}s"


def held(run: Run, event: Event, threshold: float) -> list[Outcome]:
    """Requests due in the event's window that took longer than `threshold` seconds."""
    return [o for o in run.outcomes if event.start <= o.due < event.end and o.sent
            and o.latency > threshold]


def checks(event: Event, run: Run, bounds: Bounds) -> list[Check]:
    """The targets an event is held to (docs/reliability.md states them), against `run`."""
    w = run.window(event.start, event.end)
    out: list[Check] = []
    failed = [o for o in run.outcomes if event.start <= o.due < event.end and not o.ok]

    def zero_failed() -> None:
        out.append(Check("0 failed requests", str(w.failed), w.failed == 0))

    def zero_failed_but_caught_posts(moment: float) -> None:
        # nginx does not resend a POST it had already sent (no non_idempotent, on purpose):
        # a POST the node held at the instant it died may fail, nothing else may.
        caught = in_flight_at(run, moment, "POST")
        ok = all(o.method == "POST" for o in failed) and w.failed_post <= caught
        out.append(Check(f"0 failed requests, but a POST held by the node when it died "
                         f"({_count(caught, 'POST')} in flight then)",
                         f"{w.failed_get} GET, {w.failed_post} POST", ok))

    def left_within(bound: float, what: str) -> None:
        left = event.facts.get("left_after", math.inf)
        out.append(Check(f"out of nginx within {bound:.1f} s ({what})", f"{left:.2f} s",
                         left <= bound))

    key = event.key
    moment = event.steps[0].at if event.steps else event.start
    if key == "baseline":
        zero_failed()  # nothing happens: nothing may fail
    elif key.startswith("drain-"):
        zero_failed()
        out.append(Check("cordon: stays in nginx, no reload",
                         f"in: {bool(event.facts.get('cordon_kept'))}, "
                         f"{int(event.facts.get('cordon_reloads', -1))} reloads",
                         event.facts.get("cordon_kept") == 1.0
                         and event.facts.get("cordon_reloads") == 0.0))
        left_within(bounds.api_change, "one pass after the API change")
    elif key == "crash":
        zero_failed_but_caught_posts(moment)
        left_within(bounds.leave, "probes, then one pass")
    elif key == "hang":
        slow = held(run, event, bounds.site.read_timeout / 2)
        most = bounds.hung_delayed(run_rate(run), event.servers)
        out.append(Check("0 failed GET; a failed POST only as 504 after proxy_read_timeout",
                         f"{w.failed_get} GET, {w.failed_post} POST",
                         all(o.method == "POST" and o.status == 504 for o in failed)))
        out.append(Check(f"at most {most} requests held (rate / {event.servers} servers x "
                         f"min(leave {bounds.leave:.1f} s, proxy_read_timeout))",
                         str(len(slow)), len(slow) <= most))
        out.append(Check(f"max and p99 latency at most {bounds.hung_latency:.1f} s "
                         "(proxy_read_timeout + proxy_connect_timeout + 1 s)",
                         f"p99 {w.p99:.2f} s, max {w.max:.2f} s", w.max <= bounds.hung_latency))
        left_within(bounds.leave, "probes, then one pass")
    elif key == "scale-up":
        zero_failed()
        t_in = event.facts.get("in_after", math.inf)
        out.append(Check(f"in nginx within {bounds.api_change:.1f} s", f"{t_in:.2f} s",
                         t_in <= bounds.api_change))
    elif key == "outage-drain":
        stop = next((s.at for s in event.steps if "machine stops" in s.action), moment)
        zero_failed_but_caught_posts(stop)
        left_within(bounds.leave, "probes alone: the API is down")
    elif key in ("api-faults", "api-faults-again", "sigkill"):
        zero_failed()
    elif key == "sigkill-crash":
        stop = next((s.at for s in event.steps if "crashes" in s.action), moment)
        zero_failed_but_caught_posts(stop)
    elif key == "sigkill-hung":
        zero_failed()
        out.append(Check("the hung node never comes back into nginx",
                         "back" if event.facts.get("hung_back_in_nginx") else "stayed out",
                         event.facts.get("hung_back_in_nginx") == 0.0))
        slow = held(run, event, bounds.site.read_timeout / 2)
        out.append(Check("no request held by the hung node (none over proxy_read_timeout / 2)",
                         str(len(slow)), not slow))
    return out


def run_rate(run: Run) -> float:
    """The load's rate, from its schedule (requests due per second)."""
    dues = sorted(o.due for o in run.outcomes)
    return (len(dues) - 1) / (dues[-1] - dues[0]) if len(dues) > 1 else 0.0
