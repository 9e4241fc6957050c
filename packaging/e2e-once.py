"""End-to-end check of the installed package: /usr/bin/lbsync once, on Debian's python3 and
Debian's libraries, against the API emulator (HTTPS) and a private nginx with stand-in nodes.

Run by packaging/test-deb.sh as `cd / && /usr/bin/python3 /path/to/e2e-once.py`, so that
`lbsync` is imported from the installed package, not from the source tree.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from lbsync_lab.rig import Lab

import lbsync


def main() -> int:
    where = Path(lbsync.__file__).resolve()
    assert str(where).startswith("/usr/lib/python3/dist-packages/"), where
    with tempfile.TemporaryDirectory() as tmp, Lab(Path(tmp)) as lab:
        nginx = lab.nginx
        assert nginx is not None
        lab.add_cluster(3)
        lab.set_ready(3, False)
        config = lab.write_config(log={})
        workers = nginx.worker_pids()
        run = subprocess.run(["/usr/bin/lbsync", "-c", str(config), "once"],
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        assert run.stdout == "k8s_cluster: 2 nodes (+2 -0), reloaded\n", run.stdout
        nginx.wait_reloaded(workers)
        served = set()
        for _ in range(4):
            with urllib.request.urlopen(f"http://127.0.0.1:{nginx.port}/", timeout=5) as r:
                served.add(r.read().decode().split()[0])
        assert served == {"node-1", "node-2"}, served
    print(f"ok: /usr/bin/lbsync once ({where.parent}) wrote 2 servers, nginx reloaded, "
          f"traffic reached node-1 and node-2 only")
    return 0


if __name__ == "__main__":
    sys.exit(main())
