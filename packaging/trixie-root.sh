#!/bin/sh
# A Debian 13 "trixie" root on this Debian 12 machine (as root), for testing lbsync on
# trixie's userland: Python 3.13, trixie's python3-* libraries, nginx, systemd, lintian.
#
#   packaging/trixie-root.sh build          make (or reuse) the cached root tarball; print its path
#   packaging/trixie-root.sh run CMD [ARG]  run CMD in a fresh copy of the root, as root, with
#                                           cwd /src/lbsync (this checkout, read-only)
#   packaging/trixie-root.sh shell          an interactive shell there (for debugging)
#
# The root is made by mmdebstrap (Debian 12's package) from Debian's archive
# ($TRIXIE_MIRROR, default http://deb.debian.org/debian, the one this machine's apt uses:
# trixie, trixie-updates and trixie-security), variant apt plus ROOT_PACKAGES below and every
# Depends/Recommends of the lbsync package (read from packaging/debian/control, so installing
# the .deb there needs no network). It is kept as an uncompressed tarball in $LBSYNC_CACHE_DIR
# (default /var/cache/lbsync-ci), named by a hash of the package list, the mirrors and this
# script; it is rebuilt when older than $TRIXIE_MAX_AGE_DAYS (default 7: point releases and
# security updates), and older tarballs are deleted. Cold: ~40 s; warm: a tarball check.
#
# `run` extracts the tarball to a temporary directory (~8 s) and runs CMD chrooted there in
# private mount, PID and network namespaces: /proc (of the new PID namespace), /dev and /sys
# (bound from the host), /tmp and /run (tmpfs), this checkout on /src/lbsync and the shared
# test data ($LBSYNC_SHARED_DATA or ../shared/data) on /src/shared/data, both read-only. The
# network namespace has only a loopback interface (up): tests bind 127.x.y.z there without
# meeting anything else on this machine, and nothing can be fetched. When CMD ends (or this
# script is interrupted) the namespaces end, which kills every process started in the root and
# drops every mount; then the copy is deleted (only after checking that nothing is mounted in
# it). Exits with CMD's status.
set -eu

PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
SELF="$HERE/$(basename "$0")"
ME=trixie-root

