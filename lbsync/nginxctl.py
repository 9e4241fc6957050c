"""Running nginx: the configured test and reload commands, and what they said.

The only module that starts processes. Commands are argv tuples (never a shell), bounded by a
timeout, and their output is reduced to the one line an operator needs.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

from lbsync.errors import SyncError


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
        return lines[0] if lines else f"exit status {self.returncode}"


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
        )
    except FileNotFoundError:
        return CommandResult(argv, 127, f"{argv[0]}: command not found")
    except PermissionError:
        return CommandResult(argv, 126, f"{argv[0]}: permission denied")
    except subprocess.TimeoutExpired:
        return CommandResult(argv, 124, f"{' '.join(argv)}: timed out after {timeout:g}s")
    return CommandResult(argv, proc.returncode, proc.stdout.decode("utf-8", "replace"))


def check(result: CommandResult, what: str) -> None:
    if not result.ok:
        raise SyncError(f"{what} failed: {result.first_error}")
