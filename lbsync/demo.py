"""`lbsync demo`: the whole job on one machine, on loopback, with nothing to configure.

Starts the built-in Kubernetes API emulator with a few nodes, stand-in nodes answering on
127.0.10.x at the node port (as Kong would), a private nginx serving `worlds.com`, and the
lbsync daemon itself. Then, on a timer, takes nodes down and up, so you can watch lbsync
react and see how long each change took. Ctrl-C cleans everything up.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import shutil
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry

from lbsync import config as config_mod
from lbsync import logs
from lbsync.errors import EXIT_OK, SyncError

NODE_PORT = 32001


def register(sub: Any) -> None:
    p = sub.add_parser(
        "demo", help="run lbsync on a built-in demo cluster, on this machine's loopback",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=int, default=4, help="number of nodes (default 4, max 50)")
    p.add_argument("--port", type=int, default=8080,
                   help="nginx listens on 127.0.0.1:PORT (default 8080; 0 picks a free one)")
    p.add_argument("--interval", type=float, default=6.0,
                   help="seconds between node changes (default 6)")
    p.add_argument("--duration", type=float, default=0,
                   help="stop after this many seconds (default: run until Ctrl-C)")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
    p.set_defaults(func=cmd_demo)


class Demo:
    def __init__(self, workdir: Path, nodes: int, port: int) -> None:
        from lbsync.lab.nginx import PrivateNginx, free_port
        from lbsync.lab.nodes import StandinPool
        from lbsync.sim import ApiServer

        self.workdir = workdir
        self.count = nodes
        self.api = ApiServer(workdir=workdir / "apiserver", token="demo-token")
        self.pool = StandinPool()
        self.nginx = PrivateNginx(workdir / "nginx", port=port or free_port())
        self.http_port = free_port()
        self.ready: dict[str, bool] = {}
        self.events: list[str] = []
        self.served: Counter[str] = Counter()
        self.daemon: Any = None
        self._http: Any = None
        self._thread: threading.Thread | None = None

    def address(self, i: int) -> str:
        return f"127.0.10.{i}"

    def start(self) -> None:
        from lbsync.sim import objects

        self.api.start()
        for i in range(1, self.count + 1):
            name = f"node-{i}"
            try:
                self.pool.add(name, self.address(i), NODE_PORT)
            except OSError as exc:
                raise SyncError(f"demo: cannot listen on {self.address(i)}:{NODE_PORT} "
                                f"({exc.strerror}); is another demo running?") from None
            self.api.put(objects.node(name, self.address(i)))
            self.ready[name] = True
        self.api.put(objects.namespace("kong"))
        self.api.put(objects.service("kong", "kong-gateway-proxy"))
        try:
            self.nginx.start()
        except (OSError, RuntimeError) as exc:
            raise SyncError(f"demo: nginx could not start on 127.0.0.1:{self.nginx.port} "
                            f"({exc}); try --port 0") from None
        self._start_daemon()

    def _start_daemon(self) -> None:
        from lbsync.daemon import Daemon
        from lbsync.httpapi import HttpApi

        path = self.workdir / "config.yaml"
        path.write_text(yaml.safe_dump({
            "kubernetes": {"kubeconfig": str(self.api.kubeconfig_path)},
            "upstreams": [{"name": "k8s_cluster", "service": "kong/kong-gateway-proxy",
                           "port": 80}],
            "nginx": {"output": str(self.nginx.output),
                      "test_command": list(self.nginx.test_command),
                      "reload_command": list(self.nginx.reload_command)},
            "http": {"listen": f"127.0.0.1:{self.http_port}"},
            "log": {"level": "warning"},
        }))
        cfg = config_mod.load(path)
        self.daemon = Daemon(cfg, config_path=path, registry=CollectorRegistry())
        self._http = HttpApi(self.daemon, cfg.http.host, cfg.http.port)
        self._http.start()
        self._thread = threading.Thread(target=self.daemon.run,
                                        kwargs={"install_signals": False}, daemon=True)
        self._thread.start()

    def flip(self) -> str:
        """Take a random node down (NotReady), or bring one back; keep at least one up."""
        from lbsync.sim import objects

        up = [n for n, r in self.ready.items() if r]
        down = [n for n, r in self.ready.items() if not r]
        if down and (len(up) <= 1 or random.random() < 0.5):
            name, ready = random.choice(down), True
        else:
            name, ready = random.choice(up), False
        index = int(name.split("-")[1])
        self.api.put(objects.node(name, self.address(index), ready=ready))
        self.ready[name] = ready
        return name

    def servers(self) -> set[str]:
        return self.nginx.servers()

    def wait_applied(self, name: str, timeout: float = 10.0) -> float | None:
        """Seconds until nginx's file matches the change to `name` (None on timeout)."""
        index = int(name.split("-")[1])
        hostport = f"{self.address(index)}:{NODE_PORT}"
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if (hostport in self.servers()) is self.ready[name]:
                return time.monotonic() - start
            time.sleep(0.005)
        return None

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

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.request_stop()
        if self._thread is not None:
            self._thread.join(5)
        if self._http is not None:
            self._http.stop()
        self.nginx.stop()
        self.pool.stop_all()
        self.api.stop()

    def screen(self) -> str:
        servers = self.servers()
        lines = [
            "lbsync demo: a Kubernetes API emulator, stand-in nodes on 127.0.10.x, a private "
            "nginx, and lbsync run",
            "",
            f"  try:    curl -H 'Host: worlds.com' http://127.0.0.1:{self.nginx.port}/world1",
            f"  status: curl http://127.0.0.1:{self.http_port}/status   "
            f"metrics: curl http://127.0.0.1:{self.http_port}/metrics",
            f"  file:   {self.nginx.output}",
            "",
            f"  {'NODE':<8} {'ADDRESS':<16} {'READY':<7} {'IN UPSTREAM':<12} "
            "REQUESTS SERVED SINCE LAST CHANGE",
        ]
        for name, ready in self.ready.items():
            index = int(name.split("-")[1])
            hostport = f"{self.address(index)}:{NODE_PORT}"
            lines.append(f"  {name:<8} {self.address(index):<16} {'yes' if ready else 'NO':<7} "
                         f"{'yes' if hostport in servers else '-':<12} {self.served[name]}")
        if self.served["(error)"]:
            lines.append(f"  errors through nginx: {self.served['(error)']}")
        lines += ["", "  recent changes:"] + [f"    {e}" for e in self.events[-6:]]
        lines += ["", "  Ctrl-C stops the demo and cleans up."]
        return "\n".join(lines)


