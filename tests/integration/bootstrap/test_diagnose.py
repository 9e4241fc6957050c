"""check --pre, verify and doctor against the emulator with the real helm 4, healthy and with
each known failure (doctor's on a fresh copy of a real install per test)."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

from lbsync_lab.fixtures import Lab, statuses
from lbsync_lab.rig import addr

from lbsync.bootstrap import actions, checks, doctor, manifests, verify
from lbsync.bootstrap.helm import Helm
from lbsync.bootstrap.report import Report, Status


def eventually(fn: Callable[[], Report], ok: Callable[[Report], bool],
               timeout: float = 3.0) -> Report:
    """Let the stand-in controller react, then return the first report that satisfies `ok`."""
    deadline = time.monotonic() + timeout
    while True:
        report = fn()
        if ok(report) or time.monotonic() > deadline:
            return report
        time.sleep(0.03)


def run_doctor(env: Lab) -> Report:
    return doctor.diagnose(env.cfg, doctor.gather(env.cfg, env.ctx.cluster))


def failing(report: Report, name: str) -> Any:
    return next((r for r in report.results if r.name == name and r.status is Status.FAIL), None)


def edit(env: Lab, kind: str, name: str, ns: str | None, fn: Callable[[dict[str, Any]], None],
         ) -> None:
    with env.api.store.cond:  # the stand-in controller writes too: no lost updates
        obj = copy.deepcopy(env.api.get(kind, name, ns))
        fn(obj)
        env.api.put(obj)


# ---- check --pre --------------------------------------------------------------------------

def test_check_pre_on_an_empty_cluster(env: Lab) -> None:
    report = checks.run_pre(env.cfg, env.ctx.cluster, env.ctx.helm)
    got = statuses(report)
    assert got["kubernetes version"] == "PASS"
    assert got["helm"] == "PASS"
    assert got["permission create customresourcedefinitions.apiextensions.k8s.io"] == "PASS"
    assert got["node port 32001"] == "PASS"
    assert got["node port 32001 band"] == "WARN"  # 32001 lies in the dynamic band
    assert got["Gateway API CRDs"] == "PASS"
    assert got["backend default/hello-world-1-svc"] == "PASS"
    assert got["permission create serviceaccounts/token"] == "PASS"
    assert got["helm chart ingress-0.24.0"] == "PASS"
    assert report.exit_code() == 3


def test_check_pre_failures(env: Lab) -> None:
    env.api.deny("create", "clusterroles")
    env.api.put({"apiVersion": "v1", "kind": "Service",
                 "metadata": {"name": "squatter", "namespace": "default"},
                 "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 32001}]}})
    report = checks.run_pre(env.cfg, env.ctx.cluster, Helm(binary="no-such-helm"))
    got = statuses(report)
    assert got["permission create clusterroles.rbac.authorization.k8s.io"] == "FAIL"
    assert got["helm"] == "FAIL"
    assert "already allocated by Service default/squatter" in failing(
        report, "node port 32001").message
    assert "helm chart ingress-0.24.0" not in got  # no helm to ask
    assert report.exit_code() == 1


def test_check_pre_node_port_out_of_range(env: Lab) -> None:
    env.with_cfg(kong__node_port=40000)
    report = checks.run_pre(env.cfg, env.ctx.cluster, env.ctx.helm)
    assert "outside the cluster's NodePort range" in failing(report, "node port 40000").message


def test_check_pre_sees_the_installed_bundle(installed: Lab) -> None:
    report = checks.run_pre(installed.cfg, installed.ctx.cluster, installed.ctx.helm)
    got = {r.name: r for r in report.results}
    assert got["Gateway API CRDs"].message == "v1.0.0 installed"
    # Our own proxy Service holding the node port is not a conflict.
    assert got["node port 32001"].status is Status.PASS


def test_apply_with_the_node_port_taken_fails_in_one_line(env: Lab) -> None:
    env.api.put({"apiVersion": "v1", "kind": "Service",
                 "metadata": {"name": "squatter", "namespace": "default"},
                 "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 32001}]}})
    report = actions.apply(env.ctx)
    last = report.results[-1]
    assert last.status is Status.FAILED and last.name == "Kong (helm)"
    # The real helm's words, with the API server's: the Service and the port.
    assert 'Service "kong-gateway-proxy" is invalid' in last.message
    assert "32001: provided port is already allocated" in last.message
    assert "\n" not in last.message


# ---- doctor -------------------------------------------------------------------------------

def test_doctor_healthy(installed: Lab) -> None:
    report = run_doctor(installed)
    assert not report.failed and not report.warned, [
        r for r in report.results if r.status is not Status.PASS]
    names = [r.name for r in report.results]
    assert "admin endpoints kong/kong-gateway-admin" in names
    assert "gatewayclass kong-class" in names


def test_doctor_on_an_empty_cluster_names_what_is_missing(env: Lab) -> None:
    report = run_doctor(env)
    assert failing(report, "crd gateways").hint == "run `lbsync bootstrap apply`"
    assert failing(report, "deployment kong-gateway")
    assert failing(report, "gatewayclass kong-class")


def test_doctor_class_not_accepted(installed: Lab) -> None:
    installed.controller.refuse_class = True
    report = eventually(lambda: run_doctor(installed),
                        lambda r: failing(r, "gatewayclass kong-class") is not None)
    result = failing(report, "gatewayclass kong-class")
    assert "InvalidParameters" in result.message and result.hint


def test_doctor_missing_unmanaged_annotation(installed: Lab) -> None:
    edit(installed, "GatewayClass", "kong-class", None,
         lambda o: o["metadata"].pop("annotations"))
    result = failing(run_doctor(installed), "gatewayclass kong-class")
    assert "missing annotation konghq.com/gatewayclass-unmanaged" in result.message
    assert "kubectl annotate gatewayclass kong-class" in result.hint
    # apply puts it back
    assert not actions.apply(installed.ctx).failed
    assert failing(run_doctor(installed), "gatewayclass kong-class") is None


def test_doctor_listener_port_unavailable(installed: Lab) -> None:
    def to_node_port(o: dict[str, Any]) -> None:
        o["spec"]["listeners"][0]["port"] = 32001

    edit(installed, "Gateway", "kong-gateway", "kong", to_node_port)
    result = failing(run_doctor(installed), "gateway kong/kong-gateway")
    assert "node port 32001" in result.message
    assert "not the node port" in result.hint
    # and the controller's own verdict says PortUnavailable, which the apply wait reports
    installed.with_cfg(kong__node_port=32001, kong__proxy_port=80)

    def programmed_false(r: Report) -> bool:
        gw = installed.api.get("Gateway", "kong-gateway", "kong")
        listeners = (gw.get("status") or {}).get("listeners") or []
        return any(c["reason"] == "PortUnavailable" for ls in listeners
                   for c in ls["conditions"])

    eventually(lambda: Report("x"), programmed_false)
    from lbsync.bootstrap import conditions

    verdict = conditions.gateway(installed.api.get("Gateway", "kong-gateway", "kong"), "k/g")
    assert not verdict.ok and "not the node port" in verdict.hint


def test_doctor_kong_not_ready(installed: Lab) -> None:
    """Kong's pods not ready: the Deployment and the admin endpoints KIC needs both fail."""
    installed.controller.deployments.unready.add(("kong", "kong-gateway"))
    name = "admin endpoints kong/kong-gateway-admin"
    report = eventually(lambda: run_doctor(installed), lambda r: failing(r, name) is not None)
    result = failing(report, name)
    assert "no ready endpoints with an admin-tls port" in result.message
    assert "admin API" in result.hint
    dep = failing(report, "deployment kong-gateway")
    assert "0/1 available (Available=False MinimumReplicasUnavailable" in dep.message
    assert "kubectl -n kong describe deployment kong-gateway" in dep.hint


