"""A stand-in `helm` for the bootstrap tests (run as a script, never imported by lbsync).

It records its argv (one JSON line per call) and keeps repos and releases in a state file next
to itself. `upgrade --install` creates through the API server, via the `--kubeconfig` it is
given, what the kong/ingress chart would: Deployments kong-controller and kong-gateway, the
NodePort proxy Service, the headless admin Service with its EndpointSlice, and a chart CRD.
`uninstall` removes them. Failures answer like helm: "Error: ..." on stderr, exit 1.
"""

from __future__ import annotations

import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
STATE = HERE / "helm-state.json"
LOG = HERE / "helm-argv.jsonl"
CHART_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "kongplugins.configuration.konghq.com"},
    "spec": {"group": "configuration.konghq.com", "scope": "Namespaced",
             "names": {"kind": "KongPlugin", "plural": "kongplugins", "singular": "kongplugin",
                       "listKind": "KongPluginList"},
             "versions": [{"name": "v1", "served": True, "storage": True,
                           "schema": {"openAPIV3Schema": {"type": "object"}}}]},
}


def fail(msg: str) -> None:
    sys.stderr.write(f"Error: {msg}\n")
    raise SystemExit(1)


def opt(argv: list[str], *names: str, default: str | None = None) -> str | None:
    for i, a in enumerate(argv):
        if a in names and i + 1 < len(argv):
            return argv[i + 1]
    return default


def load_state() -> dict[str, Any]:
    if STATE.exists():
        state: dict[str, Any] = json.loads(STATE.read_text())
        return state
    return {"repos": [], "releases": {}}


class Api:
    """Just enough of a Kubernetes client: the kubeconfig's server, CA and token."""

    def __init__(self, kubeconfig: str) -> None:
        cfg = yaml.safe_load(Path(kubeconfig).read_text())
        cluster = cfg["clusters"][0]["cluster"]
        self.server = cluster["server"]
        self.token = cfg["users"][0]["user"].get("token")
        self.ctx = ssl.create_default_context(cafile=cluster.get("certificate-authority"))

    def call(self, method: str, path: str, body: Any = None,
             ctype: str = "application/json") -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.server + path, data=data, method=method)
        req.add_header("Content-Type", ctype)
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=10) as resp:
                return json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            if exc.code == 404 and method in ("GET", "DELETE"):
                return None
            message = json.loads(exc.read() or b"{}").get("message", exc.reason)
            fail(f"{method} {path}: {message}")

    def apply(self, path: str, obj: Any) -> None:
        self.call("PATCH", f"{path}?fieldManager=helm&force=true", obj,
                  "application/apply-patch+yaml")


