"""The daemon's in-memory view of the cluster, fed by watches, and the dirty flag it keeps.

Level-triggered: an event only updates the view and marks it dirty; the sync pass reads a
copy of the whole view. An update that leaves the reduced object equal (a Node heartbeat, a new
image list) changes nothing lbsync uses, so it does not mark the view dirty.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from lbsync.model import Event, Snapshot

NODES = "nodes"


@dataclass(frozen=True)
class Dirty:
    first: float  # monotonic time of the first change not yet synced
    last: float  # monotonic time of the latest change


class ClusterCache:
    """Nodes and Services by key, per watched source ("nodes", "service:ns/name")."""

    def __init__(self, sources: set[str], on_change: Callable[[], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._sources = set(sources)
        self._synced: set[str] = set()
        self._objects: dict[str, dict[str, Any]] = {s: {} for s in sources}
        self._dirty: Dirty | None = None
        self._on_change = on_change
        self._clock = clock

    @property
    def synced(self) -> bool:
        """True once every source has completed its first list: only then may a pass write."""
        with self._lock:
            return self._synced == self._sources

    def replace(self, source: str, items: Mapping[str, Any], *, force: bool = False) -> bool:
        """A fresh list of `source`. Dirty if it differs, if it is the first, or if forced.

        The cache takes `items` (a dict is kept, not copied: the caller must not change it
        afterwards), and where an object equals the one it already holds, it keeps its own:
        a relist of an unchanged cluster then frees the new copies at once (at 20,000 nodes,
        4 MB less held through the relist) and later passes find their verdicts by identity.
        """
        fresh = items if type(items) is dict else dict(items)
        with self._lock:
            first = source not in self._synced
            held = self._objects[source]
            changed = len(held) != len(fresh)
            for key, obj in fresh.items():
                old = held.get(key)
                if old is not None and old == obj:
                    fresh[key] = old  # same keys: allowed while iterating
                else:
                    changed = True
            self._objects[source] = fresh
            self._synced.add(source)
            if changed or first or force:
                self._mark()
        if changed or first or force:
            self._on_change()
        return changed

    def apply(self, source: str, event: Event[Any]) -> bool:
        """One watch event; returns whether it changed anything lbsync uses."""
        with self._lock:
            objects = self._objects[source]
            if event.type == "DELETED":
                changed = objects.pop(event.key, None) is not None
            elif event.obj is not None and objects.get(event.key) != event.obj:
                objects[event.key] = event.obj
                changed = True
            else:
                changed = False
            if changed:
                self._mark()
        if changed:
            self._on_change()
        return changed

    def mark_dirty(self) -> None:
        with self._lock:
            self._mark()
        self._on_change()

    def _mark(self) -> None:
        now = self._clock()
        first = self._dirty.first if self._dirty is not None else now
        self._dirty = Dirty(first, now)

    @property
    def dirty(self) -> Dirty | None:
        with self._lock:
            return self._dirty

    def take(self) -> tuple[Snapshot, Dirty | None]:
        """A copy of the whole view, and clear the dirty flag (the pass now owns it)."""
        with self._lock:
            dirty, self._dirty = self._dirty, None
            nodes = dict(self._objects.get(NODES, {}))
            services: dict[str, Any] = {}
            for source, objects in self._objects.items():
                if source != NODES:
                    services.update(objects)
        return Snapshot(nodes=nodes, services=services), dirty

    def restore_dirty(self, dirty: Dirty | None) -> None:
        """A pass failed: what it took is still unsynced, keep its first-change time."""
        if dirty is None:
            return
        with self._lock:
            if self._dirty is None:
                self._dirty = dirty
            else:
                self._dirty = Dirty(min(dirty.first, self._dirty.first), self._dirty.last)
