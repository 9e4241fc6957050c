"""Readiness rules for each kind, success and each known failure, as tables."""

from __future__ import annotations

from typing import Any

import pytest

from lbsync.bootstrap import conditions as c

Obj = dict[str, Any]


def cond(ctype: str, status: str = "True", reason: str = "", gen: int | None = None) -> Obj:
    out: Obj = {"type": ctype, "status": status, "reason": reason or ctype}
    if gen is not None:
        out["observedGeneration"] = gen
    return out


def gw(conds: list[Obj], listeners: list[Obj] | None, gen: int = 1) -> Obj:
    status: Obj = {"conditions": conds}
    if listeners is not None:
        status["listeners"] = listeners
    return {"metadata": {"generation": gen},
            "spec": {"listeners": [{"name": "http", "port": 80}]}, "status": status}


OK_LISTENER = {"name": "http", "conditions": [cond("Accepted"), cond("ResolvedRefs"),
                                              cond("Programmed")]}


@pytest.mark.parametrize(("obj", "ok", "reason"), [
    (None, False, "NotFound"),
    (gw([cond("Accepted"), cond("Programmed")], [OK_LISTENER]), True, ""),
    (gw([cond("Accepted"), cond("Programmed")], []), False, ""),  # listener without status
    (gw([cond("Accepted")], [OK_LISTENER]), False, ""),  # no Programmed yet
    (gw([cond("Accepted"), cond("Programmed", "False", "Invalid")],
        [{"name": "http", "conditions": [cond("Accepted", "False", "PortUnavailable"),
                                         cond("Programmed", "False", "PortUnavailable")]}]),
     False, "PortUnavailable"),  # the listener's reason beats the Gateway's bare "Invalid"
    (gw([cond("Accepted"), cond("Programmed", "False", "Invalid")], [OK_LISTENER]),
     False, "Invalid"),
    (gw([cond("Accepted"), cond("Programmed")],
        [{"name": "http", "conditions": [cond("Programmed", "False", "PortUnavailable")]}]),
     False, "PortUnavailable"),
    (gw([cond("Accepted", gen=1), cond("Programmed", gen=1)], [OK_LISTENER], gen=2), False, ""),
    (gw([], None), False, ""),
])
def test_gateway(obj: Obj | None, ok: bool, reason: str) -> None:
    verdict = c.gateway(obj, "kong/kong-gateway")
    assert verdict.ok is ok
    assert verdict.reason == reason
    if not ok:
        assert verdict.message.startswith("Gateway kong/kong-gateway")


def test_port_unavailable_hint_names_the_service_port() -> None:
    obj = gw([cond("Accepted"), cond("Programmed")],
             [{"name": "http", "conditions": [cond("Programmed", "False", "PortUnavailable")]}])
    assert "not the node port" in c.gateway(obj, "x").hint


def test_gateway_without_status_points_at_the_class_annotation() -> None:
    assert "gatewayclass-unmanaged" in c.gateway(gw([], None), "x").hint


def route(parents: list[Obj]) -> Obj:
    return {"metadata": {"namespace": "default"}, "status": {"parents": parents}}


def parent(name: str, ns: str | None, conds: list[Obj]) -> Obj:
    ref: Obj = {"name": name}
    if ns:
        ref["namespace"] = ns
    return {"parentRef": ref, "conditions": conds}


ALL_OK = [cond("Accepted"), cond("ResolvedRefs"), cond("Programmed", reason="ConfiguredInGateway")]


@pytest.mark.parametrize(("obj", "ok", "reason"), [
    (None, False, "NotFound"),
    (route([]), False, ""),
    (route([parent("kong-gateway", "kong", ALL_OK)]), True, ""),
    (route([parent("other", "kong", ALL_OK)]), False, ""),
    (route([parent("kong-gateway", None, ALL_OK)]), False, ""),  # defaults to route's namespace
    (route([parent("kong-gateway", "kong", [cond("Accepted", "False", "NotAllowedByListeners"),
                                            cond("ResolvedRefs"), cond("Programmed", "False")])]),
     False, "NotAllowedByListeners"),
    (route([parent("kong-gateway", "kong", [cond("Accepted"),
                                            cond("ResolvedRefs", "False", "BackendNotFound"),
                                            cond("Programmed", "False")])]),
     False, "BackendNotFound"),
    (route([parent("kong-gateway", "kong", [cond("Accepted"), cond("ResolvedRefs"),
                                            cond("Programmed", "False", "Pending")])]),
     False, "Pending"),
])
def test_http_route(obj: Obj | None, ok: bool, reason: str) -> None:
    verdict = c.http_route(obj, "default/r", "kong-gateway", "kong")
    assert (verdict.ok, verdict.reason) == (ok, reason)
    if reason in c.HINTS:
        assert verdict.hint == c.HINTS[reason]


@pytest.mark.parametrize(("obj", "ok"), [
    (None, False),
    ({"status": {"conditions": [cond("Accepted")]}}, True),
    ({"status": {"conditions": [cond("Accepted", "False", "InvalidParameters")]}}, False),
    ({"status": {"conditions": [cond("Accepted", "Unknown", "Pending")]}}, False),
    ({"status": {}}, False),
])
def test_gateway_class(obj: Obj | None, ok: bool) -> None:
    assert c.gateway_class(obj, "kong-class").ok is ok


def dep(available: str | None, gen: int = 1, observed: int = 1) -> Obj:
    status: Obj = {"observedGeneration": observed, "availableReplicas": 0}
    if available:
        status["conditions"] = [cond("Available", available)]
    return {"metadata": {"generation": gen}, "spec": {"replicas": 1}, "status": status}


@pytest.mark.parametrize(("obj", "ok"), [
    (None, False), (dep("True"), True), (dep("False"), False), (dep(None), False),
    (dep("True", gen=2, observed=1), False),
])
def test_deployment(obj: Obj | None, ok: bool) -> None:
    assert c.deployment(obj, "kong-gateway").ok is ok


@pytest.mark.parametrize(("obj", "ok"), [
    (None, False),
    ({"status": {"conditions": [cond("Established")]}}, True),
    ({"status": {"conditions": [cond("NamesAccepted")]}}, False),
])
def test_crd(obj: Obj | None, ok: bool) -> None:
    assert c.crd(obj, "x").ok is ok
