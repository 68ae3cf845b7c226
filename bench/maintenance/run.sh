#!/usr/bin/env bash
# ecflow table-maintenance benchmark: what compaction, manifest merging and expiry buy a
# reader (DuckDB count(*) and a filtered scan on a table of COMMITS small commits, before and
# after `ecflow table all`) and what background maintenance costs a writer (rows/s and CPU of a
# backlog, maintenance off vs on, interleaved). Prints a markdown table and writes
# bench/results/maintenance-DATE.md.
#
#   bench/maintenance/run.sh [BUILD_DIR] [--smoke] [--commits 3600] [--events-per-commit 500]
#                            [--commit-secs 0.1] [--backlog 1000000] [--repeats 3] [--out FILE]
#
# BUILD_DIR defaults to ./build; it needs ecflow, plugins/ and the sink-iceberg test fixture
# transform-records.so. Defaults take about 12 minutes on 2 cores. --smoke runs tiny tables once
# and writes no results file (CI: it fails only when something does not work).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
command -v python3 >/dev/null || { echo "bench-maintenance: python3 is required" >&2; exit 2; }
exec python3 "$here/bench_maintenance.py" "$@"
