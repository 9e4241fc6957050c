"""Running nginx: the configured test and reload commands, what they said, and whether a
reload took effect.

The only module that starts processes. Commands are argv tuples (never a shell), bounded by a
timeout, and their output is reduced to the one line an operator needs. A reload took effect
when the master started a new generation of workers; `nginx -s reload` only sends a signal
and exits 0 even when the master then keeps the old configuration.

`python3 -m lbsync.nginxctl reload PID_FILE -- RELOAD_COMMAND...` is the packaged root unit's
reload (lbsync itself may not see root's processes): run the command, then wait for new
workers; exit 1 if none came.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
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
    the master's [emerg] line when the error log is readable (at once: the master logs its
    refusal as soon as it reads the configuration), else after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if workers(master) - before:
            return ""
        emerg = _emerg_since(error_log, offset)
        if emerg:
            return emerg
        time.sleep(0.02)
    return NO_NEW_WORKERS


def _emerg_since(error_log: Path | None, offset: int) -> str:
    if error_log is None:
        return ""
    try:
        with error_log.open("rb") as fh:
            fh.seek(offset)
            tail = fh.read(1 << 20).decode("utf-8", "replace")
    except OSError:
        return ""
    for line in tail.splitlines():
        if "[emerg]" in line:
            return line.strip()
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
