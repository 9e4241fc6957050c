"""The `lbsync` command line: subcommands, exit codes, and one-line errors.

Exit codes: 0 success (changed or unchanged), 1 the sync failed, 2 usage or configuration
error. Errors print one line naming the cause; tracebacks only with --debug.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from lbsync import __version__, config, files, logs, render
from lbsync.errors import EXIT_OK, ConfigError, LbsyncError

EPILOG = """\
exit codes:
  0  success (changed or unchanged)
  1  the sync failed (cluster unreachable, Service missing, nginx -t or reload failed,
     too few eligible nodes); the NGINX file on disk is left as it was
  2  usage or configuration error

The configuration file is -c/--config, else $LBSYNC_CONFIG, else /etc/lbsync/config.yaml.
"""

Handler = Callable[[argparse.Namespace], int]


def _common(parser: argparse.ArgumentParser, *, top: bool) -> None:
    # Accepted before and after the subcommand; the subcommand's copy must not reset the
    # value given before it, hence SUPPRESS there.
    default: Any = None if top else argparse.SUPPRESS
    parser.add_argument(
        "-c", "--config", metavar="FILE", default=default,
        help="configuration file (default: $LBSYNC_CONFIG or /etc/lbsync/config.yaml)",
    )
    parser.add_argument(
        "--debug", action="store_true", default=False if top else argparse.SUPPRESS,
        help="debug logging, and a traceback on unexpected errors",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lbsync",
        description="Keep an NGINX load balancer's upstreams in step with a Kubernetes cluster's "
        "nodes and node ports.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"lbsync {__version__}")
    _common(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    add_command(
        sub, "once", "sync once: read the cluster, write, test and reload NGINX", cmd_once,
        "Read the cluster, write the NGINX upstream file if it changed, check it with the test "
        "command, reload NGINX, and print one line per upstream. If the file is unchanged, "
        "nothing is written and NGINX is not reloaded. If the test or the reload fails, the "
        "previous file is put back.",
    )
    add_command(
        sub, "render", "print the upstream file that `once` would write; change nothing",
        cmd_render,
        "Read the cluster and print the NGINX upstream file to stdout. Touches no file and "
        "does not run nginx.",
    )
    _register_subcommands(sub)
    return parser


def add_command(sub: Any, name: str, help_text: str, func: Handler, description: str
                ) -> argparse.ArgumentParser:
    """A subcommand with the common options, the exit codes in its help, and its handler."""
    p: argparse.ArgumentParser = sub.add_parser(
        name, help=help_text, description=description, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(p, top=False)
    p.set_defaults(func=func)
    return p


def _register_subcommands(sub: Any) -> None:
    """Subcommands that live in their own modules (each adds itself to the parser)."""
    from lbsync import daemon_cli
    from lbsync.bootstrap import cli as bootstrap_cli

    daemon_cli.register(sub)
    bootstrap_cli.register(sub)
    p = sub.add_parser("demo", help="run lbsync on a built-in demo cluster (development "
                       "checkouts: needs the lab)", add_help=False)
    p.set_defaults(func=cmd_demo)


# --- commands -----------------------------------------------------------------------------


def load_config(args: argparse.Namespace) -> config.Config:
    cfg = config.load(config.config_path(args.config))
    logs.setup(cfg.log, level="debug" if args.debug else None)
    return cfg


def cmd_once(args: argparse.Namespace) -> int:
    from lbsync.daemon_cli import trigger_sync
    from lbsync.sync import read_cluster, sync_pass

    cfg = load_config(args)
    template = render.load_template(cfg.nginx.template)
    try:
        with files.locked(cfg.nginx.output):
            result = sync_pass(read_cluster(cfg), cfg, template)
    except files.Locked:
        # A running daemon holds the file: it syncs for us instead of us racing it.
        return trigger_sync(cfg)
    for line in result.lines():
        print(line)
    return EXIT_OK


def cmd_render(args: argparse.Namespace) -> int:
    from lbsync.sync import compute, read_cluster

    cfg = load_config(args)
    template = render.load_template(cfg.nginx.template)
    _, text = compute(read_cluster(cfg), cfg, template)
    sys.stdout.write(text)
    return EXIT_OK


def _command_index(argv: list[str], command: str) -> int | None:
    """Where `command` stands in argv as the subcommand (after the global options), if it does."""
    i = 0
    while i < len(argv):
        if argv[i] in ("-c", "--config"):
            i += 2
        elif argv[i].startswith("-"):
            i += 1
        else:
            return i if argv[i] == command else None
    return None


def cmd_demo(args: argparse.Namespace) -> int:
    """The demo lives in the lab (never on a gateway); found through its entry point."""
    from importlib.metadata import entry_points

    found = [ep for ep in entry_points(group="lbsync.lab") if ep.name == "demo"]
    if not found:
        raise ConfigError("demo: the lab is not installed here (gateways do not carry it); "
                          "from a clone of lbsync, run ./scripts/demo")
    return int(found[0].load()(args.demo_args))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    demo_at = _command_index(argv, "demo")
    if demo_at is not None:  # everything after `demo` is the demo's own to parse
        args = parser.parse_args(argv[:demo_at + 1])
        args.demo_args = argv[demo_at + 1:]
    else:
        args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except LbsyncError as exc:
        if args.debug:
            raise
        print(f"lbsync: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug: still one line, unless --debug
        if args.debug:
            raise
        print(f"lbsync: internal error: {type(exc).__name__}: {exc} (rerun with --debug)",
              file=sys.stderr)
        return 1

