#!/usr/bin/env bash
# ecflow core benchmark: source-generate into each cheap consumer we have,
# medians over repeats, as a markdown table (stdout and bench/results/).
#
#   bench/run.sh [BUILD_DIR] [--events N] [--repeats R] [--batch-size B]
#                [--smoke] [--out FILE] [--tmpdir DIR]
#
# BUILD_DIR defaults to ./build of the repository. --smoke runs a tiny load
# once and writes no results file (for CI: it only proves the harness and
# the pipelines work). Needs bash and python3 (standard library only).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
command -v python3 >/dev/null || { echo "bench: python3 is required" >&2; exit 2; }
exec python3 "$here/bench.py" "$@"
