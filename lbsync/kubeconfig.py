"""Where the API server is and how to authenticate to it: `Connection`, and a reader of the
common kubeconfig files that needs no Kubernetes client.

Importing the official client to read a kubeconfig costs 0.25-0.4 s and 35-45 MB of RSS
(measured on kubernetes 22.6 and 37: `import kubernetes` drags in its generated API), more than
the rest of `lbsync once` and about two thirds of the daemon's memory target. Most gateway
hosts hold one small kubeconfig: a token (what `lbsync bootstrap apply --write-kubeconfig`
writes) or a client certificate (kubeadm's admin.conf), a CA, a server. `read` understands
exactly those and answers None for anything else, and `lbsync.kube` then hands the file to
the official loader, which keeps every other form working (several files in $KUBECONFIG, exec
and auth-provider plugins, in-cluster accounts) and names the error of a broken file.

What `read` takes, with the official loader's meaning (tests/unit/test_kubeconfig.py compares
both, on kubernetes 22.6 and 37):
- one file; the context named, else `current-context`;
- cluster: `server`; `certificate-authority-data` (preferred) or `certificate-authority`
  (relative to the file's directory); `insecure-skip-tls-verify`; `tls-server-name`;
  `proxy-url`;
- user: `token` (preferred) or `tokenFile`; `client-certificate(-data)` with
  `client-key(-data)`; or `username` and `password` (basic auth).
Any other key, a value of the wrong type, an empty value or a file that is not there: None.

Reading files is this module's only I/O; it imports nothing that talks to the network.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

Headers = Callable[[], Mapping[str, str]]


def _no_headers() -> Mapping[str, str]:
    return {}


@dataclass(frozen=True)
class Connection:
    """Everything `lbsync.kube` needs to reach one API server, from whichever loader."""

    server: str
    verify: bool = True
    ca_file: str | None = None
    ca_data: bytes | None = None  # the CA bundle itself (PEM), when the kubeconfig embeds it
    cert_file: str | None = None
    key_file: str | None = None
    cert_data: bytes | None = None  # client certificate and key (PEM), when embedded
    key_data: bytes | None = None
    tls_server_name: str | None = None
    proxy: str | None = None
    proxy_headers: Mapping[str, str] | None = None
    assert_hostname: str | None = None
    # Authentication headers, asked before every request: the official loader's refresh
    # hooks (exec plugins, expiring tokens) run there.
    headers: Headers = field(default=_no_headers, compare=False, repr=False)
    source: str = "kubeconfig"  # which loader: "kubeconfig" (this module) or "official"

    def ca_pem(self) -> bytes | None:
        """The CA bundle's bytes, embedded or from its file; None: the system's CAs."""
        if self.ca_data is not None:
            return self.ca_data
        return Path(self.ca_file).read_bytes() if self.ca_file else None


# Keys whose meaning `read` reproduces; anything else sends the file to the official loader.
# `extensions` (minikube's, kind's) and `namespace` mean nothing to either loader.
_CLUSTER_KEYS = {"server", "certificate-authority", "certificate-authority-data",
                 "insecure-skip-tls-verify", "tls-server-name", "proxy-url", "extensions"}
_USER_KEYS = {"token", "tokenFile", "client-certificate", "client-certificate-data",
              "client-key", "client-key-data", "username", "password", "extensions"}
_TOP_KEYS = {"apiVersion", "kind", "clusters", "users", "contexts", "current-context",
             "preferences", "extensions"}
_CONTEXT_KEYS = {"cluster", "user", "namespace", "extensions"}


class _Unsupported(Exception):
    """Not a form `read` reproduces exactly: the official loader decides."""


def default_path(environ: Mapping[str, str] = os.environ) -> str:
    """Where the official loader looks when no file is named: $KUBECONFIG, ~/.kube/config."""
    return environ.get("KUBECONFIG", "~/.kube/config")


def read(path: str, context: str | None = None) -> Connection | None:
    """The connection a one-file kubeconfig describes, or None when the official loader
    must read it (see the module's docstring for what is read here)."""
    try:
        return _read(path, context)
    except (_Unsupported, OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError):
        return None


def _read(path: str, context: str | None) -> Connection:
    # The official loader splits a path list on ":" even when a single file is named, and
    # skips missing files: leave both cases to it.
    if ":" in path:
        raise _Unsupported
    file = os.path.expanduser(path)
    with open(file, "rb") as fh:
        doc = yaml.safe_load(fh)
    top = _mapping(doc, _TOP_KEYS)
    # Relative paths are relative to the directory the file was named in (not resolved
    # through symlinks), as the official loader reads them.
    base = Path(os.path.abspath(os.path.dirname(file)))
    name = context if context is not None else top.get("current-context")
    ctx = _mapping(_named(top.get("contexts"), name, "context"), _CONTEXT_KEYS)
    cluster = _mapping(_named(top.get("clusters"), _string(ctx.get("cluster")), "cluster"),
                       _CLUSTER_KEYS)
    user_name = ctx.get("user")
    user = (_mapping(_named(top.get("users"), _string(user_name), "user"), _USER_KEYS)
            if user_name is not None else {})

    server = _string(cluster.get("server")).rstrip("/")
    headers = _authorization(user, base)
    tls: dict[str, Any] = {}
    if server.startswith("https"):  # the official loader reads TLS files only for https
        tls["ca_data"], tls["ca_file"] = _file_or_data(cluster, "certificate-authority", base)
        tls["cert_data"], tls["cert_file"] = _file_or_data(user, "client-certificate", base)
        tls["key_data"], tls["key_file"] = _file_or_data(user, "client-key", base)
        if (tls["cert_data"] or tls["cert_file"]) and not (tls["key_data"] or tls["key_file"]):
            raise _Unsupported  # a certificate without its key: let the official loader fail
    insecure = cluster.get("insecure-skip-tls-verify", False)
    if not isinstance(insecure, bool):
        raise _Unsupported
    return Connection(
        server=server, verify=not insecure,
        tls_server_name=_optional(cluster, "tls-server-name"),
        proxy=_optional(cluster, "proxy-url"),
        headers=(lambda: headers) if headers else _no_headers,
        **tls)


def _mapping(value: Any, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict) or not set(value) <= allowed:
        raise _Unsupported
    return value


def _string(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise _Unsupported
    return value


def _optional(section: Mapping[str, Any], key: str) -> str | None:
    return _string(section[key]) if key in section else None


def _named(entries: Any, name: Any, key: str) -> Any:
    """The `key` part of the one entry called `name` (the official loader refuses two)."""
    _string(name)
    if not isinstance(entries, list):
        raise _Unsupported
    found = [e for e in entries if isinstance(e, dict) and e.get("name") == name]
    if len(found) != 1 or not all(isinstance(e, dict) and "name" in e for e in entries):
        raise _Unsupported
    if not set(found[0]) <= {"name", key}:
        raise _Unsupported
    return found[0].get(key)


def _file_or_data(section: Mapping[str, Any], key: str, base: Path
                  ) -> tuple[bytes | None, str | None]:
    """Embedded base64 data (preferred, as the official loader prefers it) or a file path."""
    if f"{key}-data" in section:
        try:
            data = base64.standard_b64decode(_string(section[f"{key}-data"]))
        except (binascii.Error, ValueError):
            raise _Unsupported from None
        if not data:
            raise _Unsupported
        return data, None
    if key in section:
        path = os.path.normpath(os.path.join(base, _string(section[key])))
        if not os.path.isfile(path):
            raise _Unsupported
        return None, path
    return None, None


def _authorization(user: Mapping[str, Any], base: Path) -> dict[str, str]:
    """The official loader's order: token (data, then file), then username and password."""
    if "token" in user:
        return {"authorization": f"Bearer {_header_safe(_string(user['token']))}"}
    if "tokenFile" in user:
        path = os.path.normpath(os.path.join(base, _string(user["tokenFile"])))
        with open(path, encoding="utf-8") as fh:
            token = fh.read()
        # The official loader sends the file as it is: a trailing newline breaks it (the
        # header is refused), while kubectl trims it. Trim, as kubectl does.
        return {"authorization": f"Bearer {_header_safe(token.strip())}"}
    if "username" in user or "password" in user:
        credentials = f"{_string(user.get('username'))}:{_string(user.get('password'))}"
        try:
            encoded = base64.b64encode(credentials.encode("latin-1")).decode("ascii")
        except UnicodeEncodeError:
            raise _Unsupported from None
        return {"authorization": f"Basic {encoded}"}
    return {}


def _header_safe(value: str) -> str:
    if not value or any(c in value for c in "\r\n\0"):
        raise _Unsupported
    return value
