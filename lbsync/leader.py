"""Leader election over a Kubernetes Lease: with two gateways (keepalived VRRP and a floating
address), exactly one writes Service statuses and Events; both keep their NGINX in step.

The algorithm is client-go's: the holder renews `renewTime` every `retry_period`; a follower
takes the Lease over once the record has not changed for `lease_duration`, measured on its
own clock from when it last saw the record change (never by comparing another host's
timestamps, so clock skew between gateways does not matter); every write carries the
resourceVersion read, so two gateways racing for it cannot both win. A leader that cannot
renew for `renew_deadline` stops writing before its Lease can expire, so two writers never
overlap. `decide` is pure; `Elector` runs it against the API in a thread.
"""

from __future__ import annotations

import copy
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lbsync import kube, logs
from lbsync.config import LeaderElectionConfig
from lbsync.errors import ApiError


@dataclass(frozen=True)
class Seen:
    """The Lease as last read, and when (monotonic) its record last changed."""

    holder: str
    record: tuple[Any, ...]  # holder, renewTime, transitions: what "changed" means
    changed_at: float


def decide(seen: Seen | None, me: str, now: float, duration: float) -> str:
    """"create", "renew", "take" or "wait"."""
    if seen is None:
        return "create"
    if seen.holder == me:
        return "renew"
    if not seen.holder or now - seen.changed_at >= duration:
        return "take"
    return "wait"


def micro_time() -> str:
    """The API's MicroTime format."""
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"


class Elector:
    def __init__(self, client: kube.Client, cfg: LeaderElectionConfig,
                 on_change: Callable[[bool], None]) -> None:
        self.client, self.cfg, self.on_change = client, cfg, on_change
        self.identity = cfg.identity or f"{socket.gethostname()}"
        self.log = logs.get("lbsync.leader").bind(lease=f"{cfg.namespace}/{cfg.name}",
                                                  identity=self.identity)
        self._seen: Seen | None = None
        self._renewed_at: float | None = None  # monotonic: our last successful write
        self._stop = threading.Event()
        self._leading = False
        self.transitions = 0
        self._last_error = ""
        self._thread = threading.Thread(target=self._run, name="leader", daemon=True)

    def _fresh(self) -> bool:
        """We hold the Lease, renewed less than renew_deadline ago."""
        at, seen = self._renewed_at, self._seen
        return at is not None and time.monotonic() - at < self.cfg.renew_deadline and \
            seen is not None and seen.holder == self.identity

    @property
    def leading(self) -> bool:
        """Checked live: a renewal stuck in a slow API call cannot keep us writing past
        renew_deadline, before the Lease could expire for the other gateway."""
        return self._leading and self._fresh()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        if self._leading:
            self._release()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._step()
                self._last_error = ""
            except ApiError as exc:
                if str(exc) != self._last_error:  # once per streak, not every retry_period
                    self.log.warning("lease", error=str(exc))
                self._last_error = str(exc)
            except Exception:  # never let the election thread die
                self.log.exception("lease step failed")
            self._update(self._fresh())
            self._stop.wait(self.cfg.retry_period)

    def _step(self) -> None:
        cfg = self.cfg
        lease = kube.get_lease(self.client, cfg.namespace, cfg.name)
        now = time.monotonic()
        self._observe(lease, now)
        action = decide(self._seen, self.identity, now, cfg.lease_duration)
        if action == "wait":
            return
        body = self._body(lease, action)
        try:
            written = kube.write_lease(self.client, body, create=action == "create")
        except ApiError as exc:
            if exc.status == 409:  # another gateway wrote first: read again next time
                return
            raise
        self._renewed_at = time.monotonic()
        self._observe(written, self._renewed_at)
        if action != "renew":
            self.log.info("took the lease", action=action)

    def _observe(self, lease: dict[str, Any] | None, now: float) -> None:
        if lease is None:
            self._seen = None
            return
        spec = lease.get("spec") or {}
        record = (spec.get("holderIdentity"), spec.get("renewTime"),
                  spec.get("leaseTransitions"))
        if self._seen is None or self._seen.record != record:
            self._seen = Seen(str(spec.get("holderIdentity") or ""), record, now)

    def _body(self, lease: dict[str, Any] | None, action: str) -> dict[str, Any]:
        cfg = self.cfg
        now = micro_time()
        if lease is None:
            lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                     "metadata": {"name": cfg.name, "namespace": cfg.namespace}, "spec": {}}
        body = copy.deepcopy(lease)
        spec = body.setdefault("spec", {})
        spec["holderIdentity"] = self.identity
        spec["leaseDurationSeconds"] = int(cfg.lease_duration)
        spec["renewTime"] = now
        if action != "renew":
            spec["acquireTime"] = now
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (
                1 if action == "take" else 0)
        return body

    def _update(self, leading: bool) -> None:
        if leading != self._leading:
            self._leading = leading
            self.transitions += 1
            self.log.info("leading" if leading else "following")
            self.on_change(leading)

    def _release(self) -> None:
        """On a clean stop, hand the Lease over at once instead of after lease_duration."""
        try:
            lease = kube.get_lease(self.client, self.cfg.namespace, self.cfg.name)
            if lease and (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                lease["spec"]["holderIdentity"] = ""
                kube.write_lease(self.client, lease, create=False)
        except ApiError as exc:
            self.log.warning("releasing the lease", error=str(exc))
