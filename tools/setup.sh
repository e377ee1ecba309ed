#!/bin/sh
# Installs the build and test dependencies (Debian 12), configures and builds.
# Run as root (or with sudo available). Usage: tools/setup.sh [build-dir]
set -eu
cd "$(dirname "$0")/.."
BUILD=${1:-build}
SUDO=
[ "$(id -u)" = 0 ] || SUDO=sudo
PACKAGES="build-essential cmake ninja-build clang pkg-config git
  libfmt-dev libtomlplusplus-dev nlohmann-json3-dev libpam0g-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libclang-rt-14-dev python3 python3-pytest python3-pytest-xdist bubblewrap graphviz util-linux procps
  openssh-server openssh-client iproute2
  libxen-dev scdoc man-db systemd debhelper dpkg-dev fakeroot lintian"
missing=
for p in $PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi
# A root agent opens a PAM session for the service user (AGENT.md §4.3).
if [ ! -e /etc/pam.d/qrexec ]; then
  $SUDO install -m 0644 etc/pam.d/qrexec /etc/pam.d/qrexec
fi
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
ninja -C "$BUILD"
cmake --install "$BUILD" --prefix "$BUILD/install" >/dev/null
# Debian packages (debian/) into build-deb/, tested by tools/run-tests.sh when
# present: QREXEC_PACKAGES=1 (a second, Xen build; tools/build-packages.sh prints its time).
if [ "${QREXEC_PACKAGES:-0}" = 1 ]; then
  tools/build-packages.sh
fi
