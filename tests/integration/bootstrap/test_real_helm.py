"""`lbsync bootstrap` with each real helm (4.1.4 and 3.17.3, scripts/get-tools.sh) and the
real kong/ingress charts (0.10.2 and 0.24.0, served on loopback) against the emulator: apply
from an empty cluster, a rerun that writes nothing, check --pre, doctor, verify, the gateway
host's kubeconfig under the emulator's RBAC, an upgrade from 0.10.2, uninstall, and the
failures real helm makes (a wait that times out, an object helm may not adopt, a missing
chart version, an uninstall that fails halfway)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from lbsync_lab.controllers import FakeKong
from lbsync_lab.fixtures import HELMS, KongInstalls, Lab, lab, snapshot, statuses
from lbsync_lab.rig import addr
from lbsync_lab.sim.clients import ChartRepo

from lbsync import config as lbsync_config
from lbsync import kube, sync
from lbsync.bootstrap import actions, checks, doctor, verify
from lbsync.bootstrap.cluster import ApiCluster
from lbsync.bootstrap.report import Report, Status
from lbsync.errors import ApiError

Obj = dict[str, Any]
USER = "system:serviceaccount:kong:lbsync"


@dataclass
class Install:
    lab: Lab
    report: Report


@pytest.fixture(scope="module", params=HELMS)
def install(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
            chart_repo: ChartRepo, kong_install: KongInstalls) -> Iterator[Install]:
    """`lbsync bootstrap apply` with this helm from an empty emulator, for the tests below,
    which only read it (it also serves the session's copies, `kong_install`)."""
    helm_name = str(request.param)
    with lab(tmp_path_factory.mktemp(f"install-{helm_name}"), helm_name, chart_repo) as the_lab:
        start = time.monotonic()
        report = actions.apply(the_lab.ctx)
        kong_install.record(helm_name, report, time.monotonic() - start, the_lab.api)
        yield Install(the_lab, report)


def failed(report: Report) -> list[Any]:
    return [r for r in report.results if r.status.failed]


def keys(api: Any, since: list[Obj] | None = None) -> set[tuple[str, str, str]]:
    objs = snapshot(api) if since is None else since
    return {(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]) for o in objs}


