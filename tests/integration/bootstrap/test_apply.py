"""apply, the gateway host's kubeconfig, renew-token and uninstall against the emulator with
the real helm 4: each test on a fresh emulator, empty (`env`) or holding a copy of a real
install (`installed`). The per-helm lifecycle is in test_real_helm.py."""

from __future__ import annotations

import base64
import stat
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from lbsync_lab.fixtures import Lab, statuses

from lbsync.bootstrap import actions, manifests
from lbsync.bootstrap.cluster import ApiCluster, obj_path
from lbsync.bootstrap.config import ConfigError
from lbsync.bootstrap.helm import Helm
from lbsync.bootstrap.report import Status
from lbsync.errors import ApiError

GATEWAY_CRDS = [f"{p}.gateway.networking.k8s.io"
                for p in ("gatewayclasses", "gateways", "httproutes", "referencegrants")]


def test_dry_run_changes_nothing(env: Lab) -> None:
    before = len(env.api.requests)
    report = actions.apply(env.ctx, dry_run=True)
    assert not report.failed, report.results
    got = statuses(report)
    assert got["Namespace/kong"] == "would change"
    assert got["helm release kong/kong (ingress-0.24.0)"] == "would change"
    assert got[f"CustomResourceDefinition/{GATEWAY_CRDS[0]}"] == "would change"
    assert env.writes(before) == []
    assert env.api.get("Namespace", "kong") is None


def test_config_change_is_applied_as_update(installed: Lab) -> None:
    installed.with_cfg(gateway__hostname="*.com")
    before = len(installed.api.requests)
    report = actions.apply(installed.ctx)
    assert not report.failed, report.results
    got = statuses(report)
    assert got["Gateway/kong/kong-gateway"] == "done"
    assert got["Namespace/kong"] == "unchanged"
    assert got["helm release kong/kong (ingress-0.24.0)"] == "unchanged"
    # Only the Gateway was written.
    assert [r[1].split("?")[0] for r in installed.writes(before)] == [
        "/apis/gateway.networking.k8s.io/v1/namespaces/kong/gateways/kong-gateway"]
    (listener,) = installed.api.get("Gateway", "kong-gateway", "kong")["spec"]["listeners"]
    assert (listener["name"], listener["hostname"]) == ("http", "*.com")


def test_a_field_lbsync_no_longer_sets_is_removed(installed: Lab) -> None:
    """What server-side apply owns is compared too: the route without strip_path is a subset
    of the live one, yet lbsync owns the annotation and must apply to remove it."""
    route = installed.cfg.routes[0]
    live = installed.api.get("HTTPRoute", route.object_name, "default")
    assert live["metadata"]["annotations"]["konghq.com/strip-path"] == "true"
    installed.with_cfg(routes=(replace(route, strip_path=False),))
    report = actions.apply(installed.ctx)
    assert statuses(report)["HTTPRoute/default/worlds-com-world1"] == "done"
    live = installed.api.get("HTTPRoute", route.object_name, "default")
    assert "konghq.com/strip-path" not in (live["metadata"].get("annotations") or {})
    assert not actions.apply(installed.ctx).changed


def test_newer_crds_are_not_downgraded(installed: Lab) -> None:
    crd = installed.api.get("CustomResourceDefinition", GATEWAY_CRDS[2])
    crd["metadata"]["annotations"]["gateway.networking.k8s.io/bundle-version"] = "v1.2.0"
    installed.api.put(crd)
    report = actions.apply(installed.ctx)
    got = statuses(report)
    assert got[f"CustomResourceDefinition/{GATEWAY_CRDS[2]}"] == "skipped"
    assert got[f"CustomResourceDefinition/{GATEWAY_CRDS[1]}"] == "unchanged"
    live = installed.api.get("CustomResourceDefinition", GATEWAY_CRDS[2])
    assert live["metadata"]["annotations"]["gateway.networking.k8s.io/bundle-version"] == "v1.2.0"


