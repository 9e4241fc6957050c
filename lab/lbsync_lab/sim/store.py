"""The object store: objects, resourceVersions, event history and list snapshots.

This module owns the state of the emulated cluster, like etcd plus the watch
cache of a real API server: one global resourceVersion counter bumped by every
write, the serialized JSON of every object (cached so that big lists are
assembled from bytes), a bounded window of past events for watches, and the
consistent snapshots that back paged lists (``limit``/``continue``).

Every method must be called with :attr:`Store.cond` held when it says so; the
condition variable is what idle watchers sleep on.
"""

from __future__ import annotations

import base64
import itertools
import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from lbsync_lab.sim.registry import Registry, ResKey, ResourceType

Obj = dict[str, Any]
ObjKey = tuple[str, str]  # (namespace or "", name)

SNAPSHOT_TTL = 300.0  # seconds a continue token stays valid (etcd compacts every 5 minutes)
MAX_SNAPSHOTS = 200


def dumps(obj: Any) -> bytes:
    """Compact JSON as the API server writes it."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


class Expired(Exception):
    """A resourceVersion or continue token older than what the store remembers."""


@dataclass(frozen=True)
class Stored:
    """One stored object: the dict (never mutated after storing) and its JSON."""

    obj: Obj
    body: bytes  # JSON without kind/apiVersion for built-ins (list items), full for CRs
    rt: ResourceType

    @property
    def full(self) -> bytes:
        """The JSON with kind and apiVersion, as GET and watch events carry it."""
        if not self.rt.builtin:
            return self.body
        prefix = f'{{"kind":"{self.rt.kind}","apiVersion":"{self.rt.api_version}"'.encode()
        return prefix + (b"," + self.body[1:] if len(self.body) > 2 else b"}")

    @property
    def namespace(self) -> str:
        return str(self.obj.get("metadata", {}).get("namespace") or "")

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])


@dataclass(frozen=True)
class Event:
    """One write: ``prev`` is the object before it (for selector transitions)."""

    rv: int
    key: ResKey
    type: str  # ADDED / MODIFIED / DELETED
    new: Stored
    prev: Stored | None


@dataclass
class Snapshot:
    key: ResKey
    rv: int
    items: list[Stored]
    created: float


def encode_continue(rv: int, sid: str, offset: int) -> str:
    raw = dumps({"v": "meta.k8s.io/v1", "rv": rv, "id": sid, "off": offset})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_continue(token: str) -> tuple[int, str, int]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        return int(data["rv"]), str(data["id"]), int(data["off"])
    except Exception as exc:  # any garbage is "too old" to the client
        raise Expired(f"invalid continue token: {exc}") from exc


class Store:
    """All objects of the emulated cluster, keyed by resource and (namespace, name)."""

    def __init__(self, registry: Registry, history: int = 1000, first_rv: int = 1000) -> None:
        self.registry = registry
        self.history = max(1, history)
        self.cond = threading.Condition(threading.RLock())
        self.rv = first_rv
        self.floor = first_rv  # every event with rv > floor is still in self.events
        self.events: list[Event] = []
        self.objects: dict[ResKey, dict[ObjKey, Stored]] = {}
        self._sorted: dict[ResKey, list[ObjKey]] = {}
        self._snapshots: OrderedDict[str, Snapshot] = OrderedDict()
        self._sid = itertools.count(1)
        self.generation = 0  # bumped to wake watchers (drop_watches, stop)

    # -- reads (cond held or not: dict reads are atomic) --------------------------------

    def get(self, rt: ResourceType, namespace: str, name: str) -> Stored | None:
        return self.objects.get(rt.key, {}).get((namespace, name))

    def sorted_items(self, rt: ResourceType) -> list[Stored]:
        """Current objects of a type in etcd key order. Call with cond held."""
        objs = self.objects.get(rt.key, {})
        keys = self._sorted.get(rt.key)
        if keys is None:
            keys = sorted(objs)
            self._sorted[rt.key] = keys
        return [objs[k] for k in keys]

    # -- writes (cond held) ----------------------------------------------------------------

    def write(self, rt: ResourceType, new: Obj | None, namespace: str, name: str) -> Event:
        """Store ``new`` (or delete when None) at a new resourceVersion and record the event.

        ``new`` becomes owned by the store: its metadata.resourceVersion is set here.
        """
        with self.cond:
            objs = self.objects.setdefault(rt.key, {})
            okey = (namespace, name)
            prev = objs.get(okey)
            self.rv += 1
            if new is None:
                if prev is None:
                    raise KeyError(okey)
                gone = dict(prev.obj)
                gone["metadata"] = dict(prev.obj["metadata"], resourceVersion=str(self.rv))
                stored = Stored(gone, self._serialize(rt, gone), rt)
                del objs[okey]
                self._sorted.pop(rt.key, None)
                etype = "DELETED"
            else:
                new["metadata"]["resourceVersion"] = str(self.rv)
                stored = Stored(new, self._serialize(rt, new), rt)
                objs[okey] = stored
                if prev is None:
                    self._sorted.pop(rt.key, None)
                etype = "ADDED" if prev is None else "MODIFIED"
            event = Event(self.rv, rt.key, etype, stored, prev)
            self.events.append(event)
            if len(self.events) > self.history:
                drop = len(self.events) - self.history
                self.floor = self.events[drop - 1].rv
                del self.events[:drop]
            self.cond.notify_all()
            return event

    @staticmethod
    def _serialize(rt: ResourceType, obj: Obj) -> bytes:
        if rt.builtin:
            return dumps({k: v for k, v in obj.items() if k not in ("kind", "apiVersion")})
        return dumps(obj)

    def compact(self) -> None:
        """Forget all history and list snapshots: older RVs and tokens now get 410."""
        with self.cond:
            self.events.clear()
            self.floor = self.rv
            self._snapshots.clear()
            self.cond.notify_all()

    def wake_all(self) -> None:
        with self.cond:
            self.generation += 1
            self.cond.notify_all()

    # -- watch support (cond held) ---------------------------------------------------------

    def events_after(self, after_rv: int) -> list[Event]:
        """Events with rv > after_rv; raises Expired if some were already forgotten."""
        if after_rv < self.floor:
            raise Expired(f"too old resource version: {after_rv} ({self.floor + 1})")
        if not self.events or after_rv >= self.rv:
            return []
        start = max(0, after_rv + 1 - self.events[0].rv)
        return self.events[start:]

    # -- paged lists -----------------------------------------------------------------------

    def snapshot(self, rt: ResourceType) -> Snapshot:
        with self.cond:
            snap = Snapshot(rt.key, self.rv, self.sorted_items(rt), time.monotonic())
        return snap

    def save_snapshot(self, snap: Snapshot) -> str:
        with self.cond:
            now = time.monotonic()
            for sid in [s for s, v in self._snapshots.items() if now - v.created > SNAPSHOT_TTL]:
                del self._snapshots[sid]
            sid = str(next(self._sid))
            self._snapshots[sid] = snap
            while len(self._snapshots) > MAX_SNAPSHOTS:
                self._snapshots.popitem(last=False)
            return sid

    def load_snapshot(self, rt: ResourceType, token: str) -> tuple[Snapshot, str, int]:
        rv, sid, offset = decode_continue(token)
        with self.cond:
            snap = self._snapshots.get(sid)
            if snap is None or snap.rv != rv or snap.key != rt.key:
                raise Expired("continue token expired")
            if time.monotonic() - snap.created > SNAPSHOT_TTL:
                raise Expired("continue token expired")
            return snap, sid, offset
