"""Status condition evaluation: is each object ready, and if not, why and what to do.

Owns the readiness rules for Deployments, CRDs, GatewayClass, Gateway (and its listeners) and
HTTPRoute parents, and the hint table for the failure reasons Kong's controller reports. Pure:
the waits and doctor feed it objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]

# Known failure reasons -> what to do about it. Kept in one table so waits and doctor agree.
HINTS: dict[str, str] = {
    "PortUnavailable": "a listener's port must be the proxy Service port (80), not the node port",
    "UnsupportedProtocol": "HTTPS listeners need the chart's proxy TLS enabled; use HTTP",
    "NotAllowedByListeners": "the Gateway admits routes only from the namespaces of the "
                             "routes in the bootstrap config: add the route there (or "
                             "--route) and rerun apply",
    "NoMatchingListenerHostname": "no Gateway listener is for the route's hostnames: add the "
                                  "route to the bootstrap config (or --route) and rerun "
                                  "apply, or fix gateway.hostname",
    "NoMatchingParent": "the route's parentRef names no listener of the Gateway",
    "BackendNotFound": "the backend Service does not exist; create it or fix the route backend",
    "RefNotPermitted": "a cross-namespace backend needs a ReferenceGrant in the backend namespace",
    "InvalidKind": "backendRefs must point at Services",
    "InvalidParameters": "the GatewayClass parametersRef is invalid",
    "Unsupported": "the controller does not support this class or feature",
    "NoResources": "Kong's proxy Service or pods are missing; check the kong-gateway Deployment",
    "AddressNotAssigned": "the controller found no address for the proxy Service",
}
NO_STATUS_HINT = {
    "GatewayClass": "no controller has accepted the class: check spec.controllerName "
                    "(konghq.com/kic-gateway-controller) and that the kong-controller Deployment "
                    "is running",
    "Gateway": "the controller has not processed the Gateway: check the GatewayClass carries "
               "annotation konghq.com/gatewayclass-unmanaged and is Accepted",
    "HTTPRoute": "the controller has not processed the route: check its parentRef names the "
                 "Gateway and the Gateway is Programmed",
}


@dataclass(frozen=True)
class Verdict:
    """Whether an object is ready; if not, a one-line reason and a hint."""

    ok: bool
    message: str
    reason: str = ""
    hint: str = ""


READY = Verdict(True, "ready")


def condition(obj: Obj | None, ctype: str, conditions: list[Obj] | None = None) -> Obj | None:
    """The condition of a type from an object's status (or from an explicit list)."""
    if conditions is None:
        conditions = ((obj or {}).get("status") or {}).get("conditions") or []
    for cond in conditions:
        if cond.get("type") == ctype:
            return cond
    return None


def _stale(obj: Obj, cond: Obj) -> bool:
    # A condition written for an older spec says nothing about the current one.
    gen = (obj.get("metadata") or {}).get("generation")
    seen = cond.get("observedGeneration")
    return gen is not None and seen is not None and int(seen) < int(gen)


def _require(obj: Obj, kind: str, what: str, types: tuple[str, ...],
             conditions: list[Obj] | None = None) -> Verdict:
    for ctype in types:
        cond = condition(obj, ctype, conditions)
        if cond is None:
            return Verdict(False, f"{what}: no {ctype} condition yet", "",
                           NO_STATUS_HINT.get(kind, ""))
        if cond.get("status") != "True":
            reason = str(cond.get("reason") or "")
            detail = f": {cond['message']}" if cond.get("message") else ""
            hint = HINTS.get(reason, f"see its status: kubectl describe {kind.lower()}")
            return Verdict(False, f"{what}: {ctype}={cond.get('status')} ({reason}){detail}",
                           reason, hint)
        if _stale(obj, cond):
            return Verdict(False, f"{what}: {ctype} is for an older generation", "",
                           "the controller has not caught up yet")
    return READY


def deployment(obj: Obj | None, name: str) -> Verdict:
    if obj is None:
        return Verdict(False, f"Deployment {name} not found", "NotFound",
                       "helm did not create it; check `helm status` and the chart version")
    status = obj.get("status") or {}
    gen = (obj.get("metadata") or {}).get("generation")
    if gen is not None and status.get("observedGeneration") is not None \
            and int(status["observedGeneration"]) < int(gen):
        return Verdict(False, f"Deployment {name}: rollout not observed yet")
    cond = condition(obj, "Available")
    if cond is None or cond.get("status") != "True":
        ready = status.get("availableReplicas") or 0
        want = (obj.get("spec") or {}).get("replicas", 1)
        ns = (obj.get("metadata") or {}).get("namespace") or "<ns>"
        return Verdict(False, f"Deployment {name}: {ready}/{want} available"
                       f"{_why_unavailable(obj)}", "Unavailable",
                       f"kubectl -n {ns} describe deployment {name}; the kong-gateway pod "
                       "turns Ready only after the controller has pushed configuration to it")
    return READY


