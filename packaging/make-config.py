#!/usr/bin/python3
"""Make the packaged /etc/lbsync/config.yaml from config/lbsync.example.yaml.

The example stays the single source of the documented settings; this script
only sets the keys whose packaged values differ from the code's defaults (since
0.2 only the kubeconfig path: every nginx default is the packaged layout),
keeping all comments. It edits text line by line and then checks the result
with lbsync's own config parser: the packaged key and every setting the units
and the polkit rule depend on must come out as below, so a change of the
example's layout or of a default fails the build instead of silently shipping
a config that the units cannot serve.

Usage: make-config.py EXAMPLE OUTPUT
"""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path

# section -> key -> YAML scalar text: what the package sets.
PACKAGED = {
    "kubernetes": {
        "kubeconfig": "/etc/lbsync/kubeconfig",
    },
}
# What the packaged config must mean. Must match systemd/lbsync.service
# (StateDirectory=lbsync/servers, RuntimeDirectory=lbsync), the ExecStart of
# systemd/lbsync-nginx-test.service (its STAGED directory) and
# packaging/polkit/50-lbsync.rules (the two units lbsync may start).
EXPECTED = {
    ("kubernetes", "kubeconfig"): Path("/etc/lbsync/kubeconfig"),
    ("nginx", "servers_dir"): Path("/var/lib/lbsync/servers"),
    ("nginx", "state_dir"): Path("/run/lbsync"),
    ("nginx", "pid_file"): None,  # lbsync cannot see root's nginx; the reload unit confirms
    ("nginx", "test_command"): (
        "systemctl", "--no-ask-password", "start", "lbsync-nginx-test.service"),
    ("nginx", "reload_command"): (
        "systemctl", "--no-ask-password", "start", "lbsync-nginx-reload.service"),
    ("nodes", "allow_loopback"): False,
    ("nodes", "port_range"): (30000, 32767),  # lbsync-nginx-test.service's NODE_PORT_RANGE
}
HEADER = (
    "# /etc/lbsync/config.yaml: installed by the lbsync package (a conffile: your\n"
    "# changes are kept on upgrade). Made from the example config; the package sets\n"
    "# only kubernetes.kubeconfig. The nginx defaults are the packaged layout (see\n"
    "# /usr/share/doc/lbsync/operations-packaging.md.gz):\n"
    "#   nginx.servers_dir:    /var/lib/lbsync/servers, lbsync's only output;\n"
    "#   nginx.test_command,\n"
    "#   nginx.reload_command: root's lbsync-nginx-test.service (check, publish,\n"
    "#                         nginx -t) and lbsync-nginx-reload.service (reload,\n"
    "#                         confirm), allowed to user lbsync by\n"
    "#                         /usr/share/polkit-1/rules.d/50-lbsync.rules.\n"
    "#   nodes.port_range:     also set in lbsync-nginx-test.service (NODE_PORT_RANGE).\n"
    "#   nodes.allowed_cidrs:  set it, and lbsync-nginx-test.service's NODE_CIDRS.\n"
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
    # Every other setting is the code's default (the example shows the defaults).
    defaults = lbconfig.parse({"upstreams": yaml.safe_load(text)["upstreams"]},
                              source=Path("/etc/lbsync/config.yaml"), check_paths=False)
    for field in dataclasses.fields(cfg):
        got, want = getattr(cfg, field.name), getattr(defaults, field.name)
        if field.name == "kubernetes":
            want = dataclasses.replace(want, kubeconfig=EXPECTED[("kubernetes", "kubeconfig")])
        if got != want:
            print(f"make-config: {field.name} differs from the code's defaults: {got!r}",
                  file=sys.stderr)
            return 1
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
