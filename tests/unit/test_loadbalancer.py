"""Loadbalancer mode's decisions as tables: which Services are served, their listeners,
conflicts and refused ports, status writes, the stream file and root's check of it, and
the Lease's decision."""

from __future__ import annotations

import pytest

from lbsync import config, serverlines
from lbsync.leader import Seen, decide
from lbsync.loadbalancer import (
    Backend,
    plan_lb,
    render_stream,
    selected,
    status_writes,
    upstream_name,
)
from lbsync.model import Service, ServicePort

LB = config.parse({"upstreams": [], "loadbalancer": {
    "enabled": True, "addresses": ["203.0.113.10"], "annotation": "lbsync.io/serve",
    "ports": "1-40000"}}, check_paths=False).loadbalancer
NO_PROBE = config.ProbeConfig(enabled=False)
BACKENDS = [Backend("10.0.0.1", "", "n1"), Backend("10.0.0.2", "", "n2")]


def svc(name: str, *ports: ServicePort, kind: str = "LoadBalancer", cls: str = "lbsync.io/nginx",
        created: str = "2026-01-01T00:00:00Z", ingress: tuple[str, ...] = (),
        annotations: tuple[tuple[str, str], ...] = ()) -> Service:
    return Service("apps", name, kind, tuple(ports), load_balancer_class=cls, created=created,
                   ingress=ingress, annotations=annotations)


def port(p: int, node_port: int | None = 31000, protocol: str = "TCP") -> ServicePort:
    return ServicePort(p, f"p{p}", node_port, protocol)


@pytest.mark.parametrize(("service", "chosen"), [
    (svc("a"), True),
    (svc("a", cls="other.io/lb"), False),
    (svc("a", kind="NodePort"), False),
    (svc("a", cls="", annotations=(("lbsync.io/serve", "true"),)), True),
    (svc("a", cls="", annotations=(("lbsync.io/serve", "yes"),)), False),
])
def test_which_services_are_served(service: Service, chosen: bool) -> None:
    assert selected(service, LB) is chosen


def plan(*services: Service):  # type: ignore[no-untyped-def]
    return plan_lb({s.ref: s for s in services}, BACKENDS, LB, NO_PROBE, None)


def test_listeners_and_problems() -> None:
    lb = plan(svc("web", port(443, 31443), port(53, 31053, "UDP")),
              svc("late", port(443, 31444), created="2026-02-01T00:00:00Z"),
              svc("ssh", port(22)), svc("big", port(50000)), svc("nonp", port(8080, None)),
              svc("sctp", port(9000, 31900, "SCTP")))
    assert [(li.service, li.port, li.protocol, li.node_port) for li in lb.listeners] == [
        ("apps/web", 443, "TCP", 31443), ("apps/web", 53, "UDP", 31053)]
    assert [b.hostport for b in lb.listeners[0].servers] == ["10.0.0.1:31443",
                                                              "10.0.0.2:31443"]
    assert {(p.service, p.reason) for p in lb.problems} == {
        ("apps/late", "PortConflict"), ("apps/ssh", "PortReserved"),
        ("apps/big", "PortOutOfRange"), ("apps/nonp", "NoNodePort"),
        ("apps/sctp", "UnsupportedProtocol")}
    assert lb.served == ("apps/web",) and lb.ingress == ("203.0.113.10",)


def test_status_writes_and_clears_only_what_differs() -> None:
    lb = plan(svc("web", port(443), ingress=("203.0.113.10",)), svc("new", port(444)),
              svc("gone", kind="ClusterIP", ingress=("203.0.113.10",)),
              svc("theirs", kind="ClusterIP", ingress=("198.51.100.1",)))
    services = {s.ref: s for s in [svc("web", port(443), ingress=("203.0.113.10",)),
                                   svc("new", port(444)),
                                   svc("gone", kind="ClusterIP", ingress=("203.0.113.10",))]}
    assert [(s.ref, ingress) for s, ingress in status_writes(lb, services)] == [
        ("apps/new", ("203.0.113.10",)), ("apps/gone", ())]


def test_upstream_names_are_valid_and_unique() -> None:
    a, b = upstream_name("a-b/c", "TCP", 80), upstream_name("a/b-c", "TCP", 80)
    assert a != b and a.startswith("lb_a_b_c_tcp_80_")
    assert serverlines._UPSTREAM_OPEN.fullmatch(f"upstream {a} {{")


def test_the_stream_file_passes_roots_check_and_an_attack_does_not() -> None:
    lb = plan(svc("web", port(443, 31443), port(53, 31053, "UDP")))
    text = render_stream(lb, LB.addresses, "max_fails=3")
    rules = {"listen": frozenset({"203.0.113.10"}), "ports": (1, 40000),
             "reserved": frozenset({22, 80})}
    assert serverlines.check_stream(text, **rules) == []  # type: ignore[arg-type]
    assert "listen 203.0.113.10:53 udp;" in text and "listen 203.0.113.10:443;" in text
    attacks = [
        ("server {\n    listen 203.0.113.10:443;\n    proxy_pass 127.0.0.1:22;\n}\n",
         "not a `listen` or `proxy_pass` line"),
        ("server {\n    listen 0.0.0.0:443;\n}\n", "not an address root allows"),
        ("server {\n    listen 203.0.113.10:80;\n}\n", "not a port root allows"),
        ("server {\n    listen 203.0.113.10:443;\n    proxy_pass lb_x;\n}\n",
         "no such upstream"),
        ("upstream lb_x {\n    server unix:/run/docker.sock;\n}\n", "not a `server"),
        ("server {\n    listen 203.0.113.10:443;\n    access_log /etc/cron.d/x;\n}\n",
         "not a `listen"),
        ("log_format x '$remote_addr';\n", "not an upstream or server block"),
        ("upstream lb_x {\n    server 10.0.0.1:31000;\n", "not closed"),
    ]
    for attack, why in attacks:
        problems = serverlines.check_stream(attack, **rules)  # type: ignore[arg-type]
        assert problems and why in problems[0][1], (attack, problems)


@pytest.mark.parametrize(("seen", "now", "action"), [
    (None, 0.0, "create"),
    (Seen("me", ("me", "t1", 0), 0.0), 1.0, "renew"),
    (Seen("other", ("other", "t1", 0), 0.0), 5.0, "wait"),  # renewed recently enough
    (Seen("other", ("other", "t1", 0), 0.0), 15.0, "take"),  # unchanged for a whole lease
    (Seen("", ("", "t1", 0), 0.0), 0.0, "take"),  # released on a clean stop
])
def test_lease_decisions(seen: Seen | None, now: float, action: str) -> None:
    assert decide(seen, "me", now, 15.0) == action
