"""The grammar of what lbsync may make NGINX load: `server ADDRESS:PORT [options];` lines. Pure.

lbsync's files are included inside `upstream` blocks that root defines, so they can only hold
upstream-context directives; of those, only `server` lines with an IP address, a port and the
parameters below pass. That rules out `server unix:/...` (a local socket, e.g. a container
runtime's API), hostnames (resolved at reload), `resolve`, `include`, and anything else a
compromised lbsync could use to make root's nginx reach what the public must not. Both sides
use this check: lbsync before it writes, and the root side (`lbsync.publish`) before nginx
sees a byte.
"""

from __future__ import annotations

import ipaddress
import re

# The NGINX open source `server` parameters that make sense for a node.
OPTION = re.compile(
    r"weight=[1-9][0-9]{0,3}|max_conns=[0-9]{1,6}|max_fails=[0-9]{1,4}"
    r"|fail_timeout=[0-9]{1,6}(ms|s|m|h)?|backup|down"
)
_SERVER = re.compile(
    r"server[ \t]+(?P<address>\[[0-9A-Fa-f:.]{2,45}\]|[0-9.]{7,15}):(?P<port>[0-9]{1,5})"
    r"(?P<options>(?:[ \t]+[a-z_]+(?:=[0-9a-z]+)?)*)[ \t]*;"
)
_COMMENT = re.compile(r"#[^\x00-\x08\x0a-\x1f\x7f]*")
MAX_LINE = 512
MAX_BYTES = 4 << 20  # 20,000 servers at ~100 bytes; far beyond the 5,000-node scale limit


BROADCAST = ipaddress.IPv4Address("255.255.255.255")
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Networks = tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]