SUITE=trixie
MIRROR=${TRIXIE_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${TRIXIE_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
CACHE=${LBSYNC_CACHE_DIR:-/var/cache/lbsync-ci}
MAX_AGE_DAYS=${TRIXIE_MAX_AGE_DAYS:-7}

# What the checks and the test suite use there, besides lbsync's own dependencies.
ROOT_PACKAGES="python3 python3-pytest python3-pytest-xdist nginx libnginx-mod-stream openssl ca-certificates iproute2 procps dbus \
polkitd lintian"

die() { echo "$ME: $*" >&2; exit 1; }
log() { echo "$ME: $*" >&2; }

# The lbsync package's Depends and Recommends, as package names.
control_packages() {
    awk '
        /^Package: lbsync$/ { p = 1; next }
        /^$/ { p = 0 }
        p && /^(Depends|Recommends):/ { f = 1; sub(/^[A-Za-z]+:/, ""); print; next }
        p && f && /^[ \t]/ { print; next }
        { f = 0 }
    ' "$REPO/packaging/debian/control" |
        tr ',|' '\n\n' | sed -e 's/([^)]*)//g' -e 's/\[[^]]*\]//g' -e 's/[[:space:]]//g' |
        grep -v -e '^$' -e '^\$'
}

package_list() {
    { for p in $ROOT_PACKAGES; do echo "$p"; done; control_packages; } | sort -u
}

tarball_path() {
    key=$({
        package_list
        echo "$SUITE $MIRROR $SECURITY_MIRROR"
        cat "$SELF"
    } | sha256sum | cut -c1-16)
    echo "$CACHE/trixie-$key.tar"
}

need() { # need COMMAND PACKAGE
    command -v "$1" >/dev/null 2>&1 ||
        die "$1 is missing: run packaging/build-deps.sh (apt-get install $2)"
}

build() {
    [ "$(id -u)" -eq 0 ] || die "must run as root (mmdebstrap, chroot, mounts)"
    need mmdebstrap mmdebstrap
    need flock util-linux
    [ -s /usr/share/keyrings/debian-archive-trixie-stable.gpg ] ||
        die "no trixie archive key: apt-get install debian-archive-keyring (2023.3+deb12u1 or newer)"
    TARBALL=$(tarball_path)
    mkdir -p "$CACHE"
    exec 9>"$CACHE/.lock"
    flock 9
    if [ -f "$TARBALL" ] && [ -z "$(find "$TARBALL" -mtime +"$MAX_AGE_DAYS")" ]; then
        log "cached root $TARBALL ($(du -m "$TARBALL" | cut -f1) MB)"
    else
        [ -f "$TARBALL" ] && log "cached root is older than $MAX_AGE_DAYS days: rebuilding"
        log "building the $SUITE root from $MIRROR (mmdebstrap)"
        start=$(date +%s)
        tmp="$TARBALL.tmp.$$"
        rm -f "$tmp"
        includes=$(package_list | paste -sd, -)
        if ! mmdebstrap --quiet --variant=apt --mode=root --format=tar \
                --aptopt='APT::Install-Recommends "false"' \
                --include="$includes" \
                "$SUITE" "$tmp" \
                "deb $MIRROR $SUITE main" \
                "deb $MIRROR $SUITE-updates main" \
                "deb $SECURITY_MIRROR $SUITE-security main" >"$tmp.log" 2>&1; then
            tail -n 30 "$tmp.log" >&2
            rm -f "$tmp" "$tmp.log"
            die "mmdebstrap failed (log above)"
        fi
        rm -f "$tmp.log"
        mv "$tmp" "$TARBALL"
        for old in "$CACHE"/trixie-*.tar; do
            [ "$old" = "$TARBALL" ] || rm -f "$old"
        done
        log "built $TARBALL in $(( $(date +%s) - start )) s ($(du -m "$TARBALL" | cut -f1) MB)"
    fi
    exec 9>&-
    echo "$TARBALL"
}

# Inside the new namespaces (PID 1 there): mount, chroot, run. Mounts go with the namespace;
# the trap unmounts them in order anyway, so nothing depends on that.
in_namespaces() {
    ROOT=$1; shift
    umount_all() {
        for m in src/shared/data src/lbsync run tmp sys dev proc; do
            if mountpoint -q "$ROOT/$m"; then umount -R "$ROOT/$m" 2>/dev/null || umount -lR "$ROOT/$m"; fi
        done
    }
    trap umount_all EXIT
    trap 'exit 130' INT TERM
    mount --make-rprivate /
    ip link set lo up
    mount -t proc proc "$ROOT/proc"
    mount --rbind /dev "$ROOT/dev"
    mount --rbind /sys "$ROOT/sys"
    mount -t tmpfs -o mode=1777 tmpfs "$ROOT/tmp"
    mount -t tmpfs -o mode=0755 tmpfs "$ROOT/run"
    mkdir -p "$ROOT/run/lock" "$ROOT/src/lbsync" "$ROOT/src/shared/data"
    mount --bind "$REPO" "$ROOT/src/lbsync"
    mount -o remount,bind,ro "$ROOT/src/lbsync"
    data=${LBSYNC_SHARED_DATA:-$REPO/../shared/data}
    if [ -d "$data" ]; then
        mount --bind "$data" "$ROOT/src/shared/data"
        mount -o remount,bind,ro "$ROOT/src/shared/data"
    fi
    # A clean environment; only what the checks may be told from outside passes through.
    set -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 TERM="${TERM:-dumb}" \
        PYTHONDONTWRITEBYTECODE=1 CI="${CI:-}" \
        LBSYNC_SKIP_SHARED_DATA="${LBSYNC_SKIP_SHARED_DATA:-}" \
        PYTEST_ADDOPTS="${PYTEST_ADDOPTS:-}" \
        sh -c 'cd /src/lbsync && exec "$@"' sh "$@"
    rc=0
    chroot "$ROOT" "$@" || rc=$?
    exit "$rc"
}

run() {
    [ "$#" -gt 0 ] || die "usage: $0 run COMMAND [ARG...]"
    [ "$(id -u)" -eq 0 ] || die "must run as root (chroot, mounts, namespaces)"
    need unshare util-linux
    need ip iproute2
    TARBALL=$(build)
    ROOT=$(mktemp -d "${TMPDIR:-/tmp}/lbsync-trixie.XXXXXX")
    NS_PID=""
    cleanup() {
        rc=$?
        trap - EXIT INT TERM
        # unshare ignores SIGTERM while it waits for its child: SIGKILL ends it, and
        # --kill-child then ends the namespaces' PID 1, and with it every process in them.
        if [ -n "$NS_PID" ]; then kill -KILL "$NS_PID" 2>/dev/null || true; wait "$NS_PID" 2>/dev/null || true; fi
        # Never delete through a mount (the checkout is bound in there, in the namespace).
        if grep -q " ${ROOT}[/ ]" /proc/self/mountinfo; then
            echo "$ME: something is still mounted under $ROOT: not deleting it" >&2
            rc=1
        else
            rm -rf "$ROOT"
        fi
        exit "$rc"
    }
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    start=$(date +%s)
    tar -C "$ROOT" -xf "$TARBALL"
    log "root extracted to $ROOT in $(( $(date +%s) - start )) s ($(cat "$ROOT/etc/debian_version"))"
    # In the background so that a signal reaches the trap at once (unshare --kill-child then
    # ends the namespaces); stdin passed on explicitly (a background job gets /dev/null).
    exec 3<&0
    unshare --mount --pid --net --fork --kill-child --propagation private \
        sh "$SELF" __in_namespaces "$ROOT" "$@" <&3 &
    NS_PID=$!
    rc=0
    wait "$NS_PID" || rc=$?
    NS_PID=""
    return "$rc"
}

cmd=${1:-}
[ "$#" -eq 0 ] || shift
case "$cmd" in
    build) build ;;
    run) run "$@" ;;
    shell) run bash -i ;;
    __in_namespaces) in_namespaces "$@" ;;
    *) die "usage: $0 build | run COMMAND [ARG...] | shell" ;;
esac