def test_class_refused_fails_the_wait_with_a_hint(installed: Lab) -> None:
    installed.controller.refuse_class = True
    installed.with_cfg(wait_timeout=0.5)
    report = actions.apply(installed.ctx)
    assert report.failed
    last = report.results[-1]
    assert last.name == "GatewayClass/kong-class Accepted"
    assert "InvalidParameters" in last.message
    assert last.hint


def test_write_kubeconfig_for_the_gateway_host(installed: Lab, tmp_path: Path) -> None:
    ep = installed.ctx.cluster.endpoint()  # type: ignore[attr-defined]
    out, conf = tmp_path / "host" / "kubeconfig", tmp_path / "host" / "config.yaml"
    results = actions.write_kubeconfig(installed.ctx, ep.server, ep.ca_pem, ep.insecure,
                                       str(out), str(conf), "/etc/lbsync/kubeconfig")
    assert [r.status for r in results] == [Status.DONE, Status.DONE]
    assert "token expires" in results[0].message and "renew-token" in results[0].message
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    kc = yaml.safe_load(out.read_text())
    token = kc["users"][0]["user"]["token"]
    assert token != installed.api.token
    # A bound token, valid the configured 30 days.
    expiry = manifests.token_expiry(token)
    assert expiry is not None and abs(expiry - (time.time() + 30 * 86400)) < 60
    user = installed.api.authenticate(f"Bearer {token}")
    assert user is not None and user.name == "system:serviceaccount:kong:lbsync"
    assert kc["clusters"][0]["cluster"]["server"] == installed.api.url
    ca = base64.b64decode(kc["clusters"][0]["cluster"]["certificate-authority-data"])
    assert ca == installed.api.ca_path.read_bytes()
    lb = yaml.safe_load(conf.read_text())
    assert lb == {"kubernetes": {"kubeconfig": "/etc/lbsync/kubeconfig"},
                  "upstreams": [{"name": "k8s_cluster", "service": "kong/kong-gateway-proxy",
                                 "port": 80}]}
    # The gateway host's view: TLS verified with the embedded CA; it reads what lbsync needs.
    host = ApiCluster(str(out))
    assert [n["metadata"]["name"] for n in host.list("v1", "Node")] == ["node-1"]
    proxy = host.get("v1", "Service", "kong-gateway-proxy", "kong")
    assert proxy is not None and proxy["spec"]["ports"][0]["nodePort"] == 32001
    # Deleting the ServiceAccount revokes it (how docs/bootstrap.md says to revoke).
    installed.api.delete("ServiceAccount", "lbsync", "kong")
    with pytest.raises(ApiError) as exc:
        host.list("v1", "Node")
    assert exc.value.status == 401


def test_the_never_expiring_secret_token_on_request(installed: Lab, tmp_path: Path) -> None:
    installed.with_cfg(access__credential="secret")
    report = actions.apply(installed.ctx)
    assert statuses(report)["Secret/kong/lbsync-token"] == "done"
    ep = installed.ctx.cluster.endpoint()  # type: ignore[attr-defined]
    out = tmp_path / "kubeconfig"
    (result,) = actions.write_kubeconfig(installed.ctx, ep.server, ep.ca_pem, ep.insecure,
                                         str(out), None, str(out))
    assert "never-expiring" in result.message
    token = yaml.safe_load(out.read_text())["users"][0]["user"]["token"]
    assert manifests.token_expiry(token) is None
    host = ApiCluster(str(out))
    assert host.list("v1", "Node")
    with pytest.raises(ApiError) as exc:
        host.request("x", "DELETE", "/api/v1/nodes/node-1")
    assert exc.value.status == 403
    with pytest.raises(ConfigError, match="never expires"):
        actions.renew_token(installed.ctx, ep.server, ep.ca_pem, ep.insecure, str(out), None,
                            time.time())
    # Back to bound tokens: the standing credential is named, not silently deleted.
    installed.with_cfg(access__credential="token-request")
    report = actions.apply(installed.ctx)
    kept = next(r for r in report.results if r.name == "Secret/kong/lbsync-token")
    assert kept.status is Status.SKIPPED and "never-expiring" in kept.message
    assert installed.api.get("Secret", "lbsync-token", "kong") is not None
    gone = actions.uninstall(installed.ctx)
    assert statuses(gone)["Secret/kong/lbsync-token"] == "deleted"


