"""The daemon's commands: `lbsync run`, `lbsync status`, and `once` asking a running daemon."""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from lbsync import config
from lbsync.errors import EXIT_OK, EXIT_SYNC_FAILED, SyncError


def register(sub: Any) -> None:
    from lbsync.cli import add_command

    add_command(sub, "run", "run the daemon: watch the cluster and keep NGINX in step", cmd_run,
            "Watch Nodes and Services and keep the NGINX upstream file in step, with health, "
            "metrics and status on http.listen. Stops cleanly on SIGTERM/SIGINT; re-reads the "
            "configuration on SIGHUP. Meant for systemd (Type=notify).")
    p = add_command(sub, "status", "show upstreams, servers and why each node is in or out",
                cmd_status,
                "Ask the running daemon for its status; without a daemon, compute it from the "
                "cluster now (read-only).")
    p.add_argument("-o", "--output", choices=("table", "json"), default="table",
                   help="output format (default: table)")


def _url(cfg: config.Config, path: str) -> str:
    host = cfg.http.host
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{cfg.http.port}{path}"


def cmd_run(args: argparse.Namespace) -> int:
    from lbsync.cli import load_config
    from lbsync.daemon import run_daemon

    cfg = load_config(args)
    return run_daemon(cfg, config.config_path(args.config))


def trigger_sync(cfg: config.Config) -> int:
    """`lbsync once` while a daemon holds the lock: ask it to sync now and print its answer."""
    request = urllib.request.Request(_url(cfg, "/sync"), method="POST", data=b"")
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            body = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            body = json.loads(exc.read())
        except ValueError:
            raise SyncError(f"the running daemon answered {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise SyncError(
            f"{cfg.nginx.output} is locked by another lbsync process, and no daemon answers "
            f"on {cfg.http.listen} ({getattr(exc, 'reason', exc)})"
        ) from None
    if not body.get("ok"):
        raise SyncError(f"the running daemon's sync failed: {body.get('error')}")
    print("(synced by the running daemon)", file=sys.stderr)
    for line in body.get("lines", []):
        print(line)
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from lbsync.cli import load_config

    cfg = load_config(args)
    try:
        with urllib.request.urlopen(_url(cfg, "/status"), timeout=5) as resp:
            status = json.loads(resp.read())
        source = f"daemon on {cfg.http.listen}"
    except (urllib.error.URLError, OSError, ValueError):
        status = _status_from_cluster(cfg)
        source = "no daemon running: computed from the cluster now"
    if args.output == "json":
        print(json.dumps(status, indent=1))
    else:
        print(format_status(status, source))
    return EXIT_OK if status.get("ready", True) else EXIT_SYNC_FAILED


def _status_from_cluster(cfg: config.Config) -> dict[str, Any]:
    from lbsync.desired import node_verdict, plan
    from lbsync.sync import read_cluster

    snapshot = read_cluster(cfg)
    nodes = [node_verdict(snapshot.nodes[n], cfg.nodes).as_dict() for n in sorted(snapshot.nodes)]
    try:
        decided = plan(snapshot, cfg)
    except SyncError as exc:
        return {"ready": False, "reason": str(exc), "upstreams": [], "nodes": nodes}
    return {"ready": True, "reason": "ok", "upstreams": [u.as_dict() for u in decided.upstreams],
            "nodes": nodes}


def _when(unix: float) -> str:
    ago = max(0.0, time.time() - unix)
    return f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(unix))} ({ago:.0f}s ago)"


def format_status(status: dict[str, Any], source: str) -> str:
    out = [f"lbsync status ({source})",
           f"ready: {'yes' if status.get('ready') else 'NO'} ({status.get('reason')})"]
    last = status.get("last_sync")
    if last:
        out.append(f"last sync: {_when(last['at'])}, {last['result']} in "
                   f"{last['duration'] * 1000:.0f} ms")
    if "last_reload" in status:
        reload_at = status["last_reload"]
        out.append(f"last reload: {_when(reload_at) if reload_at else 'none since start'}")
    if status.get("last_error"):
        out.append(f"last error: {status['last_error']}")
    for up in status.get("upstreams", []):
        out.append(f"\nupstream {up['name']} ({up['source']} -> node port {up['port']}), "
                   f"{len(up['servers'])} servers:")
        out.extend(f"  {s['address']:<28} {s['node']}" for s in up["servers"])
    nodes = status.get("nodes", [])
    if nodes:
        width = max(len(n["name"]) for n in nodes)
        out.append(f"\n{'NODE':<{width}}  {'IN':<3}  {'ADDRESS':<24}  WHY")
        for n in nodes:
            why = n["reason"] + (f" ({n['detail']})" if n.get("detail") else "")
            out.append(f"{n['name']:<{width}}  {'yes' if n['eligible'] else 'no':<3}  "
                       f"{n.get('address') or '-':<24}  {why}")
    return "\n".join(out)
