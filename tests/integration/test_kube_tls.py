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

from lbsync import kube
from lbsync.config import KubernetesConfig
from lbsync.errors import ApiError

SERVER_EXT = """\
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost
"""


def openssl(cwd: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(directory: Path) -> Path:
    """A fresh CA (ca.crt, ca.key) of this test's own."""
    directory.mkdir(parents=True, exist_ok=True)
    openssl(directory, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key")
    openssl(directory, "req", "-x509", "-new", "-key", "ca.key", "-days", "1", "-subj",
            f"/CN={directory.name}-ca", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", "ca.crt")
    return directory / "ca.crt"


def issue(ca_dir: Path, name: str, server: bool = False) -> tuple[Path, Path]:
    """A certificate for `name` (a server's for 127.0.0.1 and localhost, or a client's),
    signed by the CA make_ca left in `ca_dir`."""
    key, csr, crt = (ca_dir / f"{name}.{ext}" for ext in ("key", "csr", "crt"))
    openssl(ca_dir, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(key))
    openssl(ca_dir, "req", "-new", "-key", str(key), "-subj", f"/CN={name}", "-out", str(csr))
    extra = ["-extfile", "server.cnf"] if server else []
    if server:
        (ca_dir / "server.cnf").write_text(SERVER_EXT)
    openssl(ca_dir, "x509", "-req", "-in", str(csr), "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "1", "-out", str(crt), *extra)
    return crt, key


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
    return make_ca(tmp_path / "other")


def test_an_embedded_ca_is_trusted(api: ApiServer, tmp_path: Path) -> None:
    cfg = kubeconfig(tmp_path / "kc", api.url, {"certificate-authority-data": b64(api.ca_path)},
                     {"token": "secret"})
    assert "gitVersion" in version(cfg)


def test_only_the_kubeconfig_ca_is_trusted(api: ApiServer, tmp_path: Path) -> None:
    """Debian's urllib3 1.26 adds the system CA bundle to every connection unless told not
    to: a kubeconfig's CA must be the only one, even after connections were made."""
    cfg = kubeconfig(tmp_path / "kc", api.url, {"certificate-authority-data": b64(api.ca_path)},
                     {"token": "secret"})
    client = kube.Client.from_config(cfg)
    for _ in range(2):
        client.call("GET", "/version", what="version")
        client.close()  # a new connection next time
    contexts = {pool.conn_kw.get("ssl_context") for pool in client._pool.pools._container.values()}
    contexts |= {client._pool.connection_pool_kw["ssl_context"]}
    assert [c.cert_store_stats()["x509_ca"] for c in contexts] == [1]


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


@pytest.fixture
def mtls(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTPS server that requires a client certificate from its CA; answers with its CN."""
    ca = make_ca(tmp_path / "pki")
    crt, key = issue(tmp_path / "pki", "server", server=True)
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
    crt, key = issue(pki, "gateway-7")
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
