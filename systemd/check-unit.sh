#!/bin/sh
# CI check of the systemd units (make check-unit), without systemd as PID 1 (with Debian 12's
# systemd here, and with Debian 13's in the trixie root: packaging/test-trixie.sh):
#  - `systemd-analyze verify` must print nothing. verify insists that
#    ExecStart binaries exist, so when /usr/bin/lbsync, /usr/sbin/nginx or
#    /usr/bin/python3 is not installed the unit is verified as a copy pointing
#    at a stub.
#  - `systemd-analyze security --offline=true`: each unit's overall exposure must
#    be at most its limit below, today's figure (issue 10: lbsync.service at or
#    below 1.1; the root units brought down from 5.1 with a syscall filter and
#    capability limits). A change that weakens a unit fails here; lower a limit
#    when a unit gets better. MAX_EXPOSURE_<unit> (dashes as underscores, no
#    .service) overrides one, e.g. MAX_EXPOSURE_lbsync_nginx_test=3.
set -eu

cd "$(dirname "$0")"
LIMITS="lbsync.service=1.1 lbsync-nginx-test.service=2.4 lbsync-nginx-reload.service=0.7"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$TMP/units" "$TMP/bin"
printf '#!/bin/sh\nexit 0\n' > "$TMP/bin/stub"
chmod 0755 "$TMP/bin/stub"

echo "check-unit: $(systemd-analyze --version | head -n 1) (Debian $(cat /etc/debian_version 2>/dev/null || echo '?'))"
fail=0
for unit in *.service; do
    case " $LIMITS " in
        *" $unit="*) ;;
        *) echo "check-unit: $unit has no exposure limit in LIMITS" >&2; fail=1 ;;
    esac
    sed_args=""
    for bin in /usr/bin/lbsync /usr/sbin/nginx /usr/bin/python3; do
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

for entry in $LIMITS; do
    unit=${entry%%=*}
    var=MAX_EXPOSURE_$(echo "${unit%.service}" | tr - _)
    max=$(eval "echo \${$var:-${entry#*=}}")
    report=$(systemd-analyze security --offline=true --no-pager "$unit" 2>&1) || {
        printf '%s\n' "$report" >&2
        echo "check-unit: systemd-analyze security $unit failed" >&2
        fail=1
        continue
    }
    score=$(printf '%s\n' "$report" | sed -n "s/.*Overall exposure level for $unit: \([0-9.]*\).*/\1/p")
    if [ -z "$score" ]; then
        printf '%s\n' "$report" >&2
        echo "check-unit: no exposure score for $unit in the output" >&2
        fail=1
        continue
    fi
    echo "check-unit: $unit, what is left:"
    printf '%s\n' "$report" | grep -E '^[[:space:]]*✗' | sed 's/^/    /' || true
    if awk -v s="$score" -v m="$max" 'BEGIN { exit !(s <= m) }'; then
        echo "check-unit: $unit exposure $score (max $max): OK"
    else
        echo "check-unit: $unit exposure $score is above $max" >&2
        fail=1
    fi
done
exit "$fail"
