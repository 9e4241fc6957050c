"""One sync pass: snapshot -> plan -> text -> applied, and what changed. Shared by `once`,
`render`, `status` and the daemon.

`compute` is pure (plan and text); `sync_pass` adds the one edge that changes the world
(`apply`); `changes` compares the new plan with the one NGINX last loaded, from the record
`apply` keeps, never by parsing files back. `read_cluster` is the one-shot way to read the
cluster (the daemon keeps its snapshot from watches instead).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

import jinja2

from lbsync import files, kube, loadbalancer, logs, render, serverlines
from lbsync.apply import Outcome, apply, servers_of
from lbsync.config import Config
from lbsync.desired import Plan, Reason, plan
from lbsync.errors import ApplyError
from lbsync.guard import Held, limit_shrink
from lbsync.health import Target, TargetState
from lbsync.model import Service, Snapshot

# How many verdicts of skipped untrusted nodes one pass logs: a hostile API must not flood
# the journal (the metrics count them all).
MAX_SKIP_LOGS = 20


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
    held: tuple[Held, ...] = ()  # removals the blast-radius guard held back

    @property
    def reloaded(self) -> bool:
        return self.outcome is Outcome.RELOADED

    def lines(self) -> list[str]:
        """One human line per upstream: `k8s_cluster: 3 nodes (+1 -0), reloaded`."""
        held = {h.upstream: h for h in self.held}
        lb = self.plan.lb
        listeners = [] if lb is None else [
            f"loadbalancer: {len(lb.listeners)} listeners for {len(lb.served)} Services"
            + (f", {len(lb.problems)} ports left out" if lb.problems else "")
            + f", {self.outcome.value}"]
        return listeners + [
            f"{c.name}: {c.servers} {'node' if c.servers == 1 else 'nodes'} "
            f"(+{len(c.added)} -{len(c.removed)}), {self.outcome.value}"
            + (f"; {len(held[c.name].kept)} removals held back" if c.name in held else "")
            for c in self.changes
        ]


def fetch_snapshot(client: kube.Client, config: Config) -> Snapshot:
    """Read what a pass needs straight from the API (paginated lists)."""
    nodes = client.list(kube.nodes(config.nodes.label_selector)).items
    services: dict[str, Service] = {}
    for up in config.upstreams:
        if up.service is not None and up.service_ref not in services:
            services.update(client.list(kube.service(up.namespace, up.service_name)).items)
    return Snapshot(nodes=nodes, services=services)


def read_cluster(config: Config) -> Snapshot:
    """One-shot read for `once`, `render` and `status`: a few quick retries, then fail."""
    client = kube.Client.from_config(config.kubernetes)
    try:
        return kube.retrying(attempts=3)(fetch_snapshot, client, config)
    finally:
        client.close()


def load_template(config: Config) -> jinja2.Template:
    """The configured template, compiled (the built-in one when none is set)."""
    path = config.nginx.template
    if path is None:
        return render.compile_template()
    return render.compile_template(files.read_template(path), str(path))


def compute(snapshot: Snapshot, config: Config, template: jinja2.Template,
            health: Mapping[Target, TargetState] | None = None
            ) -> tuple[Plan, dict[Path, str]]:
    """The pure part of a pass: the plan and each servers file's path and text."""
    decided = plan(snapshot, config, health)
    return decided, render_files(decided, config, template)


def render_files(decided: Plan, config: Config, template: jinja2.Template) -> dict[Path, str]:
    texts = render.render(decided, template, config.nginx.server_options,
                          allow_loopback=config.nodes.allow_loopback,
                          port_range=config.nodes.port_range)
    out = {config.nginx.servers_file(name): text for name, text in texts.items()}
    if decided.lb is not None:
        out[config.nginx.servers_dir / serverlines.STREAM_FILE] = loadbalancer.render_stream(
            decided.lb, config.loadbalancer.addresses, config.nginx.server_options)
    return out


def log_untrusted(decided: Plan) -> None:
    """Cluster data that failed validation is skipped, and named, never silently dropped."""
    log = logs.get("lbsync")
    skipped = [v for v in decided.verdicts if v.reason in (Reason.BAD_ADDRESS, Reason.BAD_NAME)]
    for v in skipped[:MAX_SKIP_LOGS]:
        log.warning("node skipped", node=v.name[:253], reason=v.reason.value, detail=v.detail)
    if len(skipped) > MAX_SKIP_LOGS:
        log.warning("nodes skipped", more=len(skipped) - MAX_SKIP_LOGS)


def sync_pass(snapshot: Snapshot, config: Config, template: jinja2.Template, *,
              force: bool = False, health: Mapping[Target, TargetState] | None = None,
              shrink_confirmed: bool = False,
              unavailable: frozenset[tuple[str, int]] = frozenset()) -> PassResult:
    """Plan (with the probes' results), guard, render and apply. The caller holds the lock.

    `force`: test and reload even when the record says NGINX already runs these bytes (the
    daemon's first pass). `shrink_confirmed`: a big drop has lasted long enough to apply.
    """
    previous = recorded_servers(config)
    guarded = limit_shrink(plan(snapshot, config, health, unavailable), previous,
                           config.nodes.max_shrink, shrink_confirmed)
    decided = guarded.plan
    log_untrusted(decided)
    texts = render_files(decided, config, template)
    data = {path: text.encode("utf-8") for path, text in texts.items()}
    del texts  # not held through the apply (1.4 MB at 20,000 nodes)
    try:
        applied = apply(data, config.nginx, servers(decided), force=force)
    except ApplyError as exc:
        exc.plan = decided
        raise
    return PassResult(decided, applied.outcome, changes(applied.previous, decided),
                      guarded.held)


def recorded_servers(config: Config) -> dict[str, list[str]] | None:
    """The servers of the plan NGINX last loaded, from apply's record (None: no record)."""
    record = files.read_record(config.nginx.servers_dir, config.nginx.state_dir)
    return servers_of(record)


def probed(snapshot: Snapshot, config: Config) -> dict[Target, TargetState] | None:
    """One probe round of every candidate server, for one-shot commands (None: probes off)."""
    if not config.nodes.probe.enabled:
        return None
    targets = plan(snapshot, config).targets
    # Imported only with probes on: its threads and sockets cost `once` ~10 ms otherwise.
    from lbsync import probe

    return probe.probe_once(targets, config.nodes.probe) if targets else {}


def servers(decided: Plan) -> dict[str, list[str]]:
    """What a plan puts in each upstream, as the record keeps it."""
    return {u.name: [s.hostport for s in u.servers] for u in decided.upstreams}


def changes(previous: Mapping[str, Collection[str]] | None, decided: Plan
            ) -> tuple[UpstreamChange, ...]:
    """Per upstream, the servers added and removed since the plan NGINX last loaded."""
    before = previous or {}
    result = []
    for up in decided.upstreams:
        now = {s.hostport for s in up.servers}
        old = set(before.get(up.name, ()))
        result.append(
            UpstreamChange(up.name, len(now), tuple(sorted(now - old)), tuple(sorted(old - now)))
        )
    return tuple(result)
