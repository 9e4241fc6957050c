"""verify's judging of responses and choice of node address, without a network."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lbsync.bootstrap import verify
from lbsync.bootstrap.config import BootstrapConfig, Route
from lbsync.bootstrap.report import Status
from lbsync.bootstrap.verify import Probe

NO_ROUTE = json.dumps({"message": "no Route matched with those values",
                       "request_id": "abc"}).encode()
ROUTE = Route("worlds.com", "/world1", "hello-world-1-svc", 80)


@pytest.mark.parametrize(("probe", "status", "text"), [
    (Probe(200, b"hello"), Status.PASS, "HTTP 200"),
    (Probe(404, b"backend's own 404"), Status.PASS, "HTTP 404"),
    (Probe(404, NO_ROUTE), Status.FAIL, "no Route matched"),
    (Probe(503, b"{}"), Status.FAIL, "backend failed"),
    (Probe(error="ConnectionRefusedError: [Errno 111]"), Status.FAIL, "cannot connect"),
])
def test_judge_route(probe: Probe, status: Status, text: str) -> None:
    result = verify.judge_route(ROUTE, "10.0.0.1:32001", probe)
    assert result.status is status and text in result.message


@pytest.mark.parametrize(("probe", "status"), [
    (Probe(404, NO_ROUTE), Status.PASS),
    (Probe(404, b"not found"), Status.FAIL),
    (Probe(200, b"catch-all"), Status.FAIL),
    (Probe(error="timeout"), Status.FAIL),
])
def test_judge_unknown(probe: Probe, status: Status) -> None:
    assert verify.judge_unknown("t", "/x", probe).status is status


def node(name: str, ready: bool, *addrs: tuple[str, str]) -> dict[str, Any]:
    return {"metadata": {"name": name},
            "status": {"conditions": [{"type": "Ready", "status": str(ready)}],
                       "addresses": [{"type": t, "address": a} for t, a in addrs]}}


def test_node_addresses_prefer_ready_and_internal() -> None:
    nodes = [node("a", False, ("InternalIP", "10.0.0.1")),
             node("b", True, ("Hostname", "b"), ("ExternalIP", "1.2.3.4"),
                  ("InternalIP", "10.0.0.2"))]
    assert verify.node_addresses(nodes) == ["10.0.0.2", "1.2.3.4", "10.0.0.1"]
    assert verify.node_addresses([]) == []


def test_run_verify_with_a_fake_fetch() -> None:
    seen: list[tuple[str, int, str, str]] = []

    def fetch(addr: str, port: int, host: str, path: str, timeout: float) -> Probe:
        seen.append((addr, port, host, path))
        return Probe(200, b"hi") if host == "worlds.com" else Probe(404, NO_ROUTE)

    report = verify.run_verify(BootstrapConfig(), None, "10.0.0.9", None, fetch=fetch)
    assert not report.failed
    assert seen[0] == ("10.0.0.9", 32001, "worlds.com", "/world1")
    assert seen[1][2] == verify.UNKNOWN_HOST
    assert report.extra["target"] == "10.0.0.9:32001"


def test_run_verify_without_nodes_fails_with_a_hint() -> None:
    class NoNodes:
        def list(self, *a: Any, **k: Any) -> list[Any]:
            return []

    report = verify.run_verify(BootstrapConfig(), NoNodes(), None)  # type: ignore[arg-type]
    assert report.failed and "--address" in report.results[0].hint