def eventually(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# ---- one install per helm, read by the tests below ----------------------------------------

def test_apply_from_an_empty_cluster(install: Install) -> None:
    the_lab, report = install.lab, install.report
    got = statuses(report)
    for crd in ("gatewayclasses", "gateways", "httproutes", "referencegrants"):
        assert got[f"CustomResourceDefinition/{crd}.gateway.networking.k8s.io"] == "done"
        assert got[f"CustomResourceDefinition/{crd}.gateway.networking.k8s.io Established"] \
            == "ready"
    assert got["helm release kong/kong (ingress-0.24.0)"] == "done"
    assert got["Deployment/kong/kong-gateway available"] == "ready"
    assert got["HTTPRoute/default/worlds-com-world1 Accepted+ResolvedRefs+Programmed"] == "ready"
    history = the_lab.history()
    assert [(h["revision"], h["status"], h["chart"]) for h in history] == [
        (1, "deployed", "ingress-0.24.0")]
    api = the_lab.api
    # The chart's objects, made by helm; the stand-in controllers made them available.
    for name in ("kong-controller", "kong-gateway"):
        dep = api.get("Deployment", name, "kong")
        assert dep is not None and dep["status"]["availableReplicas"] == 1
    proxy = api.get("Service", "kong-gateway-proxy", "kong")
    assert proxy is not None and proxy["spec"]["type"] == "NodePort"
    assert [(p["port"], p["nodePort"]) for p in proxy["spec"]["ports"]] == [(80, 32001)]
    assert api.get("ClusterRole", "kong-controller") and api.get("IngressClass", "kong")
    assert api.list("ValidatingWebhookConfiguration")
    # Safer values: no plain-HTTP admin listener, no Kong Manager NodePort.
    admin = api.get("Service", "kong-gateway-admin", "kong")
    assert admin is not None and 8001 not in [p["port"] for p in admin["spec"]["ports"]]
    assert api.get("Service", "kong-gateway-manager", "kong") is None
    env = {e["name"]: e.get("value") for c in api.get("Deployment", "kong-gateway", "kong")[
        "spec"]["template"]["spec"]["containers"] for e in c.get("env") or []}
    assert env["KONG_ADMIN_LISTEN"] and "8001" not in env["KONG_ADMIN_LISTEN"]
    # lbsync's account: Nodes cluster-wide, the proxy Service by name, nothing else.
    assert api.get("ClusterRole", "lbsync-reader")["rules"] == [
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]}]
    assert api.get("Role", "lbsync-reader", "kong")["rules"] == [
        {"apiGroups": [""], "resources": ["services"], "verbs": ["get", "list", "watch"],
         "resourceNames": ["kong-gateway-proxy"]}]
    assert api.get("Secret", "lbsync-token", "kong") is None  # no never-expiring token
    # The listener admits the route's host from the route's namespace only.
    (listener,) = api.get("Gateway", "kong-gateway", "kong")["spec"]["listeners"]
    assert listener["hostname"] == "worlds.com"
    assert listener["allowedRoutes"]["namespaces"] == {"from": "Selector", "selector": {
        "matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In",
                              "values": ["default"]}]}}
    gw = api.get("Gateway", "kong-gateway", "kong")
    assert gw["status"]["listeners"][0]["attachedRoutes"] == 1
    assert "lbsync" in {m["manager"] for m in gw["metadata"]["managedFields"]}
    gc = api.get("GatewayClass", "kong-class")
    assert gc["metadata"]["annotations"]["konghq.com/gatewayclass-unmanaged"] == "true"


def test_a_second_apply_writes_nothing_and_runs_no_upgrade(install: Install) -> None:
    the_lab = install.lab
    before = len(the_lab.api.requests)
    report = actions.apply(the_lab.ctx)
    assert not report.failed and not report.changed, [
        r for r in report.results if r.status.changed or r.status.failed]
    assert report.summary().startswith("apply: unchanged")
    dry = actions.apply(the_lab.ctx, dry_run=True)
    assert not dry.changed and not dry.failed
    assert the_lab.writes(before) == []
    assert [h["revision"] for h in the_lab.history()] == [1]
    # KIC's annotation on the Gateway is left alone (server-side apply, own fields only).
    gw = the_lab.api.get("Gateway", "kong-gateway", "kong")
    assert gw["metadata"]["annotations"]["konghq.com/publish-service"] == (
        "kong/kong-gateway-proxy")


def test_check_pre_on_the_install_passes(install: Install) -> None:
    the_lab = install.lab
    before = len(the_lab.api.requests)
    report = checks.run_pre(the_lab.cfg, the_lab.ctx.cluster, the_lab.ctx.helm)
    assert not report.failed, failed(report)
    got = {r.name: r for r in report.results}
    assert got["helm"].status is Status.PASS
    assert got["helm"].message == {"helm4": "v4.1.4", "helm3": "v3.17.3"}[the_lab.helm_name]
    assert got["helm chart ingress-0.24.0"].status is Status.PASS
    assert the_lab.writes(before) == []  # helm's own check is a server-side dry run


def test_doctor_and_verify_pass(install: Install) -> None:
    the_lab = install.lab
    report = doctor.diagnose(the_lab.cfg, doctor.gather(the_lab.cfg, the_lab.ctx.cluster))
    assert {r.status for r in report.results} == {Status.PASS}, [
        r for r in report.results if r.status is not Status.PASS]
    assert statuses(report)["lbsync account kong/lbsync"] == "PASS"
    with FakeKong(the_lab.api, addr(1)) as kong:
        probed = verify.run_verify(the_lab.cfg, the_lab.ctx.cluster, None, kong.port)
    assert [r.status for r in probed.results] == [Status.PASS, Status.PASS], probed.results


