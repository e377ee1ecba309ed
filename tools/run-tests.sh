#!/bin/sh
# The test command (README, CI). Builds incrementally, installs into
# build/install and runs, against the installed binaries:
#   1. every room's unit tests and the integration suite (ctest);
#   2. when run as root: the integration suite again as the unprivileged user
#      `nobody`, from a world-readable copy (the agent's non-root mode);
#   3. an ASan+UBSan build, with the unit tests and the integration suite;
#   4. a clang build of every program with the libFuzzer targets, each fuzzed
#      for a short run from an empty corpus.
# QREXEC_TESTS_QUICK=1 runs step 1 only.
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUILD=${BUILD:-build}
ASAN_BUILD=${ASAN_BUILD:-build-asan}
FUZZ_BUILD=${FUZZ_BUILD:-build-fuzz}
FUZZ_SECONDS=${FUZZ_SECONDS:-15}

build_and_install() { # dir, extra cmake args...
  dir=$1; shift
  [ -f "$dir/build.ninja" ] || cmake -S . -B "$dir" -G Ninja "$@" >/dev/null
  ninja -C "$dir"
  cmake --install "$dir" --prefix "$dir/install" >/dev/null
}

echo "== 1. unit + integration tests ($BUILD)"
build_and_install "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo
(cd "$BUILD" && ctest --output-on-failure -j2)
[ "${QREXEC_TESTS_QUICK:-0}" = 1 ] && exit 0

# The Debian packages of QREXEC_PACKAGES=1 tools/setup.sh, when built: lintian,
# contents, integration tests against the programs at their installed paths.
if ls build-deb/*.deb >/dev/null 2>&1; then
  echo "== 1b. Debian packages (build-deb)"
  /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/packaging/test_packages.py
fi

if [ "$(id -u)" = 0 ] && id nobody >/dev/null 2>&1; then
  echo "== 2. integration tests as nobody"
  copy=$(mktemp -d /tmp/qrexec-tests-XXXXXX)
  trap 'rm -rf "$copy"' EXIT
  cp -r tests examples "$copy/"
  mkdir -p "$copy/build" && cp -r "$BUILD/install" "$copy/build/install"
  chmod -R a+rX "$copy"
  (cd "$copy" && runuser -u nobody -- env HOME=/tmp TMPDIR=/tmp \
     QREXEC_BIN_DIR="$copy/build/install/bin" \
     /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration)
fi

echo "== 3. ASan+UBSan build: unit + integration tests ($ASAN_BUILD)"
build_and_install "$ASAN_BUILD" -DCMAKE_BUILD_TYPE=Debug -DQREXEC_SANITIZE=ON -DQREXEC_BENCH=OFF
(cd "$ASAN_BUILD" && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
   UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
   QREXEC_BIN_DIR="$ROOT/$ASAN_BUILD/install/bin" ctest --output-on-failure -j2)
echo "== 4. libFuzzer targets, ${FUZZ_SECONDS}s each ($FUZZ_BUILD)"
[ -f "$FUZZ_BUILD/build.ninja" ] || CXX=clang++ cmake -S . -B "$FUZZ_BUILD" -G Ninja \
  -DCMAKE_BUILD_TYPE=Debug -DQREXEC_FUZZ=ON -DQREXEC_TESTS=OFF -DQREXEC_BENCH=OFF >/dev/null
# Everything is built here, so this is also the clang 14 build of every room and program.
ninja -C "$FUZZ_BUILD"
for fuzzer in "$FUZZ_BUILD"/*_fuzz; do
  corpus=$(mktemp -d /tmp/qrexec-corpus-XXXXXX)
  seeds="$ROOT/fuzz/corpus/$(basename "$fuzzer")"
  [ -d "$seeds" ] && cp "$seeds"/* "$corpus"/
  (cd "$corpus" && "$ROOT/$fuzzer" -max_len=65536 -timeout=10 -max_total_time="$FUZZ_SECONDS" \
     "$corpus" >"$corpus.log" 2>&1) || { tail -40 "$corpus.log"; echo "$fuzzer failed"; exit 1; }
  echo "$(basename "$fuzzer"): $(grep -o 'Done [0-9]* runs' "$corpus.log")"
  rm -rf "$corpus" "$corpus.log"
done
echo "== all tests passed"
