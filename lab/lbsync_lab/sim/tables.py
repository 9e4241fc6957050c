"""Server-side printing: ``meta.k8s.io/v1`` Table output, as ``kubectl get`` asks for it.

This module owns the columns and cells of Tables: kube-apiserver's printers for the kinds
people look at (Nodes with ``-o wide``'s columns, Namespaces, Services, Pods, Deployments,
ReplicaSets, ConfigMaps, Secrets, ServiceAccounts, IngressClasses, RoleBindings), a CRD's
``additionalPrinterColumns`` for its custom resources, and the default (Name, Created At) for
everything else. Ages are printed the way ``duration.HumanDuration`` does.
"""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Callable
from typing import Any

Obj = dict[str, Any]
Column = tuple[str, str, int, str]  # name, type, priority, description
Printer = tuple[list[Column], Callable[[Obj], list[Any]]]

_NAME: Column = ("Name", "string", 0, "Name must be unique within a namespace.")
_AGE: Column = ("Age", "string", 0, "CreationTimestamp is a timestamp representing the server "
                "time when this object was created.")


def human_duration(seconds: float) -> str:
    """A duration the way kubectl shows ages (2m, 5m30s, 3h12m, 4d, 2y30d...)."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m" if s % 60 == 0 else f"{minutes}m{s % 60}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        return f"{hours}h" if minutes % 60 == 0 else f"{hours}h{minutes % 60}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d" if hours % 24 == 0 else f"{hours // 24}d{hours % 24}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if days == 0 else f"{hours // 24 // 365}y{days}d"
    return f"{hours // 24 // 365}y"


def _parse_time(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return calendar.timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return None


def age(obj: Obj) -> str:
    created = _parse_time((obj.get("metadata") or {}).get("creationTimestamp"))
    return "<unknown>" if created is None else human_duration(time.time() - created)


def _name(obj: Obj) -> str:
    return str(obj["metadata"]["name"])


# -- printers --------------------------------------------------------------------------------

def _node(obj: Obj) -> list[Any]:
    status, spec = obj.get("status") or {}, obj.get("spec") or {}
    ready = next((c.get("status") for c in status.get("conditions") or []
                  if c.get("type") == "Ready"), None)
    state = {"True": "Ready", "False": "NotReady"}.get(str(ready), "Unknown")
    if spec.get("unschedulable"):
        state += ",SchedulingDisabled"
    labels = obj["metadata"].get("labels") or {}
    roles = sorted({k.split("/", 1)[1] for k in labels
                    if k.startswith("node-role.kubernetes.io/") and k.split("/", 1)[1]}
                   | ({labels["kubernetes.io/role"]} if labels.get("kubernetes.io/role")
                      else set()))
    addresses = status.get("addresses") or []

    def address(kind: str) -> str:
        return next((a["address"] for a in addresses if a.get("type") == kind), "<none>")

    info = status.get("nodeInfo") or {}
    return [_name(obj), state, ",".join(roles) or "<none>", age(obj),
            info.get("kubeletVersion", ""), address("InternalIP"), address("ExternalIP"),
            info.get("osImage") or "<unknown>", info.get("kernelVersion") or "<unknown>",
            info.get("containerRuntimeVersion") or "<unknown>"]


def _ports(spec: Obj) -> str:
    out = []
    for p in spec.get("ports") or []:
        text = str(p.get("port"))
        if p.get("nodePort"):
            text += f":{p['nodePort']}"
        out.append(f"{text}/{p.get('protocol', 'TCP')}")
    return ",".join(out) or "<none>"


def _selector(sel: Obj | None) -> str:
    if not sel:
        return "<none>"
    return ",".join(f"{k}={v}" for k, v in sorted(sel.items()))


def _service(obj: Obj) -> list[Any]:
    spec = obj.get("spec") or {}
    stype = spec.get("type", "ClusterIP")
    ingress = ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    external = ",".join([i.get("ip") or i.get("hostname", "") for i in ingress]
                        + list(spec.get("externalIPs") or []))
    if not external:
        external = "<pending>" if stype == "LoadBalancer" else "<none>"
    if stype == "ExternalName":
        external = spec.get("externalName", "<none>")
    return [_name(obj), stype, spec.get("clusterIP") or "<none>", external, _ports(spec),
            age(obj), _selector(spec.get("selector"))]


def _containers(obj: Obj) -> tuple[str, str]:
    pod = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
    cs = pod.get("containers") or []
    return ",".join(c.get("name", "") for c in cs), ",".join(c.get("image", "") for c in cs)


def _label_selector(obj: Obj) -> str:
    sel = (obj.get("spec") or {}).get("selector") or {}
    return _selector(sel.get("matchLabels")) if sel.get("matchLabels") else "<none>"


def _deployment(obj: Obj) -> list[Any]:
    spec, st = obj.get("spec") or {}, obj.get("status") or {}
    names, images = _containers(obj)
    return [_name(obj), f"{st.get('readyReplicas', 0)}/{spec.get('replicas', 1)}",
            st.get("updatedReplicas", 0), st.get("availableReplicas", 0), age(obj), names,
            images, _label_selector(obj)]


def _replicaset(obj: Obj) -> list[Any]:
    spec, st = obj.get("spec") or {}, obj.get("status") or {}
    names, images = _containers(obj)
    return [_name(obj), spec.get("replicas", 1), st.get("replicas", 0),
            st.get("readyReplicas", 0), age(obj), names, images, _label_selector(obj)]


def _pod(obj: Obj) -> list[Any]:
    spec, st = obj.get("spec") or {}, obj.get("status") or {}
    statuses = st.get("containerStatuses") or []
    ready = sum(1 for c in statuses if c.get("ready"))
    restarts = sum(int(c.get("restartCount", 0)) for c in statuses)
    return [_name(obj), f"{ready}/{len(spec.get('containers') or [])}",
            st.get("phase", "Pending"), restarts, age(obj), st.get("podIP") or "<none>",
            spec.get("nodeName") or "<none>", st.get("nominatedNodeName") or "<none>", "<none>"]


def _count(obj: Obj, *keys: str) -> int:
    return sum(len(obj.get(k) or {}) for k in keys)


def _role_binding(obj: Obj) -> list[Any]:
    ref = obj.get("roleRef") or {}
    subjects = obj.get("subjects") or []

    def names(kind: str) -> str:
        return ", ".join(
            (f"{s.get('namespace', '')}/{s['name']}" if kind == "ServiceAccount" else s["name"])
            for s in subjects if s.get("kind") == kind)

    return [_name(obj), f"{ref.get('kind')}/{ref.get('name')}", age(obj), names("User"),
            names("Group"), names("ServiceAccount")]


def _cols(*cols: tuple[str, str, int]) -> list[Column]:
    return [(n, t, p, "") for n, t, p in cols]


PRINTERS: dict[tuple[str, str], Printer] = {
    ("", "nodes"): ([_NAME, *_cols(("Status", "string", 0), ("Roles", "string", 0)), _AGE,
                     *_cols(("Version", "string", 0), ("Internal-IP", "string", 1),
                            ("External-IP", "string", 1), ("OS-Image", "string", 1),
                            ("Kernel-Version", "string", 1),
                            ("Container-Runtime", "string", 1))], _node),
    ("", "namespaces"): ([_NAME, *_cols(("Status", "string", 0)), _AGE],
                         lambda o: [_name(o), (o.get("status") or {}).get("phase", ""),
                                    age(o)]),
    ("", "services"): ([_NAME, *_cols(("Type", "string", 0), ("Cluster-IP", "string", 0),
                                      ("External-IP", "string", 0), ("Port(s)", "string", 0)),
                        _AGE, *_cols(("Selector", "string", 1))], _service),
    ("", "pods"): ([_NAME, *_cols(("Ready", "string", 0), ("Status", "string", 0),
                                  ("Restarts", "string", 0)), _AGE,
                    *_cols(("IP", "string", 1), ("Node", "string", 1),
                           ("Nominated Node", "string", 1), ("Readiness Gates", "string", 1))],
                   _pod),
    ("apps", "deployments"): ([_NAME, *_cols(("Ready", "string", 0),
                                             ("Up-to-date", "integer", 0),
                                             ("Available", "integer", 0)), _AGE,
                               *_cols(("Containers", "string", 1), ("Images", "string", 1),
                                      ("Selector", "string", 1))], _deployment),
    ("apps", "replicasets"): ([_NAME, *_cols(("Desired", "integer", 0),
                                             ("Current", "integer", 0),
                                             ("Ready", "integer", 0)), _AGE,
                               *_cols(("Containers", "string", 1), ("Images", "string", 1),
                                      ("Selector", "string", 1))], _replicaset),
    ("", "configmaps"): ([_NAME, *_cols(("Data", "integer", 0)), _AGE],
                         lambda o: [_name(o), _count(o, "data", "binaryData"), age(o)]),
    ("", "secrets"): ([_NAME, *_cols(("Type", "string", 0), ("Data", "integer", 0)), _AGE],
                      lambda o: [_name(o), o.get("type", "Opaque"), _count(o, "data"), age(o)]),
    ("", "serviceaccounts"): ([_NAME, *_cols(("Secrets", "integer", 0)), _AGE],
                              lambda o: [_name(o), len(o.get("secrets") or []), age(o)]),
    ("networking.k8s.io", "ingressclasses"): (
        [_NAME, *_cols(("Controller", "string", 0), ("Parameters", "string", 0)), _AGE],
        lambda o: [_name(o), (o.get("spec") or {}).get("controller", ""), "<none>", age(o)]),
    ("rbac.authorization.k8s.io", "rolebindings"): (
        [_NAME, *_cols(("Role", "string", 0)), _AGE, *_cols(
            ("Users", "string", 1), ("Groups", "string", 1), ("ServiceAccounts", "string", 1))],
        _role_binding),
    ("rbac.authorization.k8s.io", "clusterrolebindings"): (
        [_NAME, *_cols(("Role", "string", 0)), _AGE, *_cols(
            ("Users", "string", 1), ("Groups", "string", 1), ("ServiceAccounts", "string", 1))],
        _role_binding),
}

_DEFAULT: Printer = ([_NAME, ("Created At", "date", 0, "CreationTimestamp is a timestamp "
                              "representing the server time when this object was created.")],
                     lambda o: [_name(o), (o.get("metadata") or {}).get("creationTimestamp")])


# -- custom resources: additionalPrinterColumns with kubectl's JSONPath subset -----------------

_STEP = re.compile(r"\.([A-Za-z0-9_-]+)|\[(\d+)\]|\[\?\(@\.([A-Za-z0-9_.-]+)==[\"']([^\"']*)"
                   r"[\"']\)\]")


def json_path(obj: Any, path: str) -> Any:
    """Evaluate the JSONPath subset printer columns use (.a.b, [0], [?(@.type=="Ready")])."""
    cur: list[Any] = [obj]
    for m in _STEP.finditer(path.strip().lstrip("{").rstrip("}")):
        key, index, fkey, fval = m.groups()
        nxt: list[Any] = []
        for c in cur:
            if key is not None and isinstance(c, dict) and key in c:
                nxt.append(c[key])
            elif key is not None and isinstance(c, list):
                nxt.extend(x[key] for x in c if isinstance(x, dict) and key in x)
            elif index is not None and isinstance(c, list) and int(index) < len(c):
                nxt.append(c[int(index)])
            elif fkey is not None and isinstance(c, list):
                nxt.extend(x for x in c if isinstance(x, dict)
                           and str(json_path(x, "." + fkey)) == fval)
        cur = nxt
    if not cur:
        return None
    return cur[0] if len(cur) == 1 else cur


def crd_printer(crd: Obj, version: str) -> Printer:
    cols: list[Column] = [_NAME]
    paths: list[tuple[str, str]] = []
    for v in (crd.get("spec") or {}).get("versions") or []:
        if v.get("name") != version:
            continue
        for c in v.get("additionalPrinterColumns") or []:
            cols.append((c["name"], c.get("type", "string"), int(c.get("priority", 0)),
                         c.get("description", "")))
            paths.append((c.get("jsonPath", ""), c.get("type", "string")))
    if not paths:
        cols.append(_AGE)
        paths.append((".metadata.creationTimestamp", "date"))

    def cells(obj: Obj) -> list[Any]:
        out: list[Any] = [_name(obj)]
        for path, ctype in paths:
            value = json_path(obj, path)
            if ctype == "date" and isinstance(value, str):
                created = _parse_time(value)
                value = human_duration(time.time() - created) if created else value
            out.append(value)
        return out

    return cols, cells


def printer_for(group: str, plural: str, crd: Obj | None = None, version: str = "") -> Printer:
    if crd is not None:
        return crd_printer(crd, version)
    return PRINTERS.get((group, plural), _DEFAULT)


def table(printer: Printer, objects: list[Obj], resource_version: str, *,
          headers: bool = True, include_object: str = "Metadata",
          continue_token: str = "", remaining: int | None = None) -> Obj:
    """A Table of ``objects`` (full objects with kind/apiVersion)."""
    cols, cells = printer
    meta: Obj = {"resourceVersion": resource_version}
    if continue_token:
        meta["continue"] = continue_token
    if remaining is not None:
        meta["remainingItemCount"] = remaining
    out: Obj = {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta}
    if headers:
        out["columnDefinitions"] = [
            {"name": n, "type": t, "format": "name" if n == "Name" else "",
             "description": d, "priority": p} for n, t, p, d in cols]
    rows = []
    for obj in objects:
        row: Obj = {"cells": cells(obj)}
        if include_object == "Object":
            row["object"] = obj
        elif include_object != "None":
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                             "metadata": obj.get("metadata") or {}}
        rows.append(row)
    out["rows"] = rows
    return out
