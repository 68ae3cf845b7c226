#!/usr/bin/env bash
# ecflow ingest benchmark: source-http -> sink-kafka against a real local Kafka broker, and,
# in the same run and under the same wrk load, its two ceilings: a libmicrohttpd server that
# discards the body (HTTP) and a raw librdkafka producer with sink-kafka's settings (Kafka),
# and the two together with nothing else (durable_server: one-event requests answered once
# durable, the bound for batch 1).
# Prints a markdown table and writes bench/results/ingest-DATE.md.
#
#   bench/ingest/run.sh [BUILD_DIR] [--smoke] [--duration S] [--repeats R]
#                       [--connections C] [--wide C2] [--perf] [--baseline BUILD_DIR]
#                       [--variant BUILD_DIR[,K=V...]]...
#                       [--durable-lingers MS,MS,...] [--out FILE]
#
# BUILD_DIR defaults to ./build of the repository. Defaults: 3 interleaved runs of 12 s per
# scenario, 64 connections (as in DESIGN.md), plus the pipeline (batch 1 and 100) and the
# discard server (batch 1) at 256 connections, where the pipeline is no longer bound by the
# latency of durable answers. --smoke runs each scenario once for 2 s at 16 connections and
# writes no results file (for CI: it proves the harness, the broker and the pipeline work;
# numbers are not asserted). --perf adds a perf (cpu-clock) profile of the pipeline in the
# last repeat (it perturbs that repeat). Needs python3, wrk, gcc, pkg-config, libmicrohttpd-dev and
# librdkafka-dev (wrk and gcc are installed with apt-get when missing and running as root);
# Java and the Kafka jars come through tests/services/kafka.sh.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
command -v python3 >/dev/null || { echo "bench-ingest: python3 is required" >&2; exit 2; }
exec python3 "$here/bench_ingest.py" "$@"
