"""Stand-ins for what a real cluster runs: Kong's controller, the token controller, Kong itself.

`StandInController` is a thread over the emulator's Python API that writes the status Kong's
controller (KIC) would, judging the objects as KIC does (unmanaged annotation, listener port
against the proxy Service, allowedRoutes, backend Services), and fills ServiceAccount token
Secrets as kube-controller-manager would. `refuse_class` makes it reject the GatewayClass.
`FakeKong` is an HTTP server on a loopback address that answers like Kong: programmed routes
from a backend, anything else with Kong's 404 JSON.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from lbsync_lab.sim import ApiServer

Obj = dict[str, Any]
GW = "gateway.networking.k8s.io/v1"
KIC = "konghq.com/kic-gateway-controller"
UNMANAGED = "konghq.com/gatewayclass-unmanaged"


def cond(ctype: str, ok: bool, reason: str, gen: int = 1, message: str = "") -> Obj:
    return {"type": ctype, "status": "True" if ok else "False", "reason": reason,
            "message": message, "observedGeneration": gen,
            "lastTransitionTime": "2026-01-01T00:00:00Z"}


class StandInController:
    def __init__(self, api: ApiServer, kong_namespace: str = "kong",
                 proxy_service: str = "kong-gateway-proxy", interval: float = 0.02) -> None:
        self.api, self.ns, self.proxy = api, kong_namespace, proxy_service
        self.interval = interval
        self.refuse_class = False
        self.fill_tokens = True
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stand-in-kic", daemon=True)

    def __enter__(self) -> StandInController:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            # KeyError: Gateway API kinds are not registered until their CRDs are installed.
            with contextlib.suppress(KeyError):
                self.reconcile()
            self._stop.wait(self.interval)

    # -- one pass ---------------------------------------------------------------------------

    def reconcile(self) -> None:
        with self.api.store.cond:  # read-modify-write must not interleave with API writes
            if self.fill_tokens:
                self._tokens()
            classes = {c["metadata"]["name"]: c for c in self._list("GatewayClass")}
            for gc in classes.values():
                self._class(gc)
            for gw in self._list("Gateway"):
                self._gateway(gw, classes.get(gw["spec"].get("gatewayClassName", "")))
            gateways = {(g["metadata"]["namespace"], g["metadata"]["name"]): g
                        for g in self._list("Gateway")}
            for route in self._list("HTTPRoute"):
                self._route(route, gateways, classes)

    def _list(self, kind: str) -> list[Obj]:
        return self.api.list(kind)

    def _write_status(self, obj: Obj, status: Obj) -> None:
        if obj.get("status") == status:
            return  # writing only on change keeps resourceVersions still (idempotency tests)
        new = copy.deepcopy(obj)
        new["status"] = status
        self.api.put(new)

    def _tokens(self) -> None:
        for secret in self.api.list("Secret"):
            if secret.get("type") != "kubernetes.io/service-account-token":
                continue
            if (secret.get("data") or {}).get("token"):
                continue
            new = copy.deepcopy(secret)
            # The emulator accepts one bearer token: minting that one lets tests use the
            # written kubeconfig for real.
            token = self.api.token or "sa-token-for-lbsync"
            new["data"] = {
                "token": base64.b64encode(token.encode()).decode(),
                "ca.crt": base64.b64encode(self.api.ca_path.read_bytes()).decode(),
                "namespace": base64.b64encode(secret["metadata"]["namespace"].encode()).decode()}
            self.api.put(new)

    def _managed(self, gc: Obj | None) -> bool:
        return bool(gc and gc["spec"].get("controllerName") == KIC)

    def _class(self, gc: Obj) -> None:
        if not self._managed(gc):
            return
        gen = gc["metadata"].get("generation", 1)
        if self.refuse_class:
            status = {"conditions": [cond("Accepted", False, "InvalidParameters", gen,
                                          "refused by the stand-in controller")]}
        else:
            status = {"conditions": [cond("Accepted", True, "Accepted", gen)]}
        self._write_status(gc, status)

    def _proxy_ports(self) -> set[int]:
        svc = self.api.get("Service", self.proxy, self.ns)
        return {p["port"] for p in ((svc or {}).get("spec") or {}).get("ports") or []}

    def _class_ok(self, gc: Obj | None) -> bool:
        return bool(self._managed(gc) and gc and not self.refuse_class
                    and (gc["metadata"].get("annotations") or {}).get(UNMANAGED))

    def _gateway(self, gw: Obj, gc: Obj | None) -> None:
        if not self._class_ok(gc):
            return  # KIC ignores Gateways of classes it does not run unmanaged
        gen = gw["metadata"].get("generation", 1)
        ports = self._proxy_ports()
        listeners = []
        all_ok = True
        for ls in gw["spec"].get("listeners") or []:
            ok = ls.get("port") in ports
            all_ok = all_ok and ok
            reason = "Programmed" if ok else "PortUnavailable"
            listeners.append({
                "name": ls["name"], "attachedRoutes": 0,
                "supportedKinds": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"}],
                "conditions": [cond("Accepted", ok, "Accepted" if ok else reason, gen),
                               cond("ResolvedRefs", True, "ResolvedRefs", gen),
                               cond("Programmed", ok, reason, gen)]})
        status = {"addresses": [{"type": "IPAddress", "value": "10.96.0.80"}],
                  "conditions": [cond("Accepted", True, "Accepted", gen),
                                 cond("Programmed", all_ok, "Programmed" if all_ok else "Invalid",
                                      gen)],
                  "listeners": listeners}
        annotations = gw["metadata"].get("annotations") or {}
        if annotations.get("konghq.com/publish-service") != f"{self.ns}/{self.proxy}":
            # KIC writes this annotation on the Gateway itself: SSA must leave it alone.
            gw = copy.deepcopy(gw)
            gw["metadata"].setdefault("annotations", {})[
                "konghq.com/publish-service"] = f"{self.ns}/{self.proxy}"
            gw["status"] = status
            self.api.put(gw)
            return
        self._write_status(gw, status)

    def _route(self, route: Obj, gateways: dict[tuple[str, str], Obj],
               classes: dict[str, Obj]) -> None:
        rns = route["metadata"]["namespace"]
        gen = route["metadata"].get("generation", 1)
        parents = []
        for pref in route["spec"].get("parentRefs") or []:
            key = (pref.get("namespace", rns), pref["name"])
            gw = gateways.get(key)
            if gw is None or not self._class_ok(classes.get(gw["spec"]["gatewayClassName"])):
                continue
            allowed = all(
                (ls.get("allowedRoutes") or {}).get("namespaces", {}).get("from", "Same") == "All"
                or rns == key[0] for ls in gw["spec"].get("listeners") or [])
            backends_ok = all(
                self.api.get("Service", b["name"], b.get("namespace", rns)) is not None
                for rule in route["spec"].get("rules") or [] for b in rule.get("backendRefs") or [])
            parents.append({
                "parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway",
                              "namespace": key[0], "name": key[1]},
                "controllerName": KIC,
                "conditions": [
                    cond("Accepted", allowed, "Accepted" if allowed else "NotAllowedByListeners",
                         gen),
                    cond("ResolvedRefs", backends_ok,
                         "ResolvedRefs" if backends_ok else "BackendNotFound", gen),
                    cond("Programmed", allowed and backends_ok,
                         "ConfiguredInGateway" if allowed and backends_ok else "Pending", gen)]})
        if parents:
            self._write_status(route, {"parents": parents})


class FakeKong:
    """Answers like Kong's proxy for the routes the stand-in controller marked Programmed."""

    def __init__(self, api: ApiServer, address: str = "127.0.20.1") -> None:
        self.api = api
        self.requests: list[tuple[str, str]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                host = (self.headers.get("Host") or "").split(":")[0]
                fake.requests.append((host, self.path))
                backend = fake.match(host, self.path)
                if backend is None:
                    body = json.dumps({"message": "no Route matched with those values",
                                       "request_id": f"{time.time_ns():x}"}).encode()
                    self._reply(404, body, "application/json; charset=utf-8")
                else:
                    self._reply(200, f"Hello from {backend}\n".encode(), "text/plain")

            def _reply(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer((address, 0), Handler)
        self.address, self.port = address, self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> FakeKong:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def match(self, host: str, path: str) -> str | None:
        for route in self._programmed():
            if host not in route["spec"].get("hostnames", []):
                continue
            for rule in route["spec"].get("rules") or []:
                for m in rule.get("matches") or []:
                    prefix = m["path"]["value"]
                    if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
                        b = rule["backendRefs"][0]
                        return f"{route['metadata']['namespace']}/{b['name']}:{b['port']}"
        return None

    def _programmed(self) -> Iterator[Obj]:
        try:
            routes = self.api.list("HTTPRoute")
        except KeyError:
            return
        for route in routes:
            parents = (route.get("status") or {}).get("parents") or []
            if any(c["type"] == "Programmed" and c["status"] == "True"
                   for p in parents for c in p.get("conditions") or []):
                yield route


class FileServer:
    """Serves fixed files over plain HTTP on a loopback address (a stand-in release URL)."""

    def __init__(self, address: str, files: dict[str, bytes]) -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                body = files.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

        self.server = ThreadingHTTPServer((address, 0), Handler)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> FileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
