#!/bin/sh
# Install everything needed to build and check the lbsync packages on Debian 12:
#   make deb        (debhelper + dh-python/pybuild, lintian)
#   make wheel      (python3-build, no isolation: uses Debian's setuptools/wheel)
#   make check-unit (systemd-analyze, from the systemd package)
#   packaging/test-trixie.sh (a Debian 13 root: mmdebstrap; the trixie archive key is in
#     Debian 12's debian-archive-keyring)
#   packaging/test-deb.sh also installs the runtime dependencies (apt resolves
#   them from the .deb) and needs polkitd, nginx and adduser from the archive.
# Usage: sudo packaging/build-deps.sh   (CI runs it as root)
set -eu

export DEBIAN_FRONTEND=noninteractive
SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo

$SUDO apt-get update -qq
$SUDO apt-get install -y --no-install-recommends \
    build-essential \
    debian-archive-keyring \
    debhelper \
    dh-python \
    dpkg-dev \
    fakeroot \
    lintian \
    mmdebstrap \
    pybuild-plugin-pyproject \
    python3-all \
    python3-build \
    python3-setuptools \
    python3-wheel \
    rsync \
    systemd