def test_the_gateway_kubeconfig_reads_what_lbsync_needs_and_writes_nothing(
        install: Install, tmp_path: Path) -> None:
    the_lab, api = install.lab, install.lab.api
    ep = the_lab.ctx.cluster.endpoint()  # type: ignore[attr-defined]
    kc, conf = tmp_path / "kubeconfig", tmp_path / "config.yaml"
    results = actions.write_kubeconfig(the_lab.ctx, ep.server, ep.ca_pem, ep.insecure, str(kc),
                                       str(conf), str(kc))
    assert "token expires" in results[0].message
    # What the daemon does, with its own code: list Nodes, list and watch the one Service.
    cfg = lbsync_config.load(conf, check_paths=False)
    client = kube.Client.from_config(cfg.kubernetes)
    try:
        snap = sync.fetch_snapshot(client, cfg)
        assert list(snap.nodes) == ["node-1"]
        assert list(snap.services) == ["kong/kong-gateway-proxy"]
        listed = client.list(kube.service("kong", "kong-gateway-proxy"))
        proxy = api.get("Service", "kong-gateway-proxy", "kong")
        touched = json.loads(json.dumps(proxy))
        touched["metadata"].setdefault("annotations", {})["touched"] = "by the test"
        api.put(touched)
        events = list(client.watch(kube.service("kong", "kong-gateway-proxy"),
                                   listed.resource_version, 1))
        assert any(e.type == "MODIFIED" for e in events), events
    finally:
        client.close()
        api.put(proxy)  # as helm left it: the other tests read this lab
    # Every write is refused, and every read beyond those.
    gateway = ApiCluster(str(kc))
    rv = api.resource_version
    refused = [
        ("POST", "/api/v1/namespaces/kong/services", {"metadata": {"name": "x"}}),
        ("PATCH", "/api/v1/nodes/node-1", {"metadata": {"labels": {"x": "y"}}}),
        ("DELETE", "/api/v1/nodes/node-1", None),
        ("PATCH", "/api/v1/namespaces/kong/services/kong-gateway-proxy",
         {"metadata": {"labels": {"x": "y"}}}),
        ("DELETE", "/api/v1/namespaces/kong/services/kong-gateway-proxy", None),
        ("POST", "/api/v1/namespaces/kong/configmaps", {"metadata": {"name": "x"}}),
        ("POST", "/api/v1/namespaces/kong/serviceaccounts/lbsync/token", {"spec": {}}),
        ("DELETE", "/apis/apps/v1/namespaces/kong/deployments/kong-gateway", None),
        ("PATCH", "/apis/gateway.networking.k8s.io/v1/namespaces/kong/gateways/kong-gateway",
         {"metadata": {"labels": {"x": "y"}}}),
        ("POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
         {"metadata": {"name": "x"}}),
        ("GET", "/api/v1/namespaces/kong/services", None),
        ("GET", "/api/v1/namespaces/kong/services/kong-gateway-admin", None),
        ("GET", "/api/v1/namespaces/kong/secrets", None),
        ("GET", "/apis/discovery.k8s.io/v1/namespaces/kong/endpointslices", None),
    ]
    for method, path, body in refused:
        content = "application/merge-patch+json" if method == "PATCH" else "application/json"
        with pytest.raises(ApiError) as exc:
            gateway.request(path, method, path, body=body, content_type=content)
        assert exc.value.status == 403, (method, path)
        assert f'User "{USER}" cannot' in str(exc.value)
    assert api.resource_version == rv


# ---- each its own cluster --------------------------------------------------------------------

