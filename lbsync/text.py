"""Untrusted strings made safe to show: one line, printable, bounded. Pure.

Names, addresses and messages come from the cluster and the API server. Before any of them
reaches a terminal (`lbsync status`), the journal or systemd's notify socket, control
characters (newlines, ESC sequences) are escaped and length is bounded: a node name must not
move the cursor, and a Service type must not add `WATCHDOG=trigger` to a notify datagram.
"""

from __future__ import annotations

MAX_SHOWN = 300


def printable(value: object, limit: int = MAX_SHOWN) -> str:
    """`value` as one line of printable characters, non-printable ones escaped (\\x1b)."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit:
        text = text[:limit] + "..."
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def first_line(text: str, limit: int = MAX_SHOWN) -> str:
    """The first non-empty line of `text`, made printable."""
    for line in text.strip().splitlines():
        if line.strip():
            return printable(line.strip(), limit)
    return ""


def plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"