def chart_objects(release: str, ns: str, values: dict[str, Any]) -> list[tuple[str, Any]]:
    proxy = ((values.get("gateway") or {}).get("proxy") or {})
    http = proxy.get("http") or {}
    port = {"name": "kong-proxy", "port": http.get("servicePort", 80), "targetPort": 8000,
            "protocol": "TCP"}
    if http.get("nodePort"):
        port["nodePort"] = http["nodePort"]
    labels = {"app.kubernetes.io/instance": release, "app.kubernetes.io/managed-by": "Helm"}
    base = f"/api/v1/namespaces/{ns}"
    objs: list[tuple[str, Any]] = []
    for name in (f"{release}-controller", f"{release}-gateway"):
        objs.append((f"/apis/apps/v1/namespaces/{ns}/deployments/{name}", {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": "kong"}]}}}}))
    objs.append((f"{base}/services/{release}-gateway-proxy", {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": f"{release}-gateway-proxy", "namespace": ns, "labels": labels},
        "spec": {"type": proxy.get("type", "LoadBalancer"), "ports": [port],
                 "selector": {"app": f"{release}-gateway"}}}))
    objs.append((f"{base}/services/{release}-gateway-admin", {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": f"{release}-gateway-admin", "namespace": ns, "labels": labels},
        "spec": {"clusterIP": "None", "selector": {"app": f"{release}-gateway"},
                 "ports": [{"name": "admin-tls", "port": 8444, "targetPort": 8444}]}}))
    objs.append((f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices/"
                 f"{release}-gateway-admin-x1", {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": f"{release}-gateway-admin-x1", "namespace": ns,
                     "labels": {"kubernetes.io/service-name": f"{release}-gateway-admin"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.244.0.7"], "conditions": {"ready": True}}],
        "ports": [{"name": "admin-tls", "port": 8444, "protocol": "TCP"}]}))
    return objs


def wait_available(api: Api, release: str, ns: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for name in (f"{release}-controller", f"{release}-gateway"):
        while True:
            dep = api.call("GET", f"/apis/apps/v1/namespaces/{ns}/deployments/{name}") or {}
            conds = (dep.get("status") or {}).get("conditions") or []
            if any(c.get("type") == "Available" and c.get("status") == "True" for c in conds):
                break
            if time.monotonic() > deadline:
                fail(f"context deadline exceeded waiting for deployment {name}")
            time.sleep(0.05)


def upgrade(argv: list[str], state: dict[str, Any]) -> None:
    release, chart = argv[2], argv[3]
    ns = opt(argv, "-n", "--namespace", default="default") or "default"
    repo = chart.split("/")[0]
    if not any(r["name"] == repo for r in state["repos"]):
        fail(f'repo {repo} not found')
    values = yaml.safe_load(Path(opt(argv, "-f", "--values") or "/dev/null").read_text()) or {}
    api = Api(opt(argv, "--kubeconfig") or os.environ["KUBECONFIG"])
    if api.call("GET", f"/api/v1/namespaces/{ns}") is None:
        fail(f'create: failed to create: namespaces "{ns}" not found')
    old = state["releases"].get(f"{ns}/{release}")
    if old is None:  # helm installs a chart's CRDs on first install only
        api.apply(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"
                  f"{CHART_CRD['metadata']['name']}", CHART_CRD)
    for path, obj in chart_objects(release, ns, values):
        api.apply(path, obj)
    if "--wait" in argv:
        wait_available(api, release, ns, 10.0)
    version = opt(argv, "--version", default="0.0.0")
    state["releases"][f"{ns}/{release}"] = {
        "name": release, "namespace": ns, "revision": str(int((old or {}).get("revision", 0)) + 1),
        "status": "deployed", "chart": f"{chart.split('/')[-1]}-{version}", "app_version": "3.9",
        "values": values}
    print(f'Release "{release}" has been {"upgraded" if old else "installed"}. Happy Helming!')


def uninstall(argv: list[str], state: dict[str, Any]) -> None:
    release = argv[1]
    ns = opt(argv, "-n", "--namespace", default="default") or "default"
    if state["releases"].pop(f"{ns}/{release}", None) is None:
        fail(f"uninstall: Release not loaded: {release}: release: not found")
    api = Api(opt(argv, "--kubeconfig") or os.environ["KUBECONFIG"])
    for path, _obj in chart_objects(release, ns, {}):
        api.call("DELETE", path)
    print(f'release "{release}" uninstalled')


def main(argv: list[str]) -> None:
    with LOG.open("a") as fh:
        fh.write(json.dumps(argv) + "\n")
    if os.environ.get("FAKE_HELM_FAIL") and argv[:1] == [os.environ["FAKE_HELM_FAIL"]]:
        fail("injected failure")
    state = load_state()
    cmd = argv[:2]
    if argv[:1] == ["version"]:
        print(os.environ.get("FAKE_HELM_VERSION", "v3.14.2+gc309b6f"))
    elif cmd == ["repo", "list"]:
        if not state["repos"]:
            fail("no repositories to show")
        print(json.dumps(state["repos"]))
    elif cmd == ["repo", "add"]:
        state["repos"] = [r for r in state["repos"] if r["name"] != argv[2]]
        state["repos"].append({"name": argv[2], "url": argv[3]})
        print(f'"{argv[2]}" has been added to your repositories')
    elif cmd == ["repo", "update"]:
        for name in argv[2:argv.index("--kubeconfig") if "--kubeconfig" in argv else None]:
            if not any(r["name"] == name for r in state["repos"]):
                fail(f"no repositories found matching '{name}'")
        print("Update Complete. ⎈Happy Helming!⎈")
    elif argv[:1] == ["list"]:
        ns = opt(argv, "-n", "--namespace", default="default")
        flt = (opt(argv, "--filter") or "").strip("^$")
        print(json.dumps([{k: v for k, v in r.items() if k != "values"}
                          for r in state["releases"].values()
                          if r["namespace"] == ns and (not flt or r["name"] == flt)]))
    elif cmd == ["get", "values"]:
        ns = opt(argv, "-n", "--namespace", default="default")
        rel = state["releases"].get(f"{ns}/{argv[2]}")
        if rel is None:
            fail("release: not found")
        print(json.dumps(rel["values"]))
    elif cmd == ["show", "crds"]:
        print("---\n" + yaml.safe_dump(CHART_CRD))
    elif cmd == ["upgrade", "--install"]:
        upgrade(argv, state)
    elif argv[:1] == ["uninstall"]:
        uninstall(argv, state)
    else:
        fail(f"unknown command {argv!r}")
    STATE.write_text(json.dumps(state))


if __name__ == "__main__":
    main(sys.argv[1:])
