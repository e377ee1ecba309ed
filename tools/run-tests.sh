#!/bin/sh
# Builds (incrementally), installs into build/install and runs every test:
# unit tests of each room and the integration suite against the installed binaries.
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
[ -f "$BUILD/build.ninja" ] || cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
ninja -C "$BUILD"
cmake --install "$BUILD" --prefix "$BUILD/install" >/dev/null
cd "$BUILD"
ctest --output-on-failure -j2
