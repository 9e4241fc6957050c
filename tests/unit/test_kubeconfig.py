"""The kubeconfig reader that needs no Kubernetes client, checked against the official loader.

For every form `lbsync.kubeconfig` reads, the connection it builds must be the one the
official loader of the installed client (22.6 on Debian 12, 37 from PyPI) builds from the
same file: server, verification, CA, client certificate and key, and the headers sent. Every
other form must be left to the official loader (`read` answers None), and still work through
`kube.load_connection`: an exec plugin here, with a real process.
"""

from __future__ import annotations

import base64
import os
import stat
import sys
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml

from lbsync import kube, kubeconfig
from lbsync.config import KubernetesConfig
from lbsync.kubeconfig import Connection

CA = b"-----BEGIN CERTIFICATE-----\nMIIB-ca\n-----END CERTIFICATE-----\n"
CERT = b"-----BEGIN CERTIFICATE-----\nMIIB-client\n-----END CERTIFICATE-----\n"
KEY = b"-----BEGIN EC PRIVATE KEY-----\nMHc-key\n-----END EC PRIVATE KEY-----\n"
# kubernetes 22.6's loader ignores tls-server-name and proxy-url; 37's honours them.
OFFICIAL_READS_TLS_SERVER_NAME = hasattr(kubernetes.client.Configuration(), "tls_server_name")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def doc(cluster: dict[str, Any], user: dict[str, Any] | None, **top: Any) -> dict[str, Any]:
    context: dict[str, Any] = {"cluster": "c"}
    if user is not None:
        context["user"] = "u"
    return {"apiVersion": "v1", "kind": "Config", "current-context": "ctx",
            "clusters": [{"name": "c", "cluster": cluster}],
            "users": [{"name": "u", "user": user or {}}],
            "contexts": [{"name": "ctx", "context": context}], **top}


HTTPS = "https://10.0.0.1:6443"

READ_HERE: dict[str, dict[str, Any]] = {
    "token, embedded CA (what bootstrap writes)": doc(
        {"server": HTTPS, "certificate-authority-data": b64(CA)}, {"token": "abc.def"}),
    "token, CA file relative to the kubeconfig": doc(
        {"server": HTTPS + "/", "certificate-authority": "pki/ca.crt"}, {"token": "t"}),
    "token file": doc({"server": HTTPS, "certificate-authority": "pki/ca.crt"},
                      {"tokenFile": "token"}),
    "token wins over a token file": doc({"server": HTTPS}, {"token": "x", "tokenFile": "token"}),
    "client certificate, embedded (kubeadm's admin.conf)": doc(
        {"server": HTTPS, "certificate-authority-data": b64(CA)},
        {"client-certificate-data": b64(CERT), "client-key-data": b64(KEY)}),
    "client certificate, files": doc(
        {"server": HTTPS, "certificate-authority": "pki/ca.crt"},
        {"client-certificate": "pki/client.crt", "client-key": "pki/client.key"}),
    "embedded data wins over a file": doc(
        {"server": HTTPS, "certificate-authority-data": b64(CA),
         "certificate-authority": "pki/other.crt"}, {"token": "t"}),
    "insecure": doc({"server": HTTPS, "insecure-skip-tls-verify": True}, {"token": "t"}),
    "basic auth": doc({"server": HTTPS, "certificate-authority-data": b64(CA)},
                      {"username": "admin", "password": "pä:ss"}),
    "no user": doc({"server": HTTPS, "certificate-authority-data": b64(CA)}, None),
    "plain http: no TLS files read": doc(
        {"server": "http://127.0.0.1:8080", "certificate-authority": "missing.crt"},
        {"token": "t"}),
    "extensions and a namespace (minikube)": {
        **doc({"server": HTTPS, "certificate-authority-data": b64(CA),
               "extensions": [{"name": "cluster_info", "extension": {"provider": "x"}}]},
              {"token": "t"}),
        "preferences": {}},
    "tls-server-name and proxy-url": doc(
        {"server": HTTPS, "certificate-authority-data": b64(CA),
         "tls-server-name": "api.internal", "proxy-url": "http://proxy:3128"}, {"token": "t"}),
}


def write(tmp_path: Path, document: Any) -> Path:
    pki = tmp_path / "pki"
    pki.mkdir(exist_ok=True)
    (pki / "ca.crt").write_bytes(CA)
    (pki / "other.crt").write_bytes(b"not this one")
    (pki / "client.crt").write_bytes(CERT)
    (pki / "client.key").write_bytes(KEY)
    (tmp_path / "token").write_text("from-a-file")
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(document, allow_unicode=True))
    return path


def file_bytes(path: str | None) -> bytes | None:
    return Path(path).read_bytes() if path else None


def settings(conn: Connection) -> dict[str, Any]:
    """What reaches the wire, whichever way the loader keeps it (bytes or a temp file)."""
    return {
        "server": conn.server, "verify": conn.verify, "ca": conn.ca_pem(),
        "cert": conn.cert_data or file_bytes(conn.cert_file),
        "key": conn.key_data or file_bytes(conn.key_file),
        "headers": {k.lower(): v for k, v in conn.headers().items()},
    }


@pytest.mark.parametrize("name", sorted(READ_HERE))
def test_read_here_as_the_official_loader_reads_it(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, READ_HERE[name])
    ours = kubeconfig.read(str(path))
    assert ours is not None, "this form should not need the official loader"
    official = kube._official(KubernetesConfig(path), "k", in_cluster=False)
    assert official.source == "official" and ours.source == "kubeconfig"
    assert settings(ours) == settings(official)
    if OFFICIAL_READS_TLS_SERVER_NAME:
        assert (ours.tls_server_name, ours.proxy) == (official.tls_server_name, official.proxy)


