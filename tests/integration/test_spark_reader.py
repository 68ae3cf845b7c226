"""Apache Spark reads what sink-iceberg wrote: Iceberg's Java reference implementation
(iceberg-spark-runtime) as one more independent reader, beside DuckDB, pyiceberg and pyarrow
in test_sink_iceberg.py.

Opt-in, never run by scripts/test.sh or CI: a JVM, a 47 MB jar and Spark's start-up cost
about a minute. `bash scripts/test-spark.sh` installs pyspark (PyPI), fetches the runtime jar
(Maven Central), builds with -DECF_SPARK_TESTS=ON and runs this file as the ctest
`integration/spark-reader` (label `spark`). By hand:
    ECF_SPARK_TESTS=1 ECFLOW_BIN=build/spark/ecflow ECFLOW_PLUGIN_PATH=build/spark/plugins \
        python3 -m pytest -q tests/integration/test_spark_reader.py

One table, written by the real binary in three runs (pipelines/spark_reader.yaml: events ->
transform-validate -> sink-iceberg, every event also to NDJSON, the ground truth):
  1. 6000 generated events across midnight with an older schema (no `currency` column, price
     decimal(10,2)), rate-limited so that commits cut several snapshots;
  2. hand-written edge cases POSTed to source-http, with the shipped schema, which evolves the
     table (a new optional column, a wider decimal): 4-byte UTF-8, escapes and NUL, explicit
     nulls, a zone offset, the last microsecond before the epoch, extreme decimals, members
     the schema does not name (`extras`);
  3. 3000 generated events on another day.
Spark (local[2], bound to 127.0.0.1, session time zone deliberately not UTC) reads it through
a Hadoop catalog at the warehouse (`lake.ecommerce.events`) and by path, and checks every row
against the truth, the types, partitions and file metrics, every snapshot by time travel,
file pruning by the scan's own metrics, and the counts DuckDB and pyiceberg see. Last, Spark
compacts a table (rewrite_data_files) and ecflow appends to what Spark committed.

Environment: ECF_SPARK_TESTS=1 (without it the module is skipped); ICEBERG_SPARK_JAR (default:
the one jar in ${ECFLOW_CACHE:-~/.cache/ecflow}/spark/); ECFLOW_BIN, ECFLOW_PLUGIN_PATH.
Once opted in, a missing pyspark or jar fails, never skips.
"""

import collections
import datetime as dt
import decimal
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ECFLOW, ROOT, ecflow_env
from test_sink_iceberg import duck, latest_metadata, readers  # noqa: F401 (readers: a fixture)
from test_source_http import Server

pytestmark = pytest.mark.skipif(os.environ.get("ECF_SPARK_TESTS") != "1",
                                reason="opt-in: bash scripts/test-spark.sh (or ECF_SPARK_TESTS=1)")

PIPELINE = Path(__file__).resolve().parent / "pipelines" / "spark_reader.yaml"
SHIPPED_SCHEMA = ROOT / "pipelines" / "schemas" / "ecommerce_event.yaml"
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
RUN1, RUN3 = 6000, 3000

EDGE = [
    # 4-byte UTF-8 (emoji, U+1D11E), CJK, right-to-left, a combining accent; escapes and NUL
    {"event_id": "edge-unicode", "event_type": "search", "user_id": "ユーザー", "session_id": "s-edge",
     "location": "東京 🗼", "device": "mobile", "timestamp": "2024-03-03T12:00:00.123456Z",
     "query": "naïve cafe\u0301 \"quoted\" back\\slash\ttab\nnewline \u0000 𝄞 مرحبا"},
    # explicit JSON nulls on optional fields
    {"event_id": "edge-nulls", "event_type": "page_view", "user_id": "u-edge", "session_id": "s-edge",
     "location": None, "device": None, "timestamp": "2024-03-03T12:00:01Z", "page_url": None,
     "query": None},
    # a zone offset: the UTC instant is 2024-03-02T20:00:00.5, so it belongs to the 2nd, not the 3rd
    {"event_id": "edge-offset", "event_type": "purchase", "user_id": "u-edge", "session_id": "s-edge",
     "timestamp": "2024-03-03T01:30:00.5+05:30", "product_id": "p-max", "price": 9999999999.99,
     "quantity": 1000000, "currency": "JPY"},
    # before the epoch: day(timestamp) = -1, where truncating division would say 0
    {"event_id": "edge-pre-epoch", "event_type": "add_to_cart", "user_id": "u-edge", "session_id": "s-edge",
     "timestamp": "1969-12-31T23:59:59.999999Z", "product_id": "p-min", "price": 0, "quantity": 1,
     "currency": "USD"},
    # members the schema does not name: kept in `extras`
    {"event_id": "edge-extras", "event_type": "remove_from_cart", "user_id": "u-edge", "session_id": "s-edge",
     "timestamp": "2024-03-03T23:59:59.999999Z", "product_id": "p1", "price": 0.01, "quantity": 2,
     "currency": "EUR", "coupon": {"code": "ÉTÉ", "pct": 1.5}, "tags": ["a", None]},
]


