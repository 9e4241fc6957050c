"""Running the nginx commands alone: real processes, timeouts, and the one line that explains
a failure."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

import pytest

from lbsync import config, nginxctl

ROOT = Path(__file__).resolve().parents[2]


def test_success_and_output() -> None:
    result = nginxctl.run(("sh", "-c", "echo hello; echo err >&2"), 5)
    assert result.ok and result.output.splitlines() == ["hello", "err"]


@pytest.mark.parametrize(("argv", "code", "line"), [
    (("/nonexistent/nginx", "-t"), 127, "/nonexistent/nginx: command not found"),
    (("sh", "-c", "exit 3"), 3, "exit status 3"),
    (("sh", "-c", "echo 'nginx: [warn] x'; echo 'nginx: [emerg] bad thing in /x:1'; exit 1"),
     1, "nginx: [emerg] bad thing in /x:1"),
    (("sh", "-c", "echo first; echo 'nginx: [alert] worse'; exit 1"), 1,
     "nginx: [alert] worse"),
])
def test_the_line_that_explains_a_failure(argv: tuple[str, ...], code: int | None,
                                          line: str) -> None:
    result = nginxctl.run(argv, 5)
    assert not result.ok
    if code is not None:
        assert result.returncode == code
    assert line in result.first_error


def test_a_failed_systemctl_points_at_the_units_journal(tmp_path: Path) -> None:
    """systemctl's own words carry no reason: those are in the journal. A script stands in for
    systemctl because the real one answers differently without systemd as PID 1 (in a chroot it
    says "Running in chroot, ignoring request" and exits 0)."""
    systemctl = tmp_path / "systemctl"
    systemctl.write_text("#!/bin/sh\necho 'Job for nginx.service failed because the control "
                         "process exited with error code.' >&2\nexit 1\n")
    systemctl.chmod(0o755)
    result = nginxctl.run((str(systemctl), "reload", "nginx.service"), 5)
    assert result.returncode == 1
    assert result.first_error == ("Job for nginx.service failed because the control process "
                                  "exited with error code. (see: journalctl -u nginx.service)")


def test_the_root_helpers_waits_end_before_its_unit_and_lbsync_give_up() -> None:
    """Else a refused reload reaches the operator as a systemd timeout, not as its reason."""
    unit = (ROOT / "systemd" / "lbsync-nginx-reload.service").read_text()
    found = re.search(r"^TimeoutStartSec=(\d+)s$", unit, re.M)
    assert found, "lbsync-nginx-reload.service: no TimeoutStartSec"
    unit_timeout = float(found[1])
    helper = nginxctl.HELPER_COMMAND_WAIT + nginxctl.HELPER_CONFIRM_WAIT
    assert helper + 2 < unit_timeout < config.NginxConfig().command_timeout


def test_a_hung_command_is_a_failure_after_the_timeout() -> None:
    result = nginxctl.run(("sleep", "30"), 0.3)
    assert result.returncode == 124 and "timed out after 0.3s" in result.first_error


def test_children_never_see_lbsyncs_notify_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    monkeypatch.setenv("WATCHDOG_USEC", "1000")
    result = nginxctl.run(("sh", "-c", "echo ${NOTIFY_SOCKET:-none} ${WATCHDOG_USEC:-none}"), 5)
    assert result.output.strip() == "none none"
    assert os.environ["NOTIFY_SOCKET"] == "/run/systemd/notify"


T = "2026/11/26 08:21:53 [emerg] 24179#24179: "
BIND = T + "bind() to 127.0.0.9:{} failed (98: Address already in use)"
RETRY = "2026/11/26 08:21:53 [notice] 24179#24179: try again to bind() after 500ms"
GAVE_UP = T + "still could not bind()"


@pytest.mark.parametrize(("log", "verdict"), [
    ("", ""),
    ("2026/11/26 08:21:53 [notice] 1#1: signal process started", ""),
    (T + 'unknown directive "sever" in /etc/nginx/lbsync/k8s.servers:1',
     T + 'unknown directive "sever" in /etc/nginx/lbsync/k8s.servers:1'),
    # Another process holds a port: nginx retries for 2 s; no verdict until it gives up.
    ("\n".join([BIND.format(443), RETRY, BIND.format(443), RETRY]), ""),
    ("\n".join([BIND.format(443), RETRY, BIND.format(443), GAVE_UP]), BIND.format(443)),
    # Two ports held: both named, once each (the daemon leaves out exactly those).
    ("\n".join([BIND.format(443), BIND.format(5432), RETRY, BIND.format(443),
                BIND.format(5432), GAVE_UP]),
     BIND.format(443) + "; bind() to 127.0.0.9:5432 failed (98: Address already in use)"),
    # Other bind errors are final at once (nginx does not retry them).
    (T + "bind() to 203.0.113.10:443 failed (99: Cannot assign requested address)",
     T + "bind() to 203.0.113.10:443 failed (99: Cannot assign requested address)"),
])
def test_refusal_waits_for_nginxs_own_verdict(log: str, verdict: str) -> None:
    assert nginxctl.refusal(log) == verdict


@pytest.mark.parametrize(("log", "ports"), [
    ("\n".join([BIND.format(443), BIND.format(5432), RETRY, BIND.format(443),
                BIND.format(5432), GAVE_UP]), {443, 5432}),
    ("\n".join([BIND.format(443), RETRY, BIND.format(443), GAVE_UP]), {443}),
    (T + 'unknown directive "sever" in /etc/nginx/lbsync/k8s.servers:1', set()),
])
def test_the_ports_a_refusal_names(log: str, ports: set[int]) -> None:
    """What the daemon leaves out after a refused reload: read from `refusal`'s own words."""
    assert nginxctl.ports_refused(nginxctl.refusal(log)) == ports


