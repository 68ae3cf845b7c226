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
  # The local broker keeps its data between quick starts (pause/resume), so
  # Kafka offsets stay consistent with the Iceberg table in ./warehouse.
  state=${ECFLOW_KAFKA_STATE:-$root/.ecflow/kafka}
  mkdir -p "$state"
  KAFKA_BOOTSTRAP=$(bash tests/services/kafka.sh resume "$state" 2>/dev/null) ||
    KAFKA_BOOTSTRAP=$(bash tests/services/kafka.sh start "$state")
  export KAFKA_BOOTSTRAP
  trap 'bash tests/services/kafka.sh pause "$state" >/dev/null 2>&1 || true' EXIT
  # The table stores Kafka positions per writer; a brand-new broker restarts
  # offsets at 0, so the writer id names the Kafka cluster it reads.
  cluster=$(sed -n 's/^cluster.id=//p' "$state"/data/meta.properties 2>/dev/null | head -1)
  export ECFLOW_WRITER_ID="ecommerce/lake@${cluster:-local}"
  echo "quickstart: local Kafka at $KAFKA_BOOTSTRAP (state in $state)" >&2
fi

# --profile s3: the table goes to an Iceberg REST catalog with its files on
# S3. Without ICEBERG_REST_URI, a local SeaweedFS (S3 + REST catalog) is
# started in .ecflow/seaweedfs and left running for scripts/query.py
# (bash tests/services/seaweedfs.sh stop .ecflow/seaweedfs deletes it).
case " $* ${ECFLOW_PROFILE:-} " in
  *" --profile s3 "*|*" --profile=s3 "*|*" s3 "*)
    if [ -z "${ICEBERG_REST_URI:-}" ]; then
      sw=${ECFLOW_SEAWEEDFS_STATE:-$root/.ecflow/seaweedfs}
      mkdir -p "$sw"
      set -a
      # shellcheck disable=SC1090
      eval "$(bash tests/services/seaweedfs.sh start "$sw")"
      set +a
      export AWS_ENDPOINT_URL=$S3_ENDPOINT
      echo "quickstart: S3 at $S3_ENDPOINT, Iceberg REST catalog at $ICEBERG_REST_URI (state in $sw;" \
           "set -a; . $sw/env; set +a  gives a shell its variables)" >&2
    fi ;;
esac

# In the foreground, so Ctrl-C reaches ecflow itself: the first one drains
# (sinks flush, acks settle), a second exits at once. The EXIT trap then
# stops the local broker.
build/plain/ecflow run "$pipeline" "$@"
