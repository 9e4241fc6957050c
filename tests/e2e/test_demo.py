"""`lbsync demo` starts everything, reacts to node changes, and cleans up after itself."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from lbsync_lab.rig import child_env

ROOT = Path(__file__).resolve().parents[2]


def processes_mentioning(text: str) -> set[int]:
    """Processes whose command line names `text` (this demo's own work directory: other
    demos may run on the machine at the same time)."""
    pids = set()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if text.encode() in cmd:
                pids.add(int(proc.name))
    return pids


def test_demo_runs_reacts_and_cleans_up() -> None:
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
    # No request went out before nginx ran the first real upstream.
    assert "errors through nginx" not in out, out
    # Not a terminal: the node table is printed again after every change, and it tells the
    # truth about which node is out.
    logged = re.findall(r"^\d\d:\d\d:\d\d (node-\d) (NotReady|Ready): ", out, re.M)
    tables = out.split("\n  NODE ")[1:]
    assert len(logged) >= 2 and len(tables) == len(logged) + 1, out
    for (name, state), table in zip(logged, tables[1:], strict=True):
        row = next(line for line in table.splitlines() if line.strip().startswith(name + " "))
        assert ("not-ready" in row) is (state == "NotReady"), (name, state, row)
        assert (" yes " in row) is (state == "Ready"), (name, state, row)
    # Free loopback addresses, never the fixed 127.0.10.x another run may hold.
    assert "127.0.10." not in out
    assert re.search(r"kubectl: export KUBECONFIG=/tmp/lbsync-demo-\S+/apiserver/kubeconfig", out)
    workdirs = re.findall(r"(/tmp/lbsync-demo-[^/\s]+)", out)
    assert workdirs and not Path(workdirs[0]).exists()
    # nothing it started is left: nginx, lbsync run, stand-ins all named its directory
    assert processes_mentioning(workdirs[0]) == set()
