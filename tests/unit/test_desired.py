"""Which nodes go into an upstream, and which port: table tests of the pure core."""

from __future__ import annotations

from typing import Any

import pytest

from lbsync import config
from lbsync.desired import Reason, node_verdict, plan
from lbsync.errors import SyncError
from lbsync.model import Node, Service, ServicePort, Snapshot, node_from_json, service_from_json

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
        (node(name="Bad_Name"), RULES, Reason.BAD_NAME),
        (node(name="n1\ninclude x;"), RULES, Reason.BAD_NAME),
        (node(name=""), RULES, Reason.BAD_NAME),
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


def test_reduce_real_node_json() -> None:
    raw = {
        "kind": "Node",
        "metadata": {"name": "w1", "labels": {
            "node.kubernetes.io/exclude-from-external-load-balancers": "true"},
            "deletionTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"unschedulable": True, "taints": [
            {"key": "ToBeDeletedByClusterAutoscaler", "effect": "NoSchedule"}]},
        "status": {
            "conditions": [{"type": "MemoryPressure", "status": "False"},
                           {"type": "Ready", "status": "True"}],
            "addresses": [{"type": "InternalIP", "address": "10.1.0.4"},
                          {"type": "Hostname", "address": "w1"},
                          {"type": "ExternalIP", "address": "203.0.113.4"}],
            "images": [{"names": ["x"], "sizeBytes": 1}],
        },
    }
    n = node_from_json(raw)
    assert n == Node("w1", "True", True, "true", ("ToBeDeletedByClusterAutoscaler",),
                     (("InternalIP", "10.1.0.4"), ("ExternalIP", "203.0.113.4")), True)
    assert n.address("ExternalIP") == "203.0.113.4"


@pytest.mark.parametrize(
    "raw",
    [{}, {"metadata": None}, {"status": {"conditions": "x", "addresses": [None, 5]}},
     {"spec": {"taints": [None]}}],
)
def test_reduce_malformed_node_does_not_crash(raw: dict[str, Any]) -> None:
    n = node_from_json(raw)
    assert node_verdict(n, RULES).eligible is False


def test_reduce_service() -> None:
    s = service_from_json({
        "metadata": {"namespace": "kong", "name": "proxy"},
        "spec": {"type": "NodePort", "ports": [
            {"name": "http", "port": 80, "nodePort": 32001, "protocol": "TCP"},
            {"name": "bad", "port": "80"},
            {"port": 8443, "nodePort": 99999},
        ]},
    })
    assert s == Service("kong", "proxy", "NodePort",
                        (ServicePort(80, "http", 32001), ServicePort(8443, "", None)))
