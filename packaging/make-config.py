#!/usr/bin/python3
"""Make the packaged /etc/lbsync/config.yaml from config/lbsync.example.yaml.

The example stays the single source of the documented settings; this script
only sets the keys whose packaged values differ (the output directory that the
systemd unit can write, and the polkit-backed test/reload commands), keeping
all comments. It edits text line by line and then checks the result with
lbsync's own config parser, so a change of the example's layout fails the
build instead of silently shipping wrong defaults.

Usage: make-config.py EXAMPLE OUTPUT
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

# section -> key -> YAML scalar text. Must match docs/operations-packaging.md,
# systemd/lbsync.service (ReadWritePaths) and packaging/polkit/50-lbsync.rules.
PACKAGED = {
    "kubernetes": {
        "kubeconfig": "/etc/lbsync/kubeconfig",
    },
    "nginx": {
        "output": "/etc/nginx/lbsync/upstreams.conf"
                  "  # include: /usr/share/doc/lbsync/examples/nginx/lbsync.conf",
        "test_command": "systemctl --no-ask-password start lbsync-nginx-test.service",
        "reload_command": "systemctl --no-ask-password reload nginx.service",
    },
}
EXPECTED = {
    ("kubernetes", "kubeconfig"): Path("/etc/lbsync/kubeconfig"),
    ("nginx", "output"): Path("/etc/nginx/lbsync/upstreams.conf"),
    ("nginx", "test_command"): (
        "systemctl", "--no-ask-password", "start", "lbsync-nginx-test.service"),
    ("nginx", "reload_command"): (
        "systemctl", "--no-ask-password", "reload", "nginx.service"),
}
HEADER = (
    "# /etc/lbsync/config.yaml: installed by the lbsync package (a conffile: your\n"
    "# changes are kept on upgrade). Made from the example config with the\n"
    "# packaged defaults below; see /usr/share/doc/lbsync/operations-packaging.md.gz\n"
    "#   nginx.output:         /etc/nginx/lbsync/ is the only directory the\n"
    "#                         lbsync.service sandbox can write.\n"
    "#   nginx.test_command,\n"
    "#   nginx.reload_command: run through systemd, allowed to user lbsync by\n"
    "#                         /usr/share/polkit-1/rules.d/50-lbsync.rules.\n"
    "\n"
)


def indent_of(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def set_key(lines: list[str], section: str, key: str, value: str) -> list[str]:
    sec_re = re.compile(rf"^{re.escape(section)}:\s*(#.*)?$")
    start = next((i for i, ln in enumerate(lines) if sec_re.match(ln)), None)
    if start is None:
        # The section is absent (or only commented out): add it at the end.
        return [*lines, "", f"{section}:", f"  {key}: {value}"]
    end = start + 1
    while end < len(lines) and (
        not lines[end].strip() or lines[end][0] in " #"
    ):
        if lines[end].startswith("#"):  # a top-level comment ends the section
            break
        end += 1
    body = lines[start + 1:end]
    child = min((indent_of(ln) for ln in body if ln.strip() and not ln.lstrip().startswith("#")),
                default=2)
    active = re.compile(rf"^ {{{child}}}{re.escape(key)}:(\s|$)")
    commented = re.compile(rf"^ {{{child}}}#\s*{re.escape(key)}:(\s|$)")
    for pattern in (active, commented):
        for i in range(start + 1, end):
            if pattern.match(lines[i]):
                j = i + 1  # drop a block value (e.g. a list of argv words)
                while j < end and lines[j].strip() and indent_of(lines[j]) > child and \
                        not pattern.match(lines[j]):
                    if lines[j].lstrip().startswith("#") and indent_of(lines[j]) == child:
                        break
                    j += 1
                return [*lines[:i], f"{' ' * child}{key}: {value}", *lines[j:]]
    return [*lines[:start + 1], f"{' ' * child}{key}: {value}", *lines[start + 1:]]


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    example, output = Path(argv[1]), Path(argv[2])
    lines = example.read_text(encoding="utf-8").splitlines()
    for section, keys in PACKAGED.items():
        for key, value in keys.items():
            lines = set_key(lines, section, key, value)
    text = HEADER + "\n".join(lines) + "\n"

    # Check with lbsync's own parser (the source tree is the current directory).
    sys.path.insert(0, str(Path.cwd()))
    import yaml

    from lbsync import config as lbconfig

    try:
        cfg = lbconfig.parse(yaml.safe_load(text), source=Path("/etc/lbsync/config.yaml"),
                             check_paths=False)
    except Exception as exc:  # ConfigError, YAMLError: report and fail the build
        print(f"make-config: the packaged config does not parse: {exc}", file=sys.stderr)
        return 1
    for (section, key), want in EXPECTED.items():
        got = getattr(getattr(cfg, section), key)
        if got != want:
            print(f"make-config: {section}.{key} is {got!r}, expected {want!r}",
                  file=sys.stderr)
            return 1
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
