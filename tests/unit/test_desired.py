"""Which nodes go into an upstream, and which port: table tests of the pure core."""

from __future__ import annotations

from typing import Any

import pytest

from lbsync import config
from lbsync.desired import Reason, node_verdict, plan
from lbsync.errors import SyncError
from lbsync.model import Node, Service, ServicePort, Snapshot

RULES = config.NodesConfig()


def node(name: str = "n1", address: str = "10.0.0.1", **kw: Any) -> Node:
    kw.setdefault("ready", "True")
    return Node(name=name, addresses=(("InternalIP", address),), **kw)


@pytest.mark.parametrize(
    ("n", "rules", "reason"),
    [
        (node(), RULES, Reason.ELIGIBLE),
        (node(unschedulable=True), RULES, Reason.ELIGIBLE),  # cordoned nodes stay in
        (node(deleting=True), RULES, Reason.DELETING),
        (node(exclude_label=""), RULES, Reason.EXCLUDED_LABEL),
        (node(exclude_label="true"), RULES, Reason.EXCLUDED_LABEL),
        (node(exclude_label="yes"), RULES, Reason.EXCLUDED_LABEL),
        (node(exclude_label="false"), RULES, Reason.ELIGIBLE),
        (node(exclude_label="False"), RULES, Reason.ELIGIBLE),
        (node(exclude_label="0"), RULES, Reason.ELIGIBLE),
        (node(taints=("ToBeDeletedByClusterAutoscaler",)), RULES, Reason.AUTOSCALER_TAINT),
        (node(taints=("node.kubernetes.io/unschedulable",)), RULES, Reason.ELIGIBLE),
        (node(ready="False"), RULES, Reason.NOT_READY),
        (node(ready="Unknown"), RULES, Reason.NOT_READY),
        (node(ready="Unknown"), config.NodesConfig(require_ready=False), Reason.ELIGIBLE),
        (node(address="fd00::5"), RULES, Reason.ELIGIBLE),
        (node(), config.NodesConfig(address_type="ExternalIP"), Reason.NO_ADDRESS),
        (Node("n1", "True"), RULES, Reason.NO_ADDRESS),
        (node(address="10.0.0.1;"), RULES, Reason.BAD_ADDRESS),
        (node(address="10.0.0.1:80"), RULES, Reason.BAD_ADDRESS),
        (node(address="10.0.0.1 down; server 6.6.6.6"), RULES, Reason.BAD_ADDRESS),
        (node(address="}\ninclude /etc/passwd;"), RULES, Reason.BAD_ADDRESS),
        (node(address="node1.example.com"), RULES, Reason.BAD_ADDRESS),
        (node(address="fe80::1%eth0"), RULES, Reason.BAD_ADDRESS),
        (node(address="0.0.0.0"), RULES, Reason.BAD_ADDRESS),
        (node(address="224.0.0.1"), RULES, Reason.BAD_ADDRESS),
        (node(address=" 10.0.0.1"), RULES, Reason.BAD_ADDRESS),
        # Addresses that point the public site at the gateway itself or at no real host.
        (node(address="127.0.0.1"), RULES, Reason.BAD_ADDRESS),
        (node(address="127.9.9.9"), RULES, Reason.BAD_ADDRESS),
        (node(address="::1"), RULES, Reason.BAD_ADDRESS),
        (node(address="::ffff:127.0.0.1"), RULES, Reason.BAD_ADDRESS),
        (node(address="::ffff:10.0.0.1"), RULES, Reason.BAD_ADDRESS),
        (node(address="169.254.169.254"), RULES, Reason.BAD_ADDRESS),
        (node(address="fe80::1"), RULES, Reason.BAD_ADDRESS),
        (node(address="255.255.255.255"), RULES, Reason.BAD_ADDRESS),
        (node(address="240.0.0.1"), RULES, Reason.BAD_ADDRESS),
        (node(address="ff02::1"), RULES, Reason.BAD_ADDRESS),
        (node(address="::"), RULES, Reason.BAD_ADDRESS),
        (node(address="010.0.0.1"), RULES, Reason.BAD_ADDRESS),  # leading zeros
        (node(address="\uff11\uff10.0.0.1"), RULES, Reason.BAD_ADDRESS),  # fullwidth digits
        (node(address="1" * 1_000_000), RULES, Reason.BAD_ADDRESS),
        (node(address="127.0.0.1"), config.NodesConfig(allow_loopback=True), Reason.ELIGIBLE),
        (node(address="10.0.0.1"), config.NodesConfig(allowed_cidrs=("10.0.0.0/24",)),
         Reason.ELIGIBLE),
        (node(address="10.0.1.1"), config.NodesConfig(allowed_cidrs=("10.0.0.0/24",)),
         Reason.BAD_ADDRESS),
        (node(address="fd00::1"), config.NodesConfig(allowed_cidrs=("10.0.0.0/24",)),
         Reason.BAD_ADDRESS),
        (node(name="Bad_Name"), RULES, Reason.BAD_NAME),
        (node(name="n1\ninclude x;"), RULES, Reason.BAD_NAME),
        (node(name=""), RULES, Reason.BAD_NAME),
        (node(name="n1\n"), RULES, Reason.BAD_NAME),  # `$` would let a trailing newline in
        (node(name="n\x1b[2J"), RULES, Reason.BAD_NAME),
        (node(name="a" * 254), RULES, Reason.BAD_NAME),
        # The first failing rule names the reason.
        (node(deleting=True, ready="False"), RULES, Reason.DELETING),
    ],
)
def test_node_verdict(n: Node, rules: config.NodesConfig, reason: Reason) -> None:
    verdict = node_verdict(n, rules)
    assert verdict.reason is reason
    assert verdict.eligible is (reason is Reason.ELIGIBLE)
    assert (verdict.address is not None) is verdict.eligible


