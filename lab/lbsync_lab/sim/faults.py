"""Fault injection for the emulator: failing requests, latency, outages, dropped watches.

This module owns the fault *state*; the server consults it on every request.
All methods are thread-safe and may be called while clients are connected.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Rule:
    remaining: int
    status: int
    path_contains: str | None


class Faults:
    """Faults to inject; reach it as ``ApiServer.faults``."""

    def __init__(self, on_outage: Callable[[bool], None], on_drop: Callable[[], None]) -> None:
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []
        self._on_outage = on_outage
        self._on_drop = on_drop
        self.latency: float = 0.0
        """Seconds added before every response."""
        self.outage: bool = False

    def fail_next(self, n: int, status: int = 500, path_contains: str | None = None) -> None:
        """Answer the next ``n`` requests whose path+query contains ``path_contains`` with a
        Status error of code ``status`` (429 also carries ``Retry-After: 1``)."""
        with self._lock:
            self._rules.append(_Rule(n, status, path_contains))

    def take(self, path: str) -> int | None:
        """The status to fail this request with, consuming one use of a rule (server side)."""
        with self._lock:
            for rule in self._rules:
                if rule.remaining > 0 and (rule.path_contains is None
                                           or rule.path_contains in path):
                    rule.remaining -= 1
                    return rule.status
            self._rules = [r for r in self._rules if r.remaining > 0]
        return None

    def clear(self) -> None:
        """Forget pending fail_next rules and latency."""
        with self._lock:
            self._rules.clear()
            self.latency = 0.0

    def set_outage(self, down: bool) -> None:
        """Make the API unreachable (True): open connections are closed and new ones reset."""
        self.outage = down
        self._on_outage(down)

    def drop_watches(self) -> None:
        """Abruptly close every open watch stream (no terminating chunk)."""
        self._on_drop()
