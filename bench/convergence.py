"""Benchmark `lbsync run`: time from a Node turning NotReady in the API to the reloaded NGINX no
longer listing it, p50/p99 over many flips; daemon RSS; idle CPU. Measures, asserts nothing.

Each piece is a separate process, as in production: the API emulator (HTTPS), `lbsync run`,
and a private nginx. A flip is a PUT of the Node with its Ready condition changed, sent over
HTTPS like a kubelet's status update. The clock starts just before the PUT is sent and stops
when nginx's master has new workers and the file no longer lists the node.

    python bench/convergence.py --nodes 3 --flips 50
    python bench/convergence.py --nodes 5000 --flips 50
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from lbsync_lab.nginx import PrivateNginx
from rig import ENV, ROOT, rig

DEBOUNCE, MIN_RELOAD = 0.25, 0.5


class Api:
    """Just enough of a Kubernetes client to GET and PUT a Node, from a kubeconfig."""

    def __init__(self, kubeconfig: Path) -> None:
        cfg = yaml.safe_load(kubeconfig.read_text())
        cluster = cfg["clusters"][0]["cluster"]
        server = cluster["server"].removeprefix("https://")
        self.host, port = server.rsplit(":", 1)
        self.port = int(port)
        self.token = cfg["users"][0]["user"]["token"]
        ctx = ssl.create_default_context()
        if "certificate-authority-data" in cluster:
            ctx.load_verify_locations(
                cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
        else:
            ctx.load_verify_locations(cluster["certificate-authority"])
        self.conn = http.client.HTTPSConnection(self.host, self.port, context=ctx)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        self.conn.request(method, path, body=data, headers={
            "Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        resp = self.conn.getresponse()
        payload = resp.read()
        if resp.status >= 300:
            raise RuntimeError(f"{method} {path}: {resp.status} {payload[:200]!r}")
        return json.loads(payload)

    def set_ready(self, node: dict[str, Any], ready: bool) -> None:
        for cond in node["status"]["conditions"]:
            if cond["type"] == "Ready":
                cond["status"] = "True" if ready else "False"
        node["metadata"].pop("resourceVersion", None)
        # Status lives in the status subresource, as a kubelet writes it.
        self.call("PUT", f"/api/v1/nodes/{node['metadata']['name']}/status", node)


def children(pid: int) -> set[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return set()
    return {int(p) for p in text.split()}


def wait_applied(nginx: PrivateNginx, master: int, workers: set[int], needle: str,
                 present: bool, timeout: float = 30.0) -> tuple[float, float]:
    """Poll until the file has/lacks `needle` and the master runs new workers.

    Returns (new worker running the new file, every old worker gone). nginx's master waits a
    fixed 100 ms after starting new workers before it tells old ones to quit; until then an
    old worker may still take a new connection, so the second time is when the node is
    really out of rotation.
    """
    deadline = time.monotonic() + timeout
    started = None
    seen = workers
    while time.monotonic() < deadline:
        now = children(master)
        # Reading the file only when the workers change keeps this poller off the CPU
        # that lbsync, nginx and the emulator share with it.
        if started is None and now - seen:
            seen = now | seen
            if (needle in nginx.output.read_text()) is present:
                started = time.monotonic()
        if started is not None and now and not (now & workers):
            return started, time.monotonic()
        time.sleep(0.0005)
    raise TimeoutError("nginx did not converge")


def rss_mb(pid: int) -> tuple[float, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return (int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024)


def cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--flips", type=int, default=50)
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle CPU sampling")
    args = parser.parse_args()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        http_port = sock.getsockname()[1]
    sections = {"sync": {"debounce": DEBOUNCE, "min_reload_interval": MIN_RELOAD},
                "http": {"listen": f"127.0.0.1:{http_port}"},
                "log": {"format": "json", "level": "warning"}}
    with tempfile.TemporaryDirectory() as tmp, rig(Path(tmp), args.nodes, **sections) as r:
        daemon = subprocess.Popen([sys.executable, "-m", "lbsync", "-c", str(r.config), "run"],
                                  cwd=ROOT, env=ENV, stderr=subprocess.DEVNULL)
        try:
            return measure(args, r.nginx, daemon.pid, Api(r.kubeconfig))
        finally:
            daemon.terminate()
            daemon.wait()


def measure(args: argparse.Namespace, nginx: PrivateNginx, daemon: int, api: Api) -> int:
    start = time.monotonic()
    while "node-" not in nginx.output.read_text() or "server(s)" not in nginx.output.read_text():
        time.sleep(0.01)
    while len(nginx.output.read_text().splitlines()) < args.nodes + 4:
        time.sleep(0.01)
    first_sync = time.monotonic() - start
    master = nginx.master_pid()
    assert master is not None
    time.sleep(1.0)
    names = [item["metadata"]["name"] for item in api.call("GET", "/api/v1/nodes?limit=3")
             ["items"]]
    target = api.call("GET", f"/api/v1/nodes/{names[0]}")
    address = next(a["address"] for a in target["status"]["addresses"]
                   if a["type"] == "InternalIP")
    needle = f"server {address}:"
    results: dict[str, list[float]] = {"down-new": [], "down-out": [], "up-new": [],
                                       "up-out": []}
    for _ in range(args.flips):
        for ready, key in ((False, "down"), (True, "up")):
            workers = children(master)
            t0 = time.monotonic()
            api.set_ready(target, ready)
            started, done = wait_applied(nginx, master, workers, needle, present=ready)
            results[f"{key}-new"].append(started - t0)
            results[f"{key}-out"].append(done - t0)
            time.sleep(MIN_RELOAD + 0.2)  # flips further apart than the min reload interval
    rss, hwm = rss_mb(daemon)
    cpu0, t0 = cpu_seconds(daemon), time.monotonic()
    time.sleep(args.idle)
    idle = (cpu_seconds(daemon) - cpu0) / (time.monotonic() - t0) * 100
    print(f"lbsync run, {args.nodes} nodes, {args.flips} flips each way, debounce "
          f"{DEBOUNCE * 1000:.0f} ms, Python {sys.version.split()[0]}:")
    print(f"  first sync after start:    {first_sync:.2f} s")
    labels = {
        "down-new": "NotReady -> new nginx workers without it",
        "down-out": "NotReady -> old workers gone (fully out)",
        "up-new": "Ready    -> new nginx workers with it   ",
        "up-out": "Ready    -> old workers gone            ",
    }
    for key, label in labels.items():
        values = results[key]
        print(f"  {label}: p50 {statistics.median(values) * 1000:.0f} ms, "
              f"p99 {percentile(values, 0.99) * 1000:.0f} ms, "
              f"max {max(values) * 1000:.0f} ms")
    print(f"  daemon RSS {rss:.0f} MB (peak {hwm:.0f} MB); idle CPU {idle:.2f}% "
          f"over {args.idle:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
