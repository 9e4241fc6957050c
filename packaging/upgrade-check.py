"""Check an lbsync config file kept across an upgrade; print the one-line fix.

Run by the package's postinst as `python3 -I /usr/share/lbsync/upgrade-check.py FILE`
(installed there from packaging/upgrade-check.py). dpkg keeps a /etc/lbsync/config.yaml that
the administrator changed, so after the upgrade from 0.1 it may still set
  - nginx.output: lbsync now refuses it (`lbsync run` exits 2, naming nginx.servers_dir);
  - nginx.reload_command `systemctl ... reload nginx.service`: the polkit rule no longer
    allows it (every reload now goes through lbsync-nginx-reload.service, which confirms it).
Both keys' defaults are right, so the fix deletes those lines: found with YAML's own node
positions, whatever their layout, and checked by parsing the fixed text with lbsync's own
config parser before it is printed. Prints nothing when the file is fine. Always exits 0:
an upgrade must not fail over a config file; `lbsync run` reports any other error itself.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from lbsync import config
from lbsync.errors import ConfigError

OLD_RELOAD = ("systemctl", "--no-ask-password", "reload", "nginx.service")


def stale_keys(text: str) -> dict[str, tuple[int, int]]:
    """nginx keys to delete, each with its first and last line (1-based)."""
    root = yaml.compose(text)
    if not isinstance(root, yaml.MappingNode):
        return {}
    nginx = next((v for k, v in root.value if getattr(k, "value", None) == "nginx"), None)
    if not isinstance(nginx, yaml.MappingNode):
        return {}
    found = {}
    for key, value in nginx.value:
        name = getattr(key, "value", None)
        stale = name == "output" or (name == "reload_command" and _words(value) == OLD_RELOAD)
        if stale:
            found[str(name)] = (key.start_mark.line + 1, _last_line(value) + 1)
    return found


def _last_line(node: Any) -> int:
    """The last line (0-based) that holds part of `node`."""
    if isinstance(node, yaml.ScalarNode):
        line: int = node.end_mark.line
        # A block scalar (| or >) ends at the start of the next line.
        return line - 1 if node.end_mark.column == 0 and line > node.start_mark.line else line
    if node.flow_style:
        return int(node.end_mark.line)
    children = node.value if isinstance(node, yaml.SequenceNode) else \
        [n for pair in node.value for n in pair]
    return max((_last_line(c) for c in children), default=int(node.start_mark.line))


def _words(node: Any) -> tuple[str, ...]:
    value = yaml.safe_load(yaml.serialize(node))
    if isinstance(value, str):
        return tuple(value.split())
    if isinstance(value, list):
        return tuple(str(v) for v in value)
    return ()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: upgrade-check.py CONFIG", file=sys.stderr)
        return 0
    path = Path(argv[1])
    try:
        text = path.read_text(encoding="utf-8")
        stale = stale_keys(text)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        print(f"lbsync: {path}: {exc}".splitlines()[0], file=sys.stderr)
        return 0
    if not stale:
        return 0
    drop = {n for first, last in stale.values() for n in range(first, last + 1)}
    lines = text.splitlines(keepends=True)
    fixed = "".join(line for n, line in enumerate(lines, start=1) if n not in drop)
    # Deleting the lines must delete exactly those keys (not so in a one-line flow mapping).
    want = yaml.safe_load(text)
    for key in stale:
        del want["nginx"][key]
    try:
        exact = yaml.safe_load(fixed) == want
    except yaml.YAMLError:
        exact = False
    try:
        config.parse(want, source=path, check_paths=False)
        after = ""
    except ConfigError as exc:
        after = f"; then fix: {str(exc).splitlines()[0]}"
    what = " and ".join(f"nginx.{k}" for k in sorted(stale))
    why = []
    if "output" in stale:
        why.append("nginx.output is refused now (lbsync would exit 2: it writes server lines "
                   "into nginx.servers_dir, /var/lib/lbsync/servers)")
    if "reload_command" in stale:
        why.append("polkit no longer lets lbsync reload nginx.service (the default starts "
                   "lbsync-nginx-reload.service, which confirms the reload)")
    script = ";".join(f"{a}d" if a == b else f"{a},{b}d" for a, b in sorted(stale.values()))
    fix = f"sed -i '{script}' {path}" if exact else f"delete {what} in {path}"
    print(f"lbsync: {path} keeps {what} from 0.1: {'; '.join(why)}. "
          f"Fix (the defaults are right): {fix}{after}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
