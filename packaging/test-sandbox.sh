#!/bin/sh
# Run the installed units under a real systemd, with their full sandboxes, on a disposable
# machine without systemd as PID 1 (CI), as root.
#
# Boots /lib/systemd/systemd as PID 1 of private pid/mount/net/uts/ipc namespaces (container
# mode; /run, /tmp and /etc/nginx/conf.d are private tmpfs there; units that would touch the
# host kernel are masked) with dbus, polkitd and nginx. The package is installed for real (and
# purged at the end). Then:
#  - lbsync.service, with a runtime drop-in that replaces only ExecStart by
#    packaging/sandbox-probe.py: from inside the daemon's sandbox (user lbsync, its limits),
#    the probe checks that it can write only /var/lib/lbsync/servers and /run/lbsync, that
#    starting lbsync-nginx-test.service publishes its lines to root's /etc/nginx/lbsync and
#    tests them, refusing the cron attack and local targets, that lbsync-nginx-reload.service
#    reloads, and that polkit refuses everything else; then `systemctl reload` and `stop`
#    check ExecReload (SIGHUP) and a clean stop;
#  - root's units started as user lbsync through polkit, from outside that sandbox:
#    lbsync-nginx-test.service against an nginx configuration that needs each capability the
#    unit keeps (a TLS key in www-data's 0700 directory, www-data's log file, a temp directory
#    to create and chown, one to chmod, a port below 1024, a host name to resolve), with a
#    negative control for each (the same `nginx -t` without that capability fails, for the
#    expected reason); lbsync-nginx-reload.service replacing nginx's workers, and failing when
#    nginx keeps its old configuration (a port another process holds).
# Exit status non-zero on failure.
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
WORK=$(mktemp -d)
cleanup() {
    if [ -n "$SD" ]; then kill -KILL "$SD" 2>/dev/null || true; fi
    if [ -n "$UNSHARE_PID" ]; then
        kill -KILL "$UNSHARE_PID" 2>/dev/null || true  # it ignores SIGTERM while it waits
        wait "$UNSHARE_PID" 2>/dev/null || true
    fi
    if dpkg-query -W -f='${Status}' lbsync 2>/dev/null | grep -q installed; then
        apt-get purge -y lbsync >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

if dpkg-query -W -f='${Status}' lbsync 2>/dev/null | grep -q installed; then
    apt-get purge -y lbsync >/dev/null
fi
apt-get install -y --no-install-recommends "./$DEB" nginx >/dev/null
ok "installed $DEB"

# The nginx site that needs every capability lbsync-nginx-test.service keeps (made here, copied
# into the namespaces' private /run and conf.d at boot; HARD is that place).
HARD=/run/lbsync-test/hard
mkdir -p "$WORK/hard/keys" "$WORK/hard/wkeys"
openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=lbsync-test -days 2 \
    -keyout "$WORK/hard/keys/key.pem" -out "$WORK/hard/keys/cert.pem" 2>/dev/null
cp "$WORK/hard/keys/key.pem" "$WORK/hard/keys/cert.pem" "$WORK/hard/wkeys/"
cat > "$WORK/hard.conf" <<EOF
# test-sandbox.sh: what nginx -t as root needs, one item per capability.
server {
    listen 127.0.0.1:81;                        # CAP_NET_BIND_SERVICE
    listen 127.0.0.1:8443 ssl;
    server_name lbsync-hard.test;
    ssl_certificate $HARD/wkeys/cert.pem;       # www-data's 0700 directory:
    ssl_certificate_key $HARD/wkeys/key.pem;    # CAP_DAC_OVERRIDE or CAP_DAC_READ_SEARCH
    access_log $HARD/logs/www.log;              # www-data's 0640 file: CAP_DAC_OVERRIDE
    client_body_temp_path $HARD/tmp/body;       # made, then given to www-data: CAP_CHOWN
    proxy_temp_path $HARD/tmp/proxy;            # www-data's, mode 000, chmod u+rwx: CAP_FOWNER
    location / { proxy_pass http://localhost:9; }  # resolved at load: NSS, AI_ADDRCONFIG
}
EOF

# PID 1 of the namespaces: private /run, /tmp, /etc/nginx/conf.d, then systemd.
# Files are copied before /tmp is covered: the checkout may live under /tmp.
BOOT='
set -e
mount --make-rprivate /
mkdir -p /tmp/lbsync-test-confd && cp -a /etc/nginx/conf.d/. /tmp/lbsync-test-confd/
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /run/lbsync-test /run/systemd/system/lbsync.service.d
cp "$REPO/packaging/sandbox-probe.py" /run/lbsync-test/probe.py
cp -a "$WORK/hard" /run/lbsync-test/hard
mkdir -p /run/lbsync-test/hard/logs /run/lbsync-test/hard/tmp
mount -t tmpfs -o mode=0755 tmpfs /etc/nginx/conf.d
cp -a /tmp/lbsync-test-confd/. /etc/nginx/conf.d/
rm -rf /tmp/lbsync-test-confd
cp "$WORK/hard.conf" /etc/nginx/conf.d/lbsync-test-hard.conf
mount -t tmpfs -o mode=1777 tmpfs /tmp
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
REPO=$REPO WORK=$WORK unshare --pid --mount --net --uts --ipc --fork --kill-child --mount-proc \
    sh -c "$BOOT" >"$WORK/boot.log" 2>&1 &
UNSHARE_PID=$!
i=0
while [ -z "$SD" ] && [ $i -lt 50 ]; do
    SD=$(pgrep -P "$UNSHARE_PID" || true); i=$((i + 1)); sleep 0.2
done
[ -n "$SD" ] || { cat "$WORK/boot.log"; echo "test-sandbox: systemd did not start" >&2; exit 1; }
in_ns() { nsenter -t "$SD" -a "$@"; }
as_lbsync() { in_ns runuser -u lbsync -- "$@"; }
check() { # check DESCRIPTION COMMAND...
    desc=$1; shift
    if "$@" >"$WORK/out" 2>&1; then ok "$desc"; else bad "$desc"; sed 's/^/       /' "$WORK/out"; fi
}

# PID 1 copies files before it execs systemd: wait for systemd's socket first (systemctl gives
# up at once without it).
i=0
while [ $i -lt 150 ] && ! in_ns test -S /run/systemd/private 2>/dev/null; do
    sleep 0.2; i=$((i + 1))
done
state=$(timeout 90 nsenter -t "$SD" -a systemctl is-system-running --wait 2>&1 || true)
if [ "$state" = running ]; then ok "systemd booted in the namespaces"; else
    bad "systemd booted: $state"; in_ns systemctl --no-pager --failed || true; fi
check "nginx.service runs (with the capability test site)" in_ns systemctl is-active nginx.service

echo "# lbsync.service, the probe inside its sandbox"
check "systemctl start lbsync.service (Type=notify: READY=1)" in_ns systemctl start lbsync.service
sleep 1
check "systemctl reload lbsync.service" in_ns systemctl reload lbsync.service
sleep 1
check "systemctl stop lbsync.service" in_ns systemctl stop lbsync.service
show=$(in_ns systemctl show -p Result -p ExecMainStatus lbsync.service | tr '\n' ' ')
case "$show" in
    *Result=success*ExecMainStatus=0*|*ExecMainStatus=0*Result=success*) ok "exit: $show" ;;
    *) bad "exit: $show" ;;
