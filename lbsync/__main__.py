"""Entry point for `python -m lbsync`."""

from lbsync.cli import main

raise SystemExit(main())
