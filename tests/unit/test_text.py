"""Untrusted strings made safe to show, as a table."""

from __future__ import annotations

import pytest

from lbsync.text import first_line, plural, printable


@pytest.mark.parametrize(("value", "shown"), [
    ("node-1", "node-1"),
    ("a\nWATCHDOG=trigger", "a\\nWATCHDOG=trigger"),
    ("evil\x1b[2J", "evil\\x1b[2J"),
    ("tab\there", "tab\\there"),
    ("\u202eevil", "\\u202eevil"),  # a bidi override is not printable either
    (42, "42"),
])
def test_printable(value: object, shown: str) -> None:
    assert printable(value) == shown


def test_printable_bounds_length() -> None:
    assert printable("x" * 10_000, 20) == "x" * 20 + "..."


def test_first_line_and_plural() -> None:
    assert first_line("\n\n  Error: no\x1b matches\nmore\n") == "Error: no\\x1b matches"
    assert first_line("") == ""
    assert (plural(1, "server"), plural(2, "server"), plural(0, "node")) == (
        "1 server", "2 servers", "0 nodes")