def test_doctor_route_not_allowed_by_listeners(installed: Lab) -> None:
    def same_namespace(o: dict[str, Any]) -> None:
        o["spec"]["listeners"][0]["allowedRoutes"] = {"namespaces": {"from": "Same"}}

    edit(installed, "Gateway", "kong-gateway", "kong", same_namespace)
    name = "httproute default/worlds-com-world1"
    report = eventually(lambda: run_doctor(installed), lambda r: failing(r, name) is not None)
    result = failing(report, name)
    assert "NotAllowedByListeners" in result.message
    assert "add the route there" in result.hint


def test_a_route_from_another_namespace_is_not_admitted(installed: Lab) -> None:
    """The Gateway admits routes only from the configured routes' namespaces: an HTTPRoute
    someone adds elsewhere, claiming the same host, is refused."""
    installed.api.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "rogue"}})
    rogue = manifests.http_route(installed.cfg, installed.cfg.routes[0])
    rogue["metadata"]["namespace"] = "rogue"
    installed.api.put(rogue)

    def verdict() -> Any:
        route = installed.api.get("HTTPRoute", rogue["metadata"]["name"], "rogue")
        return (route.get("status") or {}).get("parents")

    eventually(lambda: Report("x"), lambda r: bool(verdict()))
    conds = {c["type"]: c for c in verdict()[0]["conditions"]}
    assert (conds["Accepted"]["status"], conds["Accepted"]["reason"]) == (
        "False", "NotAllowedByListeners")
    gw = installed.api.get("Gateway", "kong-gateway", "kong")
    assert gw["status"]["listeners"][0]["attachedRoutes"] == 1  # only the configured one


