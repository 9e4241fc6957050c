"""Pre-flight rules: versions, permissions, node port range/collisions/band, existing bundle."""

from __future__ import annotations

from typing import Any

import pytest

from lbsync.bootstrap import checks
from lbsync.bootstrap.report import Status

Obj = dict[str, Any]


def svc(ns: str, name: str, node_port: int | None) -> Obj:
    port: Obj = {"port": 80}
    if node_port:
        port["nodePort"] = node_port
    return {"metadata": {"namespace": ns, "name": name}, "spec": {"ports": [port]}}


@pytest.mark.parametrize(("low", "high", "band"), [
    (30000, 32767, (30000, 30086)),  # the default range: 87 ports, as KEP-3668 computes
    (30000, 30099, (30000, 30015)),  # small ranges: at least 16
    (20000, 29999, (20000, 20127)),  # large ranges: at most 128
])
def test_static_band(low: int, high: int, band: tuple[int, int]) -> None:
    assert checks.static_band(low, high) == band


@pytest.mark.parametrize(("port", "services", "statuses"), [
    (32001, [], [Status.PASS, Status.WARN]),
    (30080, [], [Status.PASS]),
    (29999, [], [Status.FAIL]),
    (32768, [], [Status.FAIL]),
    (32001, [svc("other", "web", 32001)], [Status.FAIL]),
    (32001, [svc("kong", "kong-gateway-proxy", 32001)], [Status.PASS, Status.WARN]),
    (32001, [svc("other", "web", 32002), svc("x", "y", None)], [Status.PASS, Status.WARN]),
])
def test_node_port(port: int, services: list[Obj], statuses: list[Status]) -> None:
    results = checks.node_port(port, (30000, 32767), services, ("kong", "kong-gateway-proxy"))
    assert [r.status for r in results] == statuses
    if statuses == [Status.FAIL] and services:
        assert "already allocated by Service other/web" in results[0].message
    if Status.WARN in statuses:
        assert "30000-30086" in results[-1].message


@pytest.mark.parametrize(("version", "status"), [
    ({"major": "1", "minor": "30", "gitVersion": "v1.30.4"}, Status.PASS),
    ({"major": "1", "minor": "28+", "gitVersion": "v1.28.3-eks"}, Status.PASS),
    ({"major": "1", "minor": "24", "gitVersion": "v1.24.0"}, Status.FAIL),
    ({"gitVersion": "weird"}, Status.WARN),
])
def test_server_version(version: Obj, status: Status) -> None:
    assert checks.server_version(version).status is status


@pytest.mark.parametrize(("version", "error", "status", "text"), [
    ((4, 1, 4), None, Status.PASS, "v4.1.4"),
    ((3, 17, 3), None, Status.PASS, "v3.17.3"),
    ((3, 17, 0), None, Status.PASS, "v3.17.0"),
    ((3, 16, 4), None, Status.FAIL, "v3.16.4 is older than v3.17.0"),
    ((3, 8, 0), None, Status.FAIL, "older than"),
    ((2, 17, 0), None, Status.FAIL, "older than"),
    ((5, 0, 0), None, Status.FAIL, "helm 5 is not supported"),
    (None, None, Status.FAIL, "cannot parse"),
    (None, "helm: 'helm' not found on PATH", Status.FAIL, "not found on PATH"),
])
def test_helm_version(version: tuple[int, int, int] | None, error: str | None,
                      status: Status, text: str) -> None:
    result = checks.helm_version(version, error)
    assert result.status is status and text in result.message
    if status is Status.FAIL:
        assert result.hint.startswith("install helm 3.17+ or helm 4")


def test_backends() -> None:
    results = checks.backends([("default/a", True), ("default/b", False)])
    assert [r.status for r in results] == [Status.PASS, Status.WARN]
    assert results[1].name == "backend default/b" and "BackendNotFound" in results[1].message


def test_permission() -> None:
    assert checks.permission("create", "", "namespaces", True).status is Status.PASS
    denied = checks.permission("create", "rbac.authorization.k8s.io", "clusterroles", False)
    assert denied.status is Status.FAIL
    assert denied.name == "permission create clusterroles.rbac.authorization.k8s.io"


def gw_crd(version: str, group: str = "gateway.networking.k8s.io") -> Obj:
    return {"metadata": {"annotations": {"gateway.networking.k8s.io/bundle-version": version}},
            "spec": {"group": group}}


@pytest.mark.parametrize(("installed", "status", "text"), [
    ([], Status.PASS, "none installed"),
    ([gw_crd("v1.0.0")], Status.PASS, "v1.0.0 installed"),
    ([gw_crd("v0.8.0")], Status.PASS, "will upgrade"),
    ([gw_crd("v1.2.0")], Status.WARN, "never downgraded"),
    ([gw_crd("v1.0.0"), gw_crd("v1.1.0")], Status.WARN, "mixed"),
    ([gw_crd("v9.0.0", group="example.com")], Status.PASS, "none installed"),
])
def test_existing_bundle(installed: list[Obj], status: Status, text: str) -> None:
    result = checks.existing_bundle(installed, "v1.0.0")
    assert result.status is status and text in result.message
