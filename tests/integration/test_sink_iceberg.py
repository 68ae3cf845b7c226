"""sink-iceberg end to end: the real `ecflow` binary writes Iceberg tables; readers nobody
here wrote read them back.

Pipeline (pipelines/sink_iceberg.yaml): source-generate -> sink-file (the NDJSON ground truth)
and source-generate -> transform-records (a fixture that parses the JSON into Arrow records
and pretends the messages came from Kafka topic `events`, 3 partitions) -> sink-iceberg.

Readers, installed from PyPI by the session fixture when missing (pins below): pyarrow
(each Parquet data file: schema field ids, logical types, statistics), pyiceberg
(StaticTable: scans, time travel, scan planning, inspect.files metrics) and DuckDB with its
iceberg extension loaded from the `duckdb-extension-iceberg` wheel (no network needed).

Environment: ECFLOW_BIN, ECFLOW_PLUGIN_PATH (build/plugins and the fixture directory).
"""

import datetime as dt
import decimal
import glob
import json
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ECFLOW, ROOT
from harness import duck

# Not conftest's PLUGIN_PATH: the default adds the transform-records fixture's directory.
PLUGIN_PATH = os.environ.get(
    "ECFLOW_PLUGIN_PATH",
    f"{ROOT / 'build' / 'plugins'}:{ROOT / 'build' / 'plugins' / 'sink-iceberg' / 'tests' / 'fixtures'}",
)
PIPELINE = Path(__file__).resolve().parent / "pipelines" / "sink_iceberg.yaml"

# Exact pins: the DuckDB extension wheel must match the duckdb version.
READERS = ["duckdb==1.5.5", "duckdb-extension-iceberg==1.5.5", "duckdb-extension-avro==1.5.5",
           "pyiceberg==0.12.0", "pyarrow==26.0.1"]

pytestmark = pytest.mark.skipif(not ECFLOW.exists(), reason=f"{ECFLOW} not built")

FULL_SCHEMA = ("event_id:u!,event_type:u!,user_id:u!,session_id:u,location:u,device:u,"
               "timestamp:tsu:UTC!,query:u,page_url:u,product_id:u,price:d:10,2,quantity:i,"
               "currency:u,event_date:tdD")
STRING_COLS = ["event_id", "event_type", "user_id", "session_id", "location", "device", "query",
               "page_url", "product_id", "currency"]


# ------------------------------------------------------------------ readers


@pytest.fixture(scope="session")
def readers():
    try:
        import duckdb, pyarrow, pyiceberg, duckdb_extension_iceberg, duckdb_extension_avro  # noqa
        import importlib.metadata as md
        ok = md.version("duckdb") == md.version("duckdb-extension-iceberg")
    except ImportError:
        ok = False
    if not ok:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", *READERS], check=True)
    import duckdb
    import pyarrow.parquet as pq
    from pyiceberg.table import StaticTable
    return {"duckdb": duckdb, "pq": pq, "StaticTable": StaticTable}


# ------------------------------------------------------------------ harness


