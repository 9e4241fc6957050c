#!/bin/sh
# CI check of the systemd units (make check-unit), without systemd as PID 1 (with Debian 12's
# systemd here, and with Debian 13's in the trixie root: packaging/test-trixie.sh):
#  - `systemd-analyze verify` must print nothing. verify insists that
#    ExecStart binaries exist, so when /usr/bin/lbsync or /usr/sbin/nginx is
#    not installed the unit is verified as a copy pointing at a stub.
#  - `systemd-analyze security --offline=true` overall exposure of
#    lbsync.service must be at most MAX_EXPOSURE (default 2.5).
set -eu

cd "$(dirname "$0")"
MAX_EXPOSURE=${MAX_EXPOSURE:-2.5}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$TMP/units" "$TMP/bin"
printf '#!/bin/sh\nexit 0\n' > "$TMP/bin/stub"
chmod 0755 "$TMP/bin/stub"

echo "check-unit: $(systemd-analyze --version | head -n 1) (Debian $(cat /etc/debian_version 2>/dev/null || echo '?'))"
fail=0
for unit in *.service; do
    sed_args=""
    for bin in /usr/bin/lbsync /usr/sbin/nginx; do
        [ -x "$bin" ] || sed_args="$sed_args -e s|$bin|$TMP/bin/stub|g"
    done
    if [ -n "$sed_args" ]; then
        # shellcheck disable=SC2086
        sed $sed_args "$unit" > "$TMP/units/$unit"
    else
        cp "$unit" "$TMP/units/$unit"
    fi
    if out=$(systemd-analyze verify "$TMP/units/$unit" 2>&1) && [ -z "$out" ]; then
        echo "check-unit: verify $unit: OK"
    else
        echo "check-unit: verify $unit: FAILED" >&2
        printf '%s\n' "$out" >&2
        fail=1
    fi
done

report=$(systemd-analyze security --offline=true --no-pager lbsync.service 2>&1) || {
    printf '%s\n' "$report" >&2
    echo "check-unit: systemd-analyze security failed" >&2
    exit 1
}
score=$(printf '%s\n' "$report" | sed -n 's/.*Overall exposure level for lbsync.service: \([0-9.]*\).*/\1/p')
if [ -z "$score" ]; then
    printf '%s\n' "$report" >&2
    echo "check-unit: no exposure score in the output" >&2
    exit 1
fi
printf '%s\n' "$report" | grep -E '^[[:space:]]*✗' || true
if awk -v s="$score" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(s <= m) }'; then
    echo "check-unit: lbsync.service exposure $score (max $MAX_EXPOSURE): OK"
else
    echo "check-unit: lbsync.service exposure $score is above $MAX_EXPOSURE" >&2
    fail=1
fi
exit "$fail"
