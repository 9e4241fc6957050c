"""Reducing raw API JSON to the model: the fields lbsync uses, and any payload survived."""

from __future__ import annotations

from typing import Any

import pytest

from lbsync.model import (
    MAX_ADDRESSES,
    MAX_STRING,
    Node,
    Service,
    ServicePort,
    node_from_json,
    service_from_json,
)


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
    [{}, {"metadata": None}, {"metadata": [1]}, {"metadata": {"name": 5}},
     {"metadata": {"name": {"a": 1}}}, {"status": {"conditions": "x", "addresses": [None, 5]}},
     {"status": {"conditions": [{"type": "Ready", "status": ["True"]}]}},
     {"spec": {"taints": [None]}}, {"spec": "x", "status": 7},
     {"status": {"addresses": [{"type": "InternalIP", "address": {"x": 1}}]}}],
)
def test_reduce_malformed_node_does_not_crash(raw: dict[str, Any]) -> None:
    n = node_from_json(raw)
    # Parts of the wrong type read as absent (an address that is not a string is "").
    assert n.name == "" and n.ready == "Unknown"
    assert all(address == "" for _, address in n.addresses)


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


def test_reduce_bounds_what_one_node_can_make_us_keep() -> None:
    raw = {"metadata": {"name": "n" * 5_000_000},
           "status": {"addresses": [{"type": "InternalIP", "address": f"10.0.{i // 250}.{i % 250}"}
                                    for i in range(20_000)]},
           "spec": {"taints": [{"key": "k" * 10_000}] * 10_000}}
    n = node_from_json(raw)
    assert len(n.name) == MAX_STRING and len(n.addresses) == MAX_ADDRESSES
    assert len(n.taints) <= 64 and all(len(t) <= MAX_STRING for t in n.taints)


@pytest.mark.parametrize("spec", [None, "x", {"ports": 5}, {"ports": [None, "x", {"port": True}]},
                                  {"type": ["NodePort"], "ports": []}])
def test_reduce_malformed_service_does_not_crash(spec: Any) -> None:
    s = service_from_json({"metadata": {"namespace": "kong", "name": "p"}, "spec": spec})
    assert s.ports == () and s.ref == "kong/p"
