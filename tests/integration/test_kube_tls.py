"""TLS as `lbsync.kube` sets it up from a kubeconfig read without the official client: real
handshakes against the emulator (server certificate for 127.0.0.1 and localhost, from its own
CA) and against a TLS server that demands a client certificate."""

from __future__ import annotations

import base64
import http.server
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from lbsync_lab.sim import ApiServer
from lbsync_lab.sim.tlsgen import make_certs

from lbsync import kube
from lbsync.config import KubernetesConfig
from lbsync.errors import ApiError


def kubeconfig(path: Path, server: str, cluster: dict[str, Any], user: dict[str, Any]
               ) -> KubernetesConfig:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": server, **cluster}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
    return KubernetesConfig(path)


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def version(cfg: KubernetesConfig) -> Any:
    client = kube.Client.from_config(cfg)
    assert client.connection.source == "kubeconfig"  # read without the official client
    try:
        return client.json("GET", "/version", what="version")
    finally:
        client.close()


@pytest.fixture
def other_ca(tmp_path: Path) -> Path:
    return make_certs(tmp_path / "other")[0]


def test_an_embedded_ca_is_trusted(api: ApiServer, tmp_path: Path) -> None:
    cfg = kubeconfig(tmp_path / "kc", api.url, {"certificate-authority-data": b64(api.ca_path)},
                     {"token": "secret"})
    assert "gitVersion" in version(cfg)


def test_a_ca_file_is_trusted(api: ApiServer, tmp_path: Path) -> None:
    cfg = kubeconfig(tmp_path / "kc", api.url, {"certificate-authority": str(api.ca_path)},
                     {"token": "secret"})
    assert "gitVersion" in version(cfg)


def test_another_ca_is_refused_unless_verification_is_off(api: ApiServer, tmp_path: Path,
                                                          other_ca: Path) -> None:
    wrong = kubeconfig(tmp_path / "kc", api.url, {"certificate-authority": str(other_ca)},
                       {"token": "secret"})
    with pytest.raises(ApiError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        version(wrong)
    insecure = kubeconfig(tmp_path / "kc2", api.url, {"insecure-skip-tls-verify": True},
                          {"token": "secret"})
    assert "gitVersion" in version(insecure)


def test_tls_server_name_is_the_name_checked(api: ApiServer, tmp_path: Path) -> None:
    assert api.url.startswith("https://127.0.0.1:")
    ca = {"certificate-authority": str(api.ca_path)}
    good = kubeconfig(tmp_path / "kc", api.url, {**ca, "tls-server-name": "localhost"},
                      {"token": "secret"})
    assert "gitVersion" in version(good)
    bad = kubeconfig(tmp_path / "kc2", api.url, {**ca, "tls-server-name": "api.example"},
                     {"token": "secret"})
    with pytest.raises(ApiError, match=r"api\.example|hostname|match"):
        version(bad)


# --- client certificates: a server that demands one and says whose it got --------------------


def client_cert(ca_dir: Path, name: str) -> tuple[Path, Path]:
    """A client certificate for `name`, signed by the CA make_certs left in `ca_dir`."""
    key, csr, crt = (ca_dir / f"{name}.{ext}" for ext in ("key", "csr", "crt"))

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=ca_dir, check=True, capture_output=True)

    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(key))
    openssl("req", "-new", "-key", str(key), "-subj", f"/CN={name}", "-out", str(csr))
    openssl("x509", "-req", "-in", str(csr), "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "1", "-out", str(crt))
    return crt, key


@pytest.fixture
def mtls(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTPS server that requires a client certificate from its CA; answers with its CN."""
    ca, crt, key = make_certs(tmp_path / "pki")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    ctx.load_verify_locations(ca)
    ctx.verify_mode = ssl.CERT_REQUIRED

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            peer = self.connection.getpeercert()  # type: ignore[attr-defined]
            subject = dict(item[0] for item in peer["subject"])
            body = f'{{"cn": "{subject["commonName"]}"}}'.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield f"https://127.0.0.1:{httpd.server_address[1]}", tmp_path / "pki"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.parametrize("embedded", [True, False], ids=["embedded", "files"])
def test_a_client_certificate_is_presented(mtls: tuple[str, Path], tmp_path: Path,
                                           embedded: bool) -> None:
    url, pki = mtls
    crt, key = client_cert(pki, "gateway-7")
    user = ({"client-certificate-data": b64(crt), "client-key-data": b64(key)} if embedded
            else {"client-certificate": str(crt), "client-key": str(key)})
    cfg = kubeconfig(tmp_path / "kc", url, {"certificate-authority-data": b64(pki / "ca.crt")},
                     user)
    assert version(cfg) == {"cn": "gateway-7"}


def test_without_a_client_certificate_the_handshake_fails(mtls: tuple[str, Path],
                                                          tmp_path: Path) -> None:
    url, pki = mtls
    cfg = kubeconfig(tmp_path / "kc", url, {"certificate-authority-data": b64(pki / "ca.crt")},
                     {"token": "t"})
    with pytest.raises(ApiError):
        version(cfg)
