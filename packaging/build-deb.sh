#!/bin/sh
# Build dist/lbsync_<version>_all.deb (version from lbsync/__init__.py) and
# check it with lintian. The source tree is copied to build/deb/ with
# packaging/debian/ as debian/, so the repository root stays clean.
# Needs: packaging/build-deps.sh. Called by `make deb`.
set -eu

# Debian's own python3 and tools only (not a pyenv/venv python from PATH).
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
cd "$(dirname "$0")/.."
VERSION=$(sed -n 's/^__version__ *= *["'\'']\([^"'\'']*\)["'\''].*/\1/p' lbsync/__init__.py)
[ -n "$VERSION" ] || { echo "build-deb: no __version__ in lbsync/__init__.py" >&2; exit 1; }
[ -f config/lbsync.example.yaml ] || {
    echo "build-deb: config/lbsync.example.yaml is missing (source of /etc/lbsync/config.yaml)" >&2
    exit 1
}

BUILD=build/deb
SRC=$BUILD/lbsync-$VERSION
rm -rf "$BUILD"
mkdir -p "$SRC" dist
rsync -a \
    --exclude=/.git --exclude=/build --exclude=/dist --exclude=/debian \
    --exclude='.venv*' --exclude=__pycache__ --exclude='*.pyc' --exclude='*.egg-info' \
    --exclude=.mypy_cache --exclude=.ruff_cache --exclude=.pytest_cache --exclude='*.deb' \
    ./ "$SRC/"
cp -a packaging/debian "$SRC/debian"

# The package version is the Python version. When packaging/debian/changelog
# has not been updated for it yet, add an entry in the build copy.
TOP=$(dpkg-parsechangelog -l packaging/debian/changelog -S Version)
if [ "$TOP" != "$VERSION" ]; then
    echo "build-deb: changelog is at $TOP, adding an entry for $VERSION in the build copy" >&2
    {
        printf 'lbsync (%s) unstable; urgency=medium\n\n' "$VERSION"
        printf '  * Build of lbsync %s (see the git history).\n\n' "$VERSION"
        printf ' -- lbsync developers <lbsync@example.com>  %s\n\n' "$(date -R)"
        cat packaging/debian/changelog
    } > "$SRC/debian/changelog"
fi

(cd "$SRC" && dpkg-buildpackage -b -us -uc --no-sign)

DEB=lbsync_${VERSION}_all.deb
cp "$BUILD/$DEB" dist/
echo "build-deb: lintian"
# lbsync is systemd-only by design (Type=notify with a watchdog, the unit's sandbox, nginx
# tested and reloaded through systemd units authorised by polkit): there is no init.d script.
# Debian 12's lintian reports that as an info tag; lintian 2.117 removed the tag as obsolete,
# and Debian 13's lintian calls an override of it an error (alien-tag). So the package carries
# no override and the tag is suppressed here, only where this lintian still knows it.
SUPPRESS=
if lintian-explain-tags package-supports-alternative-init-but-no-init.d-script >/dev/null 2>&1; then
    SUPPRESS="--suppress-tags package-supports-alternative-init-but-no-init.d-script"
fi
# Its own TMPDIR: lintian leaves mldbm-elf-* files behind in /tmp.
LINTIAN_TMP=$(mktemp -d)
trap 'rm -rf "$LINTIAN_TMP"' EXIT
# shellcheck disable=SC2086
TMPDIR=$LINTIAN_TMP lintian -I $SUPPRESS --fail-on error,warning "$BUILD"/lbsync_"${VERSION}"_*.changes
echo "build-deb: built dist/$DEB"
