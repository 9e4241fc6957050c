"""Stand-ins for what a real cluster runs besides kube-apiserver, over the emulator's public API.

kube-controller-manager's part:

* :class:`DeploymentController` - a Deployment gets a ReplicaSet for its pod template (named
  with the template's hash, owned by the Deployment, older ones scaled to zero), and both
  report every replica ready and available with the right ``observedGeneration`` and
  conditions: what helm 3's ``--wait`` (it reads the new ReplicaSet) and helm 4's kstatus
  wait look for. No Pods are made. Deployments named in ``unready`` never become available
  (``Available=False MinimumReplicasUnavailable``), so a ``--wait`` times out as on a cluster
  whose image will not pull.
* :class:`TokenController` - fills ``kubernetes.io/service-account-token`` Secrets with a real
  token for their ServiceAccount (which the emulator then authenticates and authorizes with
  RBAC), or, for a lab that wants no RBAC, with the emulator's admin token.
* :class:`EndpointSliceController` (opt-in) - an EndpointSlice per Service with a selector,
  from the Deployments it selects, ready as they are.
* :class:`GarbageCollector` - deletes objects whose owner (``ownerReferences``) is gone.

Kong's part: :class:`StandInController` writes the status Kong's controller (KIC) would,
judging the objects as KIC does (unmanaged annotation, listener port against the proxy
Service, routes attached by the Gateway API's rules: ``allowedRoutes`` namespaces (Same, All,
Selector) and hostnames, backend Services); it runs the controllers above too, EndpointSlices
included. `refuse_class` makes it reject the GatewayClass. :class:`FakeKong` is an HTTP server
on a loopback address that answers like Kong: programmed routes from a backend, anything else
with Kong's 404 JSON.

Every controller reads with ``api.get``/``api.list``, writes with ``api.update`` (optimistic:
a :class:`~lbsync_lab.sim.status.Conflict` means someone wrote first; the next pass reads
again), ``api.create`` and ``api.delete``, and wakes on ``api.changes()``: never the
emulator's locks. A manager that sees no writes passes less often (up to every
``IDLE_INTERVAL`` seconds), so a lab left running costs little.
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
    """Deployments and their ReplicaSets, every replica ready at once, except those named in
    ``unready`` (``(namespace, name)``): their pods never turn ready, as when an image cannot
    be pulled, so their rollout stays in progress and ``--wait`` times out."""

    def __init__(self, api: ApiServer) -> None:
        self.api = api
        self.unready: set[tuple[str, str]] = set()

    def reconcile(self) -> None:
        sets = _list(self.api, "ReplicaSet")
        for dep in _list(self.api, "Deployment"):
            owned = [rs for rs in sets if _owner_uid(rs) == dep["metadata"].get("uid")]
            self._deployment(dep, owned)
        for rs in _list(self.api, "ReplicaSet"):
            self._replicaset_status(rs, self._owner_unready(rs))

    def _owner_unready(self, rs: Obj) -> bool:
        owner = next((r for r in rs["metadata"].get("ownerReferences") or []
                      if r.get("kind") == "Deployment"), None)
        return owner is not None and (rs["metadata"]["namespace"], owner.get("name")) in (
            self.unready)

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

    def _replicaset_status(self, rs: Obj, unready: bool = False) -> None:
        n = int((rs.get("spec") or {}).get("replicas", 1))
        status: Obj = {"replicas": n, "observedGeneration": rs["metadata"].get("generation", 1)}
        if n:
            status["fullyLabeledReplicas"] = n
            if not unready:
                status.update(readyReplicas=n, availableReplicas=n)
        if rs.get("status") != status:
            rs["status"] = status
            write(self.api, rs)

    def _deployment_status(self, dep: Obj, rs_name: str, replicas: int, revision: str) -> None:
        gen = dep["metadata"].get("generation", 1)
        old = dep.get("status") or {}
        unready = (dep["metadata"]["namespace"], dep["metadata"]["name"]) in self.unready
        status: Obj = {"observedGeneration": gen, "replicas": replicas,
                       "updatedReplicas": replicas, "readyReplicas": replicas,
                       "availableReplicas": replicas}
        if replicas == 0:
            for k in ("readyReplicas", "availableReplicas", "updatedReplicas"):
                del status[k]
        now = _now()
        if unready and replicas:
            # What kube-controller-manager reports while the new pods are not ready.
            for k in ("readyReplicas", "availableReplicas"):
                del status[k]
            status["unavailableReplicas"] = replicas
            status["conditions"] = [
                {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable",
                 "message": "Deployment does not have minimum availability.",
                 "lastUpdateTime": now, "lastTransitionTime": now},
                {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated",
                 "message": f'ReplicaSet "{rs_name}" is progressing.',
                 "lastUpdateTime": now, "lastTransitionTime": now}]
        else:
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
    """Fills ServiceAccount token Secrets, as kube-controller-manager's token controller
    (``per_account=False``: with the admin token, for a lab that wants no RBAC)."""

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
                # A lab without RBAC: the emulator's admin token.
                token = self.api.token or "sa-token-for-lbsync"
            secret["data"] = {
                "token": base64.b64encode(token.encode()).decode(),
                "ca.crt": base64.b64encode(self.api.ca_path.read_bytes()).decode(),
                "namespace": base64.b64encode(ns.encode()).decode()}
            write(self.api, secret)


class EndpointSliceController:
    """One EndpointSlice per Service with a selector, as kube-controller-manager's: an
    endpoint per replica of each Deployment whose pod template the selector matches (no Pods
    exist: made-up pod addresses in 10.244.0.0/16), ready when the Deployment is available,
    ports resolved by name from the pod template. Owned by the Service, so they go with it."""

    def __init__(self, api: ApiServer, deployments: DeploymentController) -> None:
        self.api = api
        self.deployments = deployments

    def reconcile(self) -> None:
        deps = _list(self.api, "Deployment")
        slices = {(s["metadata"]["namespace"], s["metadata"]["name"]): s
                  for s in _list(self.api, "EndpointSlice")}
        for svc in _list(self.api, "Service"):
            selector = (svc.get("spec") or {}).get("selector") or {}
            if selector:
                self._slice(svc, selector, deps, slices)

    def _slice(self, svc: Obj, selector: dict[str, str], deps: list[Obj],
               slices: dict[tuple[str, str], Obj]) -> None:
        meta = svc["metadata"]
        ns = meta["namespace"]
        matched = [d for d in deps if d["metadata"]["namespace"] == ns and selector.items() <= (
            ((d["spec"].get("template") or {}).get("metadata") or {}).get("labels") or {}
        ).items()]
        endpoints, ports = [], []
        for dep in matched:
            ready = (ns, dep["metadata"]["name"]) not in self.deployments.unready
            digest = hashlib.sha256(dep["metadata"]["name"].encode()).digest()
            for i in range(int(dep["spec"].get("replicas", 1))):
                endpoints.append({"addresses": [f"10.244.{digest[0]}.{(digest[1] + i) % 254 + 1}"],
                                  "conditions": {"ready": ready, "serving": ready,
                                                 "terminating": False}})
        containers = [c for d in matched[:1] for c in
                      (d["spec"].get("template") or {}).get("spec", {}).get("containers") or []]
        by_name = {p["name"]: p["containerPort"] for c in containers for p in c.get("ports") or []
                   if p.get("name")}
        for p in (svc.get("spec") or {}).get("ports") or []:
            target = p.get("targetPort", p.get("port"))
            number = by_name.get(target) if isinstance(target, str) else target
            if number is not None:
                ports.append({"name": p.get("name", ""), "port": int(number),
                              "protocol": p.get("protocol", "TCP")})
        name = f"{meta['name']}-{template_hash({'service': meta.get('uid')})[:5]}"
        want: Obj = {
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": ns, "labels": {
                "kubernetes.io/service-name": meta["name"],
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"},
                "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": meta["name"],
                                     "uid": meta.get("uid"), "controller": True,
                                     "blockOwnerDeletion": True}]},
            "addressType": "IPv4", "endpoints": endpoints, "ports": ports}
        have = slices.get((ns, name))
        if have is None:
            with contextlib.suppress(ApiError):  # made by an earlier pass, or the ns is gone
                self.api.create(want)
        elif (have.get("endpoints"), have.get("ports")) != (endpoints, ports):
            have.update(endpoints=endpoints, ports=ports)
            write(self.api, have)


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


IDLE_INTERVAL = 0.25  # seconds between passes of a controller manager that sees no writes


class ControllerManager:
    """Runs controllers in one thread: a pass after every batch of writes (or ``interval``
    seconds without any). Use as a context manager."""

    def __init__(self, api: ApiServer, interval: float = 0.05,
                 per_account_tokens: bool = True, endpoint_slices: bool = False) -> None:
        self.api = api
        self.interval = interval
        self.deployments = DeploymentController(api)
        self.tokens = TokenController(api, per_account_tokens)
        self.gc = GarbageCollector(api)
        self.slices = EndpointSliceController(api, self.deployments) if endpoint_slices else None
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
        wait = self.interval
        while not self._stop.is_set():
            changes = feed.wait(wait)
            for change in changes:
                self.gc.observe(change.kind, change.obj)
            if self._stop.is_set():
                break
            # Quiet: pass less often (up to IDLE_INTERVAL), so a lab left running costs
            # little; a pass still comes that often for what no write announces (a test
            # flipping `unready` or `refuse_class`).
            wait = self.interval if changes else min(wait * 2, max(self.interval,
                                                                  IDLE_INTERVAL))
            try:
                self.reconcile()
            except Exception as exc:  # a bug here must not stop the other controllers
                self.errors.append(repr(exc))

    def reconcile(self) -> None:
        """One pass of every controller."""
        if self.fill_tokens:
            self.tokens.reconcile()
        self.deployments.reconcile()
        if self.slices is not None:
            self.slices.reconcile()
        self.gc.reconcile()


class StandInController(ControllerManager):
    """Kong's controller (KIC) writing Gateway API statuses, plus the controllers of
    :class:`ControllerManager` with EndpointSlices. Routes attach to a listener as the Gateway
    API says: ``allowedRoutes.namespaces`` (Same, All, or a Selector over the Namespace's
    labels), the hostnames intersecting, ``sectionName`` if given; ``attachedRoutes`` counts
    them. Token Secrets get real per-account tokens (``per_account_tokens=False``: the admin
    token, for a lab that needs no RBAC)."""

    def __init__(self, api: ApiServer, kong_namespace: str = "kong",
                 proxy_service: str = "kong-gateway-proxy", interval: float = 0.02, *,
                 per_account_tokens: bool = True) -> None:
        super().__init__(api, interval, per_account_tokens, endpoint_slices=True)
        self.ns, self.proxy = kong_namespace, proxy_service
        self.refuse_class = False

    # -- one pass ---------------------------------------------------------------------------

    def reconcile(self) -> None:
        super().reconcile()
        classes = {c["metadata"]["name"]: c for c in _list(self.api, "GatewayClass")}
        for gc in classes.values():
            self._class(gc)
        gateways = {(g["metadata"]["namespace"], g["metadata"]["name"]): g
                    for g in _list(self.api, "Gateway")
                    if self._class_ok(classes.get(g["spec"].get("gatewayClassName", "")))}
        routes = _list(self.api, "HTTPRoute")
        namespaces = {n["metadata"]["name"]: n for n in _list(self.api, "Namespace")}
        attached: dict[tuple[str, str, str], int] = {}
        for route in routes:
            self._route(route, gateways, namespaces, attached)
        for key, gw in gateways.items():
            self._gateway(gw, {name: n for (ns, g, name), n in attached.items()
                               if (ns, g) == key})

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

    def _addresses(self) -> list[Obj]:
        """As KIC reports a Gateway's addresses from its publish Service: a LoadBalancer's
        status.loadBalancer.ingress (IPs, else hostnames) once it has one, else the
        Service's cluster IP."""
        svc = self.api.get("Service", self.proxy, self.ns) or {}
        spec = svc.get("spec") or {}
        ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        if spec.get("type") == "LoadBalancer" and ingress:
            return [{"type": "IPAddress", "value": i["ip"]} if i.get("ip") else
                    {"type": "Hostname", "value": i["hostname"]}
                    for i in ingress if i.get("ip") or i.get("hostname")]
        return [{"type": "IPAddress", "value": spec.get("clusterIP") or "10.96.0.80"}]

    def _class_ok(self, gc: Obj | None) -> bool:
        # KIC ignores Gateways of classes it does not run unmanaged
        return bool(self._managed(gc) and gc and not self.refuse_class
                    and (gc["metadata"].get("annotations") or {}).get(UNMANAGED))

    def _gateway(self, gw: Obj, attached: dict[str, int]) -> None:
        gen = gw["metadata"].get("generation", 1)
        ports = self._proxy_ports()
        listeners = []
        all_ok = True
        for ls in gw["spec"].get("listeners") or []:
            ok = ls.get("port") in ports
            all_ok = all_ok and ok
            reason = "Programmed" if ok else "PortUnavailable"
            listeners.append({
                "name": ls["name"], "attachedRoutes": attached.get(ls["name"], 0),
                "supportedKinds": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"}],
                "conditions": [cond("Accepted", ok, "Accepted" if ok else reason, gen),
                               cond("ResolvedRefs", True, "ResolvedRefs", gen),
                               cond("Programmed", ok, reason, gen)]})
        status = {"addresses": self._addresses(),
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
               namespaces: dict[str, Obj], attached: dict[tuple[str, str, str], int]) -> None:
        rns = route["metadata"]["namespace"]
        gen = route["metadata"].get("generation", 1)
        parents = []
        for pref in route["spec"].get("parentRefs") or []:
            key = (pref.get("namespace", rns), pref["name"])
            gw = gateways.get(key)
            if gw is None:
                continue
            verdicts = {ls["name"]: _listener_admits(ls, key[0], route, namespaces.get(rns))
                        for ls in gw["spec"].get("listeners") or []
                        if pref.get("sectionName") in (None, ls["name"])}
            accepted = [name for name, why in verdicts.items() if not why]
            for name in accepted:
                attached[(*key, name)] = attached.get((*key, name), 0) + 1
            why = "" if accepted else ("NoMatchingListenerHostname" if any(
                w == "NoMatchingListenerHostname" for w in verdicts.values())
                else "NotAllowedByListeners")
            backends_ok = all(
                self.api.get("Service", b["name"], b.get("namespace", rns)) is not None
                for rule in route["spec"].get("rules") or [] for b in rule.get("backendRefs") or [])
            ok = not why and backends_ok
            parents.append({
                "parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway",
                              "namespace": key[0], "name": key[1]},
                "controllerName": KIC,
                "conditions": [
                    cond("Accepted", not why, why or "Accepted", gen),
                    cond("ResolvedRefs", backends_ok,
                         "ResolvedRefs" if backends_ok else "BackendNotFound", gen),
                    cond("Programmed", ok, "ConfiguredInGateway" if ok else "Pending", gen)]})
        if parents:
            self._write_status(route, {"parents": parents})


