#!/bin/sh
# lbsync on Debian 13 "trixie", from this Debian 12 machine, as root: in a trixie root
# (packaging/trixie-root.sh: made by mmdebstrap from Debian's archive, cached as a tarball)
#   package  trixie's lintian on the .deb; packaging/test-deb.sh there: install with apt,
#            files, user, conffiles, directories, polkit rule (a real polkitd),
#            `lbsync --version`, `lbsync render` and `lbsync once` on trixie's /usr/bin/python3
#            against the emulator and trixie's nginx, root's publisher, remove, purge;
#            packaging/test-migration.sh (the upgrade from 0.1); systemd/check-unit.sh with
#            trixie's systemd-analyze (verify, security scores);
#   suite    the test suite on trixie's python3 (3.13) and libraries (python3-kubernetes 30.1,
#            ...), with this checkout on PYTHONPATH.
# Usage: packaging/test-trixie.sh [package] [suite]     (default: both, in one copy of the root)
# Builds dist/*.deb first (make deb) unless SKIP_BUILD=1 and it exists. Exits non-zero when a
# step fails; every step runs.
set -eu

PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
cd "$(dirname "$0")/.."
VERSION=$(sed -n 's/^__version__ *= *["'\'']\([^"'\'']*\)["'\''].*/\1/p' lbsync/__init__.py)
[ -n "$VERSION" ] || { echo "test-trixie: no __version__ in lbsync/__init__.py" >&2; exit 1; }
DEB=dist/lbsync_${VERSION}_all.deb

steps() { # the steps asked for, checked
    [ "$#" -gt 0 ] || set -- package suite
    for s in "$@"; do
        case "$s" in
            package|suite) echo "$s" ;;
            *) echo "test-trixie: unknown step '$s' (package, suite)" >&2; return 1 ;;
        esac
    done
}

if [ "${1:-}" != --inside ]; then
    [ "$(id -u)" -eq 0 ] || { echo "test-trixie: must run as root (chroot, namespaces)" >&2; exit 1; }
    STEPS=$(steps "$@")
    if echo "$STEPS" | grep -qx package && { [ "${SKIP_BUILD:-0}" != 1 ] || [ ! -f "$DEB" ]; }; then
        make deb
    fi
    start=$(date +%s)
    rc=0
    # shellcheck disable=SC2086
    sh packaging/trixie-root.sh run sh packaging/test-trixie.sh --inside $STEPS || rc=$?
    echo "test-trixie: done in $(( $(date +%s) - start )) s"
    exit "$rc"
fi

# --- inside the trixie root (cwd: the checkout, read-only, on /src/lbsync) -----------------
shift
grep -q '^13\.' /etc/debian_version ||
    { echo "test-trixie: not a Debian 13 root: /etc/debian_version is $(cat /etc/debian_version)" >&2; exit 1; }
echo "test-trixie: Debian $(cat /etc/debian_version), $(python3 --version), $(dpkg-query -W \
    -f='${Package} ${Version}, ' python3-kubernetes python3-jinja2 python3-prometheus-client \
    python3-structlog python3-tenacity python3-urllib3 python3-yaml python3-pytest nginx \
    systemd lintian | sed 's/, $//')"
failed=""
step() { # step NAME COMMAND...: run it, remember a failure, go on
    name=$1; shift
    t0=$(date +%s)
    if "$@"; then
        echo "test-trixie: $name: ok ($(( $(date +%s) - t0 )) s)"
    else
        echo "test-trixie: $name: FAILED ($(( $(date +%s) - t0 )) s)"
        failed="$failed $name"
    fi
}
lint() {
    [ -f "$DEB" ] || { echo "test-trixie: $DEB not found (make deb)" >&2; return 1; }
    # As nobody: lintian warns about running as root.
    runuser -u nobody -- env HOME=/tmp lintian -I --fail-on error,warning "$DEB"
}
suite() {
    # The libraries must be trixie's packages, lbsync and the lab this checkout.
    PYTHONPATH=/src/lbsync:/src/lbsync/lab python3 - <<'PY' || return 1
import sys
import jinja2, kubernetes, prometheus_client, pytest, structlog, tenacity, urllib3, yaml
import lbsync, lbsync_lab
for m in (jinja2, kubernetes, prometheus_client, pytest, structlog, tenacity, urllib3, yaml):
    assert m.__file__.startswith("/usr/lib/python3/dist-packages/"), m.__file__
for m in (lbsync, lbsync_lab):
    assert m.__file__.startswith("/src/lbsync/"), m.__file__
print(f"test-trixie: suite on Python {sys.version.split()[0]}, kubernetes {kubernetes.__version__} "
      f"from {kubernetes.__file__.rsplit('/', 2)[0]}, lbsync from {lbsync.__file__.rsplit('/', 2)[0]}")
PY
    # Four workers as in scripts/test: the suite mostly waits (on nginx, daemons, timeouts).
    PYTHONPATH=/src/lbsync:/src/lbsync/lab python3 -m pytest -q -p no:cacheprovider -n 4
}
for s in $(steps "$@"); do
    case "$s" in
        package)
            echo "== Debian 13: lintian $(dpkg-query -W -f='${Version}' lintian) on $DEB"
            step lintian lint
            echo "== Debian 13: install, check, run (render, once), remove, purge the package"
            step test-deb env SKIP_BUILD=1 APT_UPDATE=0 sh packaging/test-deb.sh
            echo "== Debian 13: the upgrade from the 0.1 layout"
            step test-migration env SKIP_BUILD=1 sh packaging/test-migration.sh
            echo "== Debian 13: the units with systemd-analyze $(dpkg-query -W -f='${Version}' systemd)"
            step check-unit sh systemd/check-unit.sh
            ;;
        suite)
            echo "== Debian 13: the test suite on $(python3 --version) and trixie's libraries"
            step suite suite
            ;;
    esac
done
if [ -n "$failed" ]; then
    echo "test-trixie: FAILED:$failed"
    exit 1
fi
echo "test-trixie: all steps passed"