def test_renew_token(installed: Lab, tmp_path: Path) -> None:
    ep = installed.ctx.cluster.endpoint()  # type: ignore[attr-defined]
    out = str(tmp_path / "kubeconfig")
    now = time.time()

    def token() -> str:
        return str(yaml.safe_load(Path(out).read_text())["users"][0]["user"]["token"])

    first = actions.renew_token(installed.ctx, ep.server, ep.ca_pem, ep.insecure, out,
                                7 * 86400, now)  # no file yet: written
    assert [r.status for r in first.results] == [Status.DONE]
    was = token()
    # A timer runs it daily: nothing to do while the token has more than 7 days left...
    same = actions.renew_token(installed.ctx, ep.server, ep.ca_pem, ep.insecure, out,
                               7 * 86400, now)
    assert [r.status for r in same.results] == [Status.UNCHANGED]
    assert "valid for 30.0 more days" in same.results[0].message and token() == was
    # ...and a fresh token once fewer are left (here: 25 days later).
    later = actions.renew_token(installed.ctx, ep.server, ep.ca_pem, ep.insecure, out,
                                7 * 86400, now + 25 * 86400)
    assert [r.status for r in later.results] == [Status.DONE] and token() != was
    assert installed.api.authenticate(f"Bearer {token()}") is not None


def test_renew_token_before_apply_says_what_to_do(env: Lab, tmp_path: Path) -> None:
    ep = env.ctx.cluster.endpoint()  # type: ignore[attr-defined]
    report = actions.renew_token(env.ctx, ep.server, ep.ca_pem, ep.insecure,
                                 str(tmp_path / "kubeconfig"), None, time.time())
    (result,) = report.results
    assert result.status is Status.FAILED
    assert result.message.startswith("TokenRequest for ServiceAccount/kong/lbsync: ")
    assert "404" in result.message and "lbsync bootstrap apply` first" in result.hint
    assert not (tmp_path / "kubeconfig").exists()


def test_written_config_loads_with_lbsync_config(installed: Lab, tmp_path: Path) -> None:
    from lbsync import config as lbsync_config

    ep = installed.ctx.cluster.endpoint()  # type: ignore[attr-defined]
    kc, conf = tmp_path / "kubeconfig", tmp_path / "config.yaml"
    actions.write_kubeconfig(installed.ctx, ep.server, ep.ca_pem, ep.insecure, str(kc),
                             str(conf), str(kc))
    cfg = lbsync_config.load(conf, check_paths=False)  # its paths are the gateway host's
    assert cfg.kubernetes.kubeconfig == kc
    assert [u.name for u in cfg.upstreams] == ["k8s_cluster"]


def test_uninstall_reverses_and_is_repeatable(installed: Lab) -> None:
    report = actions.uninstall(installed.ctx)
    assert not report.failed, report.results
    got = statuses(report)
    assert got["HTTPRoute/default/worlds-com-world1"] == "deleted"
    assert got["helm release kong/kong"] == "deleted"
    assert got["Namespace/kong"] == "deleted"
    names = [r.name for r in report.results]
    assert names.index("Gateway/kong/kong-gateway") < names.index("helm release kong/kong")
    assert installed.api.get("Namespace", "kong") is None
    assert installed.api.get("Namespace", "default") is not None
    # CRDs are kept unless --purge
    assert installed.api.get("CustomResourceDefinition", GATEWAY_CRDS[1])
    again = actions.uninstall(installed.ctx, purge=True)
    assert not again.failed, again.results
    got = statuses(again)
    assert got["HTTPRoute/default/worlds-com-world1"] == "absent"
    assert got["helm release kong/kong"] == "absent"
    assert got[f"CustomResourceDefinition/{GATEWAY_CRDS[1]}"] == "deleted"


