"""`verify`: does traffic actually flow, node port -> Kong -> route -> backend?

Owns the end-to-end probe: pick a node address, send each route's path with its Host header to
the node port, and send an unknown host/path that must get Kong's own 404 JSON. The judging of
responses is pure; `http_get` is the network edge.
"""

from __future__ import annotations

import http.client
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lbsync.bootstrap.cluster import Cluster
from lbsync.bootstrap.config import BootstrapConfig, Route
from lbsync.bootstrap.report import Report, Result, Status

Obj = dict[str, Any]
KONG_NO_ROUTE = "no Route matched with those values"
UNKNOWN_HOST = "lbsync-verify.invalid"  # .invalid never resolves, so no real route matches it


@dataclass(frozen=True)
class Probe:
    status: int = 0
    body: bytes = b""
    error: str = ""


Fetch = Callable[[str, int, str, str, float], Probe]


def http_get(address: str, port: int, host: str, path: str, timeout: float) -> Probe:
    conn = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": host, "User-Agent": "lbsync-bootstrap-verify"})
        resp = conn.getresponse()
        return Probe(resp.status, resp.read(65536))
    except (OSError, http.client.HTTPException) as exc:
        return Probe(error=f"{exc.__class__.__name__}: {exc}")
    finally:
        conn.close()


def is_kong_no_route(probe: Probe) -> bool:
    if probe.status != 404:
        return False
    try:
        return bool(json.loads(probe.body).get("message") == KONG_NO_ROUTE)
    except (ValueError, AttributeError):
        return False


def judge_route(route: Route, target: str, probe: Probe) -> Result:
    name = f"route http://{route.host}{route.path} via {target}"
    if probe.error:
        return Result(name, Status.FAIL, f"cannot connect: {probe.error}",
                      "check the proxy Service's node port and that nothing filters it")
    if is_kong_no_route(probe):
        return Result(name, Status.FAIL, "Kong answered 'no Route matched'",
                      "the HTTPRoute is not programmed into Kong; run `lbsync bootstrap doctor`")
    if probe.status >= 500:
        return Result(name, Status.FAIL, f"HTTP {probe.status}: Kong matched but the backend "
                      "failed", f"check Service {route.namespace}/{route.service} has ready "
                      "endpoints on the port")
    return Result(name, Status.PASS, f"HTTP {probe.status} from the backend")


def judge_unknown(target: str, path: str, probe: Probe) -> Result:
    name = f"unknown path {path} via {target}"
    if probe.error:
        return Result(name, Status.FAIL, f"cannot connect: {probe.error}",
                      "check the proxy Service's node port and that nothing filters it")
    if is_kong_no_route(probe):
        return Result(name, Status.PASS, "Kong's 404 'no Route matched'")
    return Result(name, Status.FAIL, f"HTTP {probe.status}, not Kong's 404 JSON",
                  "something other than Kong answers on this port, or a catch-all route exists")


def node_addresses(nodes: list[Obj]) -> list[str]:
    """Addresses to probe: Ready nodes first, InternalIP before ExternalIP."""
    def ready(node: Obj) -> bool:
        conds = (node.get("status") or {}).get("conditions") or []
        return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)

    out: list[str] = []
    for node in sorted(nodes, key=lambda n: not ready(n)):
        addrs = (node.get("status") or {}).get("addresses") or []
        for kind in ("InternalIP", "ExternalIP"):
            out += [a["address"] for a in addrs if a.get("type") == kind and a.get("address")]
    return list(dict.fromkeys(out))


def run_verify(cfg: BootstrapConfig, cluster: Cluster | None, address: str | None = None,
               port: int | None = None, timeout: float = 5.0, fetch: Fetch = http_get) -> Report:
    report = Report("verify")
    port = port or cfg.kong.node_port
    if address is None:
        addresses = node_addresses(cluster.list("v1", "Node")) if cluster else []
        if not addresses:
            report.add(Result("node address", Status.FAIL, "no node has an InternalIP or "
                              "ExternalIP", "pass --address NODE_IP"))
            return report
        address = addresses[0]
    target = f"{address}:{port}"
    report.extra["target"] = target
    for route in cfg.routes:
        report.add(judge_route(route, target, fetch(address, port, route.host, route.path,
                                                    timeout)))
    path = f"/lbsync-verify-{uuid.uuid4().hex[:12]}"
    report.add(judge_unknown(target, path, fetch(address, port, UNKNOWN_HOST, path, timeout)))
    return report
