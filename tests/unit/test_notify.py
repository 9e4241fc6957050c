"""sd_notify alone, with a real datagram socket: fields, the watchdog interval, and no field
smuggled in through a status text."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from lbsync.notify import Notifier


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2)
    yield sock, path
    sock.close()


def test_fields_and_watchdog(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "4000000"})
    assert n.watchdog_interval == 2.0
    n.ready("in sync: k8s_cluster: 3 nodes")
    assert sock.recv(4096) == b"READY=1\nSTATUS=in sync: k8s_cluster: 3 nodes"
    n.watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1"


def test_a_status_from_the_cluster_cannot_add_fields(listener: tuple[socket.socket, str]
                                                     ) -> None:
    """Before: a Service spec.type with newlines reached STATUS= and added WATCHDOG=trigger
    and STOPPING=1 to the datagram."""
    sock, path = listener
    n = Notifier({"NOTIFY_SOCKET": path})
    n.status("sync failing: Service kong/p has no nodePort (type "
             "NodePort\nWATCHDOG=trigger\nSTOPPING=1" + "x" * 5000 + ")")
    fields = sock.recv(65536).decode().split("\n")
    assert len(fields) == 1 and fields[0].startswith("STATUS=sync failing")
    assert "\\nWATCHDOG=trigger\\nSTOPPING=1" in fields[0] and len(fields[0]) < 300


def test_without_systemd_nothing_is_sent() -> None:
    n = Notifier({})
    assert n.send("READY=1") is False and n.watchdog_interval is None
