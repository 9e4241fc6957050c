"""End-to-end check of the installed package: /usr/bin/lbsync once, on Debian's python3 and
Debian's libraries, against the API emulator (HTTPS) and a private nginx with stand-in nodes.

The lab lays nginx out as on a gateway: lbsync writes its staged servers file, its test
command is the installed publisher (`python3 -m lbsync.publish`, what root's
lbsync-nginx-test.service runs), which checks the lines and copies them into the live
directory nginx includes, then `nginx -t`; the reload is confirmed by new workers.

Run by packaging/test-deb.sh as `cd / && /usr/bin/python3 /path/to/e2e-once.py`, so that
`lbsync` is imported from the installed package, not from the source tree.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from lbsync_lab.nginx import servers_in
from lbsync_lab.rig import Lab

import lbsync


def main() -> int:
    where = Path(lbsync.__file__).resolve()
    assert str(where).startswith("/usr/lib/python3/dist-packages/"), where
    with tempfile.TemporaryDirectory() as tmp, Lab(Path(tmp)) as lab:
        nginx = lab.nginx
        assert nginx is not None
        # The lab's publisher runs as `sys.executable -m lbsync.publish` from /: the
        # installed module on Debian's python3.
        assert nginx.test_command[:3] == (sys.executable, "-m", "lbsync.publish"), \
            nginx.test_command
        lab.add_cluster(3)
        lab.set_ready(3, False)
        config = lab.write_config(log={})
        workers = nginx.worker_pids()
        run = subprocess.run(["/usr/bin/lbsync", "-c", str(config), "once"],
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        assert run.stdout == "k8s_cluster: 2 nodes (+2 -0), reloaded\n", run.stdout
        want = {lab.hp(1), lab.hp(2)}
        assert servers_in(nginx.staged_output.read_text()) == want, "staged file"
        assert servers_in(nginx.output.read_text()) == want, "not published to the live file"
        nginx.wait_reloaded(workers)
        served = set()
        for _ in range(4):
            with urllib.request.urlopen(f"http://127.0.0.1:{nginx.port}/", timeout=5) as r:
                served.add(r.read().decode().split()[0])
        assert served == {"node-1", "node-2"}, served
    print(f"ok: /usr/bin/lbsync once ({where.parent}) staged 2 servers, the publisher checked "
          f"and published them, nginx reloaded, traffic reached node-1 and node-2 only")
    return 0


if __name__ == "__main__":
    sys.exit(main())