def _why_unavailable(obj: Obj) -> str:
    """The conditions that explain a Deployment that is not available, as `(Type=Status
    Reason: message)`: Available, Progressing and ReplicaFailure when they say something
    is wrong."""
    bad = []
    for ctype, ok in (("Available", "True"), ("Progressing", "True"), ("ReplicaFailure", "False")):
        cond = condition(obj, ctype)
        if cond is not None and cond.get("status") != ok:
            text = f"{ctype}={cond.get('status')} {cond.get('reason') or ''}".rstrip()
            if cond.get("message"):
                text += f": {cond['message']}"
            bad.append(text)
    return f" ({'; '.join(bad)})" if bad else ""


def crd(obj: Obj | None, name: str) -> Verdict:
    if obj is None:
        return Verdict(False, f"CustomResourceDefinition {name} not found", "NotFound")
    return _require(obj, "CustomResourceDefinition", f"CustomResourceDefinition {name}",
                    ("Established",))


def gateway_class(obj: Obj | None, name: str) -> Verdict:
    if obj is None:
        return Verdict(False, f"GatewayClass {name} not found", "NotFound")
    return _require(obj, "GatewayClass", f"GatewayClass {name}", ("Accepted",))


def gateway(obj: Obj | None, ref: str) -> Verdict:
    if obj is None:
        return Verdict(False, f"Gateway {ref} not found", "NotFound")
    verdict = _require(obj, "Gateway", f"Gateway {ref}", ("Accepted", "Programmed"))
    listener = listeners(obj, ref)
    # A Gateway that is not Programmed usually says only "Invalid"; the listener that caused
    # it carries the reason worth explaining (PortUnavailable, UnsupportedProtocol, ...).
    if not verdict.ok and (listener.ok or listener.reason not in HINTS):
        return verdict
    return listener


def listeners(obj: Obj, ref: str) -> Verdict:
    """Every listener in spec must have a status entry that is Programmed."""
    statuses = {ls.get("name"): ls for ls in (obj.get("status") or {}).get("listeners") or []}
    for spec_l in (obj.get("spec") or {}).get("listeners") or []:
        name = spec_l.get("name")
        ls = statuses.get(name)
        what = f"Gateway {ref} listener {name}"
        if ls is None:
            return Verdict(False, f"{what}: no status yet", "", NO_STATUS_HINT["Gateway"])
        for ctype in ("Accepted", "ResolvedRefs", "Programmed"):
            cond = condition(None, ctype, ls.get("conditions") or [])
            # Accepted/ResolvedRefs may be omitted by some controllers; Programmed may not.
            if cond is None and ctype != "Programmed":
                continue
            verdict = _require(obj, "Gateway", what, (ctype,), ls.get("conditions") or [])
            if not verdict.ok:
                return verdict
    return READY


def route_parent(obj: Obj, gateway_name: str, gateway_ns: str) -> Obj | None:
    """The route's status entry for our Gateway (routes may have other parents too)."""
    route_ns = (obj.get("metadata") or {}).get("namespace")
    parents: list[Obj] = (obj.get("status") or {}).get("parents") or []
    for parent in parents:
        pref = parent.get("parentRef") or {}
        if pref.get("name") == gateway_name and pref.get("namespace", route_ns) == gateway_ns:
            return parent
    return None


def http_route(obj: Obj | None, ref: str, gateway_name: str, gateway_ns: str) -> Verdict:
    if obj is None:
        return Verdict(False, f"HTTPRoute {ref} not found", "NotFound")
    parent = route_parent(obj, gateway_name, gateway_ns)
    if parent is None:
        return Verdict(False, f"HTTPRoute {ref}: no status for Gateway {gateway_ns}/"
                       f"{gateway_name} yet", "", NO_STATUS_HINT["HTTPRoute"])
    return _require(obj, "HTTPRoute", f"HTTPRoute {ref}", ("Accepted", "ResolvedRefs",
                                                           "Programmed"),
                    parent.get("conditions") or [])
