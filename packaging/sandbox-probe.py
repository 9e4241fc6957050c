#!/usr/bin/python3
"""Probe lbsync.service's sandbox from the inside (used by packaging/test-sandbox.sh).

test-sandbox.sh runs this file as the ExecStart of the real lbsync.service (a
drop-in replaces only ExecStart), so it runs as user lbsync with every
sandboxing setting and limit of the unit, on Debian's python3 and the installed
lbsync package. It checks what the daemon needs (imports, config, its two
writable directories, the lock and record, root's publisher and reload through
polkit, the metrics listener, sd_notify, SIGHUP, SIGTERM) and what the sandbox
and root's side must refuse: any write where nginx reads (/etc/nginx/lbsync,
conf.d), a servers file with the review's cron attack, a loopback address or a
port outside the node port range (published by nothing, the live file
unchanged), systemctl verbs other than starting the two root units, and the
sight of root's nginx processes. The results go to /run/lbsync/probe.json
(nginx.state_dir); exit status 0 when every check passed.
"""

from __future__ import annotations

import errno
import json
import os
import pwd
import signal
import socket
import sys
import tempfile
import time
import traceback
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULT = Path("/run/lbsync/probe.json")
LIVE = Path("/etc/nginx/lbsync/k8s_cluster.servers")  # root's copy, included by nginx
GOOD = b"server 10.0.0.5:32001 max_fails=3 fail_timeout=10s;  # node-1\n" \
       b"server [fd00::6]:32001 max_fails=3 fail_timeout=10s;  # node-2\n"
# Issue 10, item 1: what a compromised lbsync wrote into the glob-included file under 0.1.
CRON = b"server 10.0.0.5:32001;\n}\nlog_format x escape=none '$http_x';\n" \
       b"server { listen 127.0.0.1:8081; access_log /etc/cron.d/lbsync-probe x; }\n" \
       b"upstream k8s_cluster_again {\n"
REFUSED = {  # the root side must refuse each; none passes nginx's own check wrongly
    "the cron attack": CRON,
    "a loopback server (the gateway's own services)": b"server 127.0.0.1:32001;\n",
    "a port outside 30000-32767 (sshd)": b"server 10.0.0.5:22;\n",
    "a unix socket": b"server unix:/run/containerd/containerd.sock;\n",
    "an include": b"include /etc/shadow;\n",
}
results: dict[str, Any] = {}


def step(name: str, fn: Callable[[], Any]) -> Any:
    try:
        value = fn()
    except Exception as exc:  # a failed check, recorded
        results[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}",
                         "trace": traceback.format_exc(limit=3)}
        return None
    results[name] = {"ok": True, "value": repr(value)[:300]}
    return value


def expect_oserror(fn: Callable[[], Any], *errnos: int) -> str:
    try:
        fn()
    except OSError as exc:
        if errnos and exc.errno not in errnos:
            raise AssertionError(f"wrong error {exc!r}") from None
        return f"refused: {exc.strerror}"
    raise AssertionError("allowed, should have been refused")


