"""Benchmark `lbsync once` at scale: wall time and peak RSS (GNU time -v) of the real CLI.

Starts the API emulator (HTTPS) with N realistic Nodes in a separate process, a private nginx,
then runs `lbsync once` (first run: writes and reloads; second run: unchanged) under
/usr/bin/time -v. Measures and reports; asserts nothing about speed.

    python bench/once.py --nodes 5000
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lbsync.lab.nginx import PrivateNginx  # noqa: E402


def timed_once(config: Path) -> dict[str, str]:
    proc = subprocess.run(
        ["/usr/bin/time", "-v", sys.executable, "-m", "lbsync", "-c", str(config), "once"],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    if proc.returncode != 0:
        raise SystemExit(f"lbsync once failed: {proc.stderr[-2000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time.*: (\S+)", proc.stderr)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    return {"output": proc.stdout.strip(), "wall": wall.group(1) if wall else "?",
            "rss_mb": f"{int(rss.group(1)) / 1024:.0f}" if rss else "?"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=5000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sim = subprocess.Popen(
            [sys.executable, "-m", "lbsync.sim", "--nodes", str(args.nodes), "--workdir",
             str(work / "sim")], stdout=subprocess.PIPE, text=True, cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert sim.stdout is not None
        kubeconfig = sim.stdout.readline().strip()
        nginx = PrivateNginx(work / "nginx")
        nginx.start()
        try:
            config = work / "config.yaml"
            config.write_text(yaml.safe_dump({
                "kubernetes": {"kubeconfig": kubeconfig},
                "upstreams": [{"name": "k8s_cluster", "service": "kong/kong-gateway-proxy",
                               "port": 80}],
                "nginx": {"output": str(nginx.output),
                          "test_command": list(nginx.test_command),
                          "reload_command": list(nginx.reload_command)},
                "log": {"format": "json"},
            }))
            first = timed_once(config)
            second = timed_once(config)
        finally:
            nginx.stop()
            sim.terminate()
            sim.wait()
    print(f"lbsync once, {args.nodes} nodes, Python {sys.version.split()[0]}:")
    print(f"  first run  (write, nginx -t, reload): wall {first['wall']}, "
          f"peak RSS {first['rss_mb']} MB  [{first['output']}]")
    print(f"  second run (unchanged):               wall {second['wall']}, "
          f"peak RSS {second['rss_mb']} MB  [{second['output']}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
