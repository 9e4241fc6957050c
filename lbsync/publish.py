"""The root side of the trust boundary: publish lbsync's staged servers files to nginx.

lbsync runs as an unprivileged user and writes one `NAME.servers` file per upstream into its
staging directory. Root runs this module (the one-shot unit `lbsync-nginx-test.service`), and
only this puts bytes where nginx reads them: each staged file is read without following
symlinks, bounded, and checked line by line (`lbsync.serverlines`; a line that is live
already, under the same rules, was checked when it went live); only then is it copied into
the live directory, which root owns, and the whole configuration tested. If the check or
the test fails, the live files are as they were. nginx, at a reload or at boot, only ever
reads files root has checked: nothing lbsync changes after the check can reach it.

    python3 -m lbsync.publish STAGED LIVE [--allow-loopback] [--port-range LOW-HIGH] \\
        [--allowed-cidrs CIDR,CIDR,...] \\
        [--stream-listen IP ...] [--stream-ports LOW-HIGH] [--reserved-ports P,P,...] \\
        -- NGINX_TEST_COMMAND...

The stream file of LoadBalancer Services (`loadbalancer.stream`) is published only when root
names the addresses NGINX may listen on for them (`--stream-listen`): a listener is a port
opened on the gateway, so root decides where.

Exit codes: 0 published and tested; 1 refused or the test failed (live files unchanged);
2 usage.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lbsync import __version__, files, nginxctl, schema, serverlines
from lbsync.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, ConfigError, LbsyncError, SyncError
from lbsync.text import printable

NAME = re.compile(r"[A-Za-z0-9_]{1,64}\.servers")
MAX_FILES = 64
TEST_TIMEOUT = 60.0


@dataclass(frozen=True)
class Rules:
    """What root allows in the staged files."""

    allow_loopback: bool = False
    port_range: tuple[int, int] = (1, 65535)  # servers' ports (node ports)
    stream_listen: frozenset[str] = frozenset()  # addresses LoadBalancer listeners may use
    stream_ports: tuple[int, int] = (1, 65535)
    reserved_ports: frozenset[int] = frozenset()
    networks: serverlines.Networks = ()  # the node network(s) servers must be in; () any


def staged_files(staged: Path) -> dict[str, bytes]:
    """Every NAME.servers file (and the stream file) in the staging directory, read safely."""
    try:
        names = sorted(p.name for p in staged.iterdir())
    except OSError as exc:
        raise SyncError(f"{staged}: {exc.strerror}") from None
    chosen = [n for n in names if NAME.fullmatch(n) or n == serverlines.STREAM_FILE]
    if len(chosen) > MAX_FILES:
        raise SyncError(f"{staged}: more than {MAX_FILES} servers files")
    return {n: files.read_untrusted(staged / n, serverlines.MAX_BYTES) for n in chosen}


# Root's record, in the live directory, of the rules the live servers files were checked
# under. Every line of a live servers file is root's (the publisher wrote it after checking
# it, or the package wrote its placeholder), so while the rules are the same a line that is
# already live need not be checked again: a pass that changes one server out of 5,000 checks
# one line, not 5,000 (~35 ms less per pass at 5,000 nodes, on the path from a cluster event
# to nginx). Under other rules (another port range, another lbsync version and grammar),
# every line is checked again.
APPROVED = ".approved"


def approval(rules: Rules) -> bytes:
    """The record of the rules a servers file's lines are checked under."""
    low, high = rules.port_range
    networks = ",".join(str(n) for n in rules.networks) or "any"
    return (f"lbsync {__version__}: port_range={low}-{high} networks={networks} "
            f"allow_loopback={int(rules.allow_loopback)}\n").encode()


def approved_lines(before: bytes | None, same_rules: bool) -> frozenset[str]:
    """The lines of a live servers file that count as checked (none after a rules change)."""
    if before is None or not same_rules:
        return frozenset()
    return frozenset(before.decode("utf-8", "replace").split("\n"))


