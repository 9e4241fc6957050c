"""What active probes cost the gateway: lbsync's prober, alone, against N targets.

    python bench/probes.py                   # 5,000 targets, default probe settings
    python bench/probes.py --targets 20000 --seconds 20

A private nginx (the Debian package, in a temporary prefix) stands in for N nodes: it listens
on one port of every loopback address (127.77.x.y), answering 404 as Kong does to an unknown
route; a second port nobody listens on stands for nodes that refuse. The prober runs in this
process with `nodes.probe` as shipped (HTTP GET /, every 2 s, 1 s timeout, 128 in flight); the
figures are its probe rate and the process's CPU time over a window after the first rounds
(user + system: on loopback the kernel's TCP work for both ends of each connect counts here,
which a real network spreads over the nodes). It measures and prints; it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lbsync.config import ProbeConfig
from lbsync.health import Observation, Target
from lbsync.probe import Prober

NGINX_CONF = """\
worker_processes 1;
error_log {prefix}/error.log;
pid {prefix}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    server {{
        listen {port} backlog=4096;
        location / {{ return 404 '{{"message":"no Route matched with those values"}}'; }}
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def targets(n: int, port: int) -> list[Target]:
    return [Target(f"127.77.{i // 250}.{i % 250 + 1}", port, "http", "/", (200, 499))
            for i in range(n)]


def measure(cfg: ProbeConfig, wanted: list[Target], warmup: float, seconds: float
            ) -> tuple[float, float, float]:
    """Probes per second, % ok, and CPU % of one core over `seconds` after `warmup`."""
    seen: list[Observation] = []
    prober = Prober(cfg, lambda: None, seen.append)
    prober.start()
    prober.set_targets(wanted)
    try:
        time.sleep(warmup)
        r0, n0, t0 = resource.getrusage(resource.RUSAGE_SELF), len(seen), time.monotonic()
        time.sleep(seconds)
        r1, n1, t1 = resource.getrusage(resource.RUSAGE_SELF), len(seen), time.monotonic()
    finally:
        prober.stop()
    window = seen[n0:n1]
    cpu = (r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime) / (t1 - t0) * 100
    ok = 100 * sum(o.ok for o in window) / max(1, len(window))
    return len(window) / (t1 - t0), ok, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured window")
    args = parser.parse_args()
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    cfg = ProbeConfig()
    print(f"{platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"{args.targets} targets, probe every {cfg.interval:g} s, timeout {cfg.timeout:g} s, "
          f"{cfg.concurrency} in flight")
    with tempfile.TemporaryDirectory() as tmp:
        port, closed = free_port(), free_port()
        (Path(tmp) / "nginx.conf").write_text(NGINX_CONF.format(prefix=tmp, port=port))
        subprocess.run([nginx, "-p", tmp, "-c", f"{tmp}/nginx.conf"], check=True)
        try:
            print(f"{'targets':<28} {'probes/s':>9} {'ok':>6} {'CPU (one core)':>15}")
            for name, p in (("answering (nginx, 404)", port), ("refusing (nothing there)",
                                                                closed)):
                rate, ok, cpu = measure(cfg, targets(args.targets, p), 2 * cfg.interval,
                                        args.seconds)
                print(f"{name:<28} {rate:>9.0f} {ok:>5.0f}% {cpu:>14.1f}%")
        finally:
            subprocess.run([nginx, "-p", tmp, "-c", f"{tmp}/nginx.conf", "-s", "stop"],
                           check=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
