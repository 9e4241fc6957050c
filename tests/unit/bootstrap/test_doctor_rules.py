"""Doctor rules over hand-built snapshots, as tables (the end-to-end view is elsewhere)."""

from __future__ import annotations

from typing import Any

import pytest

from lbsync.bootstrap import doctor
from lbsync.bootstrap.config import AccessSection, BootstrapConfig
from lbsync.bootstrap.doctor import Snapshot
from lbsync.bootstrap.report import Status

Obj = dict[str, Any]
CFG = BootstrapConfig()


def svc(ns: str, name: str, stype: str = "NodePort", port: int = 80,
        node_port: int | None = 32001) -> Obj:
    p: Obj = {"name": "kong-proxy", "port": port}
    if node_port:
        p["nodePort"] = node_port
    return {"metadata": {"namespace": ns, "name": name}, "spec": {"type": stype, "ports": [p]}}


@pytest.mark.parametrize(("services", "status", "text"), [
    ([svc("kong", "kong-gateway-proxy")], Status.PASS, "NodePort 80->32001"),
    ([], Status.FAIL, "not found"),
    ([svc("kong", "kong-gateway-proxy", stype="ClusterIP")], Status.FAIL, "not NodePort"),
    ([svc("kong", "kong-gateway-proxy", port=8000)], Status.FAIL, "no port 80"),
    ([svc("kong", "kong-gateway-proxy", node_port=31000)], Status.FAIL, "expected 32001"),
    ([svc("kong", "kong-gateway-proxy", node_port=31000), svc("web", "squat")], Status.FAIL,
     "already allocated by Service web/squat"),
])
def test_proxy_service(services: list[Obj], status: Status, text: str) -> None:
    (result,) = doctor.check_proxy_service(CFG, Snapshot(services=services))
    assert result.status is status and text in result.message


def eps(port_name: str, *ready: bool) -> Obj:
    return {"ports": [{"name": port_name, "port": 8444}],
            "endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": r}} for r in ready]}


@pytest.mark.parametrize(("slices", "status"), [
    ([eps("admin-tls", True)], Status.PASS),
    ([eps("kong-admin-tls", True, False)], Status.PASS),
    ([eps("admin-tls", False)], Status.FAIL),
    ([eps("admin", True)], Status.FAIL),  # only the TLS admin port is what KIC looks for
    ([], Status.FAIL),
])
def test_admin_endpoints(slices: list[Obj], status: Status) -> None:
    (result,) = doctor.check_admin_endpoints(CFG, Snapshot(admin_slices=slices))
    assert result.status is status


def gc(controller: str = "konghq.com/kic-gateway-controller", annotated: bool = True,
       accepted: str | None = "True") -> Obj:
    meta: Obj = {"name": "kong-class"}
    if annotated:
        meta["annotations"] = {"konghq.com/gatewayclass-unmanaged": "true"}
    obj: Obj = {"metadata": meta, "spec": {"controllerName": controller}}
    if accepted:
        obj["status"] = {"conditions": [{"type": "Accepted", "status": accepted,
                                         "reason": "Accepted" if accepted == "True"
                                         else "InvalidParameters"}]}
    return obj


@pytest.mark.parametrize(("obj", "status", "text"), [
    (gc(), Status.PASS, ""),
    (None, Status.FAIL, "not found"),
    (gc(controller="example.com/other"), Status.FAIL, "controllerName"),
    (gc(annotated=False), Status.FAIL, "missing annotation"),
    (gc(accepted="False"), Status.FAIL, "InvalidParameters"),
    (gc(accepted=None), Status.FAIL, "no Accepted condition"),
])
def test_gateway_class(obj: Obj | None, status: Status, text: str) -> None:
    (result,) = doctor.check_gateway_class(CFG, Snapshot(gateway_class=obj))
    assert result.status is status and text in result.message


def test_gateway_on_the_node_port() -> None:
    gw = {"metadata": {}, "spec": {"listeners": [{"name": "http", "port": 32001}]}}
    (result,) = doctor.check_gateway(CFG, Snapshot(gateway=gw))
    assert result.status is Status.FAIL and "not the node port" in result.hint


def test_route_with_missing_backend() -> None:
    route = {"metadata": {"namespace": "default"}, "status": {"parents": []}}
    snap = Snapshot(routes={"worlds-com-world1": route}, services=[])
    (result,) = doctor.check_routes(CFG, snap)
    assert "backend Service default/hello-world-1-svc not found" in result.message


SA: Obj = {"metadata": {"name": "lbsync", "namespace": "kong"}}


def granted(*extra: tuple[str, str, str, str], missing: int = 0) -> dict[Any, bool]:
    needs, refused = doctor.access_checks(CFG)
    access = {c: True for c in needs[missing:]} | {c: False for c in refused}
    return access | {c: True for c in extra}


@pytest.mark.parametrize(("snap", "status", "text"), [
    (Snapshot(service_account=SA, access=granted()), Status.PASS,
     "reads nodes and Service kong/kong-gateway-proxy; writes nothing"),
    (Snapshot(service_account=None), Status.FAIL, "ServiceAccount not found"),
    (Snapshot(service_account=SA, access=granted(missing=1)), Status.FAIL,
     "may not list nodes"),
    (Snapshot(service_account=SA, access=granted(("patch", "nodes", "", ""))), Status.WARN,
     "may also patch nodes"),
    (Snapshot(service_account=SA, access=granted(("list", "services", "kong", ""))),
     Status.WARN, "may also list services in kong"),
])
def test_access(snap: Snapshot, status: Status, text: str) -> None:
    result = doctor.check_access(CFG, snap)[0]
    assert result.status is status and text in result.message, result


@pytest.mark.parametrize(("credential", "secret", "status"), [
    ("secret", {"data": {"token": "dG9r"}}, Status.PASS),
    ("secret", {"data": {}}, Status.WARN),
    ("secret", None, Status.WARN),
    ("token-request", {"data": {"token": "dG9r"}}, Status.WARN),  # a standing credential
    ("token-request", None, None),
])
def test_token(credential: str, secret: Obj | None, status: Status | None) -> None:
    cfg = BootstrapConfig(access=AccessSection(credential=credential))
    results = doctor.check_token(cfg, Snapshot(token_secret=secret))
    assert [r.status for r in results] == ([status] if status else [])


def test_listeners_that_admit_anyone_warn() -> None:
    gw = {"spec": {"listeners": [{"name": "http", "port": 80,
                                  "allowedRoutes": {"namespaces": {"from": "All"}}}]}}
    (result,) = doctor.check_listeners(CFG, gw)
    assert result.status is Status.WARN
    assert result.message == "http admits routes for every namespace and any hostname"
    from lbsync.bootstrap import manifests

    (result,) = doctor.check_listeners(CFG, manifests.gateway(CFG))
    assert result.status is Status.PASS


def test_node_port_band_warning_is_left_to_check_pre() -> None:
    results = doctor.check_node_port(CFG, Snapshot(services=[svc("kong", "kong-gateway-proxy")]))
    assert [r.status for r in results] == [Status.PASS]


def test_old_bundle_warns() -> None:
    crd = {"metadata": {"annotations": {"gateway.networking.k8s.io/bundle-version": "v0.8.0"}},
           "status": {"conditions": [{"type": "Established", "status": "True"}]}}
    snap = Snapshot(crds={f"{p}.gateway.networking.k8s.io": crd for p in doctor.GATEWAY_API_CRDS})
    assert {r.status for r in doctor.check_crds(CFG, snap)} == {Status.WARN}
