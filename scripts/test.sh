#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine: installs every
# dependency, builds, and runs all tests three ways — a plain build, an
# AddressSanitizer + UndefinedBehaviorSanitizer build, and a ThreadSanitizer
# build of the concurrency tests (rings, acks, the CLI runs), then, with clang,
# a short run of every fuzz target (tests/fuzz). Services the
# tests need (a Kafka broker) are started and stopped by the tests.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/deps.sh

jobs=$(nproc)
status=0
run_suite() { # name build_dir ctest-args...
  local name=$1 dir=$2; shift 2
  echo "=== $name ===" >&2
  if ! (cd "$dir" && ctest --output-on-failure -j"$jobs" "$@"); then
    echo "=== $name: FAILED ===" >&2
    status=1
  fi
}

bash scripts/build.sh build/plain -DCMAKE_BUILD_TYPE=RelWithDebInfo
run_suite "plain build" build/plain

bash scripts/build.sh build/asan -DCMAKE_BUILD_TYPE=Debug -DECF_SANITIZE=ON
run_suite "ASan + UBSan build" build/asan -LE bench

bash scripts/build.sh build/tsan -DCMAKE_BUILD_TYPE=Debug -DECF_TSAN=ON
run_suite "TSan build (rings, acks, runtime)" build/tsan -R '^(unit/ring|unit/ack|cli)$'

# The fuzz targets, a fixed small number of inputs each (a regression smoke;
# scripts/fuzz.sh runs them for long). Only where clang is installed.
if command -v clang >/dev/null && command -v clang++ >/dev/null; then
  CC=clang CXX=clang++ bash scripts/build.sh build/fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DECF_FUZZ=ON \
    -DBUILD_TESTING=OFF
  run_suite "fuzz smoke (clang, libFuzzer + ASan + UBSan)" build/fuzz -L fuzz
else
  echo "=== fuzz smoke: skipped, no clang ===" >&2
fi

exit $status