def test_uninstall_removes_what_an_earlier_uninstall_orphaned(installed: Lab) -> None:
    """Deleting the namespace first (as lbsync once did after a failed helm step) takes
    helm's release record with it; the chart's cluster-scoped objects are then found by
    helm's ownership annotations and removed."""
    installed.api.delete("Namespace", "kong")
    assert installed.api.get("ClusterRole", "kong-controller") is not None
    report = actions.uninstall(installed.ctx)
    assert not report.failed, report.results
    got = {r.name: r for r in report.results}
    assert got["helm release kong/kong"].status is Status.ABSENT
    for name in ("ClusterRole/kong-controller", "ClusterRoleBinding/kong-controller",
                 "IngressClass/kong"):
        assert got[name].status is Status.DELETED and "left behind" in got[name].message
    assert installed.api.list("ValidatingWebhookConfiguration") == []
    assert installed.api.get("ClusterRole", "lbsync-reader") is None


def test_uninstall_works_on_an_empty_cluster(env: Lab) -> None:
    report = actions.uninstall(env.ctx, purge=True)
    assert not report.failed, report.results
    assert {r.status for r in report.results} == {Status.ABSENT}


def test_conflict_with_another_manager_fails_with_hint_then_force(installed: Lab) -> None:
    gw = manifests.gateway(installed.cfg)
    gw["spec"]["listeners"][0]["port"] = 8080
    # What `kubectl apply --server-side` by someone else would do.
    cluster: Any = installed.ctx.cluster
    cluster.request("Gateway", "PATCH", obj_path(gw), body=gw,
                    content_type="application/apply-patch+yaml", fieldManager="kubectl",
                    force="true")
    report = actions.apply(installed.ctx)
    last = report.results[-1]
    assert last.status is Status.FAILED and "conflict" in last.message
    assert "--force-conflicts" in last.hint
    installed.ctx.force_conflicts = True
    report = actions.apply(installed.ctx)
    assert not report.failed
    assert statuses(report)["Gateway/kong/kong-gateway"] == "done"
    listener = installed.api.get("Gateway", "kong-gateway", "kong")["spec"]["listeners"][0]
    assert listener["port"] == 80


def test_bundle_is_downloaded_from_the_release_url(env: Lab) -> None:
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


def test_helm_missing_fails_in_one_line(env: Lab) -> None:
    env.ctx.helm = Helm(env.kubeconfig, binary="no-such-helm")
    report = actions.apply(env.ctx)
    last = report.results[-1]
    assert (last.name, last.status) == ("Kong (helm)", Status.FAILED)
    assert last.message == "helm: 'no-such-helm' not found on PATH"
    assert last.hint.startswith("install helm 3.17+ or helm 4")


def test_transient_api_errors_are_retried(installed: Lab) -> None:
    cluster: Any = installed.ctx.cluster
    cluster.sleep = lambda s: None
    installed.api.faults.fail_next(2, 500, "/gateways/kong-gateway")
    installed.api.faults.fail_next(1, 429, "/namespaces/kong")
    report = actions.apply(installed.ctx)
    assert not report.failed, report.results


def test_persistent_api_errors_fail_in_one_line(installed: Lab) -> None:
    cluster: Any = installed.ctx.cluster
    cluster.sleep = lambda s: None
    installed.api.faults.fail_next(10, 500, "/gateways/kong-gateway")
    report = actions.apply(installed.ctx)
    last = report.results[-1]
    assert last.status is Status.FAILED and last.name == "GatewayClass, Gateway, HTTPRoutes"
    assert last.message == "Gateway/kong/kong-gateway: injected failure (500) (HTTP 500)"


def test_api_outage_fails_in_one_line(env: Lab) -> None:
    cluster: Any = env.ctx.cluster
    cluster.sleep = lambda s: None
    env.api.faults.set_outage(True)
    report = actions.apply(env.ctx)
    (only,) = report.results
    assert only.status is Status.FAILED
    assert "cannot reach the API server" in only.message and "\n" not in only.message
    env.api.faults.set_outage(False)
