"""One sync pass: snapshot -> plan -> text -> applied, and what changed. Shared by once and run.

`fetch_snapshot` is the one-shot way to read the cluster (the daemon keeps its snapshot from
watches instead); everything after it is the same code for `once`, `render` and the daemon.
"""

from __future__ import annotations

from dataclasses import dataclass

import jinja2

from lbsync import logs, render
from lbsync.apply import Applied, Outcome, apply
from lbsync.config import Config
from lbsync.desired import Plan, Reason, plan
from lbsync.kube import Kube, retrying
from lbsync.model import Service, Snapshot


@dataclass(frozen=True)
class UpstreamChange:
    name: str
    servers: int
    added: tuple[str, ...]
    removed: tuple[str, ...]


@dataclass(frozen=True)
class PassResult:
    plan: Plan
    outcome: Outcome
    changes: tuple[UpstreamChange, ...]

    @property
    def reloaded(self) -> bool:
        return self.outcome is Outcome.RELOADED

    def lines(self) -> list[str]:
        """One human line per upstream: `k8s_cluster: 3 nodes (+1 -0), reloaded`."""
        return [
            f"{c.name}: {c.servers} nodes (+{len(c.added)} -{len(c.removed)}), "
            f"{self.outcome.value}"
            for c in self.changes
        ]


def fetch_snapshot(kube: Kube, config: Config) -> Snapshot:
    """Read what a pass needs straight from the API (paginated lists)."""
    nodes = kube.list_nodes(config.nodes.label_selector).items
    services: dict[str, Service] = {}
    for up in config.upstreams:
        if up.namespace and up.service and up.service_ref not in services:
            services.update(kube.list_service(up.namespace, up.service).items)
    return Snapshot(nodes=nodes, services=services)


def read_cluster(config: Config) -> Snapshot:
    """One-shot read for `once`, `render` and `status`: a few quick retries, then fail."""
    kube = Kube.from_config(config.kubernetes)
    try:
        return retrying(attempts=3, max_wait=2.0)(fetch_snapshot, kube, config)
    finally:
        kube.close()


def compute(snapshot: Snapshot, config: Config, template: jinja2.Template) -> tuple[Plan, str]:
    """The pure part of a pass: the plan and the file's text."""
    decided = plan(snapshot, config)
    warn_untrusted(decided)
    return decided, render.render(decided, template, config.nginx.server_options)


def warn_untrusted(decided: Plan) -> None:
    """Cluster data that failed validation is skipped, and named, never silently dropped."""
    log = logs.get("lbsync")
    for v in decided.verdicts:
        if v.reason in (Reason.BAD_ADDRESS, Reason.BAD_NAME):
            log.warning("node skipped", node=v.name[:253], reason=v.reason.value, detail=v.detail)


def sync_pass(snapshot: Snapshot, config: Config, template: jinja2.Template) -> PassResult:
    """Compute and apply. The caller holds the output file's lock."""
    decided, text = compute(snapshot, config, template)
    applied = apply(text, config.nginx)
    return PassResult(decided, applied.outcome, changes(decided, applied))


def changes(decided: Plan, applied: Applied) -> tuple[UpstreamChange, ...]:
    before = render.servers_in(applied.previous or "")
    result = []
    for up in decided.upstreams:
        now = {s.hostport for s in up.servers}
        old = before.get(up.name, set())
        result.append(
            UpstreamChange(up.name, len(now), tuple(sorted(now - old)), tuple(sorted(old - now)))
        )
    return tuple(result)
