"""`lbsync bootstrap apply` in loadbalancer mode, with the real helm 4 and the real
kong/ingress chart, then lbsync itself on the gateway kubeconfig the bootstrap wrote: the
proxy Service is a LoadBalancer of lbsync's class, lbsync serves it on the gateway's address
(a real nginx stream listener) and writes its ingress, `kubectl get svc` (the real kubectl)
shows the address, the Gateway's status addresses follow, and traffic reaches Kong's route.
The account holds exactly what that takes; turning the mode off takes the rights away."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from lbsync_lab.controllers import FakeKong
from lbsync_lab.fixtures import Lab, lab
from lbsync_lab.inprocess import Running, eventually
from lbsync_lab.nginx import PrivateNginx, free_port
from lbsync_lab.rig import addr, write_config
from lbsync_lab.sim.clients import ChartRepo, Kubectl

from lbsync.bootstrap import actions, doctor, manifests
from lbsync.bootstrap.report import Status

GATEWAY = 50  # the gateway's address: addr(50); the lab's node is addr(1)


@pytest.fixture(scope="module")
def lb_lab(tmp_path_factory: pytest.TempPathFactory, chart_repo: ChartRepo) -> Iterator[Lab]:
    with lab(tmp_path_factory.mktemp("lb-helm4"), "helm4", chart_repo) as the_lab:
        the_lab.with_cfg(loadbalancer__enabled=True, loadbalancer__addresses=(addr(GATEWAY),))
        report = actions.apply(the_lab.ctx)
        assert not [r for r in report.results if r.status.failed], report.results
        yield the_lab


def proxy(the_lab: Lab) -> dict[str, Any]:
    svc = the_lab.api.get("Service", "kong-gateway-proxy", "kong")
    assert svc is not None
    return svc


def test_the_proxy_is_a_loadbalancer_of_lbsyncs_class(lb_lab: Lab) -> None:
    spec = proxy(lb_lab)["spec"]
    assert spec["type"] == "LoadBalancer"
    assert spec["loadBalancerClass"] == "lbsync.io/nginx"
    assert [(p["port"], p["nodePort"]) for p in spec["ports"]] == [(80, 32001)]


def diagnose(the_lab: Lab) -> dict[str, tuple[Status, str]]:
    report = doctor.diagnose(the_lab.cfg, doctor.gather(the_lab.cfg, the_lab.ctx.cluster))
    return {r.name: (r.status, r.message) for r in report.results}


def test_doctor_names_the_rights_of_the_mode_and_waits_for_an_address(lb_lab: Lab) -> None:
    checked = diagnose(lb_lab)
    account = checked.pop("lbsync account kong/lbsync")
    assert account == (Status.PASS, "reads nodes and Service kong/kong-gateway-proxy, lists "
                       "and watches Services; writes only Service status, Events and its "
                       "Lease (loadbalancer mode)")
    # No lbsync runs yet: the one warning is the address nobody has written.
    assert checked.pop("service kong/kong-gateway-proxy") == (
        Status.WARN, "LoadBalancer 80->32001, no address yet")
    assert {status for status, _ in checked.values()} == {Status.PASS}, checked


def test_lbsync_on_the_bootstrap_kubeconfig_serves_the_proxy(lb_lab: Lab, tmp_path: Path
                                                             ) -> None:
    ep = lb_lab.ctx.cluster.endpoint()  # type: ignore[attr-defined]
    kc, conf = tmp_path / "kubeconfig", tmp_path / "config.yaml"
    actions.write_kubeconfig(lb_lab.ctx, ep.server, ep.ca_pem, ep.insecure, str(kc), str(conf),
                             str(kc))
    rendered = yaml.safe_load(conf.read_text())
    assert rendered["upstreams"] == [] and rendered["loadbalancer"]["enabled"] is True
    gateway = addr(GATEWAY)
    nginx = PrivateNginx(tmp_path / "nginx", stream_listen=(gateway,))
    kubectl = Kubectl(lb_lab.api.kubeconfig_path, tmp_path / "kubectl")
    assert "<pending>" in kubectl.run("get", "svc", "-n", "kong", "kong-gateway-proxy").stdout
    nginx.start()
    # The lab's paths and loopback switch; everything else as the bootstrap wrote it.
    path = write_config(tmp_path / "lbsync.yaml", kc, nginx, upstreams=[],
                        http={"listen": f"127.0.0.1:{free_port()}"},
                        sync={"debounce": 0.1, "min_reload_interval": 0.1},
                        loadbalancer=rendered["loadbalancer"])
    try:
        with FakeKong(lb_lab.api, addr(1), port=32001) as kong:
            running = Running.start(path, nginx)
            try:
                eventually(lambda: ingress(lb_lab) == [{"ip": gateway}], timeout=20,
                           what="the proxy Service's ingress")
                row = kubectl.run("get", "svc", "-n", "kong", "kong-gateway-proxy").stdout
                assert row.split("\n")[1].split()[1:4:2] == ["LoadBalancer", gateway], row
                eventually(lambda: gateway_addresses(lb_lab) == [
                    {"type": "IPAddress", "value": gateway}], timeout=10,
                    what="the Gateway's status addresses")
                assert get(gateway, 80, "worlds.com", "/world1") == (
                    200, "Hello from default/hello-world-1-svc:80")
                assert kong.requests[-1] == ("worlds.com", "/world1")
                assert running.daemon.writes_status  # it took the Lease its Role allows
                checked = diagnose(lb_lab)
                assert checked["service kong/kong-gateway-proxy"] == (
                    Status.PASS, f"LoadBalancer 80->32001 at {gateway}")
                assert {status for status, _ in checked.values()} == {Status.PASS}, checked
            finally:
                running.stop()
    finally:
        nginx.stop()


def test_turning_the_mode_off_takes_its_rights_away(tmp_path: Path, chart_repo: ChartRepo
                                                     ) -> None:
    with lab(tmp_path, "helm4", chart_repo) as the_lab:
        the_lab.with_cfg(loadbalancer__enabled=True, loadbalancer__addresses=(addr(GATEWAY),))
        assert not [r for r in actions.apply(the_lab.ctx).results if r.status.failed]
        lb_objects = [(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"])
                      for o in manifests.loadbalancer_access_objects(the_lab.cfg)]
        assert all(the_lab.api.get(k, n, ns) for k, ns, n in lb_objects)
        the_lab.with_cfg(loadbalancer__enabled=False)
        dry = actions.apply(the_lab.ctx, dry_run=True)
        assert sum("would delete" in r.message for r in dry.results) == 4
        report = actions.apply(the_lab.ctx)
        assert not [r for r in report.results if r.status.failed], report.results
        assert not any(the_lab.api.get(k, n, ns) for k, ns, n in lb_objects)
        assert proxy(the_lab)["spec"]["type"] == "NodePort"
        assert {status for status, _ in diagnose(the_lab).values()} == {Status.PASS}


def ingress(the_lab: Lab) -> list[dict[str, Any]]:
    return list(((proxy(the_lab).get("status") or {}).get("loadBalancer") or {})
                .get("ingress") or [])


def gateway_addresses(the_lab: Lab) -> list[dict[str, Any]]:
    gw = the_lab.api.get("Gateway", "kong-gateway", "kong") or {}
    return list((gw.get("status") or {}).get("addresses") or [])


def get(address: str, port: int, host: str, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection(address, port, timeout=5)
    try:
        conn.request("GET", path, headers={"Host": host})
        resp = conn.getresponse()
        return resp.status, resp.read().decode().strip()
    finally:
        conn.close()
