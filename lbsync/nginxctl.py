"""Running nginx: the configured test and reload commands, and what they said.

The only module that starts processes. Commands are argv tuples (never a shell), bounded by a
timeout, and their output is reduced to the one line an operator needs.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass


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
