"""Churn: what users of the gateway feel while nodes come and go. Writes docs/reliability.md.

One run of `lbsync run` (its own process, lbsync's default probe and sync settings), the API
emulator, the lab's nginx with the recommended site configuration (config/nginx/), four
stand-in nodes on loopback and a steady load through nginx (`lbsync_lab.load`: 100 requests
per second, 10 % POSTs, keep-alive). Events come one after another, each with its own
window of time (`lbsync_lab.churn`); a node is put back between two events, outside the
windows. Every request's outcome and latency is kept; the page shows each window, the targets
(bounds computed from the settings) and whether each is met.

    python bench/churn.py            # the figures in docs/reliability.md (about 4 minutes)
    python bench/churn.py --quick    # CI-sized: quick probe and sync settings, prints the page
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import os
import platform
import re
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

from lbsync_lab.churn import (
    JITTER,
    PASS_ALLOWANCE,
    Bounds,
    ChurnLab,
    Event,
    Timing,
    checks,
    first_answer,
    held,
    run_rate,
)
from lbsync_lab.load import Run, Window, summarize
from lbsync_lab.nginx import NGINX

import lbsync

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "reliability.md"
# The test's quick settings (tests/e2e/test_churn.py): probes every 0.3 s, fall 2.
QUICK = Timing(interval=0.3, timeout=0.25, rise=2, fall=2, debounce=0.1, max_delay=1.0,
               min_reload_interval=0.2, restart_after=1.0, grace=0.5, outage=3.0, settle=1.0)


def log(message: str) -> None:
    print(f"churn: {message}", file=sys.stderr, flush=True)


# --- the run -----------------------------------------------------------------------------------


def run_events(lab: ChurnLab, baseline: float) -> list[Event]:
    """Every event, in order; a node comes back (`restore`) between two, outside the windows.
    The API faults come once well before the API outage and once right after it: lbsync's
    watch backoff once kept growing across incidents (see the findings), and the two must
    now take about as long."""
    events: list[Event] = []
    plan: list[tuple[str, Callable[[], Event], Callable[[], None] | None]] = [
        ("baseline", lambda: lab.baseline(baseline), None),
        ("drain ending NotReady", lambda: lab.drain(2, "not-ready"), lambda: lab.restore(2)),
        ("drain ending in deletion", lambda: lab.drain(3, "deleted"), lambda: lab.restore(3)),
        ("crash", lambda: lab.crash(2), lambda: lab.restore(2)),
        # The hung node stays out for the next event: a restart must not put it back.
        ("hang", lambda: lab.hang(3), None),
        ("SIGKILL with a hung node out", lambda: lab.sigkill(hung=3), lambda: lab.restore(3)),
        ("scale-up", lambda: lab.scale_up(lab.count + 1), None),
        ("API 410 and 5xx", lambda: lab.api_faults(1), lambda: lab.restore(1)),
        ("SIGKILL", lab.sigkill, None),
        ("SIGKILL, a node crashes meanwhile", lambda: lab.sigkill(crash_while_down=2),
         lambda: lab.restore(2)),
        ("API outage during a drain", lambda: lab.api_outage_drain(4), lambda: lab.restore(4)),
        ("API 410 and 5xx again", lambda: lab.api_faults(1, again=True), lambda: lab.restore(1)),
    ]
    for name, event, restore in plan:
        log(f"{name}...")
        events.append(event())
        if restore is not None:
            restore()
        lab.quiet()
    return events


# --- the page ----------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms" if seconds >= 0.1 else f"{seconds * 1000:.1f} ms"


def answers(w: Window) -> str:
    return ", ".join(f"{n} x {k}" for k, n in sorted(w.statuses.items(), key=lambda i: -i[1]))


def reaction(e: Event, run: Run, b: Bounds) -> str:
    f = e.facts
    if e.key.startswith("drain-"):
        return (f"cordon: kept, {f['cordon_reloads']:.0f} reloads; out {f['left_after']:.2f} s "
                f"after {'NotReady' if e.key == 'drain-not-ready' else 'the deletion'}")
    if e.key == "crash":
        return f"out of nginx {f['left_after']:.2f} s after the failure (probes)"
    if e.key == "hang":
        return (f"out of nginx {f['left_after']:.2f} s after the failure (probes); "
                f"{len(held(run, e, b.site.read_timeout / 2))} requests held")
    if e.key == "scale-up":
        first = first_answer(run, e.node, e.steps[0].at)
        shown = "none" if first is None else f"{first:.2f} s"
        return f"in nginx after {f['in_after']:.2f} s; its first answer after {shown}"
    if e.key.startswith("api-faults"):
        errors = sum(v for k, v in f.items() if k.startswith("api_errors"))
        expired = sum(v for k, v in f.items() if k.startswith("watch_restarts") and
                      k.endswith("expired"))
        return (f"{errors:.0f} failed API calls, {expired:.0f} relists on 410; node out "
                f"{f['left_after']:.2f} s after NotReady")
    if e.key == "sigkill":
        return f"ready {f['ready_after']:.2f} s after the restart"
    if e.key == "sigkill-crash":
        return (f"ready {f['ready_after']:.2f} s after the restart; crashed node out "
                f"{f['left_after']:.2f} s after it")
    if e.key == "sigkill-hung":
        back = "came back" if f.get("hung_back_in_nginx") else "stayed out"
        return f"ready {f['ready_after']:.2f} s after the restart; the hung node {back}"
    if e.key == "outage-drain":
        return f"out {f['left_after']:.2f} s after the machine stopped (probes, no API)"
    return ""


def between(run: Run, events: list[Event]) -> Window:
    """The requests due outside every window, after the first one began (nodes coming back)."""
    outside = [o for o in run.outcomes if o.due >= events[0].start
               and not any(e.start <= o.due < e.end for e in events)]
    return summarize(outside, float("-inf"), float("inf"))


def version_of(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine() -> list[tuple[str, str]]:
    cpu = platform.processor() or "unknown"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    os_name = platform.system()
    if Path("/etc/os-release").exists():
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    nginx = subprocess.run([NGINX, "-v"], capture_output=True, text=True, check=False)
    return [("CPU", f"{cpu}, {os.cpu_count()} cores"), ("OS", f"{os_name}, Linux "
            f"{platform.release()}"), ("nginx", nginx.stderr.strip().removeprefix(
                "nginx version: ")),
            ("Python", f"{platform.python_version()} ({sys.executable})"),
            ("lbsync", lbsync.__version__), ("kubernetes (Python client)",
                                              version_of("kubernetes"))]


def bounds_text(b: Bounds, rate: float, servers: int) -> str:
    t, s = b.timing, b.site
    return f"""\