def checked(name: str, data: bytes, rules: Rules,
            approved: frozenset[str] = frozenset()) -> bytes:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SyncError(f"{name}: not UTF-8 text") from None
    if name == serverlines.STREAM_FILE:
        if not rules.stream_listen:
            raise SyncError(f"{name}: root allows no LoadBalancer listeners (--stream-listen); "
                            "nothing published")
        problems = serverlines.check_stream(
            text, listen=rules.stream_listen, ports=rules.stream_ports,
            reserved=rules.reserved_ports, allow_loopback=rules.allow_loopback,
            server_ports=rules.port_range, networks=rules.networks)
    else:
        problems = serverlines.check(text, allow_loopback=rules.allow_loopback,
                                     port_range=rules.port_range, networks=rules.networks,
                                     approved=approved)
    if problems:
        line, why = problems[0]
        raise SyncError(f"{name} line {line}: {why}; nothing published")
    return data


def publish(staged: Path, live: Path, test: Sequence[str], rules: Rules = Rules()) -> None:
    """Check, copy, test; on any failure the live files are as they were. Raises SyncError."""
    files.check_private_dir(live, "live directory")
    staged_data = staged_files(staged)
    if not staged_data:
        raise SyncError(f"{staged}: no servers files to publish")
    old = {n: files.read(live / n) for n in staged_data}
    record, rules_record = files.read(live / APPROVED), approval(rules)
    same_rules = record == rules_record
    new = {n: checked(n, d, rules, approved_lines(old[n], same_rules))
           for n, d in staged_data.items()}
    if not same_rules:  # before any file: the record never vouches for lines it did not see
        files.write_atomic(live / APPROVED, rules_record)
    for name, data in new.items():
        if old[name] != data:
            files.write_atomic(live / name, data)
    result = nginxctl.run(tuple(test), TEST_TIMEOUT)
    if not result.ok:
        for name, before in old.items():
            if before != new[name]:
                files.restore(live / name, before)
        if not same_rules:  # the old files were checked under the old rules
            files.restore(live / APPROVED, record)
        raise SyncError(f"nginx test failed, live files restored: {result.first_error}")


def _networks(text: str) -> serverlines.Networks:
    """`--allowed-cidrs 10.0.0.0/16,fd00::/64`; empty: any network."""
    try:
        return tuple(ipaddress.ip_network(c.strip()) for c in text.split(",") if c.strip())
    except ValueError as exc:
        raise ConfigError(f"--allowed-cidrs: {exc}") from None


def _ports(text: str) -> frozenset[int]:
    try:
        return frozenset(int(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise ConfigError(f"--reserved-ports: {text!r}: expected P,P,...") from None


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    test = args[args.index("--") + 1:] if "--" in args else []
    parser = argparse.ArgumentParser(prog="python3 -m lbsync.publish",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("staged", type=Path)
    parser.add_argument("live", type=Path)
    parser.add_argument("--allow-loopback", action="store_true",
                        help="accept loopback addresses (labs only)")
    parser.add_argument("--port-range", default="1-65535", metavar="LOW-HIGH",
                        help="node ports a server may use")
    parser.add_argument("--allowed-cidrs", default="", metavar="CIDR,CIDR,...",
                        help="networks every server address must be in (the nodes'); "
                             "empty: any")
    parser.add_argument("--stream-listen", action="append", default=[], metavar="IP",
                        help="an address LoadBalancer listeners may use (repeatable)")
    parser.add_argument("--stream-ports", default="1-65535", metavar="LOW-HIGH")
    parser.add_argument("--reserved-ports", default="", metavar="P,P,...",
                        help="ports no LoadBalancer listener may take")
    opts = parser.parse_args(args[:args.index("--")] if "--" in args else args)
    try:
        if not test:
            raise ConfigError("give the nginx test command after --")
        publish(opts.staged, opts.live, test, Rules(
            allow_loopback=opts.allow_loopback,
            port_range=schema.port_range(opts.port_range, "--port-range"),
            stream_listen=frozenset(opts.stream_listen),
            stream_ports=schema.port_range(opts.stream_ports, "--stream-ports"),
            reserved_ports=_ports(opts.reserved_ports),
            networks=_networks(opts.allowed_cidrs)))
    except LbsyncError as exc:
        print(f"lbsync publish: {printable(exc, 1000)}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_FAILED
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
