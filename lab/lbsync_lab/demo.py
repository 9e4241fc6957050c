"""`lbsync demo`: the whole job on one machine, on loopback, with nothing to configure.

Starts the lab (the Kubernetes API emulator with a few nodes, stand-in nodes answering on free
loopback addresses at the node port, as Kong would, and a private nginx serving `worlds.com`),
then `lbsync run` as its own process, as systemd would. On a timer it takes nodes down and
brings them back, so you can watch lbsync react and see how long each change took; or drive
the cluster yourself with kubectl and the printed kubeconfig. Ctrl-C cleans everything up.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lbsync_lab.nginx import NGINX, NginxStartError, free_port
from lbsync_lab.rig import Lab

EXIT_FAILED = 1
EXIT_USAGE = 2


class DemoError(Exception):
    """A one-line reason the demo cannot run; `code` is the exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lbsync demo", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=int, default=4, help="number of nodes (default 4, max 30)")
    p.add_argument("--port", type=int, default=8080,
                   help="nginx listens on 127.0.0.1:PORT (default 8080; 0 picks a free one)")
    p.add_argument("--interval", type=float, default=6.0,
                   help="seconds between node changes (default 6; 0: only your own changes)")
    p.add_argument("--duration", type=float, default=0,
                   help="stop after this many seconds (default: run until Ctrl-C)")
    return p


