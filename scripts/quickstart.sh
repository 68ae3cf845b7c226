#!/usr/bin/env bash
# quickstart.sh [PIPELINE] [ecflow run options...]
# From a fresh Debian 12 machine: installs the dependencies, builds, starts a
# local Kafka broker when the pipeline needs one and KAFKA_BOOTSTRAP is not
# set, and runs the pipeline until Ctrl-C (which drains and stops cleanly).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
pipeline=${1:-pipelines/ecommerce.yaml}
shift || true

bash scripts/deps.sh
bash scripts/build.sh build/plain -DCMAKE_BUILD_TYPE=RelWithDebInfo

if grep -q 'KAFKA_BOOTSTRAP' "$pipeline" && [ -z "${KAFKA_BOOTSTRAP:-}" ]; then
  state=$(mktemp -d -t ecflow-kafka-XXXXXX)
  KAFKA_BOOTSTRAP=$(bash tests/services/kafka.sh start "$state")
  export KAFKA_BOOTSTRAP
  trap 'bash tests/services/kafka.sh stop "$state" >/dev/null 2>&1 || true' EXIT
  echo "quickstart: local Kafka at $KAFKA_BOOTSTRAP" >&2
fi

# In the foreground, so Ctrl-C reaches ecflow itself: the first one drains
# (sinks flush, acks settle), a second exits at once. The EXIT trap then
# stops the local broker.
build/plain/ecflow run "$pipeline" "$@"
