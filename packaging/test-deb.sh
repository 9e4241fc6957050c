#!/bin/sh
# CI test of the Debian package on a disposable Debian 12 or 13 machine, as root:
# build (make deb, unless SKIP_BUILD=1), install with apt, check files, user,
# conffiles, directories and who may write them, the program on Debian's
# python3, the packaged config, root's publisher as its unit runs it (and the
# cron attack refused), nginx -t with the packaged upstream block, the polkit
# rule; remove, purge, check the cleanup. Exits non-zero on any failure.
# The upgrade from the 0.1 layout: packaging/test-migration.sh.
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
         /usr/lib/systemd/system/lbsync-nginx-reload.service \
         /usr/lib/tmpfiles.d/lbsync.conf \
         /usr/share/polkit-1/rules.d/50-lbsync.rules \
         /usr/share/lbsync/upgrade-check.py \
         /etc/lbsync/config.yaml \
         /etc/nginx/conf.d/lbsync.conf \
         /usr/share/doc/lbsync/copyright \
         /usr/share/doc/lbsync/operations-packaging.md.gz \
         /usr/share/doc/lbsync/examples/lbsync.example.yaml \
         /usr/share/doc/lbsync/examples/nginx/lbsync.conf \
         /usr/share/doc/lbsync/examples/nginx/worlds.com.conf \
         /usr/share/man/man1/lbsync.1.gz \
         /usr/lib/python3/dist-packages/lbsync/__init__.py \
         /usr/lib/python3/dist-packages/lbsync/publish.py \
         /usr/lib/python3/dist-packages/lbsync/serverlines.py \
         /usr/lib/python3/dist-packages/lbsync/nginxctl.py; do
    check "file $f" test -f "$f"
done
for f in README.md security.md; do
    check "doc $f" sh -c "test -f /usr/share/doc/lbsync/$f || test -f /usr/share/doc/lbsync/$f.gz"
done
check "/usr/bin/lbsync is executable, runs /usr/bin/python3" \
    sh -c 'test -x /usr/bin/lbsync && head -1 /usr/bin/lbsync | grep -qx "#! */usr/bin/python3"'
for f in /etc/lbsync/config.yaml /etc/nginx/conf.d/lbsync.conf; do
    check "$f is a conffile" \
        sh -c "dpkg-query -W -f='\${Conffiles}' lbsync | grep -q '^ $f '"
    check "$f root:root 0644" stat_is "$f" root:root 644
done
check "/etc/nginx/conf.d/lbsync.conf is the example (root's upstream block)" \
    cmp /etc/nginx/conf.d/lbsync.conf config/nginx/lbsync.conf
check "polkit rule root:root 0644" stat_is /usr/share/polkit-1/rules.d/50-lbsync.rules root:root 644
for u in lbsync lbsync-nginx-test lbsync-nginx-reload; do
    check "$u.service root:root 0644" stat_is "/usr/lib/systemd/system/$u.service" root:root 644
done

echo "# user and directories"
check "system user lbsync" sh -c '
    line=$(getent passwd lbsync) || exit 1
    uid=$(echo "$line" | cut -d: -f3); home=$(echo "$line" | cut -d: -f6); sh=$(echo "$line" | cut -d: -f7)
    echo "$line"
    [ "$uid" -lt 1000 ] && [ "$home" = /nonexistent ] && [ "$sh" = /usr/sbin/nologin ]'
check "group lbsync is the user's primary group" \
    sh -c '[ "$(id -gn lbsync)" = lbsync ]'
check "/var/lib/lbsync root:root 0755" stat_is /var/lib/lbsync root:root 755
check "/var/lib/lbsync/servers lbsync:lbsync 0755 (nginx.servers_dir)" \
    stat_is /var/lib/lbsync/servers lbsync:lbsync 755
check "/run/lbsync lbsync:lbsync 0700 (nginx.state_dir, tmpfiles.d)" \
    stat_is /run/lbsync lbsync:lbsync 700
check "/etc/nginx/lbsync root:root 0755 (root's live directory)" \
    stat_is /etc/nginx/lbsync root:root 755