def cmd_demo(args: argparse.Namespace) -> int:
    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
        raise SyncError("demo: nginx is not installed (sudo apt-get install nginx, or make demo)")
    if not 1 <= args.nodes <= 50:
        raise SyncError("demo: --nodes must be 1..50")
    tty = sys.stdout.isatty()
    # Daemon warnings go to stderr, plain, so they do not garble the live table.
    logs.setup(config_mod.LogConfig(format="console", level="warning"))
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
    print("\nlbsync demo: stopped; everything it started is gone.")
    return EXIT_OK


def run(demo: Demo, args: argparse.Namespace, tty: bool) -> None:
    started = time.monotonic()
    first = demo.wait_applied("node-1", timeout=20)
    demo.events.append(f"{time.strftime('%H:%M:%S')} first sync: {len(demo.servers())} servers "
                       f"in nginx {first or 0:.2f} s after start")
    if not tty:
        print(demo.screen(), flush=True)
    next_flip = time.monotonic() + args.interval
    while not args.duration or time.monotonic() - started < args.duration:
        demo.probe()
        if tty:
            print("\x1b[H\x1b[2J" + demo.screen(), flush=True)
        if time.monotonic() >= next_flip:
            name = demo.flip()
            took = demo.wait_applied(name)
            verb = "back in" if demo.ready[name] else "taken out of"
            what = f"{name} {'Ready' if demo.ready[name] else 'NotReady'}: {verb} nginx"
            event = (f"{time.strftime('%H:%M:%S')} {what} in {took * 1000:.0f} ms"
                     if took is not None else f"{what}: not applied within 10 s")
            demo.events.append(event)
            if not tty:
                traffic = ", ".join(f"{n} {c}" for n, c in sorted(demo.served.items()))
                print(f"{event}  (requests served before it: {traffic})", flush=True)
            demo.served.clear()
            next_flip = time.monotonic() + args.interval
        time.sleep(1.0)
