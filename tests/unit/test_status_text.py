"""`lbsync status` as text: what an operator reads from the daemon's /status answer."""

from __future__ import annotations

from typing import Any

from lbsync.cmd_daemon import format_status

BASE: dict[str, Any] = {"ready": True, "reason": "ok", "upstreams": [], "nodes": []}


def lb(leader: bool, problems: list[dict[str, str]] | None = None) -> dict[str, Any]:
    listener = {"service": "shop/db", "port": 5432, "protocol": "TCP", "node_port": 30432,
                "servers": ["10.0.0.1:30432", "10.0.0.2:30432"]}
    return {**BASE, "loadbalancer": {"leader": leader, "listeners": [listener],
                                     "problems": problems or []}}


def test_loadbalancer_section_names_listeners_and_role() -> None:
    text = format_status(lb(True), "daemon")
    assert "loadbalancer: 1 listener, writes Service status" in text
    assert "5432/TCP  shop/db -> node port 30432, 2 servers" in text
    assert "standby" in format_status(lb(False), "daemon")


def test_problems_are_shown_and_escaped() -> None:
    problem = {"service": "evil/x\x1b[2J", "reason": "PortConflict",
               "message": "port 80 taken\nready: yes"}
    text = format_status(lb(True, [problem]), "daemon")
    line = next(li for li in text.splitlines() if "NOT SERVED" in li)
    assert "PortConflict" in line and "\x1b" not in text
    # the newline could not forge a second status line
    assert [li for li in text.splitlines() if li.startswith("ready:")] == ["ready: yes (ok)"]


def test_no_section_without_loadbalancer_mode() -> None:
    assert "loadbalancer" not in format_status({**BASE, "loadbalancer": None}, "daemon")
