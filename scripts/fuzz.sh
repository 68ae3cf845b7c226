#!/usr/bin/env bash
# fuzz.sh [SECONDS] [TARGET...]: builds the libFuzzer targets (tests/fuzz, clang,
# ASan + UBSan) in build/fuzz and runs each for SECONDS (default 60), one after
# the other. New inputs go to build/fuzz/tests/fuzz/corpus/<target>; crashers to
# build/fuzz/crashes/<target>/ (copy them to tests/fuzz/corpus/<target>/ once
# fixed, as regression inputs). Prints executions and coverage per target.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-60}
shift || true
command -v clang >/dev/null || { echo "fuzz.sh: clang is needed (apt-get install clang)" >&2; exit 2; }
dir="$root/build/fuzz"
CC=clang CXX=clang++ bash "$root/scripts/build.sh" "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DECF_FUZZ=ON \
  -DBUILD_TESTING=OFF
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(fuzz_http_body fuzz_validate fuzz_schema fuzz_pipeline fuzz_avro fuzz_parquet
                                     fuzz_positions)
export ECFLOW_PLUGIN_PATH="$dir/plugins"
export ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
status=0
printf '%-16s %10s %8s %8s %s\n' target execs cov ft result
for t in "${targets[@]}"; do
  work="$dir/tests/fuzz/corpus/$t" crashes="$dir/crashes/$t" log="$dir/fuzz-$t.log"
  mkdir -p "$work" "$crashes"
  rc=0
  "$dir/tests/fuzz/$t" -max_total_time="$secs" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$crashes/" -print_final_stats=1 "$work" "$root/tests/fuzz/corpus/$t" >"$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  last=$(grep -E '^#[0-9]+' "$log" | tail -1)
  cov=$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.*ft: \([0-9]*\).*/\1/p' <<<"$last")
  result=ok
  [ $rc -eq 0 ] || { result="FAILED (see $log, $crashes)"; status=1; }
  printf '%-16s %10s %8s %8s %s\n' "$t" "${execs:-?}" "${cov:-?}" "${ft:-?}" "$result"
done
exit $status