@pytest.fixture(params=HELMS)
def helm_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_upgrade_from_0_10_2_then_uninstall(helm_name: str, tmp_path: Path,
                                           chart_repo: ChartRepo) -> None:
    with lab(tmp_path, helm_name, chart_repo) as the_lab:
        api = the_lab.api
        assert eventually(lambda: bool(api.list("EndpointSlice", "default")))  # the backend's
        empty = keys(api)
        # What earlier versions of lbsync installed: chart 0.10.2, admin HTTP and Manager on.
        the_lab.with_cfg(kong__chart_version="0.10.2", kong__admin_http=True,
                         kong__manager=True)
        first = actions.apply(the_lab.ctx)
        assert not first.failed, failed(first)
        assert api.get("Service", "kong-gateway-manager", "kong") is not None
        the_lab.with_cfg(kong__chart_version="0.24.0", kong__admin_http=False,
                         kong__manager=False)
        report = actions.apply(the_lab.ctx)
        assert not report.failed, failed(report)
        got = statuses(report)
        names = [r.name for r in report.results]
        release = "helm release kong/kong (ingress-0.24.0)"
        assert got[release] == "done"
        assert "upgraded from ingress-0.10.2" in report.results[names.index(release)].message
        # helm leaves chart CRDs alone on upgrade: lbsync applied 0.24.0's first
        kong_crds = [n for n in names if n.endswith(".configuration.konghq.com")]
        assert kong_crds and names.index(kong_crds[0]) < names.index(release)
        assert [(h["status"], h["chart"]) for h in the_lab.history()] == [
            ("superseded", "ingress-0.10.2"), ("deployed", "ingress-0.24.0")]
        gw = api.get("Deployment", "kong-gateway", "kong")
        assert [c["image"] for c in gw["spec"]["template"]["spec"]["containers"]] == ["kong:3.9"]
        assert api.get("Service", "kong-gateway-manager", "kong") is None

        gone = actions.uninstall(the_lab.ctx)
        assert not gone.failed, failed(gone)
        assert statuses(gone)["Namespace/kong"] == "deleted"

        def only_crds_left() -> bool:
            return {k for k in keys(api) - empty if k[0] != "CustomResourceDefinition"} == set()

        # (ReplicaSets and EndpointSlices go with their owners, by the garbage collector)
        assert eventually(only_crds_left), {k for k in keys(api) - empty
                                            if k[0] != "CustomResourceDefinition"}
        left = {k[2] for k in keys(api) - empty}
        assert {n for n in left if n.endswith(".gateway.networking.k8s.io")} == {
            f"{p}.gateway.networking.k8s.io" for p in
            ("gatewayclasses", "gateways", "httproutes", "referencegrants")}
        purged = actions.uninstall(the_lab.ctx, purge=True)
        assert not purged.failed, failed(purged)
        left = {k[2] for k in keys(api) - empty}
        # Kong's own CRDs stay, as helm leaves a chart's CRDs.
        assert left and all(n.endswith(".konghq.com") for n in left), left


def test_a_wait_that_times_out_names_the_deployment(helm_name: str, tmp_path: Path,
                                                   chart_repo: ChartRepo) -> None:
    with lab(tmp_path, helm_name, chart_repo, wait_timeout=1) as the_lab:
        the_lab.controller.deployments.unready.add(("kong", "kong-gateway"))
        report = actions.apply(the_lab.ctx)
        last = report.results[-1]
        assert (last.name, last.status) == ("Kong (helm)", Status.FAILED)
        assert "\n" not in last.message
        assert last.message.startswith("helm upgrade: ")
        assert ("not ready: Deployment kong/kong-gateway: 0/1 available (Available=False "
                "MinimumReplicasUnavailable: Deployment does not have minimum availability.)"
                ) in last.message, last.message
        assert "kong-controller" not in last.message.split("not ready:")[1]
        assert "describe deployment" in last.hint
        assert "Kong Deployments" not in statuses(report)  # later steps did not run
        # Once the pods are ready a rerun upgrades the failed release and finishes.
        the_lab.controller.deployments.unready.clear()
        the_lab.with_cfg(wait_timeout=30)
        again = actions.apply(the_lab.ctx)
        assert not again.failed, failed(again)
        assert "upgraded from ingress-0.24.0 (failed)" in " ".join(
            r.message for r in again.results)


