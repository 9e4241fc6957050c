"""`lbsync-lab`: the lab's command line (the demo, and the emulator on its own)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

USAGE = """usage: lbsync-lab COMMAND [ARGS]

commands:
  demo        lbsync on a built-in demo cluster (see `lbsync-lab demo --help`)
  apiserver   the Kubernetes API emulator on its own (see `lbsync-lab apiserver --help`)
"""


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    command, rest = (args[0], args[1:]) if args else ("", [])
    if command == "demo":
        from lbsync_lab.demo import main as demo

        return demo(rest)
    if command == "apiserver":
        from lbsync_lab.sim.__main__ import main as apiserver

        return apiserver(rest)
    print(USAGE, file=sys.stderr if command not in ("-h", "--help") else sys.stdout, end="")
    return 0 if command in ("-h", "--help") else 2