esac
if in_ns cat /run/lbsync/probe.json > "$WORK/probe.json" 2>/dev/null; then
    /usr/bin/python3 - "$WORK/probe.json" > "$WORK/results" <<'PY'
import json, sys
for name, r in json.load(open(sys.argv[1])).items():
    detail = r.get("value") if r["ok"] else r.get("error")
    print(("ok   - " if r["ok"] else "FAIL - ") + "in the sandbox: " + name
          + (f" ({detail})" if detail else ""))
PY
    cat "$WORK/results"
    passed=$((passed + $(grep -c '^ok' "$WORK/results" || true)))
    failed=$((failed + $(grep -c '^FAIL' "$WORK/results" || true)))
else
    bad "probe results /run/lbsync/probe.json missing"
fi
check "systemd applied the limits (LimitNOFILE, MemoryMax, TasksMax)" sh -c "
    got=\$(nsenter -t $SD -a systemctl show -p LimitNOFILE -p LimitNOFILESoft -p MemoryMax -p TasksMax lbsync.service | sort | tr '\n' ' ')
    echo \"\$got\"
    [ \"\$got\" = 'LimitNOFILE=1024 LimitNOFILESoft=1024 MemoryMax=268435456 TasksMax=128 ' ]"
check "/var/lib/lbsync root:root 0755, servers/ lbsync:lbsync 0755 (StateDirectory=lbsync/servers)" sh -c "
    [ \"\$(nsenter -t $SD -a stat -c '%U:%G %a' /var/lib/lbsync /var/lib/lbsync/servers | tr '\n' ' ')\" = 'root:root 755 lbsync:lbsync 755 ' ]"
check "/run/lbsync lbsync:lbsync 0700 after the stop (the probe's results were read from it)" sh -c "
    [ \"\$(nsenter -t $SD -a stat -c '%U:%G %a' /run/lbsync)\" = 'lbsync:lbsync 700' ]"
# Children of the daemon (systemctl) that inherit NOTIFY_SOCKET send to it;
# NotifyAccess=main drops that. Reported, not a failure.
if in_ns journalctl --no-pager -u lbsync.service | grep -q 'reception only permitted for main PID'; then
    echo "note - child processes of the daemon inherit NOTIFY_SOCKET (dropped by NotifyAccess=main)"
fi

echo "# lbsync-nginx-test.service: the capabilities nginx -t needs, and no more"
# reset: the state in which `nginx -t` needs every capability of the site above.
reset() {
    in_ns sh -c "
        rm -rf $HARD/tmp/body $HARD/tmp/proxy $HARD/logs/www.log
        chown -R www-data:www-data $HARD/wkeys && chmod 0700 $HARD/wkeys && chmod 0600 $HARD/wkeys/*
        install -o www-data -g adm -m 0640 /dev/null $HARD/logs/www.log
        install -d -o www-data -g www-data -m 0000 $HARD/tmp/proxy"
}
without() { # without CAPS EXPECTED: nginx -t as root without CAPS fails, saying EXPECTED
    reset
    if in_ns capsh --drop="$1" -- -c "nginx -t -q -g 'daemon on; master_process on;'" \
            >"$WORK/nginx-t" 2>&1; then
        echo "nginx -t passed without $1"; return 1
    fi
    cat "$WORK/nginx-t"
    grep -q -- "$2" "$WORK/nginx-t"
}
check "control: without CAP_CHOWN nginx -t fails (chown of a temp directory)" \
    without cap_chown 'chown(.*/tmp/body'
check "control: without CAP_FOWNER nginx -t fails (chmod of www-data's temp directory)" \
    without cap_fowner 'chmod(.*/tmp/proxy'
check "control: without CAP_DAC_OVERRIDE nginx -t fails (www-data's log files)" \
    without cap_dac_override 'open() ".*\.log" failed (13: Permission denied)'
check "control: without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH nginx -t fails (the TLS key)" \
    without cap_dac_override,cap_dac_read_search 'cannot load certificate'
check "control: without CAP_NET_BIND_SERVICE nginx -t fails (ports below 1024)" \
    without cap_net_bind_service 'bind() to .* failed (13'
reset
as_lbsync sh -c 'printf "server 10.0.0.5:32001;\n" > /var/lib/lbsync/servers/k8s_cluster.servers'
check "as user lbsync (polkit): start lbsync-nginx-test.service passes with all of it" \
    as_lbsync systemctl --no-ask-password start lbsync-nginx-test.service
check "its nginx -t did it all: temp directories made and given to www-data" sh -c "
    [ \"\$(nsenter -t $SD -a stat -c '%U %a' $HARD/tmp/body $HARD/tmp/proxy | tr '\n' ' ')\" = 'www-data 700 www-data 700 ' ]"
check "the unit ran with the 5 capabilities, a seccomp filter, NoNewPrivileges" sh -c "
    nsenter -t $SD -a systemctl show -p CapabilityBoundingSet -p SystemCallFilter -p NoNewPrivileges lbsync-nginx-test.service > '$WORK/show'
    grep -qx 'CapabilityBoundingSet=cap_chown cap_dac_override cap_dac_read_search cap_fowner cap_net_bind_service' '$WORK/show' &&
    grep -qx 'NoNewPrivileges=yes' '$WORK/show' && grep -q '^SystemCallFilter=.* chown' '$WORK/show' &&
    ! grep -q '^SystemCallFilter=.* setrlimit' '$WORK/show'"
# NODE_CIDRS, empty above (any network), named in a drop-in: systemd hands the unit's
# `--allowed-cidrs=${NODE_CIDRS}` to the publisher, which refuses the node outside them.
cidrs() {
    in_ns sh -c "mkdir -p /run/systemd/system/lbsync-nginx-test.service.d &&
        printf '[Service]\nEnvironment=NODE_CIDRS=$1\n' > /run/systemd/system/lbsync-nginx-test.service.d/cidrs.conf &&
        systemctl daemon-reload"
}
cidrs 10.99.0.0/16
check "NODE_CIDRS=10.99.0.0/16: start lbsync-nginx-test.service refuses 10.0.0.5" sh -c "
    ! nsenter -t $SD -a runuser -u lbsync -- systemctl --no-ask-password start lbsync-nginx-test.service &&
    nsenter -t $SD -a journalctl --no-pager -n 20 -u lbsync-nginx-test.service | grep -q '10.0.0.5 is outside the allowed networks'"
cidrs 10.0.0.0/16
check "NODE_CIDRS=10.0.0.0/16: start lbsync-nginx-test.service passes" \
    as_lbsync systemctl --no-ask-password start lbsync-nginx-test.service
in_ns sh -c 'rm -f /run/systemd/system/lbsync-nginx-test.service.d/cidrs.conf && systemctl daemon-reload'

echo "# lbsync-nginx-reload.service"
workers() { # the nginx master's current workers, one line
    in_ns sh -c 'pgrep -P "$(cat /run/nginx.pid)" -f "worker process$" | sort | tr "\n" " "'
}
before=$(workers)
check "as user lbsync (polkit): start lbsync-nginx-reload.service" \
    as_lbsync systemctl --no-ask-password start lbsync-nginx-reload.service
after=$(workers)
# New workers: one that was not there before (the old ones may still be on their way out).
check "nginx runs new workers ($before-> $after)" sh -c "
    [ -n '$before' ] && for w in $after; do case ' $before' in *\" \$w \"*) ;; *) exit 0 ;; esac; done; exit 1"
check "systemd's view of nginx.service stays right (active, same master)" sh -c "
    [ \"\$(nsenter -t $SD -a systemctl show -p MainPID --value nginx.service)\" = \"\$(nsenter -t $SD -a cat /run/nginx.pid)\" ] &&
    nsenter -t $SD -a systemctl is-active nginx.service"
# A reload nginx refuses: another process holds a port of a new site. nginx -t still passes
# (it ignores a port in use), `nginx -s reload` exits 0, the master keeps its old workers.
in_ns systemd-run --quiet --unit=lbsync-test-squatter /usr/bin/python3 -c '
import socket, time
s = socket.socket(); s.bind(("127.0.0.1", 8099)); s.listen(); time.sleep(120)'
in_ns sh -c 'printf "server { listen 127.0.0.1:8099; }\n" > /etc/nginx/conf.d/lbsync-test-conflict.conf'
# The unit would wait for new workers until its own timeout (25 s): 5 s here.
in_ns sh -c 'mkdir -p /run/systemd/system/lbsync-nginx-reload.service.d &&
    printf "[Service]\nTimeoutStartSec=5s\n" > /run/systemd/system/lbsync-nginx-reload.service.d/fast.conf &&
    systemctl daemon-reload'
sleep 0.5
check "a port held by another process: start lbsync-nginx-test.service still passes" \
    as_lbsync systemctl --no-ask-password start lbsync-nginx-test.service
before=$(workers)
check "start lbsync-nginx-reload.service fails: nginx kept its old configuration" sh -c "
    ! nsenter -t $SD -a runuser -u lbsync -- systemctl --no-ask-password start lbsync-nginx-reload.service"
check "the old workers still run" sh -c "[ '$before' = \"\$(nsenter -t $SD -a sh -c 'pgrep -P \"\$(cat /run/nginx.pid)\" -f \"worker process\$\" | sort | tr \"\n\" \" \"')\" ]"
in_ns sh -c 'rm -f /etc/nginx/conf.d/lbsync-test-conflict.conf /run/systemd/system/lbsync-nginx-reload.service.d/fast.conf &&
    systemctl stop lbsync-test-squatter.service; systemctl daemon-reload'
check "port free again: start lbsync-nginx-test.service, lbsync-nginx-reload.service" sh -c "
    nsenter -t $SD -a runuser -u lbsync -- systemctl --no-ask-password start lbsync-nginx-test.service &&
    nsenter -t $SD -a runuser -u lbsync -- systemctl --no-ask-password start lbsync-nginx-reload.service"

if [ "$failed" -ne 0 ]; then
    echo "# journal"
    in_ns journalctl --no-pager -n 80 -u lbsync.service -u lbsync-nginx-test.service \
        -u lbsync-nginx-reload.service -u nginx.service || true
fi

echo "test-sandbox: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
