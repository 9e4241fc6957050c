#!/bin/sh
# Run the installed lbsync.service under a real systemd, with its full sandbox,
# on a disposable machine without systemd as PID 1 (CI), as root.
#
# Boots /lib/systemd/systemd as PID 1 of private pid/mount/net/uts/ipc
# namespaces (container mode; /run, /tmp and /etc/nginx/conf.d are private
# tmpfs there; units that would touch the host kernel are masked) with dbus,
# polkitd and nginx. The package is installed for real (and purged at the end).
# A runtime drop-in replaces only ExecStart of lbsync.service with
# packaging/sandbox-probe.py, which checks from inside the sandbox what the
# daemon needs and what must be refused; then `systemctl reload` and `stop`
# check ExecReload (SIGHUP) and a clean stop. Exit status non-zero on failure.
set -eu

PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH DEBIAN_FRONTEND=noninteractive
cd "$(dirname "$0")/.."
REPO=$(pwd)

[ "$(id -u)" -eq 0 ] || { echo "test-sandbox: must run as root" >&2; exit 1; }
VERSION=$(sed -n 's/^__version__ *= *["'\'']\([^"'\'']*\)["'\''].*/\1/p' lbsync/__init__.py)
DEB=dist/lbsync_${VERSION}_all.deb
if [ "${SKIP_BUILD:-0}" != 1 ] || [ ! -f "$DEB" ]; then
    make deb
fi

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   - $*"; }
bad() { failed=$((failed + 1)); echo "FAIL - $*"; }

UNSHARE_PID=""
SD=""
cleanup() {
    if [ -n "$SD" ]; then kill -KILL "$SD" 2>/dev/null || true; fi
    if [ -n "$UNSHARE_PID" ]; then
        kill -KILL "$UNSHARE_PID" 2>/dev/null || true  # it ignores SIGTERM while it waits
        wait "$UNSHARE_PID" 2>/dev/null || true
    fi
    if dpkg-query -W -f='${Status}' lbsync 2>/dev/null | grep -q installed; then
        apt-get purge -y lbsync >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

if dpkg-query -W -f='${Status}' lbsync 2>/dev/null | grep -q installed; then
    apt-get purge -y lbsync >/dev/null
fi
apt-get install -y --no-install-recommends "./$DEB" nginx >/dev/null
ok "installed $DEB"

# PID 1 of the namespaces: private /run, /tmp, /etc/nginx/conf.d, then systemd.
# The probe is copied before /tmp is covered: the checkout may live under /tmp.
BOOT='
set -e
mount --make-rprivate /
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /run/lbsync-test /run/systemd/system/lbsync.service.d
cp "$REPO/packaging/sandbox-probe.py" /run/lbsync-test/probe.py
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=0755 tmpfs /etc/nginx/conf.d
cp /usr/share/doc/lbsync/examples/nginx/lbsync.conf /etc/nginx/conf.d/lbsync.conf
printf "[Service]\nExecStart=\nExecStart=/usr/bin/python3 /run/lbsync-test/probe.py\n" \
    > /run/systemd/system/lbsync.service.d/probe.conf
printf "[Unit]\nDescription=lbsync sandbox test\nWants=dbus.service polkit.service nginx.service\n" \
    > /run/systemd/system/lbsync-test.target
for u in systemd-sysctl.service systemd-binfmt.service proc-sys-fs-binfmt_misc.automount \
         systemd-modules-load.service systemd-remount-fs.service systemd-journal-flush.service \
         systemd-update-utmp.service systemd-random-seed.service systemd-timesyncd.service \
         systemd-sysusers.service; do
    ln -sf /dev/null "/run/systemd/system/$u"
done
export container=lbsync-test
exec /lib/systemd/systemd --system --unit=lbsync-test.target
'
# --kill-child: should unshare itself be killed, systemd (the namespaces' PID 1) goes with it.
REPO=$REPO unshare --pid --mount --net --uts --ipc --fork --kill-child --mount-proc sh -c "$BOOT" \
    >/tmp/test-sandbox.boot.log 2>&1 &
UNSHARE_PID=$!
i=0
while [ -z "$SD" ] && [ $i -lt 50 ]; do
    SD=$(pgrep -P "$UNSHARE_PID" || true); i=$((i + 1)); sleep 0.2
done
[ -n "$SD" ] || { cat /tmp/test-sandbox.boot.log; echo "test-sandbox: systemd did not start" >&2; exit 1; }
in_ns() { nsenter -t "$SD" -a "$@"; }

state=$(timeout 90 nsenter -t "$SD" -a systemctl is-system-running --wait 2>&1 || true)
if [ "$state" = running ]; then ok "systemd booted in the namespaces"; else
    bad "systemd booted: $state"; in_ns systemctl --no-pager --failed || true; fi

if in_ns systemctl start lbsync.service; then ok "systemctl start lbsync.service (Type=notify: READY=1)"
else bad "systemctl start lbsync.service"; fi
sleep 1
if in_ns systemctl reload lbsync.service; then ok "systemctl reload lbsync.service"
else bad "systemctl reload lbsync.service"; fi
sleep 1
if in_ns systemctl stop lbsync.service; then ok "systemctl stop lbsync.service"
else bad "systemctl stop lbsync.service"; fi
show=$(in_ns systemctl show -p Result -p ExecMainStatus lbsync.service | tr '\n' ' ')
case "$show" in
    *Result=success*ExecMainStatus=0*|*ExecMainStatus=0*Result=success*) ok "exit: $show" ;;
    *) bad "exit: $show" ;;
esac

RESULT=/etc/nginx/lbsync/.probe.json
if [ -f "$RESULT" ]; then
    /usr/bin/python3 - "$RESULT" > /tmp/test-sandbox.results <<'PY'
import json, sys
for name, r in json.load(open(sys.argv[1])).items():
    detail = r.get("value") if r["ok"] else r.get("error")
    print(("ok   - " if r["ok"] else "FAIL - ") + "in the sandbox: " + name
          + (f" ({detail})" if detail else ""))
PY
    cat /tmp/test-sandbox.results
    passed=$((passed + $(grep -c '^ok' /tmp/test-sandbox.results || true)))
    failed=$((failed + $(grep -c '^FAIL' /tmp/test-sandbox.results || true)))
else
    bad "probe results $RESULT missing"
fi
# Children of the daemon (systemctl) that inherit NOTIFY_SOCKET send to it;
# NotifyAccess=main drops that. Reported, not a failure.
if in_ns journalctl --no-pager -u lbsync.service | grep -q 'reception only permitted for main PID'; then
    echo "note - child processes of the daemon inherit NOTIFY_SOCKET (dropped by NotifyAccess=main)"
fi
if [ "$failed" -ne 0 ]; then
    echo "# journal"
    in_ns journalctl --no-pager -n 60 -u lbsync.service -u lbsync-nginx-test.service || true
fi

echo "test-sandbox: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