def test_an_object_helm_may_not_adopt_fails_check_pre_and_apply_says_why(
        helm_name: str, tmp_path: Path, chart_repo: ChartRepo) -> None:
    with lab(tmp_path, helm_name, chart_repo) as the_lab:
        api = the_lab.api
        # The proxy Service made by hand, without helm's ownership labels.
        api.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kong"}})
        api.put({"apiVersion": "v1", "kind": "Service",
                 "metadata": {"name": "kong-gateway-proxy", "namespace": "kong"},
                 "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 32001}]}})
        before = len(api.requests)
        dry = actions.apply(the_lab.ctx, dry_run=True)  # helm's dry run says so too
        assert dry.results[-1].name == "Kong (helm)" and "invalid ownership" in (
            dry.results[-1].message)
        pre = checks.run_pre(the_lab.cfg, the_lab.ctx.cluster, the_lab.ctx.helm)
        assert the_lab.writes(before) == []
        chart = next(r for r in pre.results if r.name == "helm chart ingress-0.24.0")
        assert chart.status is Status.FAIL
        assert ('Service "kong-gateway-proxy" in namespace "kong" exists and cannot be '
                'imported into the current release: invalid ownership metadata') in chart.message
        assert "meta.helm.sh/release-name=kong" in chart.hint
        report = actions.apply(the_lab.ctx)
        last = report.results[-1]
        assert (last.name, last.status) == ("Kong (helm)", Status.FAILED)
        assert 'missing key "meta.helm.sh/release-namespace": must be set to "kong"' in (
            last.message) and "\n" not in last.message
        # A chart version the repository does not have is caught before anything changes.
        the_lab.with_cfg(kong__chart_version="9.9.9")
        pre = checks.run_pre(the_lab.cfg, the_lab.ctx.cluster, the_lab.ctx.helm)
        chart = next(r for r in pre.results if r.name == "helm chart ingress-9.9.9")
        assert chart.status is Status.FAIL
        assert f'chart "ingress" version "9.9.9" not found in {chart_repo.url}' in chart.message
        assert "--chart-version" in chart.hint


def test_uninstall_keeps_the_namespace_while_the_release_stays(
        helm_name: str, tmp_path: Path, chart_repo: ChartRepo,
        kong_install: KongInstalls) -> None:
    seed = kong_install(helm_name).objects
    with lab(tmp_path, helm_name, chart_repo, seed) as the_lab:
        api = the_lab.api
        api.faults.fail_next(1000, 500, "/deployments/kong-gateway")
        report = actions.uninstall(the_lab.ctx)
        got = statuses(report)
        helm_step = next(r for r in report.results if r.name == "Kong (helm)")
        assert helm_step.status is Status.FAILED
        assert helm_step.message == ("helm uninstall kong: failed to delete release: kong (cause: "
                                     "[injected failure (500)])")
        assert "namespace kong is kept" in helm_step.hint
        assert got["namespaces"] == "skipped"
        assert got["HTTPRoute/default/worlds-com-world1"] == "deleted"
        assert got["ServiceAccount/kong/lbsync"] == "deleted"  # independent: went on
        assert api.get("Namespace", "kong") is not None
        releases = json.loads(the_lab.helm("list", "-n", "kong", "-o", "json",
                                           *(["-a"] if helm_name == "helm3" else [])))
        assert [r["status"] for r in releases] == ["uninstalling"]
        api.faults.clear()
        again = actions.uninstall(the_lab.ctx)
        assert not again.failed, failed(again)
        assert statuses(again)["Namespace/kong"] == "deleted"
        for kind, name in (("ClusterRole", "kong-controller"), ("IngressClass", "kong"),
                           ("ClusterRoleBinding", "kong-controller")):
            assert api.get(kind, name) is None, (kind, name)
        assert api.list("ValidatingWebhookConfiguration") == []
