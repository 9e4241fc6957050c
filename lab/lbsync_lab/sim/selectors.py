"""Label and field selectors, parsed the way kube-apiserver parses them.

This module owns the selector grammar only: ``parse_label_selector`` and
``parse_field_selector`` turn the query-string text into a predicate over an
object dict. Malformed selectors raise :class:`SelectorError` (the server turns
that into a 400 BadRequest Status).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Obj = dict[str, Any]
Predicate = Callable[[Obj], bool]

_SET_RE = re.compile(r"^\s*(!?)\s*([A-Za-z0-9_./-]+)\s*(?:(notin|in)\s*\(([^)]*)\))?\s*$")
_EQ_RE = re.compile(r"^\s*([A-Za-z0-9_./-]+)\s*(==|!=|=)\s*([A-Za-z0-9_.-]*)\s*$")


class SelectorError(ValueError):
    """A selector that cannot be parsed."""


def _split_terms(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    terms: list[str] = []
    depth = 0
    cur: list[str] = []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            terms.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    terms.append("".join(cur))
    return [t for t in (t.strip() for t in terms) if t]


def _labels(obj: Obj) -> dict[str, str]:
    labels = obj.get("metadata", {}).get("labels") or {}
    assert isinstance(labels, dict)
    return labels


def _label_cmp(key: str, value: str, equal: bool) -> Predicate:
    return lambda o: (_labels(o).get(key) == value) == equal


def _label_in(key: str, values: frozenset[str], inside: bool) -> Predicate:
    return lambda o: (_labels(o).get(key) in values) == inside


def _label_has(key: str, present: bool) -> Predicate:
    return lambda o: (key in _labels(o)) == present


def _field_cmp(path: str, value: str, equal: bool) -> Predicate:
    return lambda o: ((_field(o, path) or "") == value) == equal


def parse_label_selector(text: str | None) -> Predicate | None:
    """Parse a label selector (``a=b,c!=d,e in (x,y),f notin (z),g,!h``).

    Returns ``None`` for an empty selector (matches everything).
    """
    if not text or not text.strip():
        return None
    checks: list[Predicate] = []
    for term in _split_terms(text):
        m = _EQ_RE.match(term)
        if m:
            key, op, value = m.group(1), m.group(2), m.group(3)
            if op == "!=":
                checks.append(_label_cmp(key, value, False))
            else:
                checks.append(_label_cmp(key, value, True))
            continue
        m2 = _SET_RE.match(term)
        if not m2:
            raise SelectorError(f"unable to parse requirement: {term!r}")
        neg, key, op, values_text = m2.groups()
        if op:
            if neg:
                raise SelectorError(f"unable to parse requirement: {term!r}")
            values = frozenset(v.strip() for v in values_text.split(",") if v.strip())
            if op == "in":
                checks.append(_label_in(key, values, True))
            else:
                checks.append(_label_in(key, values, False))
        elif neg:
            checks.append(_label_has(key, False))
        else:
            checks.append(_label_has(key, True))
    return lambda o: all(c(o) for c in checks)


def _field(obj: Obj, path: str) -> str | None:
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    if cur is None:
        return None
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def parse_field_selector(text: str | None, allowed: frozenset[str]) -> Predicate | None:
    """Parse a field selector (``metadata.name=x,metadata.namespace!=y``).

    ``allowed`` lists the field paths the resource supports (the real server
    rejects other fields with 400 BadRequest).
    """
    if not text or not text.strip():
        return None
    checks: list[Predicate] = []
    for term in _split_terms(text):
        m = re.match(r"^\s*([A-Za-z0-9_.]+)\s*(==|!=|=)\s*(.*?)\s*$", term)
        if not m:
            raise SelectorError(f"invalid selector: {term!r}")
        path, op, value = m.groups()
        if path not in allowed:
            raise SelectorError(f'field label not supported: "{path}"')
        if op == "!=":
            checks.append(_field_cmp(path, value, False))
        else:
            checks.append(_field_cmp(path, value, True))
    return lambda o: all(c(o) for c in checks)