def test_doctor_backend_not_found_and_verify_fails(installed: Lab, kong: Any) -> None:
    installed.api.delete("Service", "hello-world-1-svc", "default")
    name = "httproute default/worlds-com-world1"
    result = failing(run_doctor(installed), name)
    assert "backend Service default/hello-world-1-svc not found" in result.message
    assert "create it" in result.hint
    # Kong drops the route once the controller marks it unprogrammed: verify sees Kong's 404.
    report = eventually(
        lambda: verify.run_verify(installed.cfg, installed.ctx.cluster, None, kong.port),
        lambda r: r.failed)
    fail = report.results[0]
    assert fail.status is Status.FAIL and "no Route matched" in fail.message


def test_doctor_node_port_moved(installed: Lab) -> None:
    def other_port(o: dict[str, Any]) -> None:
        o["spec"]["ports"][0]["nodePort"] = 31999

    edit(installed, "Service", "kong-gateway-proxy", "kong", other_port)
    result = failing(run_doctor(installed), "service kong/kong-gateway-proxy")
    assert "node port 31999, expected 32001" in result.message


# ---- verify -------------------------------------------------------------------------------

def test_verify_through_kong(installed: Lab, kong: Any) -> None:
    report = verify.run_verify(installed.cfg, installed.ctx.cluster, None, kong.port)
    assert not report.failed, report.results
    assert report.extra["target"] == f"{addr(1)}:{kong.port}"
    assert [r.status for r in report.results] == [Status.PASS, Status.PASS]
    assert kong.requests[0] == ("worlds.com", "/world1")
    assert kong.requests[1][0] == verify.UNKNOWN_HOST


def test_verify_before_install_fails(env: Lab, kong: Any) -> None:
    report = verify.run_verify(env.cfg, env.ctx.cluster, None, kong.port)
    assert report.failed
    assert "no Route matched" in report.results[0].message


def test_verify_nothing_listening(env: Lab) -> None:
    report = verify.run_verify(env.cfg, None, "127.0.20.2", 9, timeout=1.0)
    assert report.failed and "cannot connect" in report.results[0].message
