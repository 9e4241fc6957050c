"""The real kubectl (v1.35.2, from scripts/get-tools.sh) against the emulator: what a person
does with their own kubectl must work as against kube-apiserver."""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

import yaml
from lbsync_lab import data
from lbsync_lab.controllers import ControllerManager
from lbsync_lab.sim import ApiServer, objects
from lbsync_lab.sim.clients import Kubectl

WIDE_NODE_HEADER = ["NAME", "STATUS", "ROLES", "AGE", "VERSION", "INTERNAL-IP", "EXTERNAL-IP",
                    "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME"]

DEPLOYMENT = {
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
    "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
             "template": {"metadata": {"labels": {"app": "web"}},
                          "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}}


def _rows(out: str) -> list[list[str]]:
    return [line.split() for line in out.strip().splitlines()]


def test_get_wide_prints_the_real_node_columns(api: ApiServer, kubectl: Kubectl) -> None:
    api.put(objects.node("node-1", "127.0.10.1", external_address="203.0.113.7",
                         labels={"node-role.kubernetes.io/control-plane": ""}))
    api.put(objects.node("node-2", "127.0.10.2", unschedulable=True))
    api.put(objects.node("node-3", "127.0.10.3", ready=False))
    rows = _rows(kubectl.run("get", "nodes", "-o", "wide").stdout)
    assert rows[0][:9] == WIDE_NODE_HEADER[:9] and rows[0][9] == "CONTAINER-RUNTIME"
    by_name = {r[0]: r for r in rows[1:]}
    assert by_name["node-1"][1:3] == ["Ready", "control-plane"]
    assert by_name["node-1"][5:7] == ["127.0.10.1", "203.0.113.7"]
    assert by_name["node-1"][4] == objects.KUBELET_VERSION
    assert by_name["node-2"][1:3] == ["Ready,SchedulingDisabled", "<none>"]
    assert by_name["node-3"][1] == "Unknown"  # the Ready condition is Unknown
    assert by_name["node-2"][-1] == "containerd://1.7.20"
    narrow = _rows(kubectl.run("get", "nodes").stdout)
    assert narrow[0] == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]


def test_apply_server_side_with_default_validation(api: ApiServer, kubectl: Kubectl) -> None:
    api.put(objects.namespace("default"))
    manifest = yaml.safe_dump(DEPLOYMENT)
    out = kubectl.run("apply", "--server-side", "-f", "-", stdin=manifest).stdout
    assert "deployment.apps/web serverside-applied" in out
    live = api.get("Deployment", "web", "default")
    assert live is not None
    managers = {(m["manager"], m["operation"]) for m in live["metadata"]["managedFields"]}
    assert ("kubectl", "Apply") in managers
    # kubectl validates strictly by default: the server refuses an undeclared field
    bad = dict(DEPLOYMENT, spec=dict(DEPLOYMENT["spec"], bogus=1))
    refused = kubectl.run("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump(bad),
                          check=False)
    assert refused.returncode != 0
    assert ".spec.bogus: field not declared in schema" in refused.stderr
    created = kubectl.run("create", "-f", "-", stdin=yaml.safe_dump(
        dict(bad, metadata=dict(DEPLOYMENT["metadata"], name="web2"))), check=False)
    assert 'strict decoding error: unknown field "spec.bogus"' in created.stderr
    assert api.get("Deployment", "web2", "default") is None
    # --validate=false: the field is dropped, as kube-apiserver's decoder drops it
    kubectl.run("create", "--validate=false", "-f", "-", stdin=yaml.safe_dump(
        dict(bad, metadata=dict(DEPLOYMENT["metadata"], name="web3"))))
    web3 = api.get("Deployment", "web3", "default")
    assert web3 is not None and "bogus" not in web3["spec"]


def test_explain_reads_the_openapi_v3_documents(kubectl: Kubectl) -> None:
    out = kubectl.run("explain", "deployment.spec.replicas").stdout
    assert "FIELD: replicas <integer>" in out and "VERSION:    v1" in out


def test_auth_can_i_list(api: ApiServer, kubectl: Kubectl) -> None:
    rows = _rows(kubectl.run("auth", "can-i", "--list").stdout)
    assert ["*.*", "[]", "[]", "[*]"] in rows  # the admin kubeconfig may do everything
    api.put(objects.namespace("kong"))
    kubectl.run("create", "serviceaccount", "viewer", "-n", "kong")
    kubectl.run("create", "role", "svc-reader", "-n", "kong", "--verb=get,list",
                "--resource=services", "--resource-name=kong-gateway-proxy")
    kubectl.run("create", "rolebinding", "svc-reader", "-n", "kong", "--role=svc-reader",
                "--serviceaccount=kong:viewer")
    token = kubectl.run("create", "token", "viewer", "-n", "kong").stdout.strip()
    rows = _rows(kubectl.run("auth", "can-i", "--list", "-n", "kong", token=token).stdout)
    assert ["services", "[]", "[kong-gateway-proxy]", "[get", "list]"] in rows
    assert ["selfsubjectreviews.authentication.k8s.io", "[]", "[]", "[create]"] in rows
    assert not any(r[0] == "*.*" for r in rows)
    assert kubectl.run("auth", "can-i", "get", "services/kong-gateway-proxy", "-n", "kong",
                       token=token).stdout.strip() == "yes"
    no = kubectl.run("auth", "can-i", "delete", "services/kong-gateway-proxy", "-n", "kong",
                     token=token, check=False)
    assert no.stdout.strip() == "no" and no.returncode == 1


def test_delete_dry_run_server_deletes_nothing(api: ApiServer, kubectl: Kubectl) -> None:
    api.put(objects.namespace("default"))
    api.put(objects.node("node-1", "127.0.10.1"))
    kubectl.run("create", "configmap", "settings", "--from-literal=a=1")
    rv = api.resource_version
    out = kubectl.run("delete", "configmap", "settings", "--dry-run=server").stdout
    assert "(server dry run)" in out
    out = kubectl.run("delete", "node", "node-1", "--dry-run=server").stdout
    assert "(server dry run)" in out
    assert api.get("ConfigMap", "settings", "default") is not None
    assert api.get("Node", "node-1") is not None
    assert api.resource_version == rv  # not a single write
    kubectl.run("delete", "configmap", "settings")
    assert api.get("ConfigMap", "settings", "default") is None


def _lines(proc: Any) -> queue.Queue[str]:
    q: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in proc.stdout:
            q.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return q


def _next_line(q: queue.Queue[str], timeout: float = 10) -> str:
    return q.get(timeout=timeout)


def test_get_watch_prints_each_change(api: ApiServer, kubectl: Kubectl) -> None:
    api.put(objects.node("node-1", "127.0.10.1"))
    proc = kubectl.popen("get", "nodes", "-w")
    try:
        q = _lines(proc)
        assert _next_line(q).split()[:2] == ["NAME", "STATUS"]
        assert _next_line(q).split()[:2] == ["node-1", "Ready"]
        kubectl.run("cordon", "node-1")
        assert _next_line(q).split()[:2] == ["node-1", "Ready,SchedulingDisabled"]
        api.put(objects.node("node-2", "127.0.10.2", ready=False))
        assert _next_line(q).split()[:2] == ["node-2", "Unknown"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_auth_whoami(api: ApiServer, kubectl: Kubectl) -> None:
    rows = _rows(kubectl.run("auth", "whoami").stdout)
    assert ["Username", "kubernetes-admin"] in rows
    assert ["Groups", "[system:masters", "system:authenticated]"] in rows
    api.put(objects.namespace("kong"))
    kubectl.run("create", "serviceaccount", "lbsync", "-n", "kong")
    token = kubectl.run("create", "token", "lbsync", "-n", "kong", "--duration=20m").stdout
    rows = _rows(kubectl.run("auth", "whoami", token=token.strip()).stdout)
    assert ["Username", "system:serviceaccount:kong:lbsync"] in rows
    assert ["Groups", "[system:serviceaccounts", "system:serviceaccounts:kong",
            "system:authenticated]"] in rows


def test_typed_creates_in_protobuf_are_decoded(api: ApiServer, kubectl: Kubectl,
                                               controllers: ControllerManager) -> None:
    """kubectl sends these kinds as application/vnd.kubernetes.protobuf."""
    kubectl.run("create", "namespace", "kong")
    kubectl.run("create", "configmap", "c", "-n", "kong", "--from-literal=a=1",
                "--from-literal=b=two")
    kubectl.run("create", "secret", "generic", "s", "-n", "kong", "--from-literal=k=v",
                "--type=example.com/kind")
    kubectl.run("create", "clusterrole", "agg", "--aggregation-rule=rbac.example.com/x=true")
    # The emulator has no protobuf decoder for pod templates: it refuses them as
    # kube-apiserver refuses protobuf it cannot decode (415), and kubectl says so.
    refused = kubectl.run("create", "deployment", "web", "-n", "kong", "--image=nginx:1.27",
                          check=False)
    assert refused.returncode != 0 and "unknown format" in refused.stderr
    kubectl.run("apply", "-f", "-", stdin=yaml.safe_dump(
        dict(DEPLOYMENT, metadata=dict(DEPLOYMENT["metadata"], namespace="kong"))))
    assert api.get("ConfigMap", "c", "kong")["data"] == {"a": "1", "b": "two"}
    secret = api.get("Secret", "s", "kong")
    assert secret["type"] == "example.com/kind" and secret["data"] == {"k": "dg=="}
    assert api.get("ClusterRole", "agg")["aggregationRule"] == {
        "clusterRoleSelectors": [{"matchLabels": {"rbac.example.com/x": "true"}}]}
    deadline = time.monotonic() + 10
    while (api.get("Deployment", "web", "kong") or {}).get("status", {}).get(
            "availableReplicas") != 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    web = api.get("Deployment", "web", "kong")
    assert web["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.27"
    assert web["status"]["availableReplicas"] == 2
    out = kubectl.run("rollout", "status", "deployment/web", "-n", "kong", "--timeout=20s")
    assert "successfully rolled out" in out.stdout


def test_custom_resources_print_their_crd_columns(api: ApiServer, kubectl: Kubectl) -> None:
    bundle = data.path(data.GATEWAY_API_BUNDLE)
    kubectl.run("apply", "--server-side", "-f", str(bundle))
    deadline = time.monotonic() + 10
    while kubectl.run("get", "crd", "gatewayclasses.gateway.networking.k8s.io", "-o",
                      "jsonpath={.status.conditions[?(@.type=='Established')].status}"
                      ).stdout != "True" and time.monotonic() < deadline:
        time.sleep(0.05)
    kubectl.run("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
        "metadata": {"name": "kong-class"},
        "spec": {"controllerName": "konghq.com/kic-gateway-controller",
                 "description": "Kong"}}))
    gc = api.get("GatewayClass", "kong-class")
    assert gc is not None
    gc["status"] = {"conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted",
                                    "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z",
                                    "observedGeneration": 1}]}
    api.update(gc)
    rows = _rows(kubectl.run("get", "gatewayclasses", "-o", "wide").stdout)
    assert rows[0] == ["NAME", "CONTROLLER", "ACCEPTED", "AGE", "DESCRIPTION"]
    assert rows[1][:3] == ["kong-class", "konghq.com/kic-gateway-controller", "True"]
    assert rows[1][4] == "Kong"