class Demo:
    def __init__(self, workdir: Path, nodes: int, port: int) -> None:
        self.workdir = workdir
        self.count = nodes
        self.lab = Lab(workdir, port=port or free_port(), token="demo-token")
        self.http_port = free_port()
        self.ready: dict[str, bool] = {}
        self.events: list[str] = []
        self.served: Counter[str] = Counter()
        self.lbsync: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "lbsync.log"

    @property
    def nginx(self) -> Any:
        return self.lab.nginx

    # --- start and stop ------------------------------------------------------------------

    def start(self) -> None:
        self.lab.api.start()
        try:
            self.nginx.start()
        except NginxStartError as exc:
            raise DemoError(f"nginx could not start on 127.0.0.1:{self.nginx.port} ({exc}); "
                            "try --port 0") from None
        before = self.nginx.worker_pids()
        for i in range(1, self.count + 1):
            self.ready[self.lab.add_node(i)] = True
        self.lab.add_cluster(0)  # the proxy Service
        self._start_lbsync()
        self._wait_first_sync(before)

    def _start_lbsync(self) -> None:
        config = self.lab.write_config(
            http={"listen": f"127.0.0.1:{self.http_port}"}, log={"level": "warning"},
            nodes={"allow_loopback": True})
        log = self.log_path.open("wb")
        self.lbsync = subprocess.Popen(
            [sys.executable, "-m", "lbsync", "-c", str(config), "run"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log)

    def _wait_first_sync(self, workers: set[int], timeout: float = 20.0) -> None:
        """Wait until nginx runs the first real upstream: no request is sent before."""
        start = time.monotonic()
        want = {self.lab.hp(i) for i in range(1, self.count + 1)}
        while time.monotonic() - start < timeout:
            self._check_alive()
            if self.nginx.servers() == want:
                self.nginx.wait_reloaded(workers, timeout=timeout)
                took = time.monotonic() - start
                self.event(f"first sync: {len(want)} servers in nginx {took:.2f} s after start")
                return
            time.sleep(0.01)
        raise DemoError(f"lbsync did not write the first upstream within {timeout:g} s; "
                        f"see {self.log_path}")

    def _check_alive(self) -> None:
        if self.lbsync is not None and self.lbsync.poll() is not None:
            tail = self.log_path.read_text(errors="replace").strip().splitlines()[-1:]
            raise DemoError(f"lbsync run exited with {self.lbsync.returncode}: "
                            f"{tail[0] if tail else 'no output'}")

    def stop(self) -> None:
        if self.lbsync is not None and self.lbsync.poll() is None:
            self.lbsync.send_signal(signal.SIGTERM)
            try:
                self.lbsync.wait(10)
            except subprocess.TimeoutExpired:
                self.lbsync.kill()
                self.lbsync.wait()
        self.lab.stop()

    # --- changes -------------------------------------------------------------------------

    def event(self, text: str) -> None:
        self.events.append(f"{time.strftime('%H:%M:%S')} {text}")

    def flip(self) -> str:
        """Take a random node down (NotReady), or bring one back; keep at least one up."""
        up = [n for n, r in self.ready.items() if r]
        down = [n for n, r in self.ready.items() if not r]
        if down and (len(up) <= 1 or random.random() < 0.5):
            name, ready = random.choice(down), True
        else:
            name, ready = random.choice(up), False
        self.lab.set_ready(int(name.split("-")[1]), ready)
        self.ready[name] = ready
        return name

    def wait_applied(self, name: str, timeout: float = 10.0) -> float | None:
        """Seconds until nginx's file matches the change to `name` (None on timeout); then
        waits for lbsync's pass to finish, so that the screen shows one consistent state."""
        hostport = self.lab.hp(int(name.split("-")[1]))
        start = time.monotonic()
        took = None
        while time.monotonic() - start < timeout:
            if took is None and (hostport in self.nginx.servers()) is self.ready[name]:
                took = time.monotonic() - start
            if took is not None and self._verdict(name) is self.ready[name]:
                return took
            time.sleep(0.005)
        return took

    def _verdict(self, name: str) -> bool | None:
        for node in self.status().get("nodes", []):
            if node.get("name") == name:
                return bool(node.get("eligible"))
        return None

    def change(self) -> str:
        name = self.flip()
        took = self.wait_applied(name)
        verb = "back in" if self.ready[name] else "taken out of"
        what = f"{name} {'Ready' if self.ready[name] else 'NotReady'}: {verb} nginx"
        text = (f"{what} in {took * 1000:.0f} ms" if took is not None
                else f"{what}: not applied within 10 s")
        self.event(text)
        return text

    # --- traffic and the screen ----------------------------------------------------------

    def probe(self, requests: int = 8) -> None:
        """Send a few requests through nginx, as a user would, and count who answered."""
        for _ in range(requests):
            req = urllib.request.Request(f"http://127.0.0.1:{self.nginx.port}/world1",
                                         headers={"Host": "worlds.com"})
            try:
                with urllib.request.urlopen(req, timeout=2) as resp:
                    self.served[resp.read().decode().split()[0]] += 1
            except (urllib.error.URLError, OSError):
                self.served["(error)"] += 1

    def status(self) -> dict[str, Any]:
        """lbsync's own view, from its /status endpoint."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/status",
                                        timeout=2) as resp:
                got = json.loads(resp.read())
                return got if isinstance(got, dict) else {}
        except (urllib.error.URLError, OSError, ValueError):
            return {}

    def screen(self) -> str:
        servers = self.nginx.servers()
        nodes = {n.get("name"): n for n in self.status().get("nodes", [])}
        api = self.lab.api
        lines = [
            "lbsync demo: a Kubernetes API emulator, stand-in nodes on loopback, a private "
            "nginx, and `lbsync run`",
            "",
            f"  try:     curl -H 'Host: worlds.com' http://127.0.0.1:{self.nginx.port}/world1",
            f"  status:  curl http://127.0.0.1:{self.http_port}/status   "
            f"metrics: curl http://127.0.0.1:{self.http_port}/metrics",
            f"  kubectl: export KUBECONFIG={api.kubeconfig_path}",
            "           kubectl get nodes; kubectl cordon node-1; kubectl delete node node-2",
            f"  file:    {self.nginx.output}",
            "",
            f"  {'NODE':<8} {'ADDRESS':<18} {'IN UPSTREAM':<12} {'LBSYNC SAYS':<20} "
            "REQUESTS SINCE LAST CHANGE",
        ]
        for name in sorted(set(self.ready) | set(nodes), key=_node_order):
            verdict = nodes.get(name, {})
            hostport = self.lab.hp(int(name.split("-")[1])) if name.startswith("node-") else "?"
            says = verdict.get("reason", "deleted") + (
                f" ({verdict['detail']})" if verdict.get("detail") else "")
            lines.append(f"  {name:<8} {hostport.rsplit(':', 1)[0]:<18} "
                         f"{'yes' if hostport in servers else '-':<12} {says[:20]:<20} "
                         f"{self.served[name]}")
        if self.served["(error)"]:
            lines.append(f"  errors through nginx: {self.served['(error)']}")
        lines += ["", "  recent changes:"] + [f"    {e}" for e in self.events[-6:]]
        lines += ["", "  Ctrl-C stops the demo and cleans up."]
        return "\n".join(lines)


def _node_order(name: str) -> tuple[int, str]:
    tail = name.rsplit("-", 1)[-1]
    return (int(tail) if tail.isdigit() else 10**9, name)


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def check(args: argparse.Namespace) -> None:
    if shutil.which("nginx") is None and not os.path.exists(NGINX):
        raise DemoError("nginx is not installed (./scripts/demo installs it)")
    if not 1 <= args.nodes <= 30:
        raise DemoError("--nodes must be 1..30", EXIT_USAGE)
    if args.interval < 0 or args.duration < 0:
        raise DemoError("--interval and --duration must not be negative", EXIT_USAGE)
    if args.port and not _port_free(args.port):
        raise DemoError(f"port {args.port} on 127.0.0.1 is taken; pick another with --port, "
                        "or --port 0 for any free one", EXIT_USAGE)


def run(demo: Demo, args: argparse.Namespace, tty: bool) -> None:
    started = time.monotonic()
    next_change = time.monotonic() + args.interval if args.interval else float("inf")
    if not tty:
        print(demo.screen(), flush=True)
    while not args.duration or time.monotonic() - started < args.duration:
        demo._check_alive()
        demo.probe()
        if tty:
            print("\x1b[H\x1b[2J" + demo.screen(), flush=True)
        if time.monotonic() >= next_change:
            traffic = ", ".join(f"{n} {c}" for n, c in sorted(demo.served.items()))
            demo.change()
            demo.served.clear()
            if not tty:
                # A log, not a screen: every change, what served before it, and the new table.
                print(f"\n{demo.events[-1]}  (requests served before it: {traffic or 'none'})",
                      flush=True)
                print(demo.screen(), flush=True)
            next_change = time.monotonic() + args.interval
        time.sleep(1.0)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    tty = sys.stdout.isatty()
    try:
        check(args)
        with tempfile.TemporaryDirectory(prefix="lbsync-demo-") as tmp:
            demo = Demo(Path(tmp), args.nodes, args.port)
            try:
                demo.start()
                run(demo, args, tty)
            except KeyboardInterrupt:
                pass
            finally:
                with contextlib.suppress(Exception):
                    demo.stop()
    except DemoError as exc:
        print(f"lbsync demo: error: {exc}", file=sys.stderr)
        return exc.code
    print(f"\nlbsync demo: stopped; everything it started is gone ({tmp} removed).")
    return 0
