"""Running nginx: the configured test and reload commands, what they said, and whether a
reload took effect.

The only module that starts processes. Commands are argv tuples (never a shell), bounded by a
timeout, and their output is reduced to the one line an operator needs. A reload took effect
when the master started a new generation of workers; `nginx -s reload` only sends a signal
and exits 0 even when the master then keeps the old configuration.

`held` tells which ports another process holds (from /proc/net), for a refused reload that
nginx's error log cannot explain to lbsync.

`python3 -m lbsync.nginxctl reload PID_FILE -- RELOAD_COMMAND...` is the packaged root unit's
reload (lbsync itself may not see root's processes): run the command, then wait for new
workers; exit 1 if none came.
"""

from __future__ import annotations

import os
import re
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def first_error(self) -> str:
        """The line that explains a failure: nginx's first [emerg]/[alert]/[crit]/[error]."""
        lines = [line.strip() for line in self.output.splitlines() if line.strip()]
        for marker in ("[emerg]", "[alert]", "[crit]", "[error]"):
            for line in lines:
                if marker in line:
                    return line
        first = lines[0] if lines else f"exit status {self.returncode}"
        if self.argv[:1] == ("systemctl",) or self.argv[0].endswith("/systemctl"):
            # nginx's own words are in the journal of the unit systemctl ran.
            unit = next((a for a in self.argv[1:] if a.endswith(".service")), "")
            first += f" (see: journalctl -u {unit})" if unit else " (see: journalctl)"
        return first


def run(argv: tuple[str, ...], timeout: float) -> CommandResult:
    """Run a command; a missing binary or a timeout is a failed result, not an exception."""
    try:
        proc = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
            env=child_environment(),
        )
    except FileNotFoundError:
        return CommandResult(argv, 127, f"{argv[0]}: command not found")
    except PermissionError:
        return CommandResult(argv, 126, f"{argv[0]}: permission denied")
    except subprocess.TimeoutExpired:
        return CommandResult(argv, 124, f"{' '.join(argv)}: timed out after {timeout:g}s")
    return CommandResult(argv, proc.returncode, proc.stdout.decode("utf-8", "replace"))


# systemd's notification variables belong to lbsync alone: a child (systemctl) that saw them
# would talk to lbsync's notify socket.
PRIVATE_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID")


def child_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in PRIVATE_ENV}


# --- did the reload take effect? ---------------------------------------------------------


def master_pid(pid_file: Path) -> int | None:
    """The running master's PID from its pid file (None: no master running)."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _state(pid) not in ("", "Z") else None


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


def workers(master: int) -> set[int]:
    """The master's current workers (old ones shutting down after a reload excluded)."""
    found = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == master and b"worker process" in cmdline and b"shutting down" not in cmdline:
            found.add(int(proc.name))
    return found


# --- who holds a port: why a reload's bind() failed, when nginx's error log is not readable ---
#
# /proc/net/{tcp,tcp6,udp,udp6}, readable by any user: "sl local_address rem_address st ...",
# the address in hex as the kernel stores it (32-bit words in host order), the port in hex.
TCP_LISTEN = "0A"
_PROC_NET = {("TCP", 4): "tcp", ("TCP", 6): "tcp6", ("UDP", 4): "udp", ("UDP", 6): "udp6"}


def _address(hex_address: str) -> str:
    """"0100007F" -> "127.0.0.1"; an IPv6 address is four such words."""
    words = [int(hex_address[i:i + 8], 16) for i in range(0, len(hex_address), 8)]
    raw = struct.pack(f"={len(words)}I", *words)
    return socket.inet_ntop(socket.AF_INET if len(words) == 1 else socket.AF_INET6, raw)


def bound(table: str, protocol: str) -> set[tuple[str, int]]:
    """The (address, port) pairs a /proc/net table holds: TCP sockets that listen, UDP
    sockets that are bound. Pure; a line it cannot read is skipped."""
    found = set()
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4 or (protocol == "TCP" and fields[3] != TCP_LISTEN):
            continue
        address, _, port = fields[1].partition(":")
        try:
            found.add((_address(address), int(port, 16)))
        except (ValueError, OSError, struct.error):
            continue
    return found


