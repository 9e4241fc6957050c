"""Stand-ins for what a real cluster runs besides kube-apiserver, over the emulator's public API.

kube-controller-manager's part:

* :class:`DeploymentController` - a Deployment gets a ReplicaSet for its pod template (named
  with the template's hash, owned by the Deployment, older ones scaled to zero), and both
  report every replica ready and available with the right ``observedGeneration`` and
  conditions: what helm 3's ``--wait`` (it reads the new ReplicaSet) and helm 4's kstatus
  wait look for. No Pods are made.
* :class:`TokenController` - fills ``kubernetes.io/service-account-token`` Secrets with a real
  token for their ServiceAccount (which the emulator then authenticates and authorizes with
  RBAC), or, in the bootstrap tests' older mode, with the emulator's admin token.
* :class:`GarbageCollector` - deletes objects whose owner (``ownerReferences``) is gone.

Kong's part: :class:`StandInController` writes the status Kong's controller (KIC) would,
judging the objects as KIC does (unmanaged annotation, listener port against the proxy
Service, allowedRoutes, backend Services); it runs the three above too. `refuse_class` makes
it reject the GatewayClass. :class:`FakeKong` is an HTTP server on a loopback address that
answers like Kong: programmed routes from a backend, anything else with Kong's 404 JSON.

Every controller reads with ``api.get``/``api.list``, writes with ``api.update`` (optimistic:
a :class:`~lbsync_lab.sim.status.Conflict` means someone wrote first; the next pass reads
again), ``api.create`` and ``api.delete``, and wakes on ``api.changes()``: never the
emulator's locks.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from lbsync_lab.sim import ApiServer
from lbsync_lab.sim.status import ApiError

Obj = dict[str, Any]
GW = "gateway.networking.k8s.io/v1"
KIC = "konghq.com/kic-gateway-controller"
UNMANAGED = "konghq.com/gatewayclass-unmanaged"
TOKEN_TYPE = "kubernetes.io/service-account-token"
SA_NAME = "kubernetes.io/service-account.name"
SA_UID = "kubernetes.io/service-account.uid"
HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"


def cond(ctype: str, ok: bool, reason: str, gen: int = 1, message: str = "") -> Obj:
    return {"type": ctype, "status": "True" if ok else "False", "reason": reason,
            "message": message, "observedGeneration": gen,
            "lastTransitionTime": "2026-01-01T00:00:00Z"}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def write(api: ApiServer, obj: Obj) -> bool:
    """``api.update(obj)``; False when someone wrote it first or it is gone (the next pass
    reads it again), as a controller's update against kube-apiserver goes."""
    try:
        api.update(obj)
    except ApiError as err:
        if err.code in (404, 409):
            return False
        raise
    return True


def _list(api: ApiServer, kind: str) -> list[Obj]:
    try:
        return api.list(kind)
    except KeyError:  # a custom kind whose CRD is not installed (yet)
        return []


