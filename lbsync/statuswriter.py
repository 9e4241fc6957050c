"""Writing what loadbalancer mode owes the API: each served Service's
status.loadBalancer.ingress, cleared when lbsync stops serving it, and an Event for each
problem. Only while this gateway holds the Lease.

Level-triggered like everything else: each pass compares the plan with the Services as the
watch last saw them and writes only differences; a write that fails is retried by the next
pass (the daemon marks the view dirty after a failure). Events are not repeated while the
same problem lasts.
"""

from __future__ import annotations

from collections.abc import Mapping

from lbsync import kube, logs
from lbsync.errors import ApiError
from lbsync.loadbalancer import LBPlan, Problem, ingress_entries, status_writes
from lbsync.metrics import Metrics
from lbsync.model import Service
from lbsync.text import printable


class StatusWriter:
    def __init__(self, client: kube.Client, metrics: Metrics, hostname: str) -> None:
        self.client, self.metrics, self.hostname = client, metrics, hostname
        self.log = logs.get("lbsync.loadbalancer")
        self._reported: set[Problem] = set()

    def write(self, lb: LBPlan, services: Mapping[str, Service]) -> bool:
        """Bring statuses and Events in line; False if some write failed (retry later)."""
        ok = True
        for svc, ingress in status_writes(lb, services):
            entries = ingress_entries(lb, self.hostname) if ingress else []
            try:
                kube.patch_service_status(self.client, svc.namespace, svc.name, entries)
            except ApiError as exc:
                ok = False
                self.metrics.status_writes.labels(result="failed").inc()
                self.log.warning("status not written", service=svc.ref, error=str(exc))
                continue
            self.metrics.status_writes.labels(result="written").inc()
            self.log.info("status", service=svc.ref, ingress=list(ingress) or "cleared")
        return self._events(lb, services) and ok

    def _events(self, lb: LBPlan, services: Mapping[str, Service]) -> bool:
        ok = True
        current = set(lb.problems)
        for problem in sorted(current - self._reported, key=lambda p: (p.service, p.reason)):
            svc = services.get(problem.service)
            self.log.warning("service not served", service=problem.service,
                             reason=problem.reason, detail=printable(problem.message))
            if svc is None:
                continue
            try:
                kube.create_event(self.client, svc, problem.reason, problem.message)
            except ApiError as exc:
                ok = False
                self.log.warning("event not written", service=svc.ref, error=str(exc))
                current.discard(problem)  # try again next pass
        self._reported = current
        return ok