def held(listeners: Iterable[tuple[str, str, int]]) -> set[tuple[str, int]]:
    """Of these (protocol, address, port) listeners, the (protocol, port) that a socket on
    this host already holds, on that address or on every address (an IPv6 wildcard socket
    takes the IPv4 port too): what makes nginx's bind() fail with "Address already in use".
    For a refused reload whose error log lbsync cannot read (the packaged reload unit's):
    nginx closed what it opened for the refused configuration, so whoever holds one of its
    new ports is the reason."""
    tables: dict[tuple[str, int], set[tuple[str, int]]] = {}

    def table(protocol: str, family: int) -> set[tuple[str, int]]:  # family: 4 or 6
        if (protocol, family) not in tables:
            try:
                text = Path(f"/proc/net/{_PROC_NET[protocol, family]}").read_text()
            except (OSError, KeyError):
                text = ""
            tables[protocol, family] = bound(text, protocol)
        return tables[protocol, family]

    out = set()
    for protocol, address, port in listeners:
        v6 = ":" in address
        mine = table(protocol, 6 if v6 else 4)
        if (address, port) in mine or ("::" if v6 else "0.0.0.0", port) in mine or \
                ("::", port) in table(protocol, 6):
            out.add((protocol, port))
    return out


NO_NEW_WORKERS = ("nginx started no new workers: it kept the old configuration "
                  "(see nginx's error log)")


def log_size(error_log: Path | None) -> int:
    """Where the error log ends now: a reload's complaints are what comes after."""
    try:
        return error_log.stat().st_size if error_log is not None else 0
    except OSError:
        return 0


def confirm_reload(master: int, before: set[int], timeout: float,
                   error_log: Path | None = None, offset: int = 0) -> str:
    """"" once the master runs a worker that was not there before the reload; else why not:
    nginx's verdict from the error log when it is readable (`refusal`), else after
    `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if workers(master) - before:
            return ""
        why = refusal(_log_since(error_log, offset))
        if why:
            return why
        time.sleep(0.02)
    return NO_NEW_WORKERS


IN_USE = "(98: Address already in use)"
GAVE_UP = "still could not bind()"


def refusal(log: str) -> str:
    """nginx's reason for refusing a reload, from what its error log gained since: the first
    [emerg] line; "" while there is none, or while nginx is still retrying a port another
    process holds. For that error nginx tries again every 500 ms, five times, and only then
    logs "still could not bind()"; the answer waits for it, so that the next reload does not
    read this one's retries, and names every port that failed."""
    emerg = [line.strip() for line in log.splitlines() if "[emerg]" in line]
    in_use = [line for line in emerg if "bind() to " in line and IN_USE in line]
    if not in_use:
        return emerg[0] if emerg else ""
    if not any(GAVE_UP in line for line in emerg):
        return ""
    # One line per port: "...: bind() to 203.0.113.10:443 failed (98: ...)", then the others.
    ports = list(dict.fromkeys(line[line.index("bind() to "):] for line in in_use))
    return "; ".join([in_use[0], *ports[1:]])


_BIND_FAILED = re.compile(r"bind\(\) to \S+:(\d+) failed")


def ports_refused(why: str) -> set[int]:
    """The ports nginx says it could not bind ("bind() to 203.0.113.10:443 failed ..."), in
    a refusal as `refusal` words it; empty when it names none."""
    return {int(p) for p in _BIND_FAILED.findall(why)}


def _log_since(error_log: Path | None, offset: int) -> str:
    if error_log is None:
        return ""
    try:
        with error_log.open("rb") as fh:
            fh.seek(offset)
            return fh.read(1 << 20).decode("utf-8", "replace")
    except OSError:
        return ""


# The root helper's own budget: both waits (20 s) end before its unit's TimeoutStartSec=25s,
# which ends before lbsync's nginx.command_timeout (30 s), so the operator reads this helper's
# message, not a systemd timeout. nginx replaces its workers in milliseconds.
HELPER_COMMAND_WAIT = 10.0
HELPER_CONFIRM_WAIT = 10.0

USAGE = ("usage: python3 -m lbsync.nginxctl reload PID_FILE [--error-log PATH] -- "
         "RELOAD_COMMAND...")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if "--" not in args or len(args) < 4 or args[0] != "reload":
        print(USAGE, file=sys.stderr)
        return 2
    split = args.index("--")
    head, command = args[1:split], args[split + 1:]
    error_log = None
    if len(head) == 3 and head[1] == "--error-log":
        error_log = Path(head[2])
    elif len(head) != 1 or not command:
        print(USAGE, file=sys.stderr)
        return 2
    master = master_pid(Path(head[0]))
    if master is None:
        print(f"nginx is not running (no master in {head[0]})", file=sys.stderr)
        return 1
    before, offset = workers(master), log_size(error_log)
    result = run(tuple(command), HELPER_COMMAND_WAIT)
    if not result.ok:
        print(result.first_error, file=sys.stderr)
        return 1
    why = confirm_reload(master, before, HELPER_CONFIRM_WAIT, error_log, offset)
    if why:
        print(why, file=sys.stderr)  # the bind() line names the port another process holds
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
