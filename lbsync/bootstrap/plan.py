"""Plan/diff: would applying a desired object change the live one?

Owns the subset rule used by `--dry-run` (and by Helm value comparison): desired fields must
already hold in the live object; fields others own (status, defaults, annotations the
controller adds) are ignored. Pure.
"""

from __future__ import annotations

from typing import Any


def is_subset(desired: Any, live: Any) -> bool:
    """True when every field set in `desired` has the same value in `live`.

    Lists compare element by element in order (listeners, rules and ports are ordered in the
    API); scalars compare equal, with ints and their string forms kept distinct as the API does.
    """
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return False
        return all(k in live and is_subset(v, live[k]) for k, v in desired.items())
    if isinstance(desired, list):
        if not isinstance(live, list) or len(desired) != len(live):
            return False
        return all(is_subset(d, x) for d, x in zip(desired, live, strict=True))
    return bool(desired == live and type(desired) is type(live))


def needs_apply(desired: dict[str, Any], live: dict[str, Any] | None) -> bool:
    """Whether server-side applying `desired` would change anything we manage."""
    if live is None:
        return True
    return not is_subset({k: v for k, v in desired.items() if k not in ("apiVersion", "kind")},
                         live)


def resource_version(obj: dict[str, Any] | None) -> str | None:
    if obj is None:
        return None
    rv = (obj.get("metadata") or {}).get("resourceVersion")
    return str(rv) if rv is not None else None
