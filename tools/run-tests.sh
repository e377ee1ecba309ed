#!/bin/sh
# The test command (README, CI). Builds incrementally, installs and runs, against
# the installed binaries:
#   1. the release build (g++): every room's unit tests and the integration suite;
#      then the Debian packages (debian/): built, linted, unpacked into a scratch root
#      and tested at their installed paths;
#   2. when run as root: the integration suite again as the unprivileged user
#      `nobody`, from a world-readable copy (the agent's non-root mode);
#   3. a clang build with ASan+UBSan and libFuzzer's coverage: the unit tests and
#      the integration suite without its volume tests (pytest marker `load`);
#      When run as root, 3b: the suites that drive the agent, as `nobody` (where the
#      agent serves calls in its own threads) against that build;
#   4. every libFuzzer target of that build, a short run each from its seeds.
# QREXEC_TESTS_QUICK=1 runs step 1 only.
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUILD=${BUILD:-build}
SAN_BUILD=${SAN_BUILD:-build-san}
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

echo "== 1b. Debian packages: build (-O0), lintian, installed-layout tests (build-deb)"
# -O0: this build checks the packaging (paths, dependencies, conffiles, lintian) and
# the programs at their installed paths, and costs a third of an optimised one.
DEB_BUILD_OPTIONS="noopt noautodbgsym" tools/build-packages.sh
QREXEC_STANDIN_LIB="$(cd "$BUILD" && pwd)/xen-standin-lib" \
  /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/packaging/test_packages.py

if [ "$(id -u)" = 0 ] && id nobody >/dev/null 2>&1; then
  echo "== 2. integration tests as nobody"
  copy=$(mktemp -d /tmp/qrexec-tests-XXXXXX)
  trap 'rm -rf "$copy"' EXIT
  cp -r tests examples "$copy/"
  mkdir -p "$copy/build" && cp -r "$BUILD/install" "$copy/build/install"
  chmod -R a+rX "$copy"
  # Two workers, each test file whole in one of them (as ctest -j2 runs them).
  (cd "$copy" && runuser -u nobody -- env HOME=/tmp TMPDIR=/tmp \
     QREXEC_BIN_DIR="$copy/build/install/bin" \
     /usr/bin/python3 -m pytest -q -p no:cacheprovider -n 2 --dist loadfile tests/integration)
fi

echo "== 3. clang ASan+UBSan build: unit + integration tests ($SAN_BUILD)"
# One sanitizer build serves the tests and the fuzz targets: clang compiles it about
# twice as fast as g++ at -O0, and libFuzzer needs clang.
CXX=clang++ build_and_install "$SAN_BUILD" -DCMAKE_BUILD_TYPE=Debug \
  -DQREXEC_SANITIZE=ON -DQREXEC_FUZZ=ON -DQREXEC_BENCH=OFF
SAN=$(cd "$SAN_BUILD" && pwd)
(cd "$SAN" && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
   UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 QREXEC_SKIP_LOAD=1 \
   QREXEC_BIN_DIR="$SAN/install/bin" ctest --output-on-failure -j2)

if [ "$(id -u)" = 0 ] && id nobody >/dev/null 2>&1; then
  # A non-root agent serves calls in its own threads (a root one forks for PAM):
  # that path under the sanitizers too, on the suites that drive the agent.
  echo "== 3b. agent suites as nobody ($SAN_BUILD)"
  sancopy=$(mktemp -d /tmp/qrexec-san-XXXXXX)
  trap 'rm -rf "${copy:-}" "$sancopy"' EXIT
  cp -r tests "$sancopy/" && cp -r "$SAN/install" "$sancopy/install"
  chmod -R a+rX "$sancopy"
  (cd "$sancopy" && runuser -u nobody -- env HOME=/tmp TMPDIR=/tmp \
     ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
     UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 QREXEC_SKIP_LOAD=1 \
     QREXEC_BIN_DIR="$sancopy/install/bin" \
     /usr/bin/python3 -m pytest -q -p no:cacheprovider -n 2 --dist loadfile \
       tests/integration/test_agent_in_process.py tests/integration/test_seed_behaviours.py \
       tests/integration/test_agent_flows.py tests/integration/test_agent_services.py \
       tests/integration/test_agent_capacity.py)
fi

echo "== 4. libFuzzer targets, ${FUZZ_SECONDS}s each, two at a time ($SAN_BUILD)"
run_fuzzer() { # fuzzer binary; its log is kept only on failure
  fuzzer=$1
  name=$(basename "$fuzzer")
  corpus=$(mktemp -d /tmp/qrexec-corpus-XXXXXX)
  [ -d "$ROOT/fuzz/corpus/$name" ] && cp "$ROOT/fuzz/corpus/$name"/* "$corpus"/
  if (cd "$corpus" && "$fuzzer" -max_len=65536 -timeout=10 \
        -max_total_time="$FUZZ_SECONDS" "$corpus" >"$corpus.log" 2>&1); then
    echo "$name: $(grep -o 'Done [0-9]* runs' "$corpus.log")"
    rm -rf "$corpus" "$corpus.log"
  else
    tail -40 "$corpus.log"; echo "$name failed (log: $corpus.log)"; return 1
  fi
}
set -- "$SAN"/*_fuzz
while [ $# -gt 0 ]; do
  first=$1; shift
  run_fuzzer "$first" & pid=$!
  status=0
  if [ $# -gt 0 ]; then run_fuzzer "$1" || status=1; shift; fi
  wait "$pid" || status=1
  [ "$status" = 0 ] || exit 1
done
echo "== all tests passed"
