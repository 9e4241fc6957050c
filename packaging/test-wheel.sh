#!/bin/sh
# Build the wheel and sdist (python3 -m build, with Debian's setuptools: no download), check
# their metadata and contents, and run the installed console script from a fresh venv that
# uses Debian's libraries. Exits non-zero on any failure. Needs packaging/build-deps.sh.
set -eu
cd "$(dirname "$0")/.."
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
/usr/bin/python3 -m build --no-isolation --outdir "$OUT" . >"$OUT/build.log" 2>&1 || {
    cat "$OUT/build.log"; exit 1; }
/usr/bin/python3 - "$OUT" <<'PY'
import re, sys, tarfile, zipfile
from email.parser import Parser
from pathlib import Path

out = Path(sys.argv[1])
version = next(line.split('"')[1] for line in open("lbsync/__init__.py")
               if line.startswith("__version__"))
wheel = out / f"lbsync-{version}-py3-none-any.whl"
sdist = out / f"lbsync-{version}.tar.gz"
with zipfile.ZipFile(wheel) as zf:
    names = set(zf.namelist())
    meta = Parser().parsestr(zf.read(f"lbsync-{version}.dist-info/METADATA").decode())
    entry = zf.read(f"lbsync-{version}.dist-info/entry_points.txt").decode()
assert meta["Name"] == "lbsync" and meta["Version"] == version, (meta["Name"], meta["Version"])
assert meta["Requires-Python"] == ">=3.11", meta["Requires-Python"]
requires = {re.match(r"[A-Za-z0-9_.-]+", r).group(0).lower()
            for r in meta.get_all("Requires-Dist") if "extra ==" not in r}
assert requires == {"kubernetes", "jinja2", "prometheus-client", "structlog", "tenacity",
                    "pyyaml"}, requires
assert "lbsync = lbsync.cli:main" in entry, entry
for path in ("lbsync/py.typed", "lbsync/cli.py", "lbsync/publish.py", "lbsync/serverlines.py",
             "lbsync/nginxctl.py", "lbsync/bootstrap/cli.py"):
    assert path in names, f"{path} missing from the wheel"
# The lab (emulator, stand-ins, demo) and the tests never go on a gateway.
assert not any(n.startswith(("tests/", "lbsync_lab/", "lab/")) for n in names), \
    "the lab and the tests must not be in the wheel"
with tarfile.open(sdist) as tf:
    members = {m.split("/", 1)[1] for m in tf.getnames() if "/" in m}
for path in ("README.md", "pyproject.toml", "lbsync/publish.py"):
    assert path in members, f"{path} missing from the sdist"
print(f"ok: {wheel.name} and {sdist.name}: metadata, dependencies, entry point, files")
PY
/usr/bin/python3 -m venv --system-site-packages "$OUT/venv"
"$OUT/venv/bin/pip" install -q --no-deps --no-index "$OUT"/lbsync-*.whl
(cd / && "$OUT/venv/bin/lbsync" --version)
(cd / && "$OUT/venv/bin/lbsync" render --help >/dev/null)
echo "test-wheel: ok"
