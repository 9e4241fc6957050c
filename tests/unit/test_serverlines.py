"""The server-line grammar, as a table: what lbsync may make root's nginx load."""

from __future__ import annotations

import ipaddress

import pytest

from lbsync import serverlines


@pytest.mark.parametrize("line", [
    "server 10.0.0.1:32001;",
    "server 10.0.0.1:32001 max_fails=3 fail_timeout=10s;  # node-1",
    "  server [fd00::1]:32001 weight=5 backup;",
    "server 192.0.2.1:9 down;",
    "# a comment",
    "",
    "\t",
])
def test_allowed(line: str) -> None:
    assert serverlines.check_line(line) is None


@pytest.mark.parametrize(("line", "why"), [
    ("log_format x escape=none '$http_x';", "not a `server"),
    ("server { listen 80; access_log /etc/cron.d/x x; }", "not a `server"),
    ("}", "not a `server"),
    ("include /etc/shadow;", "not a `server"),
    ("server unix:/run/containerd/containerd.sock;", "not a `server"),
    ("server example.com:80;", "not a `server"),
    ("server 10.0.0.1:32001 resolve;", "'resolve' is not allowed"),
    ("server 10.0.0.1:32001 service=_http._tcp;", "not a `server"),
    ("server 10.0.0.1:32001; server 6.6.6.6:80;", "not a `server"),
    ("server 10.0.0.1;", "not a `server"),
    ("server 127.0.0.1:9108;", "127.0.0.1 is loopback"),
    ("server [::1]:9108;", "::1 is loopback"),
    ("server 169.254.169.254:80;", "link-local"),
    ("server [::ffff:10.0.0.1]:80;", "IPv4-mapped"),
    ("server [fd00:0::1]:80;", "canonical form"),
    ("server [::ffff:a00:1]:80;", "IPv4-mapped"),
    ("server 255.255.255.255:80;", "broadcast"),
    ("server 010.0.0.1:80;", "not an IP address"),
    ("server fd00::1:80;", "not a `server"),  # IPv6 without brackets is ambiguous
    ("server [10.0.0.1]:80;", "must not"),
    ("server 10.0.0.1:99999;", "out"),
    ("server 10.0.0.1:80 # ok\x1b[2J", "control characters"),
    ("# comment \x1b[2J", "control characters"),
    ("x" * 600, "too long"),
])
def test_refused(line: str, why: str) -> None:
    assert why in (serverlines.check_line(line) or "")


def test_whole_files() -> None:
    assert serverlines.check("server 10.0.0.1:32001;\nserver 10.0.0.2:32001;\n") == []
    assert serverlines.check("# nothing\n") == [(0, "no server line (nginx refuses an empty "
                                                    "upstream)")]
    assert serverlines.check("server 10.0.0.1:32001;\r\n") == [(1, "control characters")]
    assert serverlines.check("server 10.0.0.1:32001;\n}\n") == [
        (2, "not a `server ADDRESS:PORT [options];` line")]
    assert serverlines.check("server 10.0.0.1:22;\n", port_range=(30000, 32767)) == [
        (1, "port 22 is outside 30000-32767")]
    assert serverlines.check("server 127.0.0.1:32001;\n", allow_loopback=True) == []
    big = "server 10.0.0.1:32001;\n" * 200_000
    assert serverlines.check(big)[0][1].startswith("larger than")


@pytest.mark.parametrize(("text", "approved", "problems"), [
    # An approved line is not checked again, and still counts as a server.
    ("server 127.0.0.1:32001;\n", {"server 127.0.0.1:32001;"}, []),
    # Every other line is checked as ever, approved ones beside it or not.
    ("server 127.0.0.1:32001;\nserver 127.0.0.2:32001;\n", {"server 127.0.0.1:32001;"},
     [(2, "127.0.0.2 is loopback")]),
    ("server 10.0.0.1:32001;\n}\n", {"server 10.0.0.1:32001;"},
     [(2, "not a `server ADDRESS:PORT [options];` line")]),
    # Approval is by the whole line: the same address with more after it is a new line.
    ("server 127.0.0.1:32001; include /etc/shadow;\n", {"server 127.0.0.1:32001;"},
     [(1, "not a `server ADDRESS:PORT [options];` line")]),
    ("# only a comment\n", {"# only a comment"},
     [(0, "no server line (nginx refuses an empty upstream)")]),
])
def test_approved_lines(text: str, approved: set[str], problems: list[tuple[int, str]]) -> None:
    assert serverlines.check(text, approved=frozenset(approved)) == problems


NODE_NETS = (ipaddress.ip_network("10.0.0.0/16"), ipaddress.ip_network("fd00:10::/64"))


@pytest.mark.parametrize(("line", "why"), [
    ("server 10.0.3.4:32001;", None),
    ("server [fd00:10::5]:32001;", None),
    ("server 10.1.0.1:32001;", "10.1.0.1 is outside the allowed networks"),
    ("server 192.168.0.1:32001;", "192.168.0.1 is outside the allowed networks"),
    ("server [fd00:11::5]:32001;", "fd00:11::5 is outside the allowed networks"),
])
def test_only_the_nodes_networks(line: str, why: str | None) -> None:
    assert serverlines.check_line(line, networks=NODE_NETS) == why
    assert serverlines.check_line(line) is None  # no networks named: any (the default)
