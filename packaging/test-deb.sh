#!/bin/sh
# CI test of the Debian package on a disposable Debian 12 or 13 machine, as root:
# build (make deb, unless SKIP_BUILD=1), install with apt, check files, user,
# conffile, permissions, the program on Debian's python3 and the packaged
# config; remove, purge, check the cleanup. Exits non-zero on any failure.
# Needs packaging/build-deps.sh first. It installs and purges lbsync for real.
# APT_UPDATE=0 skips `apt-get update` (the Debian 13 root of packaging/test-trixie.sh
# has the dependencies installed and no network).
set -eu

PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH DEBIAN_FRONTEND=noninteractive
cd "$(dirname "$0")/.."

[ "$(id -u)" -eq 0 ] || { echo "test-deb: must run as root (it installs the package)" >&2; exit 1; }
VERSION=$(sed -n 's/^__version__ *= *["'\'']\([^"'\'']*\)["'\''].*/\1/p' lbsync/__init__.py)
DEB=dist/lbsync_${VERSION}_all.deb

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   - $*"; }
bad() { failed=$((failed + 1)); echo "FAIL - $*"; }
check() { # check DESCRIPTION COMMAND...
    desc=$1; shift
    if "$@" >/tmp/test-deb.out 2>&1; then ok "$desc"; else bad "$desc"; sed 's/^/       /' /tmp/test-deb.out; fi
}
stat_is() { # stat_is PATH OWNER:GROUP MODE
    got=$(stat -c '%U:%G %a' "$1" 2>&1)
    [ "$got" = "$2 $3" ] || { echo "$1: $got, expected $2 $3"; return 1; }
}
no_path() { [ ! -e "$1" ] || { echo "$1 still exists"; return 1; }; }

if [ "${SKIP_BUILD:-0}" != 1 ]; then
    make deb
fi
[ -f "$DEB" ] || { echo "test-deb: $DEB not found" >&2; exit 1; }

# Start from a machine without lbsync.
if dpkg-query -W -f='${Status}' lbsync 2>/dev/null | grep -q installed; then
    apt-get purge -y lbsync >/dev/null
fi
getent passwd lbsync >/dev/null && deluser --system --quiet lbsync || true
getent group lbsync >/dev/null && delgroup --system --quiet lbsync || true

echo "# install (Debian $(cat /etc/debian_version), $(/usr/bin/python3 --version))"
if [ "${APT_UPDATE:-1}" = 1 ]; then apt-get update -qq; fi
check "apt-get install $DEB" apt-get install -y --no-install-recommends "./$DEB"
check "package is installed" sh -c "dpkg-query -W -f='\${Status}' lbsync | grep -qx 'install ok installed'"
check "version is $VERSION" sh -c "[ \"\$(dpkg-query -W -f='\${Version}' lbsync)\" = '$VERSION' ]"

echo "# files"
check "nothing under the aliased /lib, /bin, /sbin (DEP17; Debian 13's lintian: aliased-location)" \
    sh -c "! dpkg -L lbsync | grep -E '^/(lib|lib32|lib64|libx32|bin|sbin)(/|\$)'"
for f in /usr/bin/lbsync \
         /usr/lib/systemd/system/lbsync.service \
         /usr/lib/systemd/system/lbsync-nginx-test.service \
         /usr/share/polkit-1/rules.d/50-lbsync.rules \
         /etc/lbsync/config.yaml \
         /usr/share/doc/lbsync/copyright \
         /usr/share/doc/lbsync/operations-packaging.md.gz \
         /usr/share/doc/lbsync/examples/lbsync.example.yaml \
         /usr/share/doc/lbsync/examples/nginx/lbsync.conf \
         /usr/share/man/man1/lbsync.1.gz \
         /usr/lib/python3/dist-packages/lbsync/__init__.py \
         /usr/lib/python3/dist-packages/lbsync/templates/upstreams.conf.j2; do
    check "file $f" test -f "$f"
done
check "/usr/bin/lbsync is executable, runs /usr/bin/python3" \
    sh -c 'test -x /usr/bin/lbsync && head -1 /usr/bin/lbsync | grep -qx "#! */usr/bin/python3"'
check "/etc/lbsync/config.yaml is a conffile" \
    sh -c "dpkg-query -W -f='\${Conffiles}' lbsync | grep -q '^ /etc/lbsync/config.yaml '"
check "config.yaml root:root 0644" stat_is /etc/lbsync/config.yaml root:root 644
check "polkit rule root:root 0644" stat_is /usr/share/polkit-1/rules.d/50-lbsync.rules root:root 644
check "unit root:root 0644" stat_is /usr/lib/systemd/system/lbsync.service root:root 644

echo "# user and output directory"
check "system user lbsync" sh -c '
    line=$(getent passwd lbsync) || exit 1
    uid=$(echo "$line" | cut -d: -f3); home=$(echo "$line" | cut -d: -f6); sh=$(echo "$line" | cut -d: -f7)
    echo "$line"
    [ "$uid" -lt 1000 ] && [ "$home" = /nonexistent ] && [ "$sh" = /usr/sbin/nologin ]'
check "group lbsync is the user's primary group" \
    sh -c '[ "$(id -gn lbsync)" = lbsync ]'
check "/etc/nginx/lbsync lbsync:lbsync 0755" stat_is /etc/nginx/lbsync lbsync:lbsync 755
check "user lbsync can write /etc/nginx/lbsync" \
    runuser -u lbsync -- sh -c 'touch /etc/nginx/lbsync/.probe && rm /etc/nginx/lbsync/.probe'

echo "# program"
check "import lbsync from dist-packages on /usr/bin/python3" sh -c '
    cd / && /usr/bin/python3 -c "import lbsync, sys; print(lbsync.__file__, lbsync.__version__); \
sys.exit(not lbsync.__file__.startswith(\"/usr/lib/python3/dist-packages/\") or lbsync.__version__ != \"'"$VERSION"'\")"'
if [ -f /usr/lib/python3/dist-packages/lbsync/cli.py ]; then
    check "/usr/bin/lbsync --version prints $VERSION" \
        sh -c "cd / && /usr/bin/lbsync --version | tee /dev/stderr | grep -q '$VERSION'"
else
    echo "skip - /usr/bin/lbsync --version: lbsync/cli.py is not in the package yet"
fi
check "packaged config parses (as user lbsync), with the packaged defaults" \
    runuser -u lbsync -- sh -c 'cd / && /usr/bin/python3 - <<PY
from pathlib import Path
from lbsync import config
cfg = config.load(Path("/etc/lbsync/config.yaml"), check_paths=False)
assert cfg.nginx.output == Path("/etc/nginx/lbsync/upstreams.conf"), cfg.nginx.output
assert cfg.nginx.test_command == ("systemctl", "--no-ask-password", "start", "lbsync-nginx-test.service"), cfg.nginx.test_command
assert cfg.nginx.reload_command == ("systemctl", "--no-ask-password", "reload", "nginx.service"), cfg.nginx.reload_command
assert cfg.kubernetes.kubeconfig == Path("/etc/lbsync/kubeconfig"), cfg.kubernetes.kubeconfig
print("ok")
PY'
check "systemd-analyze verify on the installed units" sh -c '
    out=$(systemd-analyze verify /usr/lib/systemd/system/lbsync.service /usr/lib/systemd/system/lbsync-nginx-test.service 2>&1)
    echo "$out"; [ -z "$out" ]'
check "systemd finds lbsync.service, installed disabled (needs a kubeconfig first)" \
    sh -c 'state=$(systemctl is-enabled lbsync.service 2>&1); echo "$state"; [ "$state" = disabled ]'
check "systemd finds lbsync-nginx-test.service, static (started on demand only)" \
    sh -c 'state=$(systemctl is-enabled lbsync-nginx-test.service 2>&1); echo "$state"; [ "$state" = static ]'
check "end to end: /usr/bin/lbsync render on Debian's python3 against the emulator" \
    sh -c "cd / && PYTHONPATH='$PWD/lab' /usr/bin/python3 '$PWD/packaging/e2e-render.py'"
check "end to end: /usr/bin/lbsync once on Debian's python3 against the emulator and nginx" \
    sh -c "cd / && PYTHONPATH='$PWD/lab' /usr/bin/python3 '$PWD/packaging/e2e-once.py'"
if command -v nginx >/dev/null; then
    check "nginx accepts the include example" sh -c '
        d=$(mktemp -d); trap "rm -rf $d" EXIT
        printf "error_log %s/error.log;\npid %s/nginx.pid;\nevents {}\nhttp {\n    include /usr/share/doc/lbsync/examples/nginx/lbsync.conf;\n}\n" "$d" "$d" > "$d/nginx.conf"
        nginx -t -q -p "$d" -c "$d/nginx.conf"'
fi

echo "# polkit rule (a real polkitd, asked with pkcheck)"
# On a machine without systemd/D-Bus running (CI), start a private system bus
# and polkitd for the check and stop them (by pid) afterwards.
POLKIT_PIDS=""
POLKIT_OWN_BUS=0
polkit_cleanup() {
    for pid in $POLKIT_PIDS; do kill "$pid" 2>/dev/null || true; done
    POLKIT_PIDS=""
    if [ "$POLKIT_OWN_BUS" = 1 ]; then
        rm -f /run/dbus/pid /run/dbus/system_bus_socket
        POLKIT_OWN_BUS=0
    fi
}
trap polkit_cleanup EXIT
bus_up() { dbus-send --system --print-reply --dest=org.freedesktop.DBus / org.freedesktop.DBus.GetId >/dev/null 2>&1; }
polkit_up() {
    dbus-send --system --print-reply --dest=org.freedesktop.DBus / \
        org.freedesktop.DBus.NameHasOwner string:org.freedesktop.PolicyKit1 2>/dev/null | grep -q 'boolean true'
}
polkit_ready=0
if command -v dbus-daemon >/dev/null && command -v dbus-send >/dev/null && \
   [ -x /usr/lib/polkit-1/polkitd ] && command -v pkcheck >/dev/null; then
    if ! bus_up; then
        rm -f /run/dbus/pid /run/dbus/system_bus_socket
        mkdir -p /run/dbus
        if dbus-daemon --system --fork --print-pid >/tmp/test-deb.dbus.pid; then
            POLKIT_OWN_BUS=1
            POLKIT_PIDS="$POLKIT_PIDS $(cat /tmp/test-deb.dbus.pid)"
        fi
    fi
    if bus_up && ! polkit_up; then
        /usr/lib/polkit-1/polkitd --no-debug >/tmp/test-deb.polkitd.log 2>&1 &
        POLKIT_PIDS="$POLKIT_PIDS $!"
    fi
    i=0
    while [ $i -lt 50 ] && ! polkit_up; do sleep 0.2; i=$((i + 1)); done
    polkit_up && polkit_ready=1
fi
if [ "$polkit_ready" = 1 ]; then
    setpriv --reuid=lbsync --regid=lbsync --init-groups sleep 60 &
    SUBJECT=$!
    POLKIT_PIDS="$POLKIT_PIDS $SUBJECT"
    sleep 0.5
    pk() { # pk UNIT VERB: may user lbsync do it?
        pkcheck --action-id org.freedesktop.systemd1.manage-units --process "$SUBJECT" \
            --detail unit "$1" --detail verb "$2"
    }
    check "polkit: lbsync may start lbsync-nginx-test.service" pk lbsync-nginx-test.service start
    check "polkit: lbsync may reload nginx.service" pk nginx.service reload
    for denied in "nginx.service restart" "nginx.service stop" "nginx.service start" \
                  "lbsync-nginx-test.service stop" "lbsync.service stop" "ssh.service reload"; do
        # shellcheck disable=SC2086
        check "polkit: lbsync may not $denied" sh -c "! pkcheck --action-id org.freedesktop.systemd1.manage-units --process $SUBJECT --detail unit ${denied% *} --detail verb ${denied#* }"
    done
    setpriv --reuid=nobody --regid=nogroup --clear-groups sleep 60 &
    OTHER=$!
    POLKIT_PIDS="$POLKIT_PIDS $OTHER"
    sleep 0.5
    check "polkit: another user may not reload nginx.service" sh -c "! pkcheck --action-id org.freedesktop.systemd1.manage-units --process $OTHER --detail unit nginx.service --detail verb reload"
else
    bad "polkit: could not start or reach polkitd to check the rule"
fi
polkit_cleanup

echo "# remove"
runuser -u lbsync -- sh -c 'echo "# generated" > /etc/nginx/lbsync/upstreams.conf; : > /etc/nginx/lbsync/.upstreams.conf.lock'
echo "kubeconfig: admin's" > /etc/lbsync/kubeconfig
check "apt-get remove lbsync" apt-get remove -y lbsync
check "program removed" no_path /usr/bin/lbsync
check "unit removed" no_path /usr/lib/systemd/system/lbsync.service
check "polkit rule removed" no_path /usr/share/polkit-1/rules.d/50-lbsync.rules
check "remove keeps the conffile" test -f /etc/lbsync/config.yaml
check "remove keeps the user" getent passwd lbsync

echo "# purge"
check "apt-get purge lbsync" apt-get purge -y lbsync
check "package gone" sh -c "! dpkg-query -W -f='\${Status}' lbsync 2>/dev/null | grep -q installed"
check "conffile removed" no_path /etc/lbsync/config.yaml
check "admin's kubeconfig kept" test -f /etc/lbsync/kubeconfig
check "output directory removed" no_path /etc/nginx/lbsync
check "user removed" sh -c '! getent passwd lbsync'
check "group removed" sh -c '! getent group lbsync'
check "python package removed" no_path /usr/lib/python3/dist-packages/lbsync
rm -f /etc/lbsync/kubeconfig
rmdir /etc/lbsync 2>/dev/null || true

echo "test-deb: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