def main() -> int:
    step("user is lbsync", lambda: _assert(pwd.getpwuid(os.getuid()).pw_name == "lbsync",
                                           pwd.getpwuid(os.getuid()).pw_name))
    step("no capabilities", lambda: _assert(
        _status("CapEff") == "0000000000000000" and _status("CapBnd") == "0000000000000000",
        (_status("CapEff"), _status("CapBnd"))))
    step("NoNewPrivs", lambda: _assert(_status("NoNewPrivs") == "1", _status("NoNewPrivs")))
    step("seccomp filter", lambda: _assert(_status("Seccomp") == "2", _status("Seccomp")))

    def imports() -> str:
        import jinja2  # noqa: F401
        import kubernetes.client  # noqa: F401
        import prometheus_client  # noqa: F401
        import structlog  # noqa: F401
        import tenacity  # noqa: F401
        import yaml  # noqa: F401

        import lbsync
        import lbsync.cli

        return f"lbsync {lbsync.__version__} from {lbsync.__file__}"
    step("imports (MemoryDenyWriteExecute, seccomp)", imports)

    from lbsync import config, files, nginxctl
    from lbsync.notify import Notifier

    cfg = step("config /etc/lbsync/config.yaml",
               lambda: config.load(Path("/etc/lbsync/config.yaml"), check_paths=False))
    if cfg is None:
        return finish()
    staged = cfg.nginx.servers_file("k8s_cluster")
    timeout = cfg.nginx.command_timeout
    step("servers_dir /var/lib/lbsync/servers, state_dir /run/lbsync", lambda: _assert(
        (cfg.nginx.servers_dir, cfg.nginx.state_dir) ==
        (Path("/var/lib/lbsync/servers"), Path("/run/lbsync")),
        (cfg.nginx.servers_dir, cfg.nginx.state_dir)))

    import resource
    step("LimitNOFILE 1024, soft and hard", lambda: _assert(
        resource.getrlimit(resource.RLIMIT_NOFILE) == (1024, 1024),
        resource.getrlimit(resource.RLIMIT_NOFILE)))

    def write(data: bytes) -> None:
        with files.locked(cfg.nginx.servers_dir, cfg.nginx.state_dir, wait=True):
            files.write_atomic(staged, data)

    def command(argv: tuple[str, ...], want_ok: bool) -> str:
        res = nginxctl.run(argv, timeout)
        _assert(res.ok == want_ok, f"rc={res.returncode} {res.output[-300:]!r}")
        return f"rc={res.returncode}"

    def live_is(data: bytes) -> str:
        got = LIVE.read_bytes()
        _assert(got == data, got[:200])
        return f"{len(got)} bytes"

    # What lbsync may write: its servers directory and its state directory, nothing else.
    step("write the staged servers file (atomic, locked in /run/lbsync)", lambda: write(GOOD))
    step("write and read the record in /run/lbsync", lambda: (
        files.write_record(cfg.nginx.servers_dir, cfg.nginx.state_dir, {"probe": 1}),
        _assert(files.read_record(cfg.nginx.servers_dir, cfg.nginx.state_dir) == {"probe": 1},
                "record"))[1])
    for target in (LIVE, LIVE.with_name("x.servers"), LIVE.with_name("x.conf"),
                   Path("/etc/nginx/conf.d/lbsync-probe.conf"), Path("/etc/lbsync/probe"),
                   Path("/var/lib/lbsync/probe"), Path("/var/lib/nginx/probe"),
                   Path("/var/lib/probe"), Path("/run/probe")):
        step(f"{target} cannot be written", lambda target=target: expect_oserror(
            lambda: target.write_bytes(b"log_format x escape=none '$http_x';\n"),
            errno.EROFS, errno.EACCES))
    step("the live file cannot be renamed or removed", lambda: expect_oserror(
        lambda: os.rename(LIVE, LIVE.with_name("y")), errno.EROFS, errno.EACCES))
    step("the servers directory cannot be swapped for a symlink", lambda: expect_oserror(
        lambda: os.rename(cfg.nginx.servers_dir, "/var/lib/lbsync/x"),
        errno.EROFS, errno.EACCES, errno.EBUSY))

    # Who holds a port, for a reload refused without an error log lbsync can read: root's
    # nginx listens on 127.0.0.1:8443 here, and the sandbox must not hide /proc/net.
    def held() -> Any:
        found = nginxctl.held([("TCP", "127.0.0.1", 8443), ("TCP", "127.0.0.1", 8444)])
        return _assert(found == {("TCP", 8443)}, f"held: {sorted(found)}")

    step("/proc/net shows the ports root's nginx holds (nginxctl.held)", held)

    # Root's side, through polkit: publish + nginx -t, then reload + confirm.
    step("test_command (lbsync-nginx-test.service) succeeds", lambda: command(
        cfg.nginx.test_command, True))
    step("it published the staged lines to root's live file", lambda: live_is(GOOD))
    step("reload_command (lbsync-nginx-reload.service) succeeds: new workers confirmed",
         lambda: command(cfg.nginx.reload_command, True))
    for name, data in REFUSED.items():
        step(f"staged {name}: test_command fails", lambda data=data: (
            write(data), command(cfg.nginx.test_command, False))[1])
        step(f"staged {name}: the live file is unchanged", lambda: live_is(GOOD))
    step("no cron file was written", lambda: _assert(
        not Path("/etc/cron.d/lbsync-probe").exists(), "/etc/cron.d/lbsync-probe exists")
        and "none")
    step("put the good file back, test_command succeeds again", lambda: (
        write(GOOD), command(cfg.nginx.test_command, True))[1])

    # Nothing else through polkit.
    for argv in (("reload", "nginx.service"), ("restart", "nginx.service"),
                 ("stop", "nginx.service"), ("stop", "lbsync.service"),
                 ("restart", "lbsync-nginx-test.service"), ("start", "dbus.service")):
        step(f"systemctl {' '.join(argv)} is refused", lambda argv=argv: command(
            ("systemctl", "--no-ask-password", *argv), False))

    def nginx_invisible() -> str:
        pid = int(Path("/run/nginx.pid").read_text())
        _assert(not Path(f"/proc/{pid}").exists(), f"/proc/{pid} is visible")
        return f"master {pid} not in /proc (so nginx.pid_file stays unset)"
    step("root's nginx is invisible (ProtectProc=invisible)", nginx_invisible)
    step("private /tmp is writable", lambda: tempfile.mkstemp()[1])
    step("netlink sockets are refused", lambda: expect_oserror(
        lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)))
    step("chown is refused", lambda: expect_oserror(lambda: os.chown(staged, 0, 0)))
    step("/root is hidden", lambda: expect_oserror(lambda: os.listdir("/root")))

    def metrics() -> str:
        import prometheus_client

        prometheus_client.start_http_server(cfg.http.port, addr=cfg.http.host)
        url = f"http://{cfg.http.listen}/metrics"
        body = urllib.request.urlopen(url, timeout=5).read().decode()
        _assert("process_resident_memory_bytes" in body, "no process metrics")
        return url
    step("metrics listener on http.listen, process metrics", metrics)

    def kube_dns() -> str:
        # The API server is reached over AF_INET/AF_INET6 with name resolution.
        return str(socket.getaddrinfo("localhost", 443, type=socket.SOCK_STREAM)[0][4])
    step("name resolution", kube_dns)

    notifier = Notifier()
    step("watchdog configured", lambda: _assert(notifier.watchdog_interval is not None,
                                                os.environ.get("WATCHDOG_USEC")))
    got: dict[str, bool] = {"hup": False, "term": False}
    signal.signal(signal.SIGHUP, lambda *_: got.__setitem__("hup", True))
    signal.signal(signal.SIGTERM, lambda *_: got.__setitem__("term", True))
    save()  # test-sandbox.sh reads this once the unit is active
    step("sd_notify READY=1", lambda: _assert(notifier.send("READY=1", "STATUS=probe ready"),
                                             "send failed") and "sent")
    deadline = time.monotonic() + 60
    while not got["term"] and time.monotonic() < deadline:
        notifier.watchdog()
        time.sleep(0.2)
    results["SIGHUP received (ExecReload)"] = {"ok": got["hup"]}
    results["SIGTERM received (stop)"] = {"ok": got["term"]}
    return finish()


def _status(field: str) -> str:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()
    return ""


def _assert(cond: bool, detail: Any) -> Any:
    if not cond:
        raise AssertionError(detail)
    return detail


def save() -> None:
    fd, tmp = tempfile.mkstemp(dir=RESULT.parent, prefix=".probe.")
    with os.fdopen(fd, "w") as fh:
        json.dump(results, fh, indent=1)
    os.chmod(tmp, 0o644)
    os.replace(tmp, RESULT)


def finish() -> int:
    save()
    return 0 if all(r["ok"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
