"""Logging setup: structlog JSON lines (console on a TTY), with stdlib logging routed through it.

The kubernetes client and urllib3 log through the stdlib; routing them here gives one format
and one destination (stderr, which systemd sends to the journal).

structlog is imported on the first log line, not before: importing it costs 30-35 ms (it
pulls in asyncio), and `lbsync once` usually logs nothing. `setup` records the settings and
the first use applies them; the daemon, which logs at once, sees no difference.
"""

from __future__ import annotations

import logging
import sys
import threading
from types import ModuleType
from typing import Any, TextIO

from lbsync.config import LogConfig
from lbsync.text import printable

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}


class _ToStructlog(logging.Handler):
    """Forwards stdlib records (kubernetes, urllib3) to structlog."""

    def emit(self, record: logging.LogRecord) -> None:
        log = _structlog().get_logger(record.name)
        method = getattr(log, record.levelname.lower(), log.info)
        try:
            method(record.getMessage(), logger=record.name)
        except Exception:  # logging must never take the daemon down
            self.handleError(record)


_lock = threading.Lock()
_pending: tuple[str, TextIO, int] | None = None  # set up, not yet applied to structlog


def setup(cfg: LogConfig, *, stream: TextIO | None = None, level: str | None = None) -> None:
    global _pending
    stream = stream or sys.stderr
    fmt = cfg.format or ("console" if stream.isatty() else "json")
    numeric = _LEVELS[level or cfg.level]
    root = logging.getLogger()
    root.handlers[:] = [_ToStructlog()]
    # The client libraries are chatty at debug; keep them at warning unless we debug.
    root.setLevel(numeric if numeric == logging.DEBUG else logging.WARNING)
    with _lock:
        _pending = (fmt, stream, numeric)
    if "structlog" in sys.modules:
        _structlog()


def _structlog() -> ModuleType:
    """structlog, imported and configured with the settings `setup` recorded."""
    global _pending
    import structlog

    with _lock:
        if _pending is not None:
            _configure(structlog, *_pending)
            _pending = None
    return structlog


def _configure(structlog: ModuleType, fmt: str, stream: TextIO, numeric: int) -> None:
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


class _Logger:
    """A structlog logger that imports structlog when first used."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(_structlog().get_logger(self._name), attr)


def _printable_values(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    return {k: printable(v, 2000) if isinstance(v, str) and k != "exception" else v
            for k, v in event.items()}


def get(name: str = "lbsync") -> Any:
    return _Logger(name)
