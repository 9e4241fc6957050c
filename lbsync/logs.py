"""Logging setup: structlog JSON lines (console on a TTY), with stdlib logging routed through it.

The kubernetes client and urllib3 log through the stdlib; routing them here gives one format
and one destination (stderr, which systemd sends to the journal).
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

from lbsync.config import LogConfig
from lbsync.text import printable

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}


class _ToStructlog(logging.Handler):
    """Forwards stdlib records (kubernetes, urllib3) to structlog."""

    def emit(self, record: logging.LogRecord) -> None:
        log = structlog.get_logger(record.name)
        method = getattr(log, record.levelname.lower(), log.info)
        try:
            method(record.getMessage(), logger=record.name)
        except Exception:  # logging must never take the daemon down
            self.handleError(record)


def setup(cfg: LogConfig, *, stream: TextIO | None = None, level: str | None = None) -> None:
    stream = stream or sys.stderr
    fmt = cfg.format or ("console" if stream.isatty() else "json")
    numeric = _LEVELS[level or cfg.level]
    renderer: Any
    safe: list[Any] = []
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=stream.isatty())
        # JSON escapes control characters itself; a console line must not carry a raw ESC
        # sequence from a node name to the operator's terminal.
        safe = [_printable_values]
    else:
        renderer = structlog.processors.JSONRenderer(sort_keys=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            *safe,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    root = logging.getLogger()
    root.handlers[:] = [_ToStructlog()]
    # The client libraries are chatty at debug; keep them at warning unless we debug.
    root.setLevel(numeric if numeric == logging.DEBUG else logging.WARNING)


def _printable_values(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    return {k: printable(v, 2000) if isinstance(v, str) and k != "exception" else v
            for k, v in event.items()}


def get(name: str = "lbsync") -> Any:
    return structlog.get_logger(name)
