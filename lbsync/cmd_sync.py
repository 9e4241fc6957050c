"""`lbsync once` and `lbsync render`: one read of the cluster, then write (or print)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from lbsync import files
from lbsync.cliargs import add_command, load_config
from lbsync.errors import EXIT_OK, Locked
from lbsync.sync import compute, load_template, probed, read_cluster, sync_pass


def register(sub: Any) -> None:
    p = add_command(
        sub, "once", "sync once: read the cluster, write, test and reload NGINX", cmd_once,
        "Read the cluster, write each upstream's servers file if it changed, publish and "
        "check them with the test command, reload NGINX, and print one line per upstream. If "
        "NGINX already runs these bytes, nothing is written and NGINX is not reloaded. If the "
        "test or the reload fails, the previous files are put back. With a daemon running, "
        "the daemon syncs.",
    )
    p.add_argument("--force-shrink", action="store_true",
                   help="apply a drop larger than nodes.max_shrink now (the daemon holds one "
                        "for nodes.shrink_confirm seconds; once has no memory to wait with)")
    add_command(
        sub, "render", "print the upstream file that `once` would write; change nothing",
        cmd_render,
        "Read the cluster and print the servers file of each upstream to stdout (with a "
        "==> PATH <== line before each when there are several). Touches no file and does "
        "not run nginx.",
    )


def cmd_once(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    template = load_template(cfg)
    try:
        with files.locked(cfg.nginx.servers_dir, cfg.nginx.state_dir):
            snapshot = read_cluster(cfg)
            result = sync_pass(snapshot, cfg, template, health=probed(snapshot, cfg),
                               shrink_confirmed=args.force_shrink)
    except Locked:
        # A running daemon holds the lock: it syncs for us instead of us racing it.
        from lbsync.cmd_daemon import trigger_sync  # only then: its HTTP client costs ~10 ms

        return trigger_sync(cfg)
    for line in result.lines():
        print(line)
    for held in result.held:
        print(f"lbsync: warning: {held.describe(cfg.nodes.max_shrink)}; run again with "
              "--force-shrink to apply it", file=sys.stderr)
    return EXIT_OK


def cmd_render(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    template = load_template(cfg)
    snapshot = read_cluster(cfg)
    _, texts = compute(snapshot, cfg, template, probed(snapshot, cfg))
    for path, text in texts.items():
        if len(texts) > 1:
            sys.stdout.write(f"==> {path} <==\n")
        sys.stdout.write(text)
    return EXIT_OK
