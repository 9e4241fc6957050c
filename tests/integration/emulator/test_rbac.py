"""ServiceAccount tokens and RBAC: a read-only account reads and is refused every write with
the Status a real kube-apiserver sends; tokens stop working when what they are bound to goes."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import kubernetes
import pytest
from kubernetes.client.rest import ApiException
from lbsync_lab.controllers import ControllerManager
from lbsync_lab.sim import ApiServer, objects
from lbsync_lab.sim.clients import Kubectl

USER = "system:serviceaccount:kong:lbsync"
READER = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
          "metadata": {"name": "lbsync-reader"},
          "rules": [{"apiGroups": [""], "resources": ["nodes", "services"],
                     "verbs": ["get", "list", "watch"]}]}
BINDING = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
           "metadata": {"name": "lbsync-reader"},
           "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                       "name": "lbsync-reader"},
           "subjects": [{"kind": "ServiceAccount", "name": "lbsync", "namespace": "kong"}]}
TOKEN_SECRET = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
                "metadata": {"name": "lbsync-token", "namespace": "kong",
                             "annotations": {"kubernetes.io/service-account.name": "lbsync"}}}


def _client(api: ApiServer, token: str) -> Any:
    cfg = kubernetes.client.Configuration()
    cfg.host, cfg.ssl_ca_cert = api.url, str(api.ca_path)
    cfg.api_key = {"authorization": f"Bearer {token}"}
    return kubernetes.client.ApiClient(cfg)


@pytest.fixture
def token(api: ApiServer, controllers: ControllerManager) -> str:
    """The token the token controller writes into the read-only account's Secret."""
    for obj in (objects.namespace("kong"), objects.node("node-1", "127.0.10.1"),
                objects.service("kong", "kong-gateway-proxy"),
                {"apiVersion": "v1", "kind": "ServiceAccount",
                 "metadata": {"name": "lbsync", "namespace": "kong"}}, READER, BINDING):
        api.put(obj)
    api.create(TOKEN_SECRET)
    deadline = time.monotonic() + 5
    while not (api.get("Secret", "lbsync-token", "kong") or {}).get("data") and (
            time.monotonic() < deadline):
        time.sleep(0.02)
    secret = api.get("Secret", "lbsync-token", "kong")
    assert secret is not None and secret["data"]["token"]
    return base64.b64decode(secret["data"]["token"]).decode()


def _forbidden(exc: pytest.ExceptionInfo[ApiException]) -> dict[str, Any]:
    assert exc.value.status == 403
    body: dict[str, Any] = json.loads(exc.value.body)
    assert body["kind"] == "Status" and body["reason"] == "Forbidden" and body["code"] == 403
    return body


def test_read_only_account_reads_and_is_refused_every_write(api: ApiServer, token: str) -> None:
    assert token != api.token
    with _client(api, token) as c:
        core = kubernetes.client.CoreV1Api(c)
        assert [n.metadata.name for n in core.list_node().items] == ["node-1"]
        assert core.read_namespaced_service("kong-gateway-proxy", "kong").spec.type == "NodePort"
        assert core.list_service_for_all_namespaces().items
        writes = {
            "create nodes": lambda: core.create_node(objects.node("node-2", "127.0.10.2")),
            "update nodes": lambda: core.replace_node("node-1", api.get("Node", "node-1")),
            "patch nodes": lambda: core.patch_node("node-1", {"spec": {"unschedulable": True}}),
            "patch nodes/status": lambda: core.patch_node_status("node-1", {"status": {}}),
            "delete nodes": lambda: core.delete_node("node-1"),
            "deletecollection nodes": lambda: core.delete_collection_node(),
            "create services": lambda: core.create_namespaced_service(
                "kong", objects.service("kong", "other")),
            "patch services": lambda: core.patch_namespaced_service(
                "kong-gateway-proxy", "kong", {"metadata": {"labels": {"x": "y"}}}),
            "delete services": lambda: core.delete_namespaced_service(
                "kong-gateway-proxy", "kong"),
            "create configmaps": lambda: core.create_namespaced_config_map(
                "kong", {"metadata": {"name": "x"}}),
            "list secrets": lambda: core.list_namespaced_secret("kong"),
        }
        rv = api.resource_version
        for what, call in writes.items():
            verb, resource = what.split()
            with pytest.raises(ApiException) as exc:
                call()
            body = _forbidden(exc)
            assert f'User "{USER}" cannot {verb} resource "{resource}" in API group ""' in (
                body["message"]), body["message"]
        assert api.resource_version == rv  # nothing was written
    with _client(api, token) as c, pytest.raises(ApiException) as exc:
        kubernetes.client.CoreV1Api(c).create_namespaced_config_map(
            "kong", {"metadata": {"name": "x"}})
    assert _forbidden(exc)["message"] == (
        f'configmaps is forbidden: User "{USER}" cannot create resource "configmaps" in API '
        'group "" in the namespace "kong"')
    with _client(api, token) as c, pytest.raises(ApiException) as exc:
        kubernetes.client.CoreV1Api(c).delete_node("node-1")
    assert _forbidden(exc) == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": f'nodes "node-1" is forbidden: User "{USER}" cannot delete resource "nodes" '
                   'in API group "" at the cluster scope',
        "reason": "Forbidden", "details": {"name": "node-1", "kind": "nodes"}, "code": 403}


