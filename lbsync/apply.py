"""Applying a rendered file to NGINX: compare, swap, test, reload, and roll back on failure.

The certbot-nginx order: `nginx -t` can only check the whole configuration, so the new file is
put in place first, tested, and the previous bytes are put back if the test or the reload
fails. Identical bytes mean nothing is written, tested or reloaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from lbsync import files, nginxctl
from lbsync.config import NginxConfig
from lbsync.errors import SyncError


class Outcome(StrEnum):
    UNCHANGED = "unchanged"
    RELOADED = "reloaded"


@dataclass(frozen=True)
class Applied:
    outcome: Outcome
    previous: str | None  # the file's text before this pass (None: there was none)


class ApplyError(SyncError):
    """The new file was rejected; `stage` is "test" or "reload". The old file is back."""

    def __init__(self, message: str, stage: str) -> None:
        super().__init__(message)
        self.stage = stage


def apply(text: str, cfg: NginxConfig) -> Applied:
    """Make the output file hold `text` and NGINX run it. Caller holds the output lock."""
    data = text.encode("utf-8")
    previous = files.read(cfg.output)
    previous_text = None if previous is None else previous.decode("utf-8", "replace")
    if previous == data:
        return Applied(Outcome.UNCHANGED, previous_text)
    files.write_atomic(cfg.output, data)
    tested = nginxctl.run(cfg.test_command, cfg.command_timeout)
    if not tested.ok:
        files.restore(cfg.output, previous)
        raise ApplyError(
            f"nginx test failed, previous file restored: {tested.first_error}", "test"
        )
    reloaded = nginxctl.run(cfg.reload_command, cfg.command_timeout)
    if not reloaded.ok:
        # The master may not have read the new file: put the old one back so that the file
        # on disk keeps describing what nginx runs, and the next pass tries again.
        files.restore(cfg.output, previous)
        raise ApplyError(
            f"nginx reload failed, previous file restored: {reloaded.first_error}", "reload"
        )
    return Applied(Outcome.RELOADED, previous_text)
