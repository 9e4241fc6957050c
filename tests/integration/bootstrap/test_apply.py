"""apply / uninstall end to end: emulator, stand-in helm on PATH, stand-in Kong controller."""

from __future__ import annotations

import base64
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml
from lbsync_lab.fixtures import Env, helm_calls, statuses

from lbsync.bootstrap import actions, manifests
from lbsync.bootstrap.cluster import ApiCluster, obj_path
from lbsync.bootstrap.config import ConfigError
from lbsync.bootstrap.report import Status


def test_apply_installs_everything_and_waits(env: Env) -> None:
    report = actions.apply(env.ctx)
    got = statuses(report)
    assert not report.failed, report.results
    assert report.changed
    for plural in ("gatewayclasses", "gateways", "httproutes", "referencegrants"):
        assert got[f"CustomResourceDefinition/{plural}.gateway.networking.k8s.io"] == "done"
        assert got[f"CustomResourceDefinition/{plural}.gateway.networking.k8s.io Established"] \
            == "ready"
    assert got["Namespace/kong"] == "done"
    assert got["ClusterRole/lbsync-reader"] == "done"
    assert got["helm repo kong"] == "done"
    assert got["helm release kong/kong (ingress-0.10.2)"] == "done"
    assert got["Deployment/kong/kong-gateway available"] == "ready"
    assert got["GatewayClass/kong-class Accepted"] == "ready"
    assert got["Gateway/kong/kong-gateway Accepted+Programmed"] == "ready"
    assert got["HTTPRoute/default/worlds-com-world1 Accepted+ResolvedRefs+Programmed"] == "ready"

    gc = env.api.get("GatewayClass", "kong-class")
    assert gc["metadata"]["annotations"]["konghq.com/gatewayclass-unmanaged"] == "true"
    gw = env.api.get("Gateway", "kong-gateway", "kong")
    assert gw["spec"]["listeners"][0]["port"] == 80
    svc = env.api.get("Service", "kong-gateway-proxy", "kong")
    assert svc["spec"]["type"] == "NodePort"
    assert svc["spec"]["ports"][0]["nodePort"] == 32001
    managers = {m["manager"] for m in gw["metadata"]["managedFields"]}
    assert "lbsync" in managers

    calls = helm_calls(env.helm_bin)
    upgrade = [c for c in calls if c[:2] == ["upgrade", "--install"]]
    assert len(upgrade) == 1
    assert calls[calls.index(upgrade[0]) - 1][:3] == ["repo", "update", "kong"]
    argv = upgrade[0]
    assert argv[2:4] == ["kong", "kong/ingress"]
    assert argv[argv.index("--version") + 1] == "0.10.2"
    assert "--wait" in argv and argv[argv.index("-n") + 1] == "kong"


def test_second_apply_changes_nothing(env: Env) -> None:
    first = actions.apply(env.ctx)
    assert first.changed and not first.failed
    rvs = {k: env.api.get(*k)["metadata"]["resourceVersion"]
           for k in [("Gateway", "kong-gateway", "kong"), ("GatewayClass", "kong-class", None),
                     ("HTTPRoute", "worlds-com-world1", "default"), ("Namespace", "kong", None)]}
    second = actions.apply(env.ctx)
    assert not second.failed
    assert not second.changed, [r for r in second.results if r.status.changed]
    assert {r.status for r in second.results} <= {Status.UNCHANGED, Status.READY}
    assert second.summary().startswith("apply: unchanged")
    # The controller's annotation on the Gateway survived our apply (server-side apply).
    gw = env.api.get("Gateway", "kong-gateway", "kong")
    assert gw["metadata"]["annotations"]["konghq.com/publish-service"] == "kong/kong-gateway-proxy"
    assert {k: env.api.get(*k)["metadata"]["resourceVersion"] for k in rvs} == rvs
    assert len([c for c in helm_calls(env.helm_bin) if c[:1] == ["upgrade"]]) == 1


def test_dry_run_changes_nothing(env: Env) -> None:
    report = actions.apply(env.ctx, dry_run=True)
    assert not report.failed, report.results
    got = statuses(report)
    assert got["Namespace/kong"] == "would change"
    assert got["helm release kong/kong (ingress-0.10.2)"] == "would change"
    assert env.api.get("Namespace", "kong") is None
    assert not [c for c in helm_calls(env.helm_bin) if c[:1] in (["upgrade"], ["repo"])
                and c[:2] != ["repo", "list"]]


def test_dry_run_after_apply_is_all_unchanged(env: Env) -> None:
    actions.apply(env.ctx)
    report = actions.apply(env.ctx, dry_run=True)
    assert not report.changed, [r for r in report.results if r.status.changed]