def test_read_only_account_through_kubectl(api: ApiServer, token: str, kubectl: Kubectl) -> None:
    assert "node-1" in kubectl.run("get", "nodes", token=token).stdout
    # (kubectl cordon reports the refusal but exits 0: check what it says, and the node)
    refused = kubectl.run("cordon", "node-1", token=token, check=False)
    assert f'User "{USER}" cannot patch resource "nodes"' in refused.stderr
    assert not api.get("Node", "node-1")["spec"].get("unschedulable")
    labelled = kubectl.run("label", "node", "node-1", "x=y", token=token, check=False)
    assert labelled.returncode != 0 and "forbidden" in labelled.stderr
    no = kubectl.run("auth", "can-i", "create", "services", "-n", "kong", token=token,
                     check=False)
    assert no.stdout.strip() == "no"
    # the admin kubeconfig stays all-powerful
    kubectl.run("cordon", "node-1")
    assert api.get("Node", "node-1")["spec"]["unschedulable"] is True


def test_role_binding_with_resource_names(api: ApiServer, token: str) -> None:
    api.put({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
             "metadata": {"name": "proxy-editor", "namespace": "kong"},
             "rules": [{"apiGroups": [""], "resources": ["services"], "verbs": ["patch"],
                        "resourceNames": ["kong-gateway-proxy"]}]})
    api.put({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
             "metadata": {"name": "proxy-editor", "namespace": "kong"},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                         "name": "proxy-editor"},
             "subjects": [{"kind": "ServiceAccount", "name": "lbsync", "namespace": "kong"}]})
    api.put(objects.service("kong", "other"))
    with _client(api, token) as c:
        core = kubernetes.client.CoreV1Api(c)
        core.patch_namespaced_service("kong-gateway-proxy", "kong",
                                      {"metadata": {"labels": {"x": "y"}}})
        with pytest.raises(ApiException) as exc:
            core.patch_namespaced_service("other", "kong", {"metadata": {"labels": {"x": "y"}}})
        _forbidden(exc)
    assert api.get("Service", "kong-gateway-proxy", "kong")["metadata"]["labels"]["x"] == "y"


def test_tokens_stop_working_with_what_they_are_bound_to(
        api: ApiServer, token: str, kubectl: Kubectl) -> None:
    bound = kubectl.run("create", "token", "lbsync", "-n", "kong", "--duration=15m",
                        "--bound-object-kind=Secret", "--bound-object-name=lbsync-token"
                        ).stdout.strip()
    user = api.authenticate(f"Bearer {bound}")
    assert user is not None and user.name == USER
    assert dict(user.extra)["authentication.kubernetes.io/secret-name"] == ("lbsync-token",)
    too_short = kubectl.run("create", "token", "lbsync", "-n", "kong", "--duration=5m",
                            check=False)
    assert "may not specify a duration less than 10 minutes" in too_short.stderr
    sa = api.get("ServiceAccount", "lbsync", "kong")
    assert sa is not None
    expired, _exp = api.tokens.bound("kong", sa, [], -1)
    assert api.authenticate(f"Bearer {expired}") is None
    assert api.authenticate(f"Bearer {token[:-2]}xx") is None  # a forged signature
    api.delete("Secret", "lbsync-token", "kong")
    assert api.authenticate(f"Bearer {token}") is None  # the Secret's token is revoked
    assert api.authenticate(f"Bearer {bound}") is None  # and so is one bound to it
    with _client(api, token) as c, pytest.raises(ApiException) as exc:
        kubernetes.client.CoreV1Api(c).list_node()
    assert exc.value.status == 401


def test_resource_names_allow_a_list_or_watch_selecting_that_name(
        api: ApiServer, token: str) -> None:
    """kube-apiserver authorizes a list or watch with ``fieldSelector=metadata.name=X`` as a
    request for X, so a Role's resourceNames can allow reading exactly one Service."""
    api.delete("ClusterRoleBinding", "lbsync-reader")
    api.put({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
             "metadata": {"name": "proxy-reader", "namespace": "kong"},
             "rules": [{"apiGroups": [""], "resources": ["services"],
                        "verbs": ["get", "list", "watch"],
                        "resourceNames": ["kong-gateway-proxy"]}]})
    api.put({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
             "metadata": {"name": "proxy-reader", "namespace": "kong"},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                         "name": "proxy-reader"},
             "subjects": [{"kind": "ServiceAccount", "name": "lbsync", "namespace": "kong"}]})
    api.put(objects.service("kong", "other"))
    with _client(api, token) as c:
        core = kubernetes.client.CoreV1Api(c)
        one = core.list_namespaced_service("kong",
                                           field_selector="metadata.name=kong-gateway-proxy")
        assert [s.metadata.name for s in one.items] == ["kong-gateway-proxy"]
        events = core.list_namespaced_service(
            "kong", field_selector="metadata.name==kong-gateway-proxy", watch=True,
            timeout_seconds=1, _preload_content=False)
        assert b"kong-gateway-proxy" in events.read()
        for selector in (None, "metadata.name=other", "metadata.name!=other"):
            with pytest.raises(ApiException) as exc:
                core.list_namespaced_service("kong", field_selector=selector)
            assert 'cannot list resource "services"' in _forbidden(exc)["message"]