# ------------------------------------------------------------------ truth


def epoch_us(s):
    return (dt.datetime.fromisoformat(s) - EPOCH) // dt.timedelta(microseconds=1)


def utc_day(us):
    return EPOCH.date() + dt.timedelta(days=us // 86_400_000_000)


def schema_fields(text):
    """Field names of a transform-validate schema file, in order (two-space indented keys)."""
    body = text.split("\nfields:\n", 1)[1]
    return re.findall(r"^  ([a-z_]+):", body, flags=re.M)


def read_truth(path, fields):
    """[(event, names of the columns its run's schema had)], parsed exactly (decimals as text)."""
    with open(path, encoding="utf-8") as f:
        return [(json.loads(line, parse_float=decimal.Decimal), fields) for line in f]


def expected_value(field, ev, run_fields):
    """What Spark must return in one column of the row an input event became."""
    from pyspark.sql.types import DecimalType, TimestampType
    name = field.name
    if name == "event_date":
        return utc_day(epoch_us(ev["timestamp"]))
    if name == "extras":
        return {k: v for k, v in ev.items() if k not in run_fields}
    if name not in run_fields:
        return None  # a column added after this row was written
    v = ev.get(name)
    if v is None:
        return None
    if isinstance(field.dataType, DecimalType):
        return decimal.Decimal(v).quantize(decimal.Decimal(1).scaleb(-field.dataType.scale))
    if isinstance(field.dataType, TimestampType):
        return epoch_us(v)
    return v


class Lake:
    """The table the three runs wrote, and what went into it."""

    def __init__(self, warehouse):
        self.warehouse = warehouse
        self.table = warehouse / "ecommerce" / "events"
        self.events = []         # [(event, fields of its run's schema)]
        self.run_snapshots = []  # [[snapshot ids one run added]]
        self.started_us = self.finished_us = 0

    def metadata(self):
        return json.loads(Path(latest_metadata(self.table)).read_text())

    def note_run(self):
        seen = {s for run in self.run_snapshots for s in run}
        ids = [s["snapshot-id"] for s in self.metadata()["snapshots"]]
        self.run_snapshots.append([s for s in ids if s not in seen])


def run_ecflow(env, **extra):
    p = subprocess.run([str(ECFLOW), "run", str(PIPELINE)], env=ecflow_env(**{**env, **extra}),
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, f"exit {p.returncode}:\n{p.stdout}\n{p.stderr}"
    return p.stderr


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("spark-lake")
    shipped = SHIPPED_SCHEMA.read_text()
    # The schema before evolution: the shipped one without `currency`, price narrower.
    older = re.sub(r"\n  currency:\n(?:    .*\n)+", "\n", shipped).replace("decimal(12,2)", "decimal(10,2)")
    assert "currency" not in schema_fields(older) and "decimal(10,2)" in older
    (tmp / "older.yaml").write_text(older)
    new_fields, old_fields = set(schema_fields(shipped)), set(schema_fields(older))

    lk = Lake(tmp / "wh")
    env = {"WAREHOUSE": lk.warehouse, "COMMIT_INTERVAL": "0.3s"}
    lk.started_us = time.time_ns() // 1000

    # ~65 s of event time from 23:59:20: two days; rate-limited, so several interval commits
    log = run_ecflow(env, SCHEMA=tmp / "older.yaml", NDJSON=tmp / "run1.ndjson", COUNT=RUN1, RATE=4000,
                     SEED=7, START="2024-03-01T23:59:20Z")
    assert f"{RUN1} durable, 0 failed" in log, log
    lk.events += read_truth(tmp / "run1.ndjson", old_fields)
    lk.note_run()

    srv = Server(tmp, pipeline="spark_reader", profile="http", SCHEMA=SHIPPED_SCHEMA,
                 NDJSON=tmp / "run2.ndjson", **env)
    try:
        body = "\n".join(json.dumps(e, ensure_ascii=False) for e in EDGE)
        status, _, answer = srv.post(body, content_type="application/x-ndjson")
        assert (status, answer) == (200, {"accepted": len(EDGE)}), answer
    finally:
        srv.stop()
    assert "evolved table" in srv.log_path.read_text()
    lk.events += read_truth(tmp / "run2.ndjson", new_fields)
    lk.note_run()

    log = run_ecflow(env, SCHEMA=SHIPPED_SCHEMA, NDJSON=tmp / "run3.ndjson", COUNT=RUN3, SEED=8,
                     START="2024-03-05T10:00:00Z")
    assert f"{RUN3} durable, 0 failed" in log, log
    lk.events += read_truth(tmp / "run3.ndjson", new_fields)
    lk.note_run()
    lk.finished_us = time.time_ns() // 1000

    assert len(lk.events) == RUN1 + len(EDGE) + RUN3
    assert len({e["event_id"] for e, _ in lk.events}) == len(lk.events)
    assert len(lk.run_snapshots[0]) >= 3 and all(lk.run_snapshots), lk.run_snapshots
    return lk


# ------------------------------------------------------------------ Spark


def runtime_jar():
    given = os.environ.get("ICEBERG_SPARK_JAR")
    if given:
        assert Path(given).is_file(), f"ICEBERG_SPARK_JAR={given}: no such file"
        return given
    cache = Path(os.environ.get("ECFLOW_CACHE", Path.home() / ".cache" / "ecflow")) / "spark"
    jars = sorted(cache.glob("iceberg-spark-runtime-*.jar"))
    if len(jars) != 1:
        pytest.fail(f"need exactly one iceberg-spark-runtime jar in {cache} (found {len(jars)}) or "
                    f"ICEBERG_SPARK_JAR: bash scripts/test-spark.sh fetches it")
    return str(jars[0])


@pytest.fixture(scope="module")
def spark(lake, tmp_path_factory):
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        pytest.fail("pyspark is not installed: bash scripts/test-spark.sh installs it")
    with pytest.MonkeyPatch.context() as mp:
        # Spark otherwise binds its driver and block manager to the first non-loopback address.
        mp.setenv("SPARK_LOCAL_IP", "127.0.0.1")
        mp.setenv("PYSPARK_PYTHON", sys.executable)
        session = (
            SparkSession.builder.master("local[2]").appName("ecflow-spark-reader")
            .config("spark.jars", runtime_jar())
            .config("spark.driver.host", "127.0.0.1")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.driver.memory", "1g")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.shuffle.partitions", "2")
            # the final plan is then the executed one, whose scan metrics the pruning test reads
            .config("spark.sql.adaptive.enabled", "false")
            .config("spark.sql.warehouse.dir", str(tmp_path_factory.mktemp("spark-sql-warehouse")))
            # not UTC, so nothing passes by accident of the session zone
            .config("spark.sql.session.timeZone", "America/Sao_Paulo")
            .config("spark.sql.extensions",
                    "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions")
            .config("spark.sql.catalog.lake", "org.apache.iceberg.spark.SparkCatalog")
            .config("spark.sql.catalog.lake.type", "hadoop")
            .config("spark.sql.catalog.lake.warehouse", lake.warehouse.as_uri())
            .getOrCreate())
        session.sparkContext.setLogLevel("ERROR")
        try:
            yield session
        finally:
            session.stop()


T = "lake.ecommerce.events"


def one(spark, sql):
    return spark.sql(sql).collect()[0][0]


def rows_by_id(df):
    """Every row keyed by event_id; timestamps as µs since the epoch, free of any time zone."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import TimestampType
    cols = [F.unix_micros(F.col(f.name)).alias(f.name) if isinstance(f.dataType, TimestampType)
            else F.col(f.name) for f in df.schema.fields]
    return {r["event_id"]: r.asDict() for r in df.select(cols).collect()}


def scan_metrics(df):
    """Collect df and return (rows, the Iceberg batch scan's metrics)."""
    rows = df.collect()
    found = []

    def walk(node):
        if node.nodeName().startswith("BatchScan"):
            it = node.metrics().iterator()
            m = {}
            while it.hasNext():
                kv = it.next()
                m[kv._1()] = kv._2().value()
            found.append(m)
        children = node.children().iterator()
        while children.hasNext():
            walk(children.next())

    walk(df._jdf.queryExecution().executedPlan())
    assert len(found) == 1, found
    return rows, found[0]


# ------------------------------------------------------------------ tests


def test_every_row_reads_back_with_the_values_written(lake, spark):
    df = spark.table(T)
    got = rows_by_id(df)
    assert len(got) == df.count() == len(lake.events)
    for ev, run_fields in lake.events:
        row = got[ev["event_id"]]
        for field in df.schema.fields:
            if field.name == "ingest_time":
                assert lake.started_us <= row[field.name] <= lake.finished_us
            elif field.name == "extras":
                assert json.loads(row["extras"], parse_float=decimal.Decimal) == \
                    expected_value(field, ev, run_fields), ev
            else:
                assert row[field.name] == expected_value(field, ev, run_fields), (field.name, ev)
    # the edge cases, spelled out
    u = got["edge-unicode"]
    assert u["query"] == EDGE[0]["query"] and "\x00" in u["query"] and u["location"] == "東京 🗼"
    assert (got["edge-nulls"]["location"], got["edge-nulls"]["page_url"]) == (None, None)
    assert got["edge-offset"]["price"] == decimal.Decimal("9999999999.99")
    assert got["edge-pre-epoch"]["timestamp"] == -1
    assert got["edge-pre-epoch"]["event_date"] == dt.date(1969, 12, 31)
    assert sum(1 for r in got.values() if r["location"] == "São Paulo") > 100
    # rows written before `currency` existed read it as null (it went to extras then)
    old = next(ev for ev, fields in lake.events if "currency" not in fields and "currency" in ev)
    assert got[old["event_id"]]["currency"] is None
    assert json.loads(got[old["event_id"]]["extras"]) == {"currency": old["currency"]}

    by_path = spark.read.format("iceberg").load(str(lake.table))
    assert by_path.schema == df.schema
    assert rows_by_id(by_path) == got


def test_types_are_iceberg_types_and_timestamps_are_instants(lake, spark):
    from pyspark.sql.types import DateType, DecimalType, LongType, StringType, TimestampType
    fields = {f.name: f for f in spark.table(T).schema.fields}
    want = {"event_id": (StringType(), False), "event_type": (StringType(), False),
            "user_id": (StringType(), False), "location": (StringType(), True),
            "timestamp": (TimestampType(), False), "price": (DecimalType(12, 2), True),
            "quantity": (LongType(), True), "currency": (StringType(), True),
            "event_date": (DateType(), False), "ingest_time": (TimestampType(), False),
            "extras": (StringType(), False)}
    for name, (typ, nullable) in want.items():
        assert (fields[name].dataType, fields[name].nullable) == (typ, nullable), name
    # TimestampType is Spark's instant type (timestamptz); timestamp without zone would be NTZ.
    # The same instant renders per session zone and its µs never move.
    sql = f"SELECT cast(timestamp AS string), unix_micros(timestamp) FROM {T} WHERE event_id = '%s'"
    for zone, pre_epoch, offset in [("UTC", "1969-12-31 23:59:59.999999", "2024-03-02 20:00:00.5"),
                                    ("Asia/Kolkata", "1970-01-01 05:29:59.999999", "2024-03-03 01:30:00.5")]:
        spark.conf.set("spark.sql.session.timeZone", zone)
        try:
            assert tuple(spark.sql(sql % "edge-pre-epoch").collect()[0]) == (pre_epoch, -1)
            assert tuple(spark.sql(sql % "edge-offset").collect()[0]) == (offset, 1709409600500000)
        finally:
            spark.conf.set("spark.sql.session.timeZone", "America/Sao_Paulo")


def test_partitions_and_file_metrics_agree_with_the_rows(lake, spark):
    want = collections.Counter((ev["event_type"], utc_day(epoch_us(ev["timestamp"]))) for ev, _ in lake.events)
    parts = spark.sql(f"SELECT partition.event_type, partition.timestamp_day, record_count, file_count, spec_id "
                      f"FROM {T}.partitions").collect()
    assert {(p[0], p[1]): p[2] for p in parts} == dict(want)
    assert ("add_to_cart", dt.date(1969, 12, 31)) in want and ("purchase", dt.date(2024, 3, 2)) in want
    assert {p["spec_id"] for p in parts} == {0}

    files = spark.sql(f"SELECT file_path, partition, record_count, readable_metrics, null_value_counts "
                      f"FROM {T}.files").collect()
    assert sum(p["file_count"] for p in parts) == len(files)
    # the same facts recomputed from the rows of each file (_file is Iceberg's metadata column)
    per_file = {r[0]: r for r in spark.sql(
        f"SELECT _file, count(*), min(unix_micros(timestamp)), max(unix_micros(timestamp)), count(query), "
        f"min(event_type), max(event_type), min(price), max(price) FROM {T} GROUP BY _file").collect()}
    assert set(per_file) == {f["file_path"] for f in files}
    for f in files:
        _, n, ts_lo, ts_hi, n_query, et_lo, et_hi, p_lo, p_hi = per_file[f["file_path"]]
        assert f["record_count"] == n
        assert et_lo == et_hi == f["partition"]["event_type"]
        assert utc_day(ts_lo) == utc_day(ts_hi) == f["partition"]["timestamp_day"]
        m = f["readable_metrics"]
        assert m["query"]["null_value_count"] == n - n_query
        assert (m["price"]["lower_bound"], m["price"]["upper_bound"]) == (p_lo, p_hi)
    bounds = {r[0]: (r[1], r[2]) for r in spark.sql(
        f"SELECT file_path, unix_micros(readable_metrics.timestamp.lower_bound), "
        f"unix_micros(readable_metrics.timestamp.upper_bound) FROM {T}.files").collect()}
    assert bounds == {p: (r[2], r[3]) for p, r in per_file.items()}


def test_every_snapshot_reads_as_of_its_own_commit(lake, spark):
    meta = lake.metadata()
    ids = [s["snapshot-id"] for s in meta["snapshots"]]
    snaps = spark.sql(f"SELECT snapshot_id, parent_id, operation, summary FROM {T}.snapshots "
                      f"ORDER BY committed_at, snapshot_id").collect()
    assert sorted(s["snapshot_id"] for s in snaps) == sorted(ids)
    assert [s for run in lake.run_snapshots for s in run] == ids
    assert [s["parent_id"] for s in sorted(snaps, key=lambda s: ids.index(s["snapshot_id"]))] == [None] + ids[:-1]
    assert {s["operation"] for s in snaps} == {"append"}
    history = spark.sql(f"SELECT snapshot_id, is_current_ancestor FROM {T}.history").collect()
    assert sorted(h[0] for h in history) == sorted(ids) and all(h[1] for h in history)

    totals = {s["snapshot_id"]: int(s["summary"]["total-records"]) for s in snaps}
    for sid in ids:
        # count(*) may be answered from manifest record counts; count(DISTINCT) reads the rows
        assert one(spark, f"SELECT count(*) FROM {T} VERSION AS OF {sid}") == totals[sid]
        assert one(spark, f"SELECT count(DISTINCT event_id) FROM {T} VERSION AS OF {sid}") == totals[sid]
    ends = [run[-1] for run in lake.run_snapshots]
    assert [totals[s] for s in ends] == [RUN1, RUN1 + len(EDGE), RUN1 + len(EDGE) + RUN3]
    assert [totals[s] for s in ids] == sorted(totals[s] for s in ids)

    # a snapshot from before the evolution reads with the schema it was written with
    from pyspark.sql.types import DecimalType
    old = spark.sql(f"SELECT * FROM {T} VERSION AS OF {lake.run_snapshots[0][-1]}")
    assert "currency" not in old.columns and old.schema["price"].dataType == DecimalType(10, 2)
    assert "currency" in spark.table(T).columns


def test_a_filter_on_event_type_or_day_reads_only_those_files(lake, spark):
    """Pruning as the scan itself reports it: manifests whose partition summaries exclude the
    filter are skipped whole (the day case: only run 3's manifests hold 2024-03-05), and within
    the rest, files of other partitions are skipped (the event_type case)."""
    events = [ev for ev, _ in lake.events]
    total = one(spark, f"SELECT count(*) FROM {T}.files")
    manifests = spark.sql(f"SELECT partition_summaries, added_data_files_count + existing_data_files_count "
                          f"FROM {T}.manifests").collect()
    assert sum(m[1] for m in manifests) == total
    cases = [
        ("event_type = 'purchase'", "partition.event_type = 'purchase'",
         sum(1 for e in events if e["event_type"] == "purchase"),
         lambda summaries: not summaries[0]["lower_bound"] <= "purchase" <= summaries[0]["upper_bound"]),
        ("timestamp >= TIMESTAMP '2024-03-05 00:00:00Z'", "partition.timestamp_day >= DATE '2024-03-05'",
         RUN3, lambda summaries: summaries[1]["upper_bound"] < "2024-03-05"),
    ]
    for where, part_where, n_rows, excluded in cases:
        files = one(spark, f"SELECT count(*) FROM {T}.files WHERE {part_where}")
        assert 0 < files < total, where
        skipped = [m for m in manifests if excluded(m[0])]
        rows, m = scan_metrics(spark.sql(f"SELECT event_id FROM {T} WHERE {where}"))
        assert len(rows) == n_rows, where
        assert m["resultDataFiles"] == files, (where, m)
        assert m["skippedDataManifests"] == len(skipped), (where, m)
        assert m["skippedDataFiles"] == total - files - sum(s[1] for s in skipped), (where, m)
    assert m["skippedDataManifests"] > 0


def test_spark_duckdb_and_pyiceberg_count_the_same(lake, spark, readers):
    want = collections.Counter(ev["event_type"] for ev, _ in lake.events)
    by_spark = dict(spark.sql(f"SELECT event_type, count(*) FROM {T} GROUP BY 1").collect())
    con = duck()
    by_duck = dict(con.execute(f"SELECT event_type, count(*) FROM iceberg_scan('{lake.table}') GROUP BY 1")
                   .fetchall())
    arrow = readers["StaticTable"].from_metadata(latest_metadata(lake.table)).scan().to_arrow()
    by_pyiceberg = collections.Counter(arrow.column("event_type").to_pylist())
    assert by_spark == by_duck == dict(by_pyiceberg) == dict(want)
    assert one(spark, f"SELECT count(*) FROM {T}") == arrow.num_rows == \
        con.execute(f"SELECT count(*) FROM iceberg_scan('{lake.table}')").fetchone()[0] == len(lake.events)


# "file-uri": Spark then records every location as a file:/ URI, which sink-iceberg's
# local IO must resolve (plugins/sink-iceberg/file_io.c, local_path) to commit on top.
@pytest.mark.parametrize("warehouse_as", ["path", "file-uri"])
def test_ecflow_appends_after_spark_compacts(tmp_path, spark, readers, warehouse_as):
    """Spark's rewrite_data_files (a `replace` snapshot, manifests and data files written by
    Java) and then an ecflow commit on top of it: both directions of interop."""
    wh = tmp_path / "wh"
    table = wh / "ecommerce" / "compacted"
    env = {"WAREHOUSE": wh, "TABLE": "ecommerce.compacted", "SCHEMA": SHIPPED_SCHEMA,
           "NDJSON": tmp_path / "truth.ndjson"}
    run_ecflow(env, COUNT=3000, RATE=6000, COMMIT_INTERVAL="0.2s", START="2024-03-01T12:00:00Z")
    cat = f"compact_{warehouse_as.replace('-', '_')}"
    spark.conf.set(f"spark.sql.catalog.{cat}", "org.apache.iceberg.spark.SparkCatalog")
    spark.conf.set(f"spark.sql.catalog.{cat}.type", "hadoop")
    spark.conf.set(f"spark.sql.catalog.{cat}.warehouse", wh.as_uri() if warehouse_as == "file-uri" else str(wh))
    spark.conf.set(f"spark.sql.catalog.{cat}.cache-enabled", "false")
    t = f"{cat}.ecommerce.compacted"
    files_before = one(spark, f"SELECT count(*) FROM {t}.files")
    r = spark.sql(f"CALL {cat}.system.rewrite_data_files(table => 'ecommerce.compacted', "
                  f"options => map('min-input-files', '2'))").collect()[0]
    assert files_before >= r["rewritten_data_files_count"] > r["added_data_files_count"] > 0
    assert one(spark, f"SELECT count(DISTINCT event_id) FROM {t}") == 3000

    run_ecflow(env, COUNT=1000, SEED=9, START="2024-03-01T13:00:00Z", NDJSON=tmp_path / "more.ndjson")
    snaps = spark.sql(f"SELECT operation, summary['total-records'] FROM {t}.snapshots "
                      f"ORDER BY committed_at").collect()
    assert [tuple(s) for s in snaps[-2:]] == [("replace", "3000"), ("append", "4000")]
    assert one(spark, f"SELECT count(DISTINCT event_id) FROM {t}") == 4000
    con = duck()
    assert con.execute(f"SELECT count(*) FROM iceberg_scan('{table}')").fetchone()[0] == 4000
    static = readers["StaticTable"].from_metadata(latest_metadata(table))
    assert static.scan().to_arrow().num_rows == 4000


def test_spark_reads_what_ecflow_maintenance_left_and_time_travels(tmp_path, spark, readers):
    """ecflow's compaction (a `replace` snapshot, one merged manifest with DELETED and EXISTING
    entries) and expiry, read by the Java reference implementation: every row once, every kept
    snapshot as of its commit, the same as DuckDB and pyiceberg."""
    wh = tmp_path / "wh"
    table = wh / "ecommerce" / "maintained"
    env = {"WAREHOUSE": wh, "TABLE": "ecommerce.maintained", "SCHEMA": SHIPPED_SCHEMA,
           "NDJSON": tmp_path / "truth.ndjson"}
    run_ecflow(env, COUNT=6000, RATE=6000, COMMIT_INTERVAL="0.1s", START="2024-03-01T12:00:00Z")
    knobs = {**env, "COMPACT_MIN_FILES": 2, "KEEP_LAST": 3, "MAX_AGE": "1s", "COMMIT_INTERVAL": "1s"}
    time.sleep(1.2)  # every snapshot older than MAX_AGE: expiry keeps KEEP_LAST
    p = subprocess.run([str(ECFLOW), "table", "all", str(PIPELINE)], env=ecflow_env(**knobs),
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and "compact:" in p.stdout, p.stdout + p.stderr
    spark.conf.set("spark.sql.catalog.maint", "org.apache.iceberg.spark.SparkCatalog")
    spark.conf.set("spark.sql.catalog.maint.type", "hadoop")
    spark.conf.set("spark.sql.catalog.maint.warehouse", str(wh))
    spark.conf.set("spark.sql.catalog.maint.cache-enabled", "false")
    t = "maint.ecommerce.maintained"
    assert one(spark, f"SELECT count(*) FROM {t}") == 6000
    assert one(spark, f"SELECT count(DISTINCT event_id) FROM {t}") == 6000
    snaps = spark.sql(f"SELECT snapshot_id, operation, summary FROM {t}.snapshots").collect()
    assert len(snaps) == 3 and "replace" in {s["operation"] for s in snaps}
    for s in snaps:
        total = int(s["summary"]["total-records"])
        assert one(spark, f"SELECT count(DISTINCT event_id) FROM {t} VERSION AS OF {s['snapshot_id']}") == total
    assert one(spark, f"SELECT count(*) FROM {t}.files") < 20
    meta = latest_metadata(table)
    con = duck()
    assert con.execute(f"SELECT count(DISTINCT event_id) FROM iceberg_scan('{meta}')").fetchone()[0] == 6000
    assert readers["StaticTable"].from_metadata(meta).scan().to_arrow().num_rows == 6000