def test_config_change_is_applied_as_update(env: Env) -> None:
    actions.apply(env.ctx)
    env.with_cfg(gateway__hostname="worlds.com")
    report = actions.apply(env.ctx)
    got = statuses(report)
    assert got["Gateway/kong/kong-gateway"] == "done"
    assert got["Namespace/kong"] == "unchanged"
    gw = env.api.get("Gateway", "kong-gateway", "kong")
    assert gw["spec"]["listeners"][0]["hostname"] == "worlds.com"


def test_chart_upgrade_reapplies_chart_crds_first(env: Env) -> None:
    actions.apply(env.ctx)
    env.with_cfg(kong__chart_version="0.11.0")
    report = actions.apply(env.ctx)
    names = [r.name for r in report.results]
    crd = names.index("CustomResourceDefinition/kongplugins.configuration.konghq.com")
    assert crd < names.index("helm release kong/kong (ingress-0.11.0)")
    calls = [c[:5] for c in helm_calls(env.helm_bin)]
    show = calls.index(["show", "crds", "kong/ingress", "--version", "0.11.0"])
    assert calls[-1][:2] == ["upgrade", "--install"] and show < len(calls) - 1


def test_newer_crds_are_not_downgraded(env: Env) -> None:
    actions.apply(env.ctx)
    crd = env.api.get("CustomResourceDefinition", "httproutes.gateway.networking.k8s.io")
    crd["metadata"]["annotations"]["gateway.networking.k8s.io/bundle-version"] = "v1.2.0"
    env.api.put(crd)
    report = actions.apply(env.ctx)
    got = statuses(report)
    assert got["CustomResourceDefinition/httproutes.gateway.networking.k8s.io"] == "skipped"
    assert got["CustomResourceDefinition/gateways.gateway.networking.k8s.io"] == "unchanged"
    live = env.api.get("CustomResourceDefinition", "httproutes.gateway.networking.k8s.io")
    assert live["metadata"]["annotations"]["gateway.networking.k8s.io/bundle-version"] == "v1.2.0"


def test_class_refused_fails_the_wait_with_a_hint(env: Env) -> None:
    env.controller.refuse_class = True
    env.with_cfg(wait_timeout=0.5)
    report = actions.apply(env.ctx)
    assert report.failed
    last = report.results[-1]
    assert last.name == "GatewayClass/kong-class Accepted"
    assert "InvalidParameters" in last.message
    assert last.hint


