#!/usr/bin/env bash
# ecflow end-to-end benchmark: POST /events -> Kafka -> validate -> Iceberg, in one process
# (`ecflow run pipelines/ecommerce.yaml --profile ci`), against a private local Kafka broker
# (tests/services/kafka.sh; stopped at the end, even on failure) unless KAFKA_BOOTSTRAP is set.
# Fixed-rate runs (Python generator) and a maximum-rate run (wrk), medians over repeats;
# measures table events/s, freshness (HTTP 200 -> row visible to DuckDB), CPU per row, peak
# RSS, data files; prints a markdown table and writes bench/results/e2e.md.
#
#   bench/e2e/run.sh [BUILD_DIR] [--smoke] [--rates 5000,20000] [--no-max] [--duration S]
#                    [--max-duration S] [--repeats R] [--batch B] [--connections C]
#                    [--max-connections C] [--commit-interval 1s] [--poll-interval 0.25]
#                    [--sample-every N] [--warmup S] [--out FILE]
#
# BUILD_DIR defaults to ./build of the repository. Defaults: 3 repeats of 30 s at 5,000 and at
# 20,000 events/s and 20 s at maximum rate, about 4.5 minutes on 2 cores. --smoke runs each mode
# once for a few seconds and writes no results file (for CI; its checks still fail it).
# Needs python3 with duckdb + duckdb-extension-iceberg + duckdb-extension-avro (scripts/deps.sh),
# wrk (apt-get installs it when missing and running as root), Java and the Kafka jars (kafka.sh).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
command -v python3 >/dev/null || { echo "bench-e2e: python3 is required" >&2; exit 2; }
exec python3 "$here/bench_e2e.py" "$@"
