"""What every `lbsync` subcommand shares: the common options, the exit codes in its help,
and loading the configuration they name."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from lbsync import config, logs

EXIT_CODES = """\
exit codes:
  0  success (changed or unchanged)
  1  the job failed (cluster unreachable, Service missing, nginx -t or reload failed,
     too few eligible nodes, helm failed); the NGINX file on disk is left as it was
  2  usage or configuration error
  3  checks passed with warnings (bootstrap check, bootstrap doctor)
"""
EPILOG = EXIT_CODES + """
The configuration file is -c/--config, else $LBSYNC_CONFIG, else /etc/lbsync/config.yaml.
"""

Handler = Callable[[argparse.Namespace], int]


def common(parser: argparse.ArgumentParser, *, top: bool) -> None:
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


def add_command(sub: Any, name: str, help_text: str, func: Handler, description: str
                ) -> argparse.ArgumentParser:
    """A subcommand with the common options, the exit codes in its help, and its handler."""
    p: argparse.ArgumentParser = sub.add_parser(
        name, help=help_text, description=description, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common(p, top=False)
    p.set_defaults(func=func)
    return p


def load_config(args: argparse.Namespace) -> config.Config:
    cfg = config.load(config.config_path(args.config))
    logs.setup(cfg.log, level="debug" if args.debug else None)
    return cfg
