"""Benchmark `lbsync once` at scale: wall time and peak RSS (GNU time -v) of the real CLI.

Starts the API emulator (HTTPS) with N realistic Nodes in a separate process, a private nginx,
then runs `lbsync once` (first run: writes and reloads; second run: unchanged) under
/usr/bin/time -v. Measures and reports; asserts nothing about speed.

    python bench/once.py --nodes 5000
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from rig import ENV, ROOT, rig


def timed_once(config: Path) -> dict[str, str]:
    proc = subprocess.run(
        ["/usr/bin/time", "-v", sys.executable, "-m", "lbsync", "-c", str(config), "once"],
        capture_output=True, text=True, cwd=ROOT, env=ENV,
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
    with tempfile.TemporaryDirectory() as tmp, rig(Path(tmp), args.nodes) as r:
        first = timed_once(r.config)
        second = timed_once(r.config)
    print(f"lbsync once, {args.nodes} nodes, Python {sys.version.split()[0]}:")
    print(f"  first run  (write, nginx -t, reload): wall {first['wall']}, "
          f"peak RSS {first['rss_mb']} MB  [{first['output']}]")
    print(f"  second run (unchanged):               wall {second['wall']}, "
          f"peak RSS {second['rss_mb']} MB  [{second['output']}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