check "placeholder /etc/nginx/lbsync/k8s_cluster.servers root:root 0644" \
    stat_is /etc/nginx/lbsync/k8s_cluster.servers root:root 644
check "placeholder is one server marked down" \
    sh -c '[ "$(cat /etc/nginx/lbsync/k8s_cluster.servers)" = "server 127.0.0.1:9 down;" ]'
check "user lbsync cannot swap /var/lib/lbsync/servers (root's publisher reads it) for a symlink" \
    runuser -u lbsync -- sh -c '
        if mv /var/lib/lbsync/servers /var/lib/lbsync/x 2>/dev/null; then echo "renamed it"; exit 1; fi
        if ln -s /etc /var/lib/lbsync/y 2>/dev/null; then echo "made a symlink"; exit 1; fi'
check "user lbsync can write /var/lib/lbsync/servers and /run/lbsync" \
    runuser -u lbsync -- sh -c 'touch /var/lib/lbsync/servers/.probe /run/lbsync/.probe &&
        rm /var/lib/lbsync/servers/.probe /run/lbsync/.probe'
# The attack of issue 10 item 1 starts with lbsync writing where nginx reads.
check "user lbsync cannot write /etc/nginx/lbsync, /etc/nginx/conf.d, or replace the placeholder" \
    runuser -u lbsync -- sh -c '
        for f in /etc/nginx/lbsync/x.conf /etc/nginx/conf.d/x.conf; do
            if (: > "$f") 2>/dev/null; then echo "wrote $f"; exit 1; fi
        done
        if (echo "log_format x escape=none \"\$http_x\";" > /etc/nginx/lbsync/k8s_cluster.servers) 2>/dev/null; then
            echo "wrote the live file"; exit 1; fi
        if mv /etc/nginx/lbsync/k8s_cluster.servers /etc/nginx/lbsync/y 2>/dev/null; then
            echo "renamed the live file"; exit 1; fi'

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
check "packaged config parses (as user lbsync): the code's defaults, the packaged kubeconfig" \
    runuser -u lbsync -- sh -c 'cd / && /usr/bin/python3 - <<PY
from pathlib import Path
from lbsync import config
cfg = config.load(Path("/etc/lbsync/config.yaml"), check_paths=False)
n = cfg.nginx
assert n.servers_dir == Path("/var/lib/lbsync/servers"), n.servers_dir
assert n.state_dir == Path("/run/lbsync"), n.state_dir
assert n.pid_file is None, n.pid_file
assert n.test_command == ("systemctl", "--no-ask-password", "start", "lbsync-nginx-test.service"), n.test_command
assert n.reload_command == ("systemctl", "--no-ask-password", "start", "lbsync-nginx-reload.service"), n.reload_command
assert cfg.kubernetes.kubeconfig == Path("/etc/lbsync/kubeconfig"), cfg.kubernetes.kubeconfig
print("ok")
PY'
UNITS="/usr/lib/systemd/system/lbsync.service /usr/lib/systemd/system/lbsync-nginx-test.service /usr/lib/systemd/system/lbsync-nginx-reload.service"
check "systemd-analyze verify on the installed units" sh -c "
    out=\$(systemd-analyze verify $UNITS 2>&1)
    echo \"\$out\"; [ -z \"\$out\" ]"
check "systemd finds lbsync.service, installed disabled (needs a kubeconfig first)" \
    sh -c 'state=$(systemctl is-enabled lbsync.service 2>&1); echo "$state"; [ "$state" = disabled ]'
for u in lbsync-nginx-test lbsync-nginx-reload; do
    check "systemd finds $u.service, static (started on demand only)" \
        sh -c "state=\$(systemctl is-enabled $u.service 2>&1); echo \"\$state\"; [ \"\$state\" = static ]"
done
check "end to end: /usr/bin/lbsync render on Debian's python3 against the emulator" \
    sh -c "cd / && PYTHONPATH='$PWD/lab' /usr/bin/python3 '$PWD/packaging/e2e-render.py'"
