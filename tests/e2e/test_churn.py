"""The churn suite's fast part: what users' requests feel while nodes come and go.

`lbsync run` as its own process, the API emulator, the lab's nginx running the recommended site
configuration (config/nginx/), three stand-in nodes and a steady load through nginx (60
requests per second, 10 % of them POSTs). A node drains (cordon, drain, then NotReady or
deletion), crashes, hangs; lbsync is SIGKILLed and restarted, once with a hung node already out.
Probe and sync timing are shortened (tenths of seconds instead of seconds); every bound comes
from the settings (`lbsync_lab.churn.Bounds`: probe interval, timeout, fall, the sync timing,
and the site's proxy timeouts read from its file), with room for a loaded machine. The
assertions are about correctness: no failed request where none may fail, and held requests
and their latency within what the settings allow. The figures with lbsync's default settings
come from bench/churn.py (docs/reliability.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from lbsync_lab.churn import Bounds, ChurnLab, Event, Site, Timing, checks, held, nginx_seconds
from lbsync_lab.load import Outcome, Run, percentile, summarize
from lbsync_lab.nginx import PrivateNginx
from lbsync_lab.rig import hp

# Probes every 0.3 s, down after 2 failures, up after 2 successes: a failed node is out of
# nginx within ~1 s here (~8 s with the defaults). The rest is the daemon tests' quick timing.
QUICK = Timing(interval=0.3, timeout=0.25, rise=2, fall=2, debounce=0.1, max_delay=1.0,
               min_reload_interval=0.2, restart_after=1.0, grace=0.5, outage=3.0, settle=1.0)
RATE = 60.0


@pytest.fixture(scope="module")
def churn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChurnLab]:
    with ChurnLab(Path(tmp_path_factory.mktemp("churn")), nodes=3, timing=QUICK,
                  rate=RATE) as lab:
        yield lab


@pytest.fixture
def loaded(churn: ChurnLab) -> Iterator[ChurnLab]:
    """Every node in nginx and lbsync ready (whatever an earlier test left), then a fresh load."""
    churn.reset()
    churn.start_load()
    try:
        yield churn
    finally:
        if churn.load is not None:
            churn.load.kill()
            churn.load = None


def test_the_bounds_come_from_the_site_file_nginx_runs_and_lbsync_s_settings(
        tmp_path: Path) -> None:
    site = Site.read()
    # The lab's nginx runs this very file: the bounds cannot drift from what is measured.
    text = PrivateNginx(tmp_path).site()
    assert f"proxy_read_timeout {site.read_timeout:g}s;" in text
    assert site.next_upstream == ("error", "timeout")  # a hung node's request is sent on
    assert site.read_timeout < site.next_upstream_timeout  # ...even after its read timeout
    assert [nginx_seconds(v) for v in ("10s", "500ms", "1m", "15")] == [10, 0.5, 60, 15]
    # lbsync's defaults (probes every 2 s, timeout 1 s, fall 3) and a 10 s read timeout:
    b = Bounds(Timing(), Site(("error", "timeout"), 3, 15.0, 1.0, 10.0, 10.0))
    assert b.detect == pytest.approx(7.6)  # 3 x 2 s x 1.1 (jitter) + 1 s
    assert b.leave == pytest.approx(9.85)  # + debounce 0.25 + reload spacing 0.5 + 1.5
    assert b.hung_delayed(100, 4) == 248  # 100/s / 4 servers x 9.85 s, rounded up, + 1
    assert b.hung_latency == 12.0


def test_a_window_counts_every_request_due_in_it() -> None:
    rows = [Outcome(1.0, 1.0, 1.01, "GET", 200, node="node-1"),
            Outcome(1.5, 1.5, 11.5, "POST", 504),
            Outcome(2.0, 2.0, 2.5, "GET", 0, "error: ConnectionResetError"),
            Outcome(3.0, 3.0, 3.01, "GET", 200)]  # due after the window
    w = summarize(rows, 1.0, 3.0)
    assert (w.requests, w.failed, w.failed_get, w.failed_post, w.posts) == (3, 2, 1, 1, 1)
    assert w.max == pytest.approx(10.0) and w.p50 == pytest.approx(0.5) and w.lag_max == 0
    assert w.statuses == {"200": 1, "504": 1, "error: ConnectionResetError": 1}
    assert percentile([5, 1, 4, 2, 3], 99) == 5 and percentile([], 50) == 0.0


def assert_targets(event: Event, run: Run, churn: ChurnLab) -> None:
    results = checks(event, run, churn.bounds)
    assert results, f"no targets for {event.key}"
    w = run.window(event.start, event.end)
    assert w.requests >= RATE * (event.end - event.start) * 0.9, "the load fell behind"
    missed = [f"{c.target}: measured {c.measured}" for c in results if not c.met]
    odd = [f"{o.method} /churn/{o.seq} due +{o.due - event.start:.2f} s, {o.latency:.2f} s: "
           f"{o.status or o.error} {o.node}" for o in run.outcomes
           if event.start <= o.due < event.end and (not o.ok or o.latency > 1.0)]
    assert not missed, (missed, odd, [(s.action, s.lbsync) for s in event.steps],
                        f"nginx's log: {churn.lab.nginx.error_log}")  # type: ignore[union-attr]


@pytest.mark.parametrize("ending", ["not-ready", "deleted"])
def test_graceful_drain_keeps_every_request(loaded: ChurnLab, ending: str) -> None:
    """Cordon: the node stays in and keeps its traffic. Drain: it still forwards, stays in.
    NotReady or deletion: lbsync takes it out; the machine stops only after that. Not one
    request fails."""
    event = loaded.drain(2, ending)
    run = loaded.stop_load()
    assert_targets(event, run, loaded)
    cordon, _drain, gone, stopped = (s.at for s in event.steps)
    # While cordoned and drained, node-2 still carried its share: nothing was cut early.
    carried = [o for o in run.outcomes if cordon <= o.due < gone and o.node == "node-2"]
    assert len(carried) >= RATE / 3 * (gone - cordon) * 0.5, len(carried)
    # Nothing was sent to it once it had stopped.
    assert not [o for o in run.outcomes if o.node == "node-2" and o.sent > stopped]
    assert event.facts["drain_kept"] == 1.0


def test_crashed_node_still_ready_costs_no_request(loaded: ChurnLab) -> None:
    """Connection refused, Ready in the API: nginx retries on the next node; probes take it
    out within interval x fall + timeout and one pass."""
    event = loaded.crash(2)
    run = loaded.stop_load()
    assert_targets(event, run, loaded)


def test_hung_node_holds_requests_within_the_bound_and_a_restart_keeps_it_out(
        loaded: ChurnLab) -> None:
    """A hung node holds each request sent to it for proxy_read_timeout, then nginx sends it on;
    probes bound how many it gets. Then lbsync is SIGKILLed and restarted: the restarted
    daemon probes before its first pass, so the hung node never comes back."""
    hang = loaded.hang(3)
    restart = loaded.sigkill(hung=3)
    run = loaded.stop_load()
    assert_targets(hang, run, loaded)
    assert held(run, hang, loaded.bounds.site.read_timeout / 2), \
        "no request was held: the node did not hang, or nginx never sent it any"
    assert_targets(restart, run, loaded)
    assert hp(3) not in loaded.servers


def test_lbsync_sigkilled_and_restarted_under_load(loaded: ChurnLab) -> None:
    """nginx serves on with the last file while lbsync is dead; the restarted daemon's first
    pass (a forced test and reload) costs no request."""
    assert loaded.lbsync is not None
    starts = loaded.lbsync.starts
    event = loaded.sigkill()
    run = loaded.stop_load()
    assert_targets(event, run, loaded)
    assert loaded.lbsync.starts == starts + 1 and loaded.lbsync_ready()
