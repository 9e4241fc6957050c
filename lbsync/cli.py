"""The `lbsync` command line: the subcommands, and the one error handler of every command.

Exit codes (lbsync.errors): 0 success (changed or unchanged), 1 the job failed, 2 usage or
configuration error, 3 checks passed with warnings. Errors print one line naming the cause;
tracebacks only with --debug.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from lbsync import __version__, cliargs
from lbsync.errors import EXIT_FAILED, ConfigError, LbsyncError
from lbsync.text import printable

# The module that registers each subcommand. Running one imports only its own module: the
# others cost `lbsync once` 35-45 ms of start-up (the daemon's HTTP client, the bootstrap's
# installer). --help, a mistyped command or none at all builds the whole parser.
COMMANDS = {
    "once": "lbsync.cmd_sync", "render": "lbsync.cmd_sync",
    "run": "lbsync.cmd_daemon", "status": "lbsync.cmd_daemon",
    "bootstrap": "lbsync.bootstrap.cli",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every subcommand, or with `command` (one of COMMANDS) only of its own."""
    parser = argparse.ArgumentParser(
        prog="lbsync",
        description="Keep an NGINX load balancer's upstreams in step with a Kubernetes cluster's "
        "nodes and node ports.",
        epilog=cliargs.EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"lbsync {__version__}")
    cliargs.common(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    modules = [COMMANDS[command]] if command in COMMANDS else list(dict.fromkeys(
        COMMANDS.values()))
    for module in modules:
        importlib.import_module(module).register(sub)
    if command not in COMMANDS:
        p = sub.add_parser("demo", help="run lbsync on a built-in demo cluster (development "
                           "checkouts: needs the lab)", add_help=False)
        p.set_defaults(func=cmd_demo)
    return parser


def _command_at(argv: list[str]) -> int | None:
    """Where the subcommand stands in argv (after the global options), if anywhere; None
    too when a global option asks for help or the version before it."""
    i = 0
    while i < len(argv):
        if argv[i] in ("-c", "--config"):
            i += 2
        elif argv[i] in ("-h", "--help", "--version"):
            return None
        elif argv[i].startswith("-"):
            i += 1
        else:
            return i
    return None


def _command_index(argv: list[str], command: str) -> int | None:
    """Where `command` stands in argv as the subcommand (after the global options), if it does."""
    at = _command_at(argv)
    return at if at is not None and argv[at] == command else None


def cmd_demo(args: argparse.Namespace) -> int:
    """The demo lives in the lab (never on a gateway); found through its entry point."""
    from importlib.metadata import entry_points

    found = [ep for ep in entry_points(group="lbsync.lab") if ep.name == "demo"]
    if not found:
        raise ConfigError("demo: the lab is not installed here (gateways do not carry it); "
                          "from a clone of lbsync, run ./scripts/demo")
    return int(found[0].load()(args.demo_args))


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    at = _command_at(args_list)
    parser = build_parser(args_list[at] if at is not None else None)
    demo_at = _command_index(args_list, "demo")
    if demo_at is not None:  # everything after `demo` is the demo's own to parse
        args = parser.parse_args(args_list[:demo_at + 1])
        args.demo_args = args_list[demo_at + 1:]
    else:
        args = parser.parse_args(args_list)
    debug = bool(getattr(args, "debug", False))
    try:
        return int(args.func(args))
    except LbsyncError as exc:
        if debug:
            raise
        print(f"lbsync: error: {printable(exc, 2000)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Output piped into `head` and closed: not a failure worth a message.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except Exception as exc:  # a bug: still one line, unless --debug
        if debug:
            raise
        print(f"lbsync: internal error: {type(exc).__name__}: {printable(exc)} "
              "(rerun with --debug)", file=sys.stderr)
        return EXIT_FAILED