def address_problem(address: IPAddress, *, allow_loopback: bool = False) -> str:
    """Why a server must not use `address` ("" when it may): addresses that point the public
    site at the gateway itself or at no real host."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id is not None:
            return "scoped (host-local)"
        if address.ipv4_mapped is not None:
            return "IPv4-mapped"
    if address.is_loopback and not allow_loopback:
        return "loopback"
    for refused, why in ((address.is_unspecified, "unspecified"),
                         (address.is_link_local, "link-local"),
                         (address.is_multicast, "multicast"),
                         (address == BROADCAST, "broadcast"),
                         (address.is_reserved, "reserved")):
        if refused:
            return why
    return ""


def check_line(line: str, *, allow_loopback: bool = False,
               port_range: tuple[int, int] = (1, 65535), networks: Networks = ()) -> str | None:
    """None if `line` may stand in a servers file, else why not. `networks`: when given, the
    address must be in one of them (the node network root allows)."""
    text = line.strip(" \t")
    if not text or _COMMENT.fullmatch(text):
        return None
    if len(line) > MAX_LINE:
        return "too long"
    code, _, comment = text.partition("#")
    if comment and not _COMMENT.fullmatch("#" + comment):
        return "control characters in a comment"
    m = _SERVER.fullmatch(code.strip(" \t"))
    if m is None:
        return "not a `server ADDRESS:PORT [options];` line"
    address = m["address"].strip("[]")
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return f"{address!r} is not an IP address"
    if (parsed.version == 6) != m["address"].startswith("["):
        return "an IPv6 address must be in brackets, an IPv4 address must not"
    # What the address is comes first: Python 3.13 writes IPv4-mapped addresses in another
    # canonical form than 3.11, and the answer must not depend on which Python root runs.
    why = address_problem(parsed, allow_loopback=allow_loopback)
    if why:
        return f"{address} is {why}"
    if str(parsed) != address:
        return f"{address!r} is not in canonical form"
    if networks and not any(parsed in network for network in networks):
        return f"{address} is outside the allowed networks"
    if not port_range[0] <= int(m["port"]) <= port_range[1]:
        return f"port {m['port']} is outside {port_range[0]}-{port_range[1]}"
    for option in m["options"].split():
        if not OPTION.fullmatch(option):
            return f"parameter {option!r} is not allowed"
    return None


def check(text: str, *, allow_loopback: bool = False,
          port_range: tuple[int, int] = (1, 65535), networks: Networks = (),
          approved: frozenset[str] = frozenset()) -> list[tuple[int, str]]:
    """Every offending line of a servers file, as (line number, why); empty when it is fine.

    A file with no server at all is refused too: nginx would reject the upstream.
    `approved`: lines the caller already checked under the same rules (root's publisher: the
    live file it wrote), not checked again.
    """
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        return [(0, f"larger than {MAX_BYTES >> 20} MB")]
    problems = []
    servers = 0
    for number, line in enumerate(text.split("\n"), start=1):
        if line in approved:
            servers += line.strip().startswith("server")
            continue
        if "\r" in line or "\x00" in line:
            problems.append((number, "control characters"))
            continue
        why = check_line(line, allow_loopback=allow_loopback, port_range=port_range,
                         networks=networks)
        if why is not None:
            problems.append((number, why))
        elif line.strip().startswith("server"):
            servers += 1
    if not problems and servers == 0:
        problems.append((0, "no server line (nginx refuses an empty upstream)"))
    return problems


# --- the stream file of LoadBalancer Services ----------------------------------------------

STREAM_FILE = "loadbalancer.stream"
_UPSTREAM_OPEN = re.compile(r"upstream (lb_[A-Za-z0-9_]{1,100}) \{")
_LISTEN = re.compile(r"listen (\[[0-9A-Fa-f:.]{2,45}\]|[0-9.]{7,15}):([0-9]{1,5})( udp)?;")
_PROXY_PASS = re.compile(r"proxy_pass (lb_[A-Za-z0-9_]{1,100});")


def check_stream(text: str, *, listen: frozenset[str], ports: tuple[int, int],
                 reserved: frozenset[int], allow_loopback: bool = False,
                 server_ports: tuple[int, int] = (1, 65535),
                 networks: Networks = ()) -> list[tuple[int, str]]:
    """Every offending line of the LoadBalancer stream file; empty when it is fine.

    Only this shape passes, line by line: `upstream lb_* {`, server lines as in a servers
    file, `}`, `server {`, `listen ADDRESS:PORT [udp];` on the addresses root allows and
    outside the ports root reserves, `proxy_pass lb_*;` naming an upstream above, `}`. So a
    compromised lbsync can open listeners only where root lets it, and can only forward to
    checked server addresses: no proxy_pass to a local socket or address, no other directive.
    """
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        return [(0, f"larger than {MAX_BYTES >> 20} MB")]
    problems: list[tuple[int, str]] = []
    state = "top"
    defined: set[str] = set()
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip(" \t")
        if "\r" in raw or "\x00" in raw:
            problems.append((number, "control characters"))
            continue
        if not line or (line.startswith("#") and _COMMENT.fullmatch(line)):
            continue
        state, why = _stream_step(state, line, defined, listen, ports, reserved,
                                  allow_loopback, server_ports, networks)
        if why:
            problems.append((number, why))
    if state != "top" and not problems:
        problems.append((0, "a block is not closed"))
    return problems


def _stream_step(state: str, line: str, defined: set[str], listen: frozenset[str],
                 ports: tuple[int, int], reserved: frozenset[int], allow_loopback: bool,
                 server_ports: tuple[int, int], networks: Networks) -> tuple[str, str]:
    """The next state after one line, and why the line is wrong ("" when it is fine)."""
    if state == "top":
        m = _UPSTREAM_OPEN.fullmatch(line)
        if m:
            defined.add(m[1])
            return "upstream", ""
        return ("server", "") if line == "server {" else ("top", "not an upstream or server "
                                                                 "block")
    if line == "}":
        return "top", ""
    if state == "upstream":
        why = check_line(line, allow_loopback=allow_loopback, port_range=server_ports,
                         networks=networks)
        return "upstream", why or ""
    m = _LISTEN.fullmatch(line)
    if m:
        address = m[1].strip("[]")
        port = int(m[2])
        if address not in listen:
            return "server", f"listen on {address}: not an address root allows"
        if port in reserved or not ports[0] <= port <= ports[1]:
            return "server", f"listen on port {port}: not a port root allows"
        return "server", ""
    m = _PROXY_PASS.fullmatch(line)
    if m:
        return "server", "" if m[1] in defined else f"proxy_pass to {m[1]}: no such upstream"
    return "server", "not a `listen` or `proxy_pass` line"
