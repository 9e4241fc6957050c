"""Plan/diff: would applying a desired object change the live one?

Owns the rule that decides whether `apply` sends an object at all (so a rerun that changes
nothing writes nothing) and what `--dry-run` reports: every desired field must already hold
in the live object (fields others own, such as status, defaults and the annotations
controllers add, are ignored), and our field manager must own no field that the desired
object no longer sets (server-side apply would remove it). Pure.
"""

from __future__ import annotations

import json
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


def needs_apply(desired: dict[str, Any], live: dict[str, Any] | None,
                manager: str | None = None) -> bool:
    """Whether server-side applying `desired` as `manager` would change anything.

    With `manager`, the live object must also carry that manager's Apply entry, owning no
    field `desired` leaves out; without one (made by someone else, or by an older lbsync),
    apply it so the ownership is recorded."""
    if live is None:
        return True
    if not is_subset({k: v for k, v in desired.items() if k not in ("apiVersion", "kind")},
                     live):
        return True
    if manager is None:
        return False
    owned = applied_fields(live, manager)
    return owned is None or owns_beyond(owned, desired)


def applied_fields(live: dict[str, Any], manager: str) -> dict[str, Any] | None:
    """The fieldsV1 set `manager` owns through server-side apply (None: it owns none)."""
    meta = live.get("metadata") or {}
    for entry in meta.get("managedFields") or []:
        if (isinstance(entry, dict) and entry.get("manager") == manager
                and entry.get("operation") == "Apply" and not entry.get("subresource")):
            fields = entry.get("fieldsV1")
            return fields if isinstance(fields, dict) else {}
    return None


def owns_beyond(fields: dict[str, Any], desired: Any) -> bool:
    """Whether a fieldsV1 set names a field that `desired` does not set.

    fieldsV1 keys: `f:<name>` a field, `k:<json>` a list item by its keys, `v:<json>` a
    set member, `i:<n>` an index, `.` the node itself. Anything unrecognised counts as
    owned beyond, so the object is applied rather than silently left."""
    for key, sub in fields.items():
        if key == ".":
            continue
        kind, _, rest = key.partition(":")
        if kind == "f":
            if not isinstance(desired, dict) or rest not in desired:
                return True
            child: Any = desired[rest]
        elif kind in ("k", "v", "i"):
            if not isinstance(desired, list):
                return True
            found = _list_member(kind, rest, desired)
            if found is None:
                return True
            child = found[0]
        else:
            return True
        if isinstance(sub, dict) and sub and owns_beyond(sub, child):
            return True
    return False


def _list_member(kind: str, rest: str, items: list[Any]) -> tuple[Any] | None:
    try:
        want = json.loads(rest)
    except ValueError:
        return None
    if kind == "i":
        return (items[want],) if isinstance(want, int) and 0 <= want < len(items) else None
    for item in items:
        if kind == "v" and item == want:
            return (item,)
        if kind == "k" and isinstance(want, dict) and isinstance(item, dict) and all(
                item.get(k) == v for k, v in want.items()):
            return (item,)
    return None


def resource_version(obj: dict[str, Any] | None) -> str | None:
    if obj is None:
        return None
    rv = (obj.get("metadata") or {}).get("resourceVersion")
    return str(rv) if rv is not None else None