check "end to end: /usr/bin/lbsync once on Debian's python3 against the emulator and nginx" \
    sh -c "cd / && PYTHONPATH='$PWD/lab' /usr/bin/python3 '$PWD/packaging/e2e-once.py'"
if command -v nginx >/dev/null; then
    echo "# root's side: nginx and the publisher, as the units run them"
    # Debian's nginx.conf includes conf.d/*.conf in http{}: the package's upstream block and
    # its placeholder must keep the whole configuration valid from the moment of install.
    check "nginx -t with this machine's configuration and the packaged upstream block" \
        nginx -t -q -g 'daemon on; master_process on;'
    check "nginx accepts the upstream block and the example site" sh -c '
        d=$(mktemp -d); trap "rm -rf $d" EXIT
        sed "s/listen 80;/listen 127.0.0.1:8;/; /listen \[::\]:80;/d" /usr/share/doc/lbsync/examples/nginx/worlds.com.conf > "$d/site.conf"
        printf "error_log %s/error.log;\npid %s/nginx.pid;\nevents {}\nhttp {\n    include /etc/nginx/conf.d/lbsync.conf;\n    include %s/site.conf;\n}\n" "$d" "$d" "$d" > "$d/nginx.conf"
        nginx -t -q -p "$d" -c "$d/nginx.conf"'
    # The test unit's ExecStart, with its Environment=, run here by hand as root (no systemd
    # as PID 1 on CI; test-sandbox.sh starts the unit itself).
    TEST_UNIT=/usr/lib/systemd/system/lbsync-nginx-test.service
    range=$(sed -n 's/^Environment=NODE_PORT_RANGE=//p' "$TEST_UNIT")
    publish=$(sed -n 's/^ExecStart=//p' "$TEST_UNIT" | sed "s/\${NODE_PORT_RANGE}/$range/; s/\${NODE_CIDRS}//")
    stage() { runuser -u lbsync -- sh -c "printf '%s' \"\$1\" > /var/lib/lbsync/servers/k8s_cluster.servers" sh "$1"; }
    check "test unit: NODE_PORT_RANGE is kube-apiserver's default (30000-32767)" test "$range" = 30000-32767
    stage "server 10.0.0.5:32001 max_fails=3 fail_timeout=10s;  # node-1
