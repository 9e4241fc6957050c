"""``python -m lbsync_lab.sim``: run a standalone emulator until SIGINT/SIGTERM.

It starts as an empty cluster (so that a real `helm install` into it meets no leftovers),
unless asked for nodes (`--nodes N`) or the demo's objects (`--demo-objects`: namespaces and
Kong's proxy Service). The stand-in controllers (:class:`lbsync_lab.controllers.
ControllerManager`: Deployments become available, token Secrets get tokens, owned objects
are collected) run with it unless `--no-controllers`.

This module owns the command line only.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
import time
from pathlib import Path

from lbsync_lab.controllers import ControllerManager
from lbsync_lab.sim import ApiServer, objects
from lbsync_lab.sim.server import WATCH_LIST_MODES


def add_nodes(api: ApiServer, nodes: int) -> None:
    width = max(2, len(str(nodes)))
    for i in range(nodes):
        api.put(objects.node(f"node-{i + 1:0{width}d}", objects.node_address(i, nodes)))


def add_demo_objects(api: ApiServer) -> None:
    """Namespaces and the Service kong/kong-gateway-proxy (nodePort 32001)."""
    for ns in ("default", "kube-system", "kong"):
        api.put(objects.namespace(ns))
    api.put(objects.service("kong", "kong-gateway-proxy",
                            labels={"app.kubernetes.io/name": "kong",
                                    "app.kubernetes.io/component": "app"}))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lbsync_lab.sim", description=__doc__)
    p.add_argument("--nodes", type=int, default=0, help="number of Nodes (default 0)")
    p.add_argument("--demo-objects", action="store_true",
                   help="also create namespaces and Service kong/kong-gateway-proxy")
    p.add_argument("--workdir", type=Path, required=True,
                   help="directory for kubeconfig, ca.crt and keys")
    p.add_argument("--port", type=int, default=0, help="port to listen on (default: any)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--token", default="secret", help="bearer token clients must send")
    p.add_argument("--no-tls", action="store_true", help="serve plain HTTP")
    p.add_argument("--bookmark-interval", type=float, default=60.0)
    p.add_argument("--watch-list", choices=WATCH_LIST_MODES, default="on",
                   help="serve watch-lists (sendInitialEvents) as kube-apiserver 1.35 does "
                   "(on), refuse them as 1.27-1.31 do with the WatchList gate off (off), or "
                   "ignore the parameters and send no initial-events-end bookmark (ignored)")
    p.add_argument("--no-controllers", action="store_true",
                   help="run no stand-in controllers (Deployments then never become ready)")
    p.add_argument("--stdin-control", action="store_true",
                   help="read fault commands from stdin, one a line: compact (forget "
                   "history: older resourceVersions get 410), drop-watches; each answered "
                   "with `ok COMMAND` on stdout")
    args = p.parse_args(argv)
    api = ApiServer(workdir=args.workdir, token=args.token, tls=not args.no_tls,
                    bookmark_interval=args.bookmark_interval, host=args.host, port=args.port,
                    watch_list=args.watch_list)
    add_nodes(api, args.nodes)
    if args.demo_objects:
        add_demo_objects(api)
    api.start()
    print(api.kubeconfig_path, flush=True)
    print(f"lbsync_lab.sim: serving {args.nodes} nodes at {api.url}", file=sys.stderr, flush=True)
    stop = threading.Event()

    def handle(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
    if args.stdin_control:
        threading.Thread(target=_control, args=(api,), daemon=True).start()
    with contextlib.ExitStack() as stack:
        if not args.no_controllers:
            stack.enter_context(ControllerManager(api))
        while not stop.is_set():
            time.sleep(0.2)
    api.stop()
    return 0


def _control(api: ApiServer) -> None:
    """Fault commands from another process (a benchmark): see --stdin-control."""
    actions = {"compact": api.compact, "drop-watches": api.faults.drop_watches}
    for line in sys.stdin:
        command = line.strip()
        if command in actions:
            actions[command]()
            print(f"ok {command}", flush=True)
        elif command:
            print(f"unknown {command}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
