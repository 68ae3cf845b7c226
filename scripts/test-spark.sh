#!/usr/bin/env bash
# test-spark.sh [BUILD_DIR]: the opt-in Spark reader test
# (tests/integration/test_spark_reader.py) with all of its setup, from a fresh
# Debian 12 machine: the project's dependencies (scripts/deps.sh), pyspark from
# PyPI into the same Python, the Iceberg Spark runtime jar from Maven Central
# into a cache outside the source tree, a build that registers the test
# (-DECF_SPARK_TESTS=ON; default BUILD_DIR build/spark), then `ctest -L spark`.
# Each step is skipped when already done. scripts/test.sh never runs this test.
#
# Environment (all optional):
#   PYSPARK_VERSION   default 3.5.9 (Spark 3.5, Scala 2.12; a 4.x takes the Scala 2.13 jar, untried)
#   ICEBERG_VERSION   default 1.12.0 (1.10.1 passes too), the iceberg-spark-runtime release
#   ECFLOW_CACHE      cache root, default ~/.cache/ecflow; the jar lands in its spark/
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
dir=${1:-build/spark}
pyspark_version=${PYSPARK_VERSION:-3.5.9}
iceberg_version=${ICEBERG_VERSION:-1.12.0}
spark_minor=${pyspark_version%.*}
case $spark_minor in 3.*) scala=2.12 ;; *) scala=2.13 ;; esac
artifact=iceberg-spark-runtime-${spark_minor}_${scala}
cache=${ECFLOW_CACHE:-${HOME:-/tmp}/.cache/ecflow}/spark
jar=$cache/$artifact-$iceberg_version.jar

bash scripts/deps.sh   # a JDK, Maven, pytest and the other Iceberg readers

installed=$(python3 -c 'from importlib.metadata import version; print(version("pyspark"))' 2>/dev/null || true)
if [ "$installed" != "$pyspark_version" ]; then
  echo "test-spark: installing pyspark $pyspark_version" >&2
  # as scripts/deps.sh does: a plain install, or past Debian's externally-managed guard
  python3 -m pip install -q "pyspark==$pyspark_version" 2>/dev/null ||
    python3 -m pip install -q --break-system-packages "pyspark==$pyspark_version"
fi

if [ ! -f "$jar" ]; then
  echo "test-spark: fetching org.apache.iceberg:$artifact:$iceberg_version" >&2
  mkdir -p "$cache"
  tmp=$(mktemp -d "$cache/.fetch.XXXXXX")
  # run outside the source tree so Maven never mistakes a folder's pom for a project
  if ! (cd "$tmp" && mvn -q -B -Dstyle.color=never dependency:copy \
          -Dartifact="org.apache.iceberg:$artifact:$iceberg_version" -DoutputDirectory="$tmp" \
          >"$tmp.log" 2>&1); then
    cat "$tmp.log" >&2; rm -rf "$tmp" "$tmp.log"
    echo "test-spark: maven could not fetch org.apache.iceberg:$artifact:$iceberg_version" >&2
    exit 1
  fi
  rm -f "$tmp.log"
  # one rename: a half-fetched jar is never taken for a cached one
  mv "$tmp/$artifact-$iceberg_version.jar" "$jar"
  rm -rf "$tmp"
fi

# build.sh configures only a new build dir; an existing one gets the option here
if [ -f "$dir/CMakeCache.txt" ] && ! grep -q '^ECF_SPARK_TESTS:BOOL=ON$' "$dir/CMakeCache.txt"; then
  cmake -DECF_SPARK_TESTS=ON "$dir" >/dev/null
fi
bash scripts/build.sh "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DECF_SPARK_TESTS=ON

cd "$dir"
# -V: pytest's own summary (passed, xfailed) is worth seeing; Spark itself is quiet
ICEBERG_SPARK_JAR=$jar ctest -V -L spark