def run(tmp, expect_rc=0, **env):
    e = dict(os.environ)
    e.update({"ECFLOW_PLUGIN_PATH": PLUGIN_PATH, "WAREHOUSE": str(tmp / "wh"),
              "NDJSON": str(tmp / env.pop("ndjson_name", "truth.ndjson"))})
    e.update({k: str(v) for k, v in env.items()})
    p = subprocess.run([str(ECFLOW), "run", str(PIPELINE)], env=e, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == expect_rc, f"exit {p.returncode}:\n{p.stdout}\n{p.stderr}"
    return p.stdout + p.stderr


def truth(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def table_dir(tmp, name="shop/events"):
    return tmp / "wh" / name


def latest_metadata(t):
    files = glob.glob(str(t / "metadata" / "v*.metadata.json"))
    return max(files, key=lambda p: int(Path(p).name[1:].split(".")[0]))


def ts_us(s):
    d = dt.datetime.strptime(s[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.timezone.utc)
    return int(d.timestamp()) * 1_000_000 + int(s[20:23]) * 1000


def expected_row(ev):
    """The row the table must hold for a generated event."""
    row = {c: ev.get(c) for c in STRING_COLS}
    row["timestamp"] = ts_us(ev["timestamp"])
    row["price"] = decimal.Decimal(str(ev["price"])).quantize(decimal.Decimal("0.01")) if "price" in ev else None
    row["quantity"] = ev.get("quantity")
    row["event_date"] = (dt.date(1970, 1, 1) + dt.timedelta(days=row["timestamp"] // 86_400_000_000))
    return row


def arrow_row(r):
    out = dict(r)
    t = out["timestamp"]
    out["timestamp"] = int(t.timestamp()) * 1_000_000 + t.microsecond
    return out


# ------------------------------------------------------------------ tests


def test_partitioned_table_reads_back_exactly_in_every_reader(tmp_path, readers):
    # ~4.5 minutes of event time across midnight: 5 event types x 2 days; rate-limited so
    # commit_interval cuts several snapshots.
    log = run(tmp_path, COUNT=24000, RATE=12000, START="2024-03-01T23:57:30Z", COMMIT_INTERVAL="0.4s",
              PAGE_SIZE="16KiB")
    events = truth(tmp_path / "truth.ndjson")
    assert len(events) == 24000
    assert "24000 durable, 0 failed" in log
    t = table_dir(tmp_path)
    meta_path = latest_metadata(t)
    meta = json.loads(Path(meta_path).read_text())

    # --- table metadata as written
    assert meta["format-version"] == 2
    snaps = meta["snapshots"]
    assert len(snaps) >= 3, f"expected several commits, got {len(snaps)}"
    assert meta["refs"]["main"]["snapshot-id"] == meta["current-snapshot-id"] == snaps[-1]["snapshot-id"]
    assert [s["sequence-number"] for s in snaps] == list(range(1, len(snaps) + 1))
    assert meta["last-sequence-number"] == len(snaps)
    assert len(meta["snapshot-log"]) == len(snaps)
    assert len(meta["metadata-log"]) == len(glob.glob(str(t / "metadata" / "v*.metadata.json"))) - 1
    raw = Path(meta_path).read_text()
    assert f'"snapshot-id" : {snaps[-1]["snapshot-id"]}' in raw  # an integer, never a double
    last = snaps[-1]["summary"]
    assert last["operation"] == "append" and int(last["total-records"]) == 24000
    assert sum(int(s["summary"]["added-records"]) for s in snaps) == 24000
    offsets = json.loads(last["ecflow.kafka-offsets"])
    assert offsets == {"events": {"0": 8000, "1": 8000, "2": 8000}}

    # --- pyiceberg
    table = readers["StaticTable"].from_metadata(meta_path)
    schema = table.schema()
    types = {f.name: str(f.field_type) for f in schema.fields}
    assert types["timestamp"] == "timestamptz" and types["price"] == "decimal(10, 2)"
    assert types["event_date"] == "date" and types["quantity"] == "int" and types["event_id"] == "string"
    assert schema.find_field("event_id").required and not schema.find_field("query").required
    arrow = table.scan().to_arrow()
    assert arrow.num_rows == 24000
    by_id = {r["event_id"]: arrow_row(r) for r in arrow.to_pylist()}
    assert len(by_id) == 24000
    rnd = random.Random(1)
    sample = rnd.sample(events, 300) + [e for e in events if e["location"] == "São Paulo"][:20]
    for ev in sample:
        assert by_id[ev["event_id"]] == expected_row(ev), ev
    nulls = sum(1 for e in events if "query" not in e)
    assert arrow.column("query").null_count == nulls > 0

    # time travel: every snapshot sees exactly its total
    running = 0
    for s in snaps:
        running += int(s["summary"]["added-records"])
        assert table.scan(snapshot_id=s["snapshot-id"]).to_arrow().num_rows == running

    # partitions and metrics pyiceberg sees
    files = table.inspect.files().to_pylist()
    days = {ts_us(e["timestamp"]) // 86_400_000_000 for e in events}
    assert len(days) == 2
    parts = {(f["partition"]["event_type"], f["partition"]["timestamp_day"]) for f in files}
    assert len(parts) == 5 * 2
    pq = readers["pq"]
    fid = {f.name: f.field_id for f in schema.fields}
    for f in files:
        path = f["file_path"]
        assert os.path.getsize(path) == f["file_size_in_bytes"]
        data = pq.read_table(path)
        assert data.num_rows == f["record_count"]
        assert set(data.column("event_type").to_pylist()) == {f["partition"]["event_type"]}
        day0 = dt.date(1970, 1, 1) + dt.timedelta(days=0)
        for t_ in data.column("timestamp").to_pylist():
            assert (t_.date() - day0).days == (f["partition"]["timestamp_day"] - day0).days
        assert dict(f["null_value_counts"])[fid["query"]] == data.column("query").null_count
        assert dict(f["value_counts"])[fid["event_id"]] == data.num_rows
        lb = f["readable_metrics"]["timestamp"]
        ts = data.column("timestamp").to_pylist()
        assert lb["lower_bound"] == min(ts) and lb["upper_bound"] == max(ts)
        ev = f["readable_metrics"]["event_type"]
        assert ev["lower_bound"] == ev["upper_bound"] == f["partition"]["event_type"]

    # scan planning prunes by event_type and by day
    from pyiceberg.expressions import And, EqualTo, GreaterThanOrEqual
    all_files = len(list(table.scan().plan_files()))
    purchase = list(table.scan(row_filter=EqualTo("event_type", "purchase")).plan_files())
    assert 0 < len(purchase) < all_files
    assert all("event_type=purchase" in p.file.file_path for p in purchase)
    day2 = list(table.scan(row_filter=GreaterThanOrEqual("timestamp", "2024-03-02T00:00:00+00:00")).plan_files())
    assert 0 < len(day2) < all_files
    assert all("timestamp_day=2024-03-02" in p.file.file_path for p in day2)
    both = table.scan(row_filter=And(EqualTo("event_type", "purchase"),
                                     GreaterThanOrEqual("timestamp", "2024-03-02T00:00:00+00:00")))
    want = sum(1 for e in events if e["event_type"] == "purchase" and e["timestamp"] >= "2024-03-02")
    assert both.to_arrow().num_rows == want

    # --- pyarrow on every data file: field ids, logical types, statistics
    for f in files:
        pf = pq.ParquetFile(f["file_path"])
        md = pf.metadata
        assert md.created_by.startswith("ecflow version")
        for i, field in enumerate(pf.schema_arrow):
            assert int(field.metadata[b"PARQUET:field_id"]) == fid[field.name]
        assert str(pf.schema_arrow.field("timestamp").type) == "timestamp[us, tz=UTC]"
        assert str(pf.schema_arrow.field("price").type) == "decimal128(10, 2)"
        assert str(pf.schema_arrow.field("event_date").type) == "date32[day]"
        data = pf.read()
        for rg in range(md.num_row_groups):
            for c in range(md.num_columns):
                col = md.row_group(rg).column(c)
                st = col.statistics
                values = data.column(c).to_pylist()  # one row group per file here
                assert st.null_count == sum(v is None for v in values)
                nonnull = [v for v in values if v is not None]
                if nonnull:
                    assert st.has_min_max and st.min == min(nonnull) and st.max == max(nonnull), col.path_in_schema
        et = md.row_group(0).column(1)
        assert "RLE_DICTIONARY" in et.encodings and et.has_dictionary_page

    # --- DuckDB
    con = duck()
    assert con.execute(f"select count(*) from iceberg_scan('{t}')").fetchone()[0] == 24000
    desc = dict((r[0], r[1]) for r in con.execute(f"describe select * from iceberg_scan('{t}')").fetchall())
    assert desc["timestamp"] == "TIMESTAMP WITH TIME ZONE" and desc["price"] == "DECIMAL(10,2)"
    assert desc["event_date"] == "DATE" and desc["quantity"] == "INTEGER"
    ids = [e["event_id"] for e in sample]
    rows = con.execute(
        f"select event_id, event_type, user_id, session_id, location, device, query, page_url, product_id, "
        f"currency, epoch_us(timestamp), price, quantity, event_date from iceberg_scan('{t}') "
        f"where event_id in (select unnest(?))", [ids]).fetchall()
    got = {r[0]: r for r in rows}
    assert len(got) == len(set(ids))
    for ev in sample:
        exp = expected_row(ev)
        r = got[ev["event_id"]]
        assert list(r[:10]) == [exp[c] for c in STRING_COLS]
        assert (r[10], r[11], r[12], r[13]) == (exp["timestamp"], exp["price"], exp["quantity"],
                                                exp["event_date"])
    for s in snaps[:2]:
        n = con.execute(f"select count(*) from iceberg_scan('{t}', snapshot_from_id => {s['snapshot-id']})"
                        ).fetchone()[0]
        assert n == int(s["summary"]["total-records"])
    plan = con.execute(f"explain analyze select count(*) from iceberg_scan('{t}') "
                       f"where event_type = 'purchase'").fetchall()[0][1]
    n_read = int(plan.split("Total Files Read:")[1].split()[0])
    assert n_read == len(purchase) < all_files


def test_schema_evolves_across_runs_and_old_rows_read_as_null(tmp_path, readers):
    old = FULL_SCHEMA.replace(",currency:u", "")
    run(tmp_path, COUNT=3000, SCHEMA=old, ndjson_name="one.ndjson", SEED=1)
    # another (fake) topic: offsets from 0 again on "events" would be redeliveries
    log = run(tmp_path, COUNT=2000, SCHEMA=FULL_SCHEMA.replace("quantity:i", "quantity:l"),
              ndjson_name="two.ndjson", SEED=2, START="2024-03-05T10:00:00Z", TOPIC="events-2")
    assert "evolved table" in log
    first, second = truth(tmp_path / "one.ndjson"), truth(tmp_path / "two.ndjson")
    t = table_dir(tmp_path)
    meta = json.loads(Path(latest_metadata(t)).read_text())
    assert meta["current-schema-id"] == 1 and len(meta["schemas"]) == 2
    table = readers["StaticTable"].from_metadata(latest_metadata(t))
    types = {f.name: str(f.field_type) for f in table.schema().fields}
    assert types["quantity"] == "long" and types["currency"] == "string"
    assert not table.schema().find_field("currency").required
    arrow = table.scan().to_arrow()
    assert arrow.num_rows == 5000
    rows = {r["event_id"]: r for r in arrow.to_pylist()}
    for ev in first[:200]:
        assert rows[ev["event_id"]]["currency"] is None
        assert rows[ev["event_id"]]["quantity"] == ev.get("quantity")
    for ev in second[:200]:
        assert rows[ev["event_id"]]["currency"] == ev.get("currency")
    # the first snapshot still reads with what it had
    s0 = meta["snapshots"][0]["snapshot-id"]
    assert table.scan(snapshot_id=s0).to_arrow().num_rows == 3000
    con = duck()
    assert con.execute(f"select count(*), count(currency) from iceberg_scan('{t}')").fetchone() == (
        5000, sum(1 for e in second if "currency" in e))
    assert con.execute(f"select typeof(quantity) from iceberg_scan('{t}') limit 1").fetchone()[0] == "BIGINT"


def test_incompatible_input_is_refused_with_the_column_named(tmp_path, readers):
    run(tmp_path, COUNT=100)
    log = run(tmp_path, expect_rc=2, COUNT=100, SCHEMA=FULL_SCHEMA.replace("quantity:i", "quantity:u"))
    assert "column 'quantity' is int in the table but string in the input" in log


def test_bounded_memory_rolls_many_files_and_loses_nothing(tmp_path, readers):
    log = run(tmp_path, COUNT=30000, START="2024-03-01T00:00:00Z", TARGET_FILE_SIZE="64KiB",
              ROW_GROUP_SIZE="16KiB", PAGE_SIZE="4KiB", MAX_OPEN=4, MAX_BUFFERED="64KiB",
              TABLE="shop.hourly")
    # partition_by comes from the pipeline default; the pipeline file keeps it
    events = truth(tmp_path / "truth.ndjson")
    t = table_dir(tmp_path, "shop/hourly")
    table = readers["StaticTable"].from_metadata(latest_metadata(t))
    files = table.inspect.files().to_pylist()
    parts = {(f["partition"]["event_type"], f["partition"]["timestamp_day"]) for f in files}
    assert len(files) > len(parts) * 2  # rolled by size and by the open-file cap
    assert table.scan().to_arrow().num_rows == len(events) == 30000
    pq = readers["pq"]
    assert sum(pq.ParquetFile(f["file_path"]).metadata.num_row_groups for f in files) > len(files)
    assert sum(pq.read_metadata(f["file_path"]).num_rows for f in files) == 30000
    con = duck()
    assert con.execute(f"select count(distinct event_id) from iceberg_scan('{t}')").fetchone()[0] == 30000


def test_a_file_the_disk_cannot_take_fails_naming_the_file_and_the_os_reason(tmp_path):
    """A data file whose write fails while it streams out (larger than the IO's buffer) names
    the file and the OS reason, as a small one failing at close does. Past RLIMIT_FSIZE,
    write(2) fails with EFBIG, as it would with ENOSPC on a full disk."""
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of the signal
        resource.setrlimit(resource.RLIMIT_FSIZE, (300 << 10, 300 << 10))

    e = dict(os.environ, ECFLOW_PLUGIN_PATH=PLUGIN_PATH, WAREHOUSE=str(tmp_path / "wh"),
             NDJSON="/dev/null", COUNT="100000")
    p = subprocess.run([str(ECFLOW), "run", str(PIPELINE)], env=e, capture_output=True, text=True,
                       timeout=300, preexec_fn=limit)
    log = p.stdout + p.stderr
    assert p.returncode == 1, log[-3000:]
    failed = re.findall(r"error \[lake\] cannot write \S+/data/\S+\.parquet(.*)$", log, re.M)
    assert failed and all(reason == ": File too large" for reason in failed), log[-3000:]


def test_data_files_that_cannot_be_created_fail_the_commit_and_leak_nothing(tmp_path):
    """Every batch tries to open a new file for its partitions and fails (here `data` is a
    regular file, so no directory can be made under it, even as root): the error names the
    path and the OS reason, the commit fails, and each failed attempt frees what it took
    (the sanitizer builds check the last part)."""
    run(tmp_path, COUNT=100)
    data = table_dir(tmp_path) / "data"
    shutil.rmtree(data)
    data.write_text("not a directory\n")
    log = run(tmp_path, expect_rc=1, COUNT=5000, BATCH=250)
    assert re.search(rf"error \[lake\] cannot create directory {re.escape(str(data))}/\S+: "
                     r"Not a directory", log), log[-3000:]
    assert "LeakSanitizer" not in log and "AddressSanitizer" not in log, log[-5000:]


@pytest.mark.parametrize("codec", ["snappy", "none"])
def test_other_codecs_read_back(tmp_path, readers, codec):
    run(tmp_path, COUNT=2000, CODEC=codec)
    t = table_dir(tmp_path)
    pq = readers["pq"]
    for f in glob.glob(str(t / "data" / "**" / "*.parquet"), recursive=True):
        assert pq.ParquetFile(f).metadata.row_group(0).column(0).compression == codec.upper().replace(
            "NONE", "UNCOMPRESSED")
    con = duck()
    assert con.execute(f"select count(*) from iceberg_scan('{t}')").fetchone()[0] == 2000


def test_concurrent_writers_both_commit_through_conflicts(tmp_path, readers):
    env = dict(os.environ, ECFLOW_PLUGIN_PATH=PLUGIN_PATH, WAREHOUSE=str(tmp_path / "wh"),
               COMMIT_INTERVAL="0.1s", RATE="4000", COUNT="8000")
    run(tmp_path, COUNT=10)  # create the table first
    procs = []
    for i in range(2):
        # each writer its own (fake) topic: the same topic and offsets from a writer with the
        # same writer id would be redeliveries of what the other one committed
        e = dict(env, NDJSON=str(tmp_path / f"w{i}.ndjson"), SEED=str(100 + i), TOPIC=f"events-w{i}")
        procs.append(subprocess.Popen([str(ECFLOW), "run", str(PIPELINE)], env=e, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    t = table_dir(tmp_path)
    meta = json.loads(Path(latest_metadata(t)).read_text())
    seqs = [s["sequence-number"] for s in meta["snapshots"]]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    table = readers["StaticTable"].from_metadata(latest_metadata(t))
    assert table.scan().to_arrow().num_rows == 16010
    con = duck()
    assert con.execute(f"select count(distinct event_id) from iceberg_scan('{t}')").fetchone()[0] == 16010


def test_redelivered_kafka_records_are_not_written_twice(tmp_path, readers):
    """The same (fake) Kafka records again: below the positions this writer stored in the
    table, so they are acked and skipped; a new writer id starts from nothing."""
    run(tmp_path, COUNT=3000, SEED=5, COMMIT_INTERVAL="0.3s")
    again = run(tmp_path, COUNT=3000, SEED=5, ndjson_name="again.ndjson")
    assert "skipping redelivered records below offset 1000" in again, again
    t = table_dir(tmp_path)
    meta = json.loads(Path(latest_metadata(t)).read_text())
    last = meta["snapshots"][-1]["summary"]
    assert last["ecflow.writer-id"] == "iceberg-test/lake"
    assert json.loads(last["ecflow.kafka-offsets"]) == {"events": {"0": 1000, "1": 1000, "2": 1000}}
    table = readers["StaticTable"].from_metadata(latest_metadata(t))
    assert table.scan().to_arrow().num_rows == 3000
    con = duck()
    assert con.execute(f"select count(*), count(distinct event_id) from iceberg_scan('{t}')"
                       ).fetchone() == (3000, 3000)


def test_uncommitted_rows_are_bounded_by_early_commits(tmp_path, readers):
    """max_uncommitted_rows bounds what waits for a commit (each row holds its ack until then),
    however long commit_interval is: the rows go out in several snapshots, each at most the
    bound plus the batch that reached it, every row once."""
    log = run(tmp_path, COUNT=20000, BATCH=500, COMMIT_INTERVAL="1h", MAX_UNCOMMITTED=3000)
    assert "20000 durable, 0 failed" in log
    assert "(rows)" in log, log  # the commit's reason
    t = table_dir(tmp_path)
    meta = json.loads(Path(latest_metadata(t)).read_text())
    added = [int(s["summary"]["added-records"]) for s in meta["snapshots"]]
    assert sum(added) == 20000
    assert len(added) >= 20000 // 3500, added
    assert max(added) <= 3000 + 500, added
    con = duck()
    assert con.execute(f"select count(*), count(distinct event_id) from iceberg_scan('{t}')"
                       ).fetchone() == (20000, 20000)


def test_writer_threads_share_one_commit_and_write_every_row_once(tmp_path, readers):
    """writer_threads: 3 encoders write files of their own, and one commit takes them all (one
    snapshot, not three); the table holds exactly the generated events, field for field."""
    log = run(tmp_path, COUNT=20000, BATCH=500, COMMIT_INTERVAL="1h", WRITER_THREADS=3,
              MAX_BUFFERED="256KiB", ROW_GROUP_SIZE="64KiB")
    assert "20000 durable, 0 failed" in log
    events = truth(tmp_path / "truth.ndjson")
    t = table_dir(tmp_path)
    meta = json.loads(Path(latest_metadata(t)).read_text())
    assert len(meta["snapshots"]) == 1, [s["summary"] for s in meta["snapshots"]]
    assert int(meta["snapshots"][0]["summary"]["added-records"]) == 20000
    table = readers["StaticTable"].from_metadata(latest_metadata(t))
    files = [f["file_path"] for f in table.inspect.files().to_pylist()]
    writers = {re.search(r"-w(\d+)-\d+\.parquet$", f).group(1) for f in files}
    assert writers == {"0", "1", "2"}, files
    got = {r["event_id"]: r for r in table.scan().to_arrow().to_pylist()}
    assert len(got) == 20000 == table.scan().to_arrow().num_rows
    for ev in events:
        r = got[ev["event_id"]]
        assert (r["event_type"], r["user_id"], r["session_id"]) == \
            (ev["event_type"], ev["user_id"], ev.get("session_id"))