def _listener_admits(listener: Obj, gateway_ns: str, route: Obj, namespace: Obj | None) -> str:
    """Why a listener does not admit a route ("" when it does), as the Gateway API defines
    it: the route's namespace first, then its hostnames."""
    allowed = ((listener.get("allowedRoutes") or {}).get("namespaces") or {})
    source = allowed.get("from", "Same")
    rns = route["metadata"]["namespace"]
    labels = ((namespace or {}).get("metadata") or {}).get("labels") or {}
    if not (source == "All" or (source == "Same" and rns == gateway_ns) or (
            source == "Selector" and namespace is not None
            and selector_matches(allowed.get("selector") or {}, labels))):
        return "NotAllowedByListeners"
    host = listener.get("hostname")
    names = route["spec"].get("hostnames") or []
    if host and names and not any(hostnames_intersect(host, n) for n in names):
        return "NoMatchingListenerHostname"
    return ""


def selector_matches(selector: Obj, labels: dict[str, str]) -> bool:
    """A metav1.LabelSelector (matchLabels and matchExpressions) against labels; the empty
    selector matches everything."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def hostnames_intersect(a: str, b: str) -> bool:
    """Whether a listener's and a route's hostnames have a host in common (a leading ``*.``
    stands for one or more labels).

    Written from the Gateway API spec apart from `lbsync.bootstrap.config`'s check of the
    same rule, on purpose: a stand-in controller that called lbsync's own function would
    agree with any mistake in it, and the bootstrap tests would prove nothing about it."""
    if a == b:
        return True
    if a.startswith("*.") and b.startswith("*."):
        return a.endswith(b[1:]) or b.endswith(a[1:])
    if a.startswith("*."):
        return b.endswith(a[1:])
    if b.startswith("*."):
        return a.endswith(b[1:])
    return False


class FakeKong:
    """Answers like Kong's proxy for the routes the stand-in controller marked Programmed."""

    def __init__(self, api: ApiServer, address: str = "127.0.20.1", port: int = 0) -> None:
        """On `address`:`port` (0: any free port; a node port, to stand where NGINX sends
        traffic)."""
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

        self.server = ThreadingHTTPServer((address, port), Handler)
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