def test_what_22_6_ignores_is_honoured(tmp_path: Path) -> None:
    path = write(tmp_path, READ_HERE["tls-server-name and proxy-url"])
    ours = kubeconfig.read(str(path))
    assert ours is not None
    assert (ours.tls_server_name, ours.proxy) == ("api.internal", "http://proxy:3128")


def test_a_named_context_is_used(tmp_path: Path) -> None:
    document = doc({"server": HTTPS, "insecure-skip-tls-verify": True}, {"token": "t"})
    document["clusters"].append({"name": "other", "cluster": {"server": "https://other:6443",
                                                              "insecure-skip-tls-verify": True}})
    document["contexts"].append({"name": "o", "context": {"cluster": "other", "user": "u"}})
    path = write(tmp_path, document)
    for context, server in ((None, HTTPS), ("o", "https://other:6443")):
        ours = kubeconfig.read(str(path), context)
        assert ours is not None and ours.server == server
        assert settings(ours) == settings(kube._official(KubernetesConfig(path, context), "k",
                                                         in_cluster=False))


def test_a_token_file_with_a_newline_is_trimmed_as_kubectl_trims_it(tmp_path: Path) -> None:
    path = write(tmp_path, READ_HERE["token file"])
    (tmp_path / "token").write_text("from-a-file\n")
    ours = kubeconfig.read(str(path))
    assert ours is not None and ours.headers() == {"authorization": "Bearer from-a-file"}


OFFICIAL_ONLY: dict[str, Any] = {
    "exec plugin": doc({"server": HTTPS}, {"exec": {
        "apiVersion": "client.authentication.k8s.io/v1beta1", "command": "x"}}),
    "auth provider": doc({"server": HTTPS}, {"auth-provider": {"name": "oidc"}}),
    "unknown user key": doc({"server": HTTPS}, {"token": "t", "as": "someone"}),
    "unknown cluster key": doc({"server": HTTPS, "certificate-authority-file": "x"},
                               {"token": "t"}),
    "empty token": doc({"server": HTTPS}, {"token": ""}),
    "token that is a number": doc({"server": HTTPS}, {"token": 12345}),
    "insecure as a string": doc({"server": HTTPS, "insecure-skip-tls-verify": "true"},
                                {"token": "t"}),
    "missing CA file": doc({"server": HTTPS, "certificate-authority": "nope.crt"},
                           {"token": "t"}),
    "CA data that is not base64": doc({"server": HTTPS, "certificate-authority-data": "%%%"},
                                      {"token": "t"}),
    "certificate without its key": doc({"server": HTTPS},
                                       {"client-certificate-data": b64(CERT)}),
    "password without a user": doc({"server": HTTPS}, {"password": "p"}),
    "no server": doc({"certificate-authority-data": b64(CA)}, {"token": "t"}),
    "no current context": {k: v for k, v in doc({"server": HTTPS}, {"token": "t"}).items()
                           if k != "current-context"},
    "user not found": {**doc({"server": HTTPS}, {"token": "t"}), "users": []},
    "two clusters of one name": {**doc({"server": HTTPS}, {"token": "t"}), "clusters": [
        {"name": "c", "cluster": {"server": HTTPS}}, {"name": "c", "cluster": {"server": HTTPS}}]},
    "not a mapping": ["a", "list"],
    "empty file": None,
}


@pytest.mark.parametrize("name", sorted(OFFICIAL_ONLY))
def test_anything_else_is_left_to_the_official_loader(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, OFFICIAL_ONLY[name])
    assert kubeconfig.read(str(path)) is None


def test_several_files_and_missing_files_are_left_to_it(tmp_path: Path) -> None:
    path = write(tmp_path, READ_HERE["insecure"])
    assert kubeconfig.read(f"{path}:{tmp_path / 'other'}") is None
    assert kubeconfig.read(str(tmp_path / "missing")) is None
    path.write_text("clusters: [\n  - oops: {\n")
    assert kubeconfig.read(str(path)) is None


def test_an_exec_plugin_works_through_the_official_loader(tmp_path: Path) -> None:
    plugin = tmp_path / "plugin"
    plugin.write_text(f"#!{sys.executable}\nimport json\nprint(json.dumps({{"
                      "'apiVersion': 'client.authentication.k8s.io/v1beta1', "
                      "'kind': 'ExecCredential', 'status': {'token': 'from-exec'}}))\n")
    plugin.chmod(plugin.stat().st_mode | stat.S_IXUSR)
    path = write(tmp_path, doc({"server": "http://127.0.0.1:9"}, {"exec": {
        "apiVersion": "client.authentication.k8s.io/v1beta1", "command": str(plugin)}}))
    conn = kube.load_connection(KubernetesConfig(path))
    assert conn.source == "official"
    assert {k.lower(): v for k, v in conn.headers().items()} == {
        "authorization": "Bearer from-exec"}


def test_kubeconfig_env_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, READ_HERE["insecure"])
    monkeypatch.setenv("KUBECONFIG", str(path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    conn = kube.load_connection(KubernetesConfig())
    assert conn.source == "kubeconfig" and conn.server == HTTPS


def test_the_default_path_is_the_official_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    assert kubeconfig.default_path() == "~/.kube/config"
    assert os.path.expanduser(kubeconfig.default_path()).endswith("/.kube/config")
