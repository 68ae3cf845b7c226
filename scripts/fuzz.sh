#!/usr/bin/env bash
# fuzz.sh [--cpu] [-j N] [SECONDS] [TARGET...]: builds the libFuzzer targets
# (tests/fuzz, clang, ASan + UBSan) in build/fuzz and runs each for SECONDS
# (default 60). With --cpu, SECONDS is CPU time: a target is run again (its
# corpus kept) until its processes have used that much, so a run on a busy
# machine still does the work asked for. -j N runs N targets at once, at the
# lowest priority (nice 19). New inputs go to build/fuzz/tests/fuzz/corpus/<target>;
# crashers to build/fuzz/crashes/<target>/ (copy them to
# tests/fuzz/corpus/<target>/ once fixed, as regression inputs). Prints
# executions, coverage and CPU seconds per target.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cpu=0 jobs=1
while [ $# -gt 0 ]; do
  case $1 in
    --cpu) cpu=1; shift ;;
    -j) jobs=$2; shift 2 ;;
    *) break ;;
  esac
done
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

# One target: runs it (in slices of at most 10 minutes under --cpu) and writes
# "target execs cov ft cpu_s result" to $dir/fuzz-<target>.result.
run_target() {
  local t=$1 work="$dir/tests/fuzz/corpus/$1" crashes="$dir/crashes/$1" log="$dir/fuzz-$1.log"
  local used=0 execs=0 rc=0 slice n
  mkdir -p "$work" "$crashes"
  : >"$log"
  while :; do
    slice=$secs
    [ $cpu -eq 0 ] || { slice=$((secs - used)); [ $slice -le 600 ] || slice=600; }
    rc=0
    /usr/bin/time -f 'cpu_seconds %U %S' -a -o "$log.cpu" nice -n "$nice" "$dir/tests/fuzz/$t" \
      -max_total_time="$slice" -max_len=65536 -timeout=10 -rss_limit_mb=2048 -artifact_prefix="$crashes/" \
      -print_final_stats=1 "$work" "$root/tests/fuzz/corpus/$t" >>"$log" 2>&1 || rc=$?
    n=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    execs=$((execs + ${n:-0}))
    used=$(awk '/^cpu_seconds/ {s += $2 + $3} END {printf "%d", s}' "$log.cpu")
    [ $rc -eq 0 ] && [ $cpu -eq 1 ] && [ "$used" -lt "$secs" ] || break
  done
  rm -f "$log.cpu"
  local last cov ft result=ok
  last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
  cov=$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.*ft: \([0-9]*\).*/\1/p' <<<"$last")
  [ $rc -eq 0 ] || result="FAILED (see $log, $crashes)"
  printf '%-16s %12s %8s %8s %8s %s\n' "$t" "$execs" "${cov:-?}" "${ft:-?}" "$used" "$result" >"$dir/fuzz-$t.result"
  [ $rc -eq 0 ]
}

nice=0
[ "$jobs" -le 1 ] || nice=19
status=0 running=0
for t in "${targets[@]}"; do
  rm -f "$dir/fuzz-$t.result"
  run_target "$t" &
  running=$((running + 1))
  if [ $running -ge "$jobs" ]; then wait -n || status=1; running=$((running - 1)); fi
done
while [ $running -gt 0 ]; do wait -n || status=1; running=$((running - 1)); done
printf '%-16s %12s %8s %8s %8s %s\n' target execs cov ft cpu_s result
for t in "${targets[@]}"; do cat "$dir/fuzz-$t.result"; done
exit $status
