"""The daemon's commands: `lbsync run`, `lbsync status`, and `once` asking a running daemon.

`status` only ever shows the daemon of *this* configuration: the daemon's answer carries an
identity (its output file and cluster), compared with the one this config describes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from lbsync import config, files
from lbsync.cliargs import add_command, load_config
from lbsync.errors import EXIT_FAILED, EXIT_OK, SyncError
from lbsync.text import plural, printable


def register(sub: Any) -> None:
    add_command(sub, "run", "run the daemon: watch the cluster and keep NGINX in step", cmd_run,
                "Watch Nodes and Services and keep the NGINX upstream file in step, with "
                "health, metrics and status on http.listen. Stops cleanly on SIGTERM/SIGINT; "
                "re-reads the configuration on SIGHUP. Meant for systemd (Type=notify).")
    p = add_command(sub, "status", "show upstreams, servers and why each node is in or out",
                    cmd_status,
                    "Ask this configuration's running daemon for its status; without one, "
                    "compute the plan from the cluster now (read-only).")
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
    from lbsync.daemon import Daemon
    from lbsync.httpapi import HttpApi

    cfg = load_config(args)
    daemon = Daemon(cfg, config_path=config.config_path(args.config))
    # The lock first: a second daemon must say "locked", not "address in use".
    with files.locked(cfg.nginx.servers_dir, cfg.nginx.state_dir):
        try:
            http = HttpApi(daemon, cfg.http.host, cfg.http.port)
        except OSError as exc:
            raise SyncError(f"http.listen: cannot listen on {cfg.http.listen}: "
                            f"{exc.strerror}") from None
        http.start()
        try:
            return daemon.run(lock=False)
        finally:
            http.stop()


def _get(cfg: config.Config, path: str, *, method: str = "GET", timeout: float = 5
         ) -> dict[str, Any]:
    request = urllib.request.Request(_url(cfg, path), method=method,
                                     data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            body = json.loads(resp.read(1 << 20))
    except urllib.error.HTTPError as exc:
        try:
            body = json.loads(exc.read(1 << 20))
        except ValueError:
            raise SyncError(f"the daemon on {cfg.http.listen} answered {exc.code}") from None
    if not isinstance(body, dict):
        raise ValueError("not a JSON object")
    return body


def trigger_sync(cfg: config.Config) -> int:
    """`lbsync once` while a daemon holds the lock: ask it to sync now and print its answer."""
    try:
        body = _get(cfg, "/sync", method="POST", timeout=60)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise SyncError(
            f"{cfg.nginx.servers_dir} is locked by another lbsync process, and no daemon answers "
            f"on {cfg.http.listen} ({getattr(exc, 'reason', exc)})"
        ) from None
    if not body.get("ok"):
        raise SyncError(f"the running daemon's sync failed: {printable(body.get('error'))}")
    print("(synced by the running daemon)", file=sys.stderr)
    for line in body.get("lines", []):
        print(printable(line))
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    try:
        status = _get(cfg, "/status")
    except (urllib.error.URLError, OSError, ValueError, SyncError):
        status = None
    if status is not None and status.get("identity") == cfg.identity:
        source = f"daemon on {cfg.http.listen}"
        code = EXIT_OK if status.get("ready") else EXIT_FAILED
    else:
        if status is not None:
            source = (f"the daemon on {cfg.http.listen} runs another configuration (servers "
                      f"{printable(status.get('servers_dir'))}); computed from the cluster now")
        else:
            source = f"no daemon answers on {cfg.http.listen}: computed from the cluster now"
        status = _status_from_cluster(cfg)
        code = EXIT_OK if status["plan_ok"] else EXIT_FAILED
    if args.output == "json":
        print(json.dumps({**status, "source": source}, indent=1))
    else:
        print(format_status(status, source))
    return code


def _status_from_cluster(cfg: config.Config) -> dict[str, Any]:
    from lbsync.desired import node_verdict, plan
    from lbsync.sync import probed, read_cluster

    snapshot = read_cluster(cfg)
    nodes = [node_verdict(snapshot.nodes[n], cfg.nodes).as_dict() for n in sorted(snapshot.nodes)]
    try:
        decided = plan(snapshot, cfg, probed(snapshot, cfg))
    except SyncError as exc:
        return {"daemon": False, "plan_ok": False, "reason": str(exc), "upstreams": [],
                "nodes": nodes}
    return {"daemon": False, "plan_ok": True, "reason": "ok",
            "upstreams": [u.as_dict() for u in decided.upstreams], "nodes": nodes}


def _when(unix: float) -> str:
    ago = max(0.0, time.time() - unix)
    return f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(unix))} ({ago:.0f}s ago)"


def format_status(status: dict[str, Any], source: str) -> str:
    out = [f"lbsync status ({source})"]
    if status.get("daemon") is False:
        verdict = "ok" if status.get("plan_ok") else "FAILS"
        out.append(f"plan: {verdict} ({printable(status.get('reason'))})")
    else:
        out.append(f"ready: {'yes' if status.get('ready') else 'NO'} "
                   f"({printable(status.get('reason'))})")
    last = status.get("last_sync")
    if last:
        out.append(f"last sync: {_when(last['at'])}, {last['result']} in "
                   f"{last['duration'] * 1000:.0f} ms")
    if "last_reload" in status:
        reload_at = status["last_reload"]
        out.append(f"last reload: {_when(reload_at) if reload_at else 'none since start'}")
    if status.get("last_error"):
        out.append(f"last error: {printable(status['last_error'])}")
    for held in status.get("held_back", []):
        out.append(f"held back: {plural(len(held['servers']), 'removal')} from "
                   f"{held['upstream']}: {', '.join(held['servers'][:10])}")
    probes = {p["target"]: p for p in status.get("probes", [])}
    for up in status.get("upstreams", []):
        out.append(f"\nupstream {up['name']} ({up['source']} -> node port {up['port']}), "
                   f"{plural(len(up['servers']), 'server')}:")
        out.extend(f"  {s['address']:<28} {printable(s['node'])}" for s in up["servers"])
        for s in up.get("down", []):
            out.append(f"  {s['address']:<28} {printable(s['node'])}  OUT: probe failing")
        if up.get("note"):
            out.append(f"  note: {printable(up['note'])}")
    if probes:
        down = [p for p in probes.values() if not p.get("up")]
        out.append(f"\nprobes: {len(probes) - len(down)} up, {len(down)} down")
        for p in down[:50]:
            since = f", since {_when(p['since'])}" if p.get("since") else ""
            out.append(f"  {printable(p['target'])}: {printable(p.get('last'))}{since}")
    out.extend(_format_loadbalancer(status.get("loadbalancer")))
    nodes = status.get("nodes", [])
    if nodes:
        names = [printable(n["name"], 64) for n in nodes]
        width = max(len(n) for n in names)
        out.append(f"\n{'NODE':<{width}}  {'IN':<3}  {'ADDRESS':<24}  WHY")
        for name, n in zip(names, nodes, strict=True):
            why = printable(n["reason"]) + (f" ({printable(n['detail'])})"
                                            if n.get("detail") else "")
            out.append(f"{name:<{width}}  {'yes' if n['eligible'] else 'no':<3}  "
                       f"{printable(n.get('address') or '-', 40):<24}  {why}")
    return "\n".join(out)


def _format_loadbalancer(lb: dict[str, Any] | None) -> list[str]:
    if not lb:
        return []
    role = ("writes Service status" if lb.get("leader")
            else "standby (another gateway writes status)")
    out = [f"\nloadbalancer: {plural(len(lb.get('listeners', [])), 'listener')}, {role}"]
    for li in lb.get("listeners", []):
        out.append(f"  {li['port']}/{li['protocol']:<4} {printable(li['service'])} -> node port "
                   f"{li['node_port']}, {plural(len(li['servers']), 'server')}")
    for p in lb.get("problems", []):
        out.append(f"  NOT SERVED {printable(p['service'])}: {printable(p['reason'])}: "
                   f"{printable(p['message'])}")
    return out
