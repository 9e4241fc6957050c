"""The subset rule behind --dry-run and Helm value comparison."""

from __future__ import annotations

from typing import Any

import pytest

from lbsync.bootstrap.plan import is_subset, resource_version


@pytest.mark.parametrize(("desired", "live", "want"), [
    ({}, {"a": 1}, True),
    ({"a": 1}, {"a": 1, "b": 2}, True),
    ({"a": 1}, {"a": 2}, False),
    ({"a": 1}, {}, False),
    ({"a": {"b": 1}}, {"a": {"b": 1, "c": 2}}, True),
    ({"a": {"b": 1}}, {"a": "x"}, False),
    ({"l": [{"n": 1}]}, {"l": [{"n": 1, "x": 0}]}, True),
    ({"l": [1, 2]}, {"l": [2, 1]}, False),  # order matters (listeners, rules)
    ({"l": [1]}, {"l": [1, 2]}, False),
    ({"p": 80}, {"p": "80"}, False),
    ({"b": True}, {"b": 1}, False),
    ({"n": None}, {"n": None}, True),
])
def test_is_subset(desired: Any, live: Any, want: bool) -> None:
    assert is_subset(desired, live) is want


def test_resource_version() -> None:
    assert resource_version(None) is None
    assert resource_version({"metadata": {}}) is None
    assert resource_version({"metadata": {"resourceVersion": 12}}) == "12"