def test_helm_failure_is_one_line_naming_the_step(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_HELM_FAIL", "upgrade")
    report = actions.apply(env.ctx)
    assert report.failed
    last = report.results[-1]
    assert last.name == "Kong (helm)"
    assert last.status is Status.FAILED
    assert "injected failure" in last.message and "\n" not in last.message


def test_write_kubeconfig_for_the_gateway_host(env: Env, tmp_path: Path) -> None:
    actions.apply(env.ctx)
    cluster = env.ctx.cluster
    ep = cluster.endpoint()  # type: ignore[attr-defined]
    out, conf = tmp_path / "host" / "kubeconfig", tmp_path / "host" / "config.yaml"
    results = actions.write_kubeconfig(env.ctx, ep.server, ep.ca_pem, ep.insecure, str(out),
                                       str(conf), "/etc/lbsync/kubeconfig")
    assert [r.status for r in results] == [Status.DONE, Status.DONE]
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    kc = yaml.safe_load(out.read_text())
    assert kc["users"][0]["user"]["token"] == env.api.token
    assert kc["clusters"][0]["cluster"]["server"] == env.api.url
    ca = base64.b64decode(kc["clusters"][0]["cluster"]["certificate-authority-data"])
    assert ca == env.api.ca_path.read_bytes()
    lb = yaml.safe_load(conf.read_text())
    assert lb == {"kubernetes": {"kubeconfig": "/etc/lbsync/kubeconfig"},
                  "upstreams": [{"name": "k8s_cluster", "service": "kong/kong-gateway-proxy",
                                 "port": 80}]}
    # The gateway host's view: the written kubeconfig verifies TLS with the embedded CA and
    # reads what lbsync needs.
    host = ApiCluster(str(out))
    assert [n["metadata"]["name"] for n in host.list("v1", "Node")] == ["node-1"]
    proxy = host.get("v1", "Service", "kong-gateway-proxy", "kong")
    assert proxy is not None and proxy["spec"]["ports"][0]["nodePort"] == 32001


def test_written_config_loads_with_lbsync_config(env: Env, tmp_path: Path) -> None:
    from lbsync import config as lbsync_config

    actions.apply(env.ctx)
    ep = env.ctx.cluster.endpoint()  # type: ignore[attr-defined]
    kc, conf = tmp_path / "kubeconfig", tmp_path / "config.yaml"
    actions.write_kubeconfig(env.ctx, ep.server, ep.ca_pem, ep.insecure, str(kc), str(conf),
                             str(kc))
    cfg = lbsync_config.load(conf, check_paths=False)  # its paths are the gateway host's
    assert cfg.kubernetes.kubeconfig == kc
    assert [u.name for u in cfg.upstreams] == ["k8s_cluster"]


def test_uninstall_reverses_and_is_repeatable(env: Env) -> None:
    actions.apply(env.ctx)
    report = actions.uninstall(env.ctx)
    assert not report.failed, report.results
    got = statuses(report)
    assert got["HTTPRoute/default/worlds-com-world1"] == "deleted"
    assert got["helm release kong/kong"] == "deleted"
    assert got["Namespace/kong"] == "deleted"
    names = [r.name for r in report.results]
    assert names.index("Gateway/kong/kong-gateway") < names.index("helm release kong/kong")
    assert env.api.get("Namespace", "kong") is None
    assert env.api.get("Namespace", "default") is not None
    # CRDs are kept unless --purge
    assert env.api.get("CustomResourceDefinition", "gateways.gateway.networking.k8s.io")
    again = actions.uninstall(env.ctx, purge=True)
    assert not again.failed, again.results
    got = statuses(again)
    assert got["HTTPRoute/default/worlds-com-world1"] == "absent"
    assert got["helm release kong/kong"] == "absent"
    assert got["CustomResourceDefinition/gateways.gateway.networking.k8s.io"] == "deleted"


def test_uninstall_works_on_an_empty_cluster(env: Env) -> None:
    report = actions.uninstall(env.ctx, purge=True)
    assert not report.failed, report.results
    assert {r.status for r in report.results} == {Status.ABSENT}


def test_conflict_with_another_manager_fails_with_hint_then_force(env: Env) -> None:
    actions.apply(env.ctx)
    gw = manifests.gateway(env.cfg)
    gw["spec"]["listeners"][0]["port"] = 8080
    # What `kubectl apply --server-side` by someone else would do.
    cluster: Any = env.ctx.cluster
    cluster.request("Gateway", "PATCH", obj_path(gw), body=gw,
                    content_type="application/apply-patch+yaml", fieldManager="kubectl",
                    force="true")
    report = actions.apply(env.ctx)
    last = report.results[-1]
    assert last.status is Status.FAILED and "conflict" in last.message
    assert "--force-conflicts" in last.hint
    env.ctx.force_conflicts = True
    report = actions.apply(env.ctx)
    assert not report.failed
    assert statuses(report)["Gateway/kong/kong-gateway"] == "done"
    assert env.api.get("Gateway", "kong-gateway", "kong")["spec"]["listeners"][0]["port"] == 80


def test_bundle_is_downloaded_from_the_release_url(env: Env) -> None:
    from lbsync_lab.controllers import FileServer

    bundle_bytes = Path(env.cfg.gateway_api.crds_source).read_bytes()
    with FileServer("127.0.0.1", {"/v1.0.0/standard-install.yaml": bundle_bytes}) as srv:
        env.with_cfg(gateway_api__crds_file=None,
                     gateway_api__url=f"http://127.0.0.1:{srv.port}/{{version}}/standard-install.yaml")
        bundle = actions.load_bundle(env.cfg)
        assert len(bundle) == 4
        env.with_cfg(gateway_api__version="v9.9.9")
        with pytest.raises(ConfigError, match=r"cannot download.*--gateway-api-crds"):
            actions.load_bundle(env.cfg)


def test_helm_missing_fails_in_one_line(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    report = actions.apply(env.ctx)
    last = report.results[-1]
    assert (last.name, last.status) == ("Kong (helm)", Status.FAILED)
    assert last.message == "helm: 'helm' not found on PATH"


def test_transient_api_errors_are_retried(env: Env) -> None:
    cluster: Any = env.ctx.cluster
    cluster.sleep = lambda s: None
    env.api.faults.fail_next(2, 500, "/gateways/kong-gateway")
    env.api.faults.fail_next(1, 429, "/namespaces/kong")
    report = actions.apply(env.ctx)
    assert not report.failed, report.results


def test_persistent_api_errors_fail_in_one_line(env: Env) -> None:
    cluster: Any = env.ctx.cluster
    cluster.sleep = lambda s: None
    env.api.faults.fail_next(10, 500, "/gateways/kong-gateway")
    report = actions.apply(env.ctx)
    last = report.results[-1]
    assert last.status is Status.FAILED and last.name == "GatewayClass, Gateway, HTTPRoutes"
    assert last.message == "Gateway/kong/kong-gateway: injected failure (500) (HTTP 500)"


def test_api_outage_fails_in_one_line(env: Env) -> None:
    cluster: Any = env.ctx.cluster
    cluster.sleep = lambda s: None
    env.api.faults.set_outage(True)
    report = actions.apply(env.ctx)
    (only,) = report.results
    assert only.status is Status.FAILED
    assert "cannot reach the API server" in only.message and "\n" not in only.message
    env.api.faults.set_outage(False)
