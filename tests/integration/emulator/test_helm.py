"""The real helm 4.1.4 and 3.17.3 (scripts/get-tools.sh) install, upgrade and uninstall the
real kong/ingress charts (../shared/data/kong-charts, served as a chart repository on
loopback) into the emulator, with the stand-in controllers making Deployments available."""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from lbsync_lab import data
from lbsync_lab.controllers import ControllerManager
from lbsync_lab.sim import ApiServer
from lbsync_lab.sim.clients import ChartRepo, Helm, tool

HELMS = ["helm4", "helm3"]
# The values lbsync's bootstrap uses.
VALUES = ["--set", "gateway.proxy.type=NodePort", "--set", "gateway.proxy.http.nodePort=32001",
          "--set", "gateway.proxy.tls.enabled=false", "--set", "gateway.admin.http.enabled=false",
          "--set", "gateway.manager.enabled=false"]
WAIT = ["--wait", "--timeout", "60s"]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChartRepo]:
    charts = [data.path(f"{data.KONG_CHARTS}/ingress-{v}.tgz") for v in ("0.10.2", "0.24.0")]
    with ChartRepo(charts, tmp_path_factory.mktemp("charts"), tool("helm4")) as served:
        yield served


@pytest.fixture(params=HELMS)
def helm(request: pytest.FixtureRequest, api: ApiServer, repo: ChartRepo, tmp_path: Path,
         controllers: ControllerManager) -> Helm:
    h = Helm(request.param, api.kubeconfig_path, tmp_path / request.param)
    h.run("repo", "add", "kong", repo.url)
    return h


def everything(api: ApiServer) -> set[tuple[str, str, str]]:
    """(kind, namespace, name) of every stored object."""
    out = set()
    for rt in api.registry.all():
        if rt.virtual:
            continue
        for obj in api.list(rt.kind, api_version=rt.api_version):
            out.add((rt.kind, obj["metadata"].get("namespace", ""), obj["metadata"]["name"]))
    return out


def release_manifest(api: ApiServer, name: str, ns: str) -> list[dict[str, Any]]:
    """The manifests of the newest release revision, from helm's own release Secret."""
    secrets = [s for s in api.list("Secret", ns) if s.get("type") == "helm.sh/release.v1"
               and s["metadata"]["labels"].get("name") == name]
    newest = max(secrets, key=lambda s: int(s["metadata"]["labels"]["version"]))
    raw = base64.b64decode(base64.b64decode(newest["data"]["release"]))
    release = json.loads(gzip.decompress(raw))
    return [d for d in yaml.safe_load_all(release["manifest"]) if d]


def assert_installed(api: ApiServer, helm: Helm, chart_version: str) -> None:
    listed = json.loads(helm.run("list", "-n", "kong", "-o", "json").stdout)
    assert [(r["name"], r["status"], r["chart"]) for r in listed] == [
        ("kong", "deployed", f"ingress-{chart_version}")]
    for name in ("kong-controller", "kong-gateway"):
        dep = api.get("Deployment", name, "kong")
        assert dep is not None and dep["status"]["availableReplicas"] == 1
        assert dep["status"]["observedGeneration"] == dep["metadata"]["generation"]
    proxy = api.get("Service", "kong-gateway-proxy", "kong")
    assert proxy is not None and proxy["spec"]["type"] == "NodePort"
    assert [p["nodePort"] for p in proxy["spec"]["ports"]] == [32001]
    assert api.get("Service", "kong-gateway-manager", "kong") is None
    assert api.get("IngressClass", "kong") is not None
    assert api.get("ClusterRole", "kong-controller") is not None
    assert api.get("ClusterRoleBinding", "kong-controller") is not None
    assert api.list("ValidatingWebhookConfiguration")
    # helm's release storage came as protobuf: its labels were decoded
    labels = {s["metadata"]["name"]: s["metadata"].get("labels") or {}
              for s in api.list("Secret", "kong") if s.get("type") == "helm.sh/release.v1"}
    assert labels and all(v["owner"] == "helm" and v["name"] == "kong"
                          for v in labels.values())


def assert_live_matches_the_release(api: ApiServer) -> None:
    """Every Deployment's pod template is the one the newest release rendered: the upgrade's
    patches (helm 3: strategic merge; helm 4: server-side apply) left nothing stale."""
    for doc in release_manifest(api, "kong", "kong"):
        if doc["kind"] == "Deployment":
            live = api.get("Deployment", doc["metadata"]["name"], "kong")
            assert live is not None
            assert live["spec"]["template"] == doc["spec"]["template"], doc["metadata"]["name"]


def test_install_wait_then_uninstall_removes_everything(api: ApiServer, helm: Helm) -> None:
    before = everything(api)
    helm.run("install", "kong", "kong/ingress", "--version", "0.24.0", "-n", "kong",
             "--create-namespace", *WAIT, *VALUES)
    assert_installed(api, helm, "0.24.0")
    assert_live_matches_the_release(api)
    assert api.list("ReplicaSet", "kong")  # the Deployment controller's
    helm.run("uninstall", "kong", "-n", "kong", *WAIT)
    left = everything(api) - before
    crds = {k for k in left if k[0] == "CustomResourceDefinition"}
    # helm never deletes CRDs, nor the namespace it created; the rest is gone (ReplicaSets
    # by the garbage collector, with their Deployments)
    assert left - crds == {("Namespace", "", "kong")}
    assert crds and all(name.endswith(".konghq.com") for _k, _ns, name in crds)


def test_upgrade_from_0_10_2_to_0_24_0(api: ApiServer, helm: Helm) -> None:
    helm.run("install", "kong", "kong/ingress", "--version", "0.10.2", "-n", "kong",
             "--create-namespace", *WAIT, *VALUES)
    assert_installed(api, helm, "0.10.2")
    old = api.get("Deployment", "kong-gateway", "kong")
    assert old is not None
    helm.run("upgrade", "kong", "kong/ingress", "--version", "0.24.0", "-n", "kong", *WAIT,
             *VALUES)
    assert_installed(api, helm, "0.24.0")
    assert_live_matches_the_release(api)
    new = api.get("Deployment", "kong-gateway", "kong")
    assert new is not None and new["metadata"]["generation"] > old["metadata"]["generation"]
    images = [c["image"] for c in new["spec"]["template"]["spec"]["containers"]]
    assert images == ["kong:3.9"]
    sets = api.list("ReplicaSet", "kong")
    assert sorted(rs["spec"]["replicas"] for rs in sets) == [0, 0, 1, 1]  # old ones scaled down
    history = json.loads(helm.run("history", "kong", "-n", "kong", "-o", "json").stdout)
    assert [h["status"] for h in history] == ["superseded", "deployed"]