class DeploymentController:
    """Deployments and their ReplicaSets, every replica ready at once."""

    def __init__(self, api: ApiServer) -> None:
        self.api = api

    def reconcile(self) -> None:
        sets = _list(self.api, "ReplicaSet")
        for dep in _list(self.api, "Deployment"):
            owned = [rs for rs in sets if _owner_uid(rs) == dep["metadata"].get("uid")]
            self._deployment(dep, owned)
        for rs in _list(self.api, "ReplicaSet"):
            self._replicaset_status(rs)

    def _deployment(self, dep: Obj, owned: list[Obj]) -> None:
        template = copy.deepcopy((dep.get("spec") or {}).get("template") or {})
        pod_hash = template_hash(template)
        name = f"{dep['metadata']['name']}-{pod_hash}"
        replicas = int((dep.get("spec") or {}).get("replicas", 1))
        current = next((rs for rs in owned if rs["metadata"]["name"] == name), None)
        revision = max((int((rs["metadata"].get("annotations") or {}).get(REVISION, "0"))
                        for rs in owned), default=0)
        if current is None:
            revision += 1
            self._create_replicaset(dep, name, pod_hash, template, replicas, revision)
        else:
            revision = int((current["metadata"].get("annotations") or {}).get(REVISION, "1"))
            if (current.get("spec") or {}).get("replicas") != replicas:
                current["spec"]["replicas"] = replicas
                write(self.api, current)
        for rs in owned:
            if rs["metadata"]["name"] != name and (rs.get("spec") or {}).get("replicas"):
                rs["spec"]["replicas"] = 0  # the old template's ReplicaSet, scaled down
                write(self.api, rs)
        self._deployment_status(dep, name, replicas, str(revision))

    def _create_replicaset(self, dep: Obj, name: str, pod_hash: str, template: Obj,
                           replicas: int, revision: int) -> None:
        meta = dep["metadata"]
        labels = dict((template.get("metadata") or {}).get("labels") or {}, **{
            HASH_LABEL: pod_hash})
        template.setdefault("metadata", {})["labels"] = labels
        selector = copy.deepcopy((dep.get("spec") or {}).get("selector") or {})
        selector.setdefault("matchLabels", {})[HASH_LABEL] = pod_hash
        rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
              "metadata": {"name": name, "namespace": meta["namespace"], "labels": labels,
                           "annotations": {REVISION: str(revision),
                                           "deployment.kubernetes.io/desired-replicas":
                                               str(replicas),
                                           "deployment.kubernetes.io/max-replicas":
                                               str(replicas + 1)},
                           "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                                                "name": meta["name"], "uid": meta.get("uid"),
                                                "controller": True,
                                                "blockOwnerDeletion": True}]},
              "spec": {"replicas": replicas, "selector": selector, "template": template}}
        with contextlib.suppress(ApiError):  # already made by an earlier pass, or ns gone
            self.api.create(rs)

    def _replicaset_status(self, rs: Obj) -> None:
        n = int((rs.get("spec") or {}).get("replicas", 1))
        status: Obj = {"replicas": n, "observedGeneration": rs["metadata"].get("generation", 1)}
        if n:
            status.update(fullyLabeledReplicas=n, readyReplicas=n, availableReplicas=n)
        if rs.get("status") != status:
            rs["status"] = status
            write(self.api, rs)

    def _deployment_status(self, dep: Obj, rs_name: str, replicas: int, revision: str) -> None:
        gen = dep["metadata"].get("generation", 1)
        old = dep.get("status") or {}
        status: Obj = {"observedGeneration": gen, "replicas": replicas,
                       "updatedReplicas": replicas, "readyReplicas": replicas,
                       "availableReplicas": replicas}
        if replicas == 0:
            for k in ("readyReplicas", "availableReplicas", "updatedReplicas"):
                del status[k]
        now = _now()
        status["conditions"] = [
            {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
             "message": "Deployment has minimum availability.", "lastUpdateTime": now,
             "lastTransitionTime": now},
            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
             "message": f'ReplicaSet "{rs_name}" has successfully progressed.',
             "lastUpdateTime": now, "lastTransitionTime": now}]
        annotations = dep["metadata"].get("annotations") or {}
        if _without_times(old) == _without_times(status) and annotations.get(
                REVISION) == revision:
            return
        for new, was in zip(status["conditions"], old.get("conditions") or [], strict=False):
            if new["type"] == was.get("type") and new["status"] == was.get("status"):
                new["lastTransitionTime"] = was.get("lastTransitionTime", now)
        dep["status"] = status
        dep["metadata"]["annotations"] = dict(annotations, **{REVISION: revision})
        write(self.api, dep)


def template_hash(template: Obj) -> str:
    """A ReplicaSet's pod-template-hash: stable for a template, in the characters
    kube-controller-manager uses (no vowels, so it never spells words)."""
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).digest()
    return "".join(alphabet[b % len(alphabet)] for b in digest[:10])


def _owner_uid(obj: Obj) -> str | None:
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("uid"))
    return None


def _without_times(status: Obj) -> Obj:
    out = dict(status)
    out["conditions"] = [{k: v for k, v in c.items() if not k.endswith("Time")}
                         for c in status.get("conditions") or []]
    return out


class TokenController:
    """Fills ServiceAccount token Secrets, as kube-controller-manager's token controller."""

    def __init__(self, api: ApiServer, per_account: bool = True) -> None:
        self.api = api
        self.per_account = per_account

    def reconcile(self) -> None:
        for secret in self.api.list("Secret"):
            if secret.get("type") != TOKEN_TYPE or (secret.get("data") or {}).get("token"):
                continue
            ns = secret["metadata"]["namespace"]
            annotations = secret["metadata"].setdefault("annotations", {})
            account = self.api.get("ServiceAccount", annotations.get(SA_NAME, ""), ns)
            if self.per_account:
                if account is None:
                    continue  # no account (yet): nothing to sign for
                token = self.api.tokens.legacy(ns, account, secret)
                annotations[SA_UID] = account["metadata"].get("uid", "")
            else:
                # The bootstrap tests' older mode: the emulator's admin token, so that the
                # kubeconfig written from it can do everything.
                token = self.api.token or "sa-token-for-lbsync"
            secret["data"] = {
                "token": base64.b64encode(token.encode()).decode(),
                "ca.crt": base64.b64encode(self.api.ca_path.read_bytes()).decode(),
                "namespace": base64.b64encode(ns.encode()).decode()}
            write(self.api, secret)