server [fd00::6]:32001 max_fails=3 fail_timeout=10s;  # node-2
"
    check "test unit's command publishes lbsync's staged file into /etc/nginx/lbsync (root:root 0644)" sh -c "
        cd / && eval \"$publish\" && cmp /var/lib/lbsync/servers/k8s_cluster.servers /etc/nginx/lbsync/k8s_cluster.servers &&
        [ \"\$(stat -c '%U:%G %a' /etc/nginx/lbsync/k8s_cluster.servers)\" = 'root:root 644' ]"
    cp /etc/nginx/lbsync/k8s_cluster.servers /tmp/test-deb.live
    stage "server 10.0.0.5:32001;
}
log_format x escape=none '\$http_x';
server { listen 127.0.0.1:8081; access_log /etc/cron.d/lbsync-test x; }
upstream k8s_cluster_again {
"
    check "test unit's command refuses the cron attack (exit 1), the live file unchanged" sh -c "
        cd / && if eval \"$publish\" 2>/tmp/test-deb.publish; then exit 1; fi; cat /tmp/test-deb.publish
        grep -q 'line 2: not a .server ADDRESS:PORT' /tmp/test-deb.publish &&
        cmp /tmp/test-deb.live /etc/nginx/lbsync/k8s_cluster.servers && [ ! -e /etc/cron.d/lbsync-test ]"
    stage "server 10.0.0.5:22;
"
    check "test unit's command refuses a port outside 30000-32767 (the gateway's sshd)" sh -c "
        cd / && ! eval \"$publish\" && cmp /tmp/test-deb.live /etc/nginx/lbsync/k8s_cluster.servers"
    rm -f /var/lib/lbsync/servers/k8s_cluster.servers /tmp/test-deb.live /tmp/test-deb.publish
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
    # refused PID ACTION [DETAIL...]: polkit answered no (1: not authorized, 2: would need
    # an administrator's password), not an error (127: e.g. the subject process is gone).
    refused() {
        pid=$1 action=$2; shift 2
        rc=0
        pkcheck --action-id "$action" --process "$pid" "$@" || rc=$?
        echo "pkcheck exit $rc"
        [ "$rc" = 1 ] || [ "$rc" = 2 ]
    }
    check "polkit: lbsync may start lbsync-nginx-test.service" pk lbsync-nginx-test.service start
    check "polkit: lbsync may start lbsync-nginx-reload.service" pk lbsync-nginx-reload.service start
    for denied in "nginx.service reload" "nginx.service restart" "nginx.service stop" \
                  "nginx.service start" "lbsync-nginx-test.service stop" \
                  "lbsync-nginx-test.service restart" "lbsync-nginx-reload.service restart" \
                  "lbsync-nginx-reload.service reload" "lbsync.service stop" \
                  "lbsync.service start" "ssh.service start" "ssh.service reload" \
                  "cron.service start"; do
        check "polkit: lbsync may not $denied" refused "$SUBJECT" org.freedesktop.systemd1.manage-units \
            --detail unit "${denied% *}" --detail verb "${denied#* }"
    done
    check "polkit: lbsync may not manage unit files (enable a unit)" \
        refused "$SUBJECT" org.freedesktop.systemd1.manage-unit-files
    setpriv --reuid=nobody --regid=nogroup --clear-groups sleep 60 &
    OTHER=$!
    POLKIT_PIDS="$POLKIT_PIDS $OTHER"
    sleep 0.5
    for u in lbsync-nginx-test.service lbsync-nginx-reload.service; do
        check "polkit: another user may not start $u" refused "$OTHER" \
            org.freedesktop.systemd1.manage-units --detail unit "$u" --detail verb start
    done
else
    bad "polkit: could not start or reach polkitd to check the rule"
fi
polkit_cleanup

echo "# remove"
runuser -u lbsync -- sh -c 'echo "server 10.0.0.5:32001;" > /var/lib/lbsync/servers/k8s_cluster.servers; : > /run/lbsync/probe.lock'
echo "kubeconfig: admin's" > /etc/lbsync/kubeconfig
check "apt-get remove lbsync" apt-get remove -y lbsync
check "program removed" no_path /usr/bin/lbsync
for u in lbsync lbsync-nginx-test lbsync-nginx-reload; do
    check "$u.service removed" no_path "/usr/lib/systemd/system/$u.service"
done
check "polkit rule removed" no_path /usr/share/polkit-1/rules.d/50-lbsync.rules
check "remove keeps the conffiles" test -f /etc/lbsync/config.yaml -a -f /etc/nginx/conf.d/lbsync.conf
check "remove keeps what nginx includes (its configuration stays valid)" \
    test -f /etc/nginx/lbsync/k8s_cluster.servers
check "remove keeps the user" getent passwd lbsync

echo "# purge"
check "apt-get purge lbsync" apt-get purge -y lbsync
check "package gone" sh -c "! dpkg-query -W -f='\${Status}' lbsync 2>/dev/null | grep -q installed"
check "conffiles removed" sh -c '[ ! -e /etc/lbsync/config.yaml ] && [ ! -e /etc/nginx/conf.d/lbsync.conf ]'
check "admin's kubeconfig kept" test -f /etc/lbsync/kubeconfig
for d in /etc/nginx/lbsync /var/lib/lbsync /run/lbsync; do
    check "$d removed" no_path "$d"
done
check "user removed" sh -c '! getent passwd lbsync'
check "group removed" sh -c '! getent group lbsync'
check "python package removed" no_path /usr/lib/python3/dist-packages/lbsync
if command -v nginx >/dev/null; then
    check "nginx -t after purge (nothing left that includes a removed file)" \
        nginx -t -q -g 'daemon on; master_process on;'
fi
rm -f /etc/lbsync/kubeconfig
rmdir /etc/lbsync 2>/dev/null || true

echo "test-deb: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