def test_cordoned_nodes_stay_in_and_say_so() -> None:
    verdict = node_verdict(node(unschedulable=True), RULES)
    assert verdict.eligible and verdict.detail == "cordoned"
    assert node_verdict(node(), RULES).detail == ""
    assert verdict.as_dict() == {"name": "n1", "eligible": True, "reason": "eligible",
                                 "address": "10.0.0.1", "detail": "cordoned"}


def cfg(**nodes: Any) -> config.Config:
    return config.parse(
        {"upstreams": [{"name": "k8s_cluster", "service": "kong/proxy", "port": 80},
                       {"name": "fixed", "node_port": 30080}],
         "nodes": nodes},
        check_paths=False,
    )


PROXY = Service("kong", "proxy", "NodePort",
                (ServicePort(80, "http", 32001), ServicePort(443, "https", 32443)))


def snap(*nodes: Node, services: tuple[Service, ...] = (PROXY,)) -> Snapshot:
    return Snapshot({n.name: n for n in nodes}, {s.ref: s for s in services})


def test_plan_sorts_servers_and_uses_the_service_node_port() -> None:
    result = plan(snap(node("b", "10.0.0.10"), node("a", "10.0.0.9"), node("c", "fd00::1"),
                       node("d", "10.0.0.2", ready="False")), cfg())
    k8s, fixed = result.upstreams
    assert [s.hostport for s in k8s.servers] == ["10.0.0.9:32001", "10.0.0.10:32001",
                                                 "[fd00::1]:32001"]
    assert [s.hostport for s in fixed.servers] == ["10.0.0.9:30080", "10.0.0.10:30080",
                                                   "[fd00::1]:30080"]
    assert result.eligible_count == 3
    assert {v.name: v.reason for v in result.verdicts}["d"] is Reason.NOT_READY


@pytest.mark.parametrize(
    ("port", "expected"), [(80, 32001), (443, 32443), ("https", 32443), ("http", 32001)]
)
def test_service_port_by_number_or_name(port: int | str, expected: int) -> None:
    c = config.parse({"upstreams": [{"name": "u", "service": "kong/proxy", "port": port}]},
                     check_paths=False)
    assert plan(snap(node()), c).upstreams[0].port == expected


@pytest.mark.parametrize(
    ("services", "message"),
    [
        ((), "upstream k8s_cluster: Service kong/proxy not found"),
        ((Service("kong", "proxy", "NodePort", (ServicePort(8080, "alt", 30000),)),),
         "Service kong/proxy has no port 80"),
        ((Service("kong", "proxy", "ClusterIP", (ServicePort(80, "http", None),)),),
         "Service kong/proxy port 80 has no nodePort (type ClusterIP)"),
    ],
)
def test_service_problems_fail_the_pass(services: tuple[Service, ...], message: str) -> None:
    with pytest.raises(SyncError, match=message.replace("(", r"\(").replace(")", r"\)")):
        plan(snap(node(), services=services), cfg())


def test_min_nodes_refuses_and_an_empty_upstream_is_never_planned() -> None:
    with pytest.raises(SyncError, match=r"only 1 eligible node\(s\) of 2, fewer than "
                                        r"nodes.min_nodes=2"):
        plan(snap(node("a"), node("b", ready="False")), cfg(min_nodes=2))
    with pytest.raises(SyncError, match="only 0 eligible"):
        plan(snap(node("a", ready="False")), cfg())
    with pytest.raises(SyncError, match="only 0 eligible"):
        plan(snap(), cfg())


@pytest.mark.parametrize("node_port", [22, 9108, 29999, 32768])
def test_node_ports_outside_the_range_are_refused(node_port: int) -> None:
    """A Service must not point the public site at sshd or at lbsync's own endpoints."""
    svc = Service("kong", "proxy", "NodePort", (ServicePort(80, "http", node_port),))
    with pytest.raises(SyncError, match=f"node port {node_port} is outside nodes.port_range"):
        plan(snap(node(), services=(svc,)), cfg())


def test_verdicts_show_the_address_and_escape_names() -> None:
    out = node_verdict(node(ready="False", address="10.0.0.7"), RULES).as_dict()
    assert out["address"] == "10.0.0.7" and out["eligible"] is False
    bad = node_verdict(node(name="n\x1b[2Jx"), RULES).as_dict()
    assert "\x1b" not in bad["name"] and "\\x1b" in bad["name"]
