"""Self-signed CA and server certificate for the emulator, made with the openssl CLI.

This module owns certificate generation only. Keys are EC prime256v1 (fast);
the server certificate carries SAN IP:127.0.0.1 and DNS:localhost plus the
key-usage extensions strict X.509 verification expects. One set is made per
process and copied into each workdir: five openssl runs cost ~45 ms, and a test
run starts the emulator hundreds of times.
"""

from __future__ import annotations

import atexit
import shutil
import subprocess
import tempfile
from pathlib import Path

_made: Path | None = None

_EXT = """\
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid,issuer
"""


def _run(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certs(workdir: Path) -> tuple[Path, Path, Path]:
    """Put ``ca.crt``, ``server.crt`` and ``server.key`` in ``workdir``; return their paths."""
    global _made
    if _made is None or not (_made / "server.key").exists():
        _made = Path(tempfile.mkdtemp(prefix="lbsync-sim-certs-"))
        atexit.register(shutil.rmtree, _made, True)
        _generate(_made)
    workdir.mkdir(parents=True, exist_ok=True)
    for name in ("ca.crt", "server.crt", "server.key"):
        shutil.copyfile(_made / name, workdir / name)
    (workdir / "server.key").chmod(0o600)
    return workdir / "ca.crt", workdir / "server.crt", workdir / "server.key"


def _generate(workdir: Path) -> None:
    (workdir / "server-ext.cnf").write_text(_EXT)
    _run("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key", cwd=workdir)
    _run("req", "-x509", "-new", "-key", "ca.key", "-sha256", "-days", "3650",
         "-subj", "/CN=lbsync-sim-ca", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", "ca.crt", cwd=workdir)
    _run("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "server.key",
         cwd=workdir)
    _run("req", "-new", "-key", "server.key", "-subj", "/CN=localhost", "-out", "server.csr",
         cwd=workdir)
    _run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
         "-CAcreateserial", "-sha256", "-days", "3650", "-extfile", "server-ext.cnf",
         "-out", "server.crt", cwd=workdir)