class GarbageCollector:
    """Deletes dependents whose owners are gone (background propagation)."""

    def __init__(self, api: ApiServer) -> None:
        self.api = api
        self.kinds: set[str] = {"ReplicaSet"}  # kinds seen with ownerReferences

    def observe(self, kind: str, obj: Obj) -> None:
        if (obj.get("metadata") or {}).get("ownerReferences"):
            self.kinds.add(kind)

    def reconcile(self) -> None:
        for kind in sorted(self.kinds):
            for obj in _list(self.api, kind):
                refs = obj["metadata"].get("ownerReferences") or []
                if refs and all(self._gone(obj, ref) for ref in refs):
                    with contextlib.suppress(ApiError):
                        self.api.delete(kind, obj["metadata"]["name"],
                                        obj["metadata"].get("namespace"))

    def _gone(self, obj: Obj, ref: Obj) -> bool:
        try:
            owner = self.api.get(str(ref.get("kind")), str(ref.get("name")),
                                 obj["metadata"].get("namespace"))
        except KeyError:
            return False  # an owner kind the emulator does not serve: leave it
        if owner is None:
            # a cluster-scoped owner is looked up without a namespace
            with contextlib.suppress(KeyError):
                owner = self.api.get(str(ref.get("kind")), str(ref.get("name")))
        return owner is None or owner["metadata"].get("uid") != ref.get("uid")


class ControllerManager:
    """Runs controllers in one thread: a pass after every batch of writes (or ``interval``
    seconds without any). Use as a context manager."""

    def __init__(self, api: ApiServer, interval: float = 0.05,
                 per_account_tokens: bool = True) -> None:
        self.api = api
        self.interval = interval
        self.deployments = DeploymentController(api)
        self.tokens = TokenController(api, per_account_tokens)
        self.gc = GarbageCollector(api)
        self.fill_tokens = True
        self.errors: list[str] = []
        """What went wrong in passes (tests assert it stays empty)."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stand-in-controllers",
                                        daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        feed = self.api.changes()
        while not self._stop.is_set():
            for change in feed.wait(self.interval):
                self.gc.observe(change.kind, change.obj)
            if self._stop.is_set():
                break
            try:
                self.reconcile()
            except Exception as exc:  # a bug here must not stop the other controllers
                self.errors.append(repr(exc))

    def reconcile(self) -> None:
        """One pass of every controller."""
        if self.fill_tokens:
            self.tokens.reconcile()
        self.deployments.reconcile()
        self.gc.reconcile()


class StandInController(ControllerManager):
    """Kong's controller (KIC) writing Gateway API statuses, plus the controllers of
    :class:`ControllerManager`. ``per_account_tokens=False`` (the default, for the bootstrap
    tests written before the emulator had RBAC) fills token Secrets with the admin token."""

    def __init__(self, api: ApiServer, kong_namespace: str = "kong",
                 proxy_service: str = "kong-gateway-proxy", interval: float = 0.02, *,
                 per_account_tokens: bool = False) -> None:
        super().__init__(api, interval, per_account_tokens)
        self.ns, self.proxy = kong_namespace, proxy_service
        self.refuse_class = False

    # -- one pass ---------------------------------------------------------------------------

    def reconcile(self) -> None:
        super().reconcile()
        classes = {c["metadata"]["name"]: c for c in _list(self.api, "GatewayClass")}
        for gc in classes.values():
            self._class(gc)
        for gw in _list(self.api, "Gateway"):
            self._gateway(gw, classes.get(gw["spec"].get("gatewayClassName", "")))
        gateways = {(g["metadata"]["namespace"], g["metadata"]["name"]): g
                    for g in _list(self.api, "Gateway")}
        for route in _list(self.api, "HTTPRoute"):
            self._route(route, gateways, classes)

    def _write_status(self, obj: Obj, status: Obj) -> None:
        if obj.get("status") == status:
            return  # writing only on change keeps resourceVersions still (idempotency tests)
        new = copy.deepcopy(obj)
        new["status"] = status
        write(self.api, new)

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
            write(self.api, gw)
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