- A failed node is down in lbsync's eyes within **detect = fall x interval x {JITTER} + timeout
  = {t.fall} x {t.interval:g} s x {JITTER} + {t.timeout:g} s = {b.detect:.2f} s**: the first
  failing probe starts at most one interval (plus the prober's 10 % jitter) after the failure,
  each takes at most the probe timeout (a refused connect takes a millisecond, a hung node the
  whole timeout).
- It is out of nginx within **leave = detect + debounce + min_reload_interval + {PASS_ALLOWANCE:g} s
  = {b.leave:.2f} s**; {PASS_ALLOWANCE:g} s is room for the pass itself (`nginx -t` through
  the publisher, the reload and its confirmation took 0.2-0.4 s here) on a loaded machine.
- A change in the API (NotReady, deletion, a new Ready node) is in nginx within **max_delay +
  min_reload_interval + {PASS_ALLOWANCE:g} s = {b.api_change:.2f} s**.
- **Crash** (connection refused): nginx retries the request on the next node at once
  (`proxy_next_upstream error`), so no GET may fail; a POST is retried too when its
  connection was refused (nothing was sent). Only a POST the node held at the instant it died
  may fail (502): nginx must not send it again, it may have been applied.
- **Hang** (accepts, never answers): each request nginx sends it waits proxy_read_timeout
  ({s.read_timeout:g} s), then goes to the next node (`proxy_next_upstream timeout`). So
  **no GET may fail, and no request may take longer than proxy_read_timeout +
  proxy_connect_timeout + 1 s = {b.hung_latency:.1f} s** (p99 and max). A POST it held fails
  with 504 after proxy_read_timeout, by choice (no `non_idempotent`). Round robin sends it
  1/N of the requests until lbsync takes it out, and nginx's passive check (max_fails) only
  counts a timeout once proxy_read_timeout has passed, so **at most rate / N x min(leave,
  proxy_read_timeout) + 1 requests are held**: {rate:g} / {servers} x
  {min(b.leave, s.read_timeout):.2f} s + 1 = {b.hung_delayed(rate, servers)} here. Without
  probes it would be every request sent there until max_fails trips, after
  proxy_read_timeout, and again one per fail_timeout until the Ready condition turns False
  (~40-50 s) - or forever for a node whose kubelet still reports Ready."""


DRAIN_STEPS = [
    ("1. cordon", "`spec.unschedulable: true`, taint `node.kubernetes.io/unschedulable`",
     "keeps the node: a cordoned node still carries connections (status shows `cordoned`); "
     "the Node changed, so a pass runs, finds the file unchanged and does not reload",
     "unchanged; the node keeps its share of new requests"),
    ("2. drain", "pods evicted, Kong's among them; with `externalTrafficPolicy: Cluster` "
     "kube-proxy on the node forwards to Kong elsewhere",
     "nothing to do: the Node did not change", "unchanged; the node still answers"),
    ("3a. NotReady", "kubelet's graceful shutdown sets Ready=False, then the machine stops",
     "takes the node out at the next pass (debounce), tests, reloads and confirms the new "
     "workers", "new requests go to the other nodes; requests in flight on the node finish "
     "in the old workers, which then exit"),
    ("3b. or: deleted", "`kubectl delete node` (the cluster autoscaler deletes after "
     "draining; it taints `ToBeDeletedByClusterAutoscaler` first, and lbsync already drops a "
     "node with that taint)", "the same: out at the next pass", "the same"),
    ("4. machine stops", "connections refused or unanswered", "nothing left to do",
     "nginx no longer sends it anything"),
]

SEQUENCE = """\
What lbsync does at each step of `kubectl drain` (the `drain` events above run exactly this,
and `tests/e2e/test_churn.py` asserts it):

| step | the cluster | lbsync | nginx and the node's connections |
|---|---|---|---|
""" + "\n".join(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in DRAIN_STEPS) + """

Zero failed requests needs step 4 to come after step 3: stop the machine only once lbsync has
taken the node out (`lbsync status`, or `lbsync_upstream_servers`). When the machine stops
first (a drain that ends with a plain power-off, with Ready still True for ~40 s), it is the
crash or the hang above: the probes take it out within `leave`, and until then nginx retries
each request on another node, but a request the node held at that instant can be lost (a POST)
or delayed up to proxy_read_timeout (a machine that vanishes without refusing). During an API
outage lbsync cannot see steps 3a/3b at all; the probes still see step 4 (the outage event)."""

SITE_TEXT = """\
The site configuration (`config/nginx/worlds.com.conf`, comments there) is chosen for these
events; lbsync's probes take a failed node out within seconds, and these settings decide what
the requests sent to it meanwhile feel:

- `proxy_next_upstream error timeout`: a refused, broken or timed-out attempt goes to the next
  node. Not on `http_502`/`http_503`/`http_504`: those come from Kong or the application behind
  it, the same on every node; retrying them would multiply a failing application's load.
- No `non_idempotent`: nginx resends a POST (or PATCH, LOCK) only if nothing was sent, i.e. the
  connection was refused. A POST that reached a node which then died or hung may have been
  applied; sending it again could apply it twice (a double order), which is worse for the user
  than an error they can see. So a POST can fail only when its node fails while holding it: 502
  if it dies mid-request, 504 after proxy_read_timeout if it hangs. The tables count POSTs apart.
- `proxy_next_upstream_tries 3` and `proxy_next_upstream_timeout 15s`: when many nodes fail at
  once (the gateway's own network), a request must not walk the whole upstream (the default is
  every server); 15 s is longer than proxy_read_timeout, so a request that timed out on a hung
  node is still sent on to the next.
- `proxy_connect_timeout 1s`: a healthy node on the LAN accepts in well under a millisecond; a
  node that is powered off answers nothing, and each request sent to it waits this long before
  the next node.
- `proxy_read_timeout 10s` (and `proxy_send_timeout 10s`): the hung-node latency bound. It also
  caps how long any answer may take to start or stall, so a site with slower endpoints (reports,
  long polling) gives them their own location with a longer timeout. nginx's default, 60 s,
  would hold each request on a hung node a minute. Each held request ties up two nginx
  connections: rate / N x min(leave, proxy_read_timeout) x 2 of `worker_connections` (the lab's
  nginx has 512, Debian's default 768); that bounds the load the lab can take, and what a
  gateway needs.
- `max_fails=3 fail_timeout=10s` (lbsync's `nginx.server_options` default, on each server
  line): nginx's passive check. After three failures within 10 s a node gets no requests for
  10 s, then one (per worker). For a crashed node this only saves retries, which cost a
  millisecond each; for a hung node it trips only after proxy_read_timeout, later than the
  probes. It stays as a safety net for when probes are off or lbsync is down (the `SIGKILL, a
  node crashes meanwhile` event). Kept as is."""


def table_row(title: str, window: str, w: Window, lbsync_did: str) -> str:
    retried = f" ({w.reconnected} after a keep-alive retry)" if w.reconnected else ""
    lag = f" (send lag {ms(w.lag_max)})" if w.lag_max >= 0.05 else ""
    return (f"| {title} | {window} | {w.requests} ({w.posts}) | {w.failed_get} / "
            f"{w.failed_post} | {answers(w)}{retried} | {ms(w.p50)} | {ms(w.p99)} | "
            f"{ms(w.max)}{lag} | {lbsync_did} |")


_NBSP = "\x00"


def _glue(text: str) -> str:
    """Spaces a line must not break at: inside code spans, between a number and its unit, and
    before a `+` or `-` that would start a list item at the beginning of a line."""
    text = re.sub(r"`[^`]*`", lambda m: m.group(0).replace(" ", _NBSP), text)
    text = re.sub(r"(\d) (ms|s|MB|%)\b", rf"\1{_NBSP}\2", text)
    return text.replace(" + ", f"{_NBSP}+{_NBSP}").replace(" - ", f"{_NBSP}-{_NBSP}")


def reflow(markdown: str, width: int = 96) -> str:
    """Rewrap the prose of a page (paragraphs and list items) at `width` columns; headings,
    tables and code stay as they are."""
    blocks = []
    for block in markdown.split("\n\n"):
        lines = block.split("\n")
        if any(line.startswith(("#", "|", "```", "    ")) for line in lines):
            blocks.append(block)
            continue
        items: list[list[str]] = []
        for line in lines:
            if line.startswith("- ") or not items:
                items.append([line])
            else:
                items[-1].append(line)
        out = []
        for item in items:
            text = " ".join(" ".join(item).split())
            lead = "- " if text.startswith("- ") else ""
            filled = textwrap.fill(_glue(text.removeprefix(lead)), width, initial_indent=lead,
                                   subsequent_indent="  " if lead else "",
                                   break_on_hyphens=False, break_long_words=False)
            out.append(filled.replace(_NBSP, " "))
        blocks.append("\n".join(out))
    return "\n\n".join(blocks)


def bullet(text: str) -> str:
    """One markdown list item, wrapped at 96 columns."""
    return textwrap.fill(" ".join(text.split()), 96, initial_indent="- ",
                         subsequent_indent="  ")


def findings(events: list[Event], run: Run) -> str:
    by_key = {e.key: e for e in events}
    first, again = by_key.get("api-faults"), by_key.get("api-faults-again")
    backoff = ""
    if first is not None and again is not None:
        backoff = (f"In this run: {first.facts['left_after']:.1f} s with a fresh lbsync, "
                   f"{again.facts['left_after']:.1f} s soon after the API outage.")
    retried = [(e.title, run.window(e.start, e.end).reconnected) for e in events]
    where = ", ".join(f'{n} in "{title}"' for title, n in retried if n)
    total = sum(1 for o in run.outcomes if o.reconnected)
    seen = (f"{total} such retries in this run ({where or 'none inside a window'})" if total
            else "no such retry in this run")
    return "\n".join(bullet(b) for b in (
        "**Fixed in lbsync: a restart put nodes that probes had taken out back into nginx.** "
        "Probe results do not survive a restart and a never-probed server counts as up, so "
        "the first pass after a restart put back a hung node until its first probe failed; "
        "each request nginx sent it meanwhile waited proxy_read_timeout (measured before the "
        "fix, quick settings: the hung node back in the file, p99 and max 10.0 s in the "
        "restart's window). lbsync now probes every candidate once before a new prober's "
        "first pass, for at most probe.timeout + 0.5 s: the row `lbsync SIGKILLed, restarted "
        "(a hung node already out)`, and CI asserts the node stays out.",
        "**Reloads close idle keep-alive connections.** nginx's old workers close their idle "
        "client connections when a reload retires them, and a client that sends a request at "
        "that instant sees the connection close before any answer. The load generator checks "
        "a connection before reusing it and retries such a GET once on a new connection, as "
        f"browsers and HTTP libraries do: {seen}. A client that retries nothing would count "
        "them as errors, and a POST cannot be retried that way. Every lbsync reload (a node "
        "leaving or joining, the first pass after a restart) has this cost, as every nginx "
        "reload does; lbsync reloads only when the file changed (a cordon did not reload).",
        "**Fixed in lbsync: API errors backed off across incidents.** A reflector's backoff "
        "grew with every failed call of one watch request, the reconnects after the API came "
        "back included, until a watch ended cleanly (`sync.watch_timeout`, 300 s): a second "
        "incident soon after a first started at a longer wait, up to 30 s between calls "
        "(measured before the fix: the same faults got a NotReady node through in 17.0 s "
        "with a fresh lbsync and in 137.3 s soon after the API outage, while changes seen "
        "only through the API waited). The backoff now counts the failures since the source "
        "last made progress (a list, an event), as client-go's reflector resets its own; "
        f"`tests/unit/test_watch.py` asserts it. {backoff}",
        "**The lab's stand-in nodes were fixed first** (`lbsync_lab.nodes`): a crashed one "
        "went on answering on the keep-alive connections nginx already had (a crash now ends "
        "them, as the kernel does); about half the requests waited 40 ms for a delayed ACK "
        "(TCP_NODELAY now, as Kong sets it); and a listen backlog of 5 dropped connections to "
        "healthy nodes when the machine was busy (511 now, as Kong's nginx).",
    ))


def page(lab: ChurnLab, run: Run, events: list[Event], started: datetime.datetime,
         took: float, loads: tuple[str, str], command: str) -> str:
    b, t, site = lab.bounds, lab.timing, lab.site
    rate = run_rate(run)
    nodes = lab.count - 1 if any(e.key == "scale-up" for e in events) else lab.count
    rows, targets = [], []
    every: list[bool] = []
    for e in events:
        rows.append(table_row(e.title, f"{e.end - e.start:.1f} s",
                              run.window(e.start, e.end), reaction(e, run, b)))
        for c in checks(e, run, b):
            every.append(c.met)
            targets.append(f"| {e.title} | {c.target} | {c.measured} | "
                           f"{'met' if c.met else '**NOT MET**'} |")
    rows.append(table_row("between the windows (nodes coming back)", "", between(run, events),
                          ""))
    o = run.overhead
    held_hang = [len(held(run, e, site.read_timeout / 2)) for e in events if e.key == "hang"]
    steps = []
    for e in events:
        if e.key.startswith("drain-") or e.key == "outage-drain":
            steps.append(f"\n{e.title}:\n")
            steps.extend(f"- +{s.at - e.start:.2f} s: {s.action}"
                         + (f"; lbsync: {s.lbsync}" if s.lbsync else "") for s in e.steps)
    machine_rows = "\n".join(f"| {k} | {v} |" for k, v in machine())
    verdict = "Every target is met." if all(every) else "Targets NOT met are marked below."
    return f"""\
# Reliability: requests while nodes come and go

What users of the gateway feel is their requests, not the upstream file. This page is written
by `{command}` (started {started:%Y-%m-%d %H:%M} UTC, {took / 60:.1f} minutes); do not edit
it by hand. The fast part of the same suite runs in CI (`tests/e2e/test_churn.py`: quick probe
settings, the same targets).

**{sum(every)} of {len(every)} targets met.** {verdict}

## The run

Everything runs on one machine, each part as in production: `lbsync run` as its own process
with lbsync's default probe and sync settings; the Kubernetes API emulator over HTTPS
(`lbsync_lab.sim`, in the benchmark's process); a private nginx running the recommended site
configuration, unchanged but for its paths and port (`config/nginx/lbsync.conf`,
`config/nginx/worlds.com.conf`), with root's publisher checking every servers file before
`nginx -t`, as on a gateway; and {nodes} stand-in nodes on loopback addresses
(`lbsync_lab.nodes`: small HTTP servers that crash, hang and recover).

The load (`lbsync_lab.load`, its own process) sends {rate:.0f} requests per second through
nginx, {lab.post_share:.0%} of them POSTs (drawn at random), over keep-alive connections. It is
open-loop: request i is due at start + i / rate whatever happened to the others, and its
latency counts from when it was due, so a slow gateway cannot hide behind a slow client. Every
request's outcome is kept. Events come one after another, each with its own window of time; a
failed node is put back between two events, outside the windows (the last row of the results
counts those requests).

| | |
|---|---|
{machine_rows}
| load average (1 min), start / end | {loads[0]} / {loads[1]} (other work shared the machine) |

lbsync's settings: `nodes.probe` kind http, interval {t.interval:g} s, timeout
{t.timeout:g} s, rise {t.rise}, fall {t.fall}; `sync.debounce` {t.debounce:g} s,
`sync.max_delay` {t.max_delay:g} s, `sync.min_reload_interval` {t.min_reload_interval:g} s;
`nodes.max_shrink` 0.5; `nginx.server_options` `max_fails=3 fail_timeout=10s`. After a SIGKILL,
lbsync restarts {t.restart_after:g} s later (lbsync.service's RestartSec). A drained machine
stops {t.grace:g} s after lbsync took it out. The API outage lasts {t.outage:g} s.

The site's settings, read from `config/nginx/worlds.com.conf`: `proxy_next_upstream
{" ".join(site.next_upstream)}`, `proxy_next_upstream_tries {site.tries}`,
`proxy_next_upstream_timeout {site.next_upstream_timeout:g}s`, `proxy_connect_timeout
{site.connect_timeout:g}s`, `proxy_read_timeout {site.read_timeout:g}s`,
`proxy_send_timeout {site.send_timeout:g}s`.

## Results

The requests due in each window. Failed: no 2xx answer (an error status, or no answer). Latency
runs from when a request was due to its end; when the load generator itself sent a request late
by 50 ms or more (the machine was busy), the worst delay is shown after the max.

| event | window | requests (POST) | failed GET / POST | answers | p50 | p99 | max | lbsync |
|---|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

## Targets

| event | target | measured | |
|---|---|---|---|
{chr(10).join(targets)}

## The bounds, from the settings

{bounds_text(b, rate, nodes)}

Measured: the hung node held {", ".join(map(str, held_hang)) or "no"} requests.

## Graceful drain: the sequence

{SEQUENCE}

As measured in this run:
{chr(10).join(steps)}

## The site configuration's timeouts and retries

{SITE_TEXT}

## The load generator

Its own process: asyncio, one connection per request in flight, at most 32 idle keep-alive
connections kept. Over the run: {o.duration:.0f} s of sending and {o.cpu_seconds:.1f} s of CPU
({o.cpu_share:.1%} of one core). A request was sent {ms(o.lag_p50)} after it was due at p50,
{ms(o.lag_p99)} at p99 and {ms(o.lag_max)} at worst: the machine's scheduling, not the
gateway's, and counted in every latency above. {o.max_in_flight} requests were in flight at
most (bound: 1,000; {o.skipped} skipped for it). A reused keep-alive connection the server has
closed is noticed before reuse, as urllib3 does; one that closes before any byte of the answer
is retried once on a new connection, for a GET only (RFC 9112, 9.3.1), and counted.

## Findings

{findings(events, run)}
"""


def explain_failures(run: Run, error_log: Path, most: int = 30) -> None:
    """What nginx's error log says of each failed request (its path is /churn/SEQ), on stderr:
    the page counts failures, this says why, while the lab's files still exist."""
    failed = [o for o in run.outcomes if o.sent and not o.ok][:most]
    if not failed:
        return
    lines = error_log.read_text(errors="replace").splitlines()
    for o in failed:
        said = [line for line in lines if f"/churn/{o.seq} " in line]
        log(f"failed: {o.method} /churn/{o.seq} status {o.status} {o.error}".rstrip())
        for line in said[:5]:
            log(f"  nginx: {line}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="the CI-sized run: quick probe and sync settings")
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second")
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--out", default=None,
                        help="where to write the page ('-': stdout; default: "
                             "docs/reliability.md, or stdout with --quick)")
    args = parser.parse_args()
    out = args.out or ("-" if args.quick else str(DOC))
    command = "python bench/churn.py" + (" --quick" if args.quick else "") + (
        f" --rate {args.rate:g}" if args.rate != 100.0 else "") + (
        f" --nodes {args.nodes}" if args.nodes != 4 else "")
    started = datetime.datetime.now(datetime.UTC)
    begin = time.monotonic()
    load_start = f"{os.getloadavg()[0]:.2f}"
    with tempfile.TemporaryDirectory(prefix="lbsync-churn-") as work, ChurnLab(
            Path(work), nodes=args.nodes, timing=QUICK if args.quick else Timing(),
            rate=args.rate) as lab:
        log(f"lab up: {args.nodes} nodes, nginx on 127.0.0.1:{lab.lab.nginx.port}")  # type: ignore[union-attr]
        lab.start_load()
        events = run_events(lab, 3.0 if args.quick else 10.0)
        log("waiting for the last requests")
        run = lab.stop_load()
        explain_failures(run, lab.lab.nginx.error_log)  # type: ignore[union-attr]
        text = page(lab, run, events, started, time.monotonic() - begin,
                    (load_start, f"{os.getloadavg()[0]:.2f}"), command)
    text = reflow(text)
    if out == "-":
        sys.stdout.write(text)
    else:
        Path(out).write_text(text)
        log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
