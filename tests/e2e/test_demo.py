"""`lbsync demo` starts everything, reacts to node changes, and cleans up after itself."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from lbsync_lab.rig import child_env

ROOT = Path(__file__).resolve().parents[2]


def nginx_masters() -> set[int]:
    pids = set()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if b"nginx: master" in cmd and b"lbsync-demo-" in cmd:
                pids.add(int(proc.name))
    return pids


def test_demo_runs_reacts_and_cleans_up() -> None:
    before = nginx_masters()
    result = subprocess.run(
        [sys.executable, "-m", "lbsync", "demo", "--duration", "7", "--interval", "2",
         "--port", "0"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
        env=child_env(),
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert re.search(r"first sync: 4 servers in nginx [0-9.]+ s after start", out)
    assert re.search(r"curl -H 'Host: worlds.com' http://127.0.0.1:\d+/world1", out)
    changes = re.findall(r"node-\d (NotReady|Ready): (taken out of|back in) nginx in (\d+) ms",
                         out)
    assert len(changes) >= 2, out
    # Traffic went through nginx to the stand-in nodes.
    assert re.search(r"requests served before it: node-\d \d+", out)
    assert "everything it started is gone" in out
    assert nginx_masters() == before
    workdirs = re.findall(r"(/tmp/lbsync-demo-[^/\s]+)", out)
    assert workdirs and not Path(workdirs[0]).exists()