TCP_TABLE = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1
   1: 00000000:01BB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2
   2: 0100007F:9C40 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 3
   3: garbage
   4: 0A0000CB:ZZZZ 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4
"""
TCP6_TABLE = """\
  sl  local_address                         remote_address                        st
   0: 00000000000000000000000001000000:0016 00000000000000000000000000000000:0000 0A
   1: B80D0120000000000000000001000000:0050 00000000000000000000000000000000:0000 0A
"""
UDP_TABLE = """\
   sl  local_address rem_address   st
  0: 0A0000CB:0035 00000000:0000 07
  1: 0100007F:0035 0100007F:1234 01
"""


@pytest.mark.parametrize(("table", "protocol", "expected"), [
    # TCP: listening sockets only (an established connection holds no port for nginx).
    (TCP_TABLE, "TCP", {("127.0.0.1", 8080), ("0.0.0.0", 443)}),
    (TCP6_TABLE, "TCP", {("::1", 22), ("2001:db8::1", 80)}),
    # UDP: any bound socket, connected or not.
    (UDP_TABLE, "UDP", {("203.0.0.10", 53), ("127.0.0.1", 53)}),
    ("", "TCP", set()),
])
def test_the_ports_a_proc_net_table_holds(table: str, protocol: str,
                                           expected: set[tuple[str, int]]) -> None:
    assert nginxctl.bound(table, protocol) == expected


def test_held_finds_the_socket_another_process_has_on_the_port() -> None:
    """Real sockets on this host, read back from /proc/net: on the address itself, on every
    address, UDP; and a free port, which must not count."""
    with socket.socket() as tcp, socket.socket() as wild, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        tcp.bind(("127.0.0.1", 0))
        tcp.listen()
        wild.bind(("0.0.0.0", 0))
        wild.listen()
        udp.bind(("127.0.0.1", 0))
        ports = {name: s.getsockname()[1] for name, s in
                 (("tcp", tcp), ("wild", wild), ("udp", udp))}
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            free = probe.getsockname()[1]
        asked = [("TCP", "127.0.0.1", ports["tcp"]), ("TCP", "127.0.0.2", ports["wild"]),
                 ("UDP", "127.0.0.1", ports["udp"]), ("TCP", "127.0.0.1", free),
                 ("TCP", "127.0.0.3", ports["tcp"])]  # another address: no conflict
        assert nginxctl.held(asked) == {("TCP", ports["tcp"]), ("TCP", ports["wild"]),
                                        ("UDP", ports["udp"])}
