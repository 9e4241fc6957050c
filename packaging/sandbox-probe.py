#!/usr/bin/python3
"""Probe lbsync.service's sandbox from the inside (used by packaging/test-sandbox.sh).

test-sandbox.sh runs this file as the ExecStart of the real lbsync.service (a
drop-in replaces only ExecStart), so it runs as user lbsync with every
sandboxing setting of the unit, on Debian's python3 and the installed lbsync
package. It checks what the daemon needs (imports, config, the output
directory, test/reload through polkit, a rollback test, the metrics listener,
sd_notify, SIGHUP, SIGTERM) and what the sandbox must refuse. The results go to
/etc/nginx/lbsync/.probe.json (the only writable place); exit status 0 when
every check passed.
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

RESULT = Path("/etc/nginx/lbsync/.probe.json")
GOOD = b"upstream k8s_cluster {\n    server 127.0.0.1:32001;\n}\n"
BAD = b"upstream k8s_cluster {\n    not_a_directive 1;\n}\n"
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
    out = cfg.nginx.output
    timeout = cfg.nginx.command_timeout

    def write(data: bytes) -> None:
        with files.locked(out, wait=True):
            files.write_atomic(out, data)

    def command(argv: tuple[str, ...], want_ok: bool) -> str:
        res = nginxctl.run(argv, timeout)
        _assert(res.ok == want_ok, f"rc={res.returncode} {res.output[-300:]!r}")
        return f"rc={res.returncode}"

    step("write the output file (atomic, locked)", lambda: write(GOOD))
    step("test_command succeeds (polkit)", lambda: command(cfg.nginx.test_command, True))
    step("reload_command succeeds (polkit)", lambda: command(cfg.nginx.reload_command, True))
    step("write a broken upstream", lambda: write(BAD))
    step("test_command fails on it", lambda: command(cfg.nginx.test_command, False))
    step("put the good file back", lambda: write(GOOD))
    step("test_command succeeds again", lambda: command(cfg.nginx.test_command, True))
    step("systemctl restart nginx is refused",
         lambda: command(("systemctl", "--no-ask-password", "restart", "nginx.service"), False))
    step("systemctl stop lbsync.service is refused",
         lambda: command(("systemctl", "--no-ask-password", "stop", "lbsync.service"), False))

    step("/etc/nginx/conf.d is read-only", lambda: expect_oserror(
        lambda: Path("/etc/nginx/conf.d/lbsync-probe.conf").write_bytes(b"x"),
        errno.EROFS, errno.EACCES))
    step("/etc/lbsync is read-only", lambda: expect_oserror(
        lambda: Path("/etc/lbsync/probe").write_bytes(b"x"), errno.EROFS, errno.EACCES))
    step("/var/lib is read-only", lambda: expect_oserror(
        lambda: tempfile.mkstemp(dir="/var/lib"), errno.EROFS, errno.EACCES))
    step("/root is hidden", lambda: expect_oserror(lambda: os.listdir("/root")))
    step("private /tmp is writable", lambda: tempfile.mkstemp()[1])
    step("netlink sockets are refused", lambda: expect_oserror(
        lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)))
    step("chown is refused", lambda: expect_oserror(lambda: os.chown(out, 0, 0)))

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
