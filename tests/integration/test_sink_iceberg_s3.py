"""sink-iceberg on S3 and through an Iceberg REST catalog, against a real SeaweedFS (S3 and
its REST catalog in one process, from tests/services/seaweedfs.sh), read back by independent
readers: pyiceberg (through the catalog and from the metadata file), DuckDB (ATTACH of the
REST catalog, iceberg_scan on S3) and pyarrow on the data files.

Faults the real server cannot be asked for (5xx, 429, stalls, an answer lost after the
commit was applied) come from fault_proxy.FaultProxy put in front of it.

The pipeline is pipelines/sink_iceberg.yaml (generated events, also written as NDJSON:
the truth the readers are compared with); each test uses its own table or prefix.
"""
import json
import os
import re
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from conftest import ECFLOW, PLUGIN_PATH, free_port
from fault_proxy import FaultProxy
from lakehouse import (duckdb_rest_connect, duckdb_rest_ids, load_duckdb_extensions, pyarrow_s3fs, pyiceberg_rest_catalog,
                       s3_request, seaweedfs)  # noqa: F401  (seaweedfs: the session fixture)

PIPELINE = Path(__file__).resolve().parent / "pipelines" / "sink_iceberg.yaml"
FIXTURES = ECFLOW.parent / "plugins" / "sink-iceberg" / "tests" / "fixtures"

pytestmark = pytest.mark.skipif(not ECFLOW.exists(), reason=f"{ECFLOW} not built")


def plugin_path():
    if any((Path(d) / "transform-records.so").exists() for d in PLUGIN_PATH.split(":") if d):
        return PLUGIN_PATH
    return f"{PLUGIN_PATH}:{FIXTURES}"


def env_for(sw, tmp, endpoint=None, **extra):
    e = dict(os.environ)
    for k in ("AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        e.pop(k, None)
    e.update({"ECFLOW_PLUGIN_PATH": plugin_path(), "NDJSON": str(tmp / "truth.ndjson"),
              "AWS_ACCESS_KEY_ID": sw["AWS_ACCESS_KEY_ID"],
              "AWS_SECRET_ACCESS_KEY": sw["AWS_SECRET_ACCESS_KEY"],
              "AWS_REGION": sw.get("AWS_REGION", "us-east-1"),
              "AWS_ENDPOINT_URL": endpoint or sw["S3_ENDPOINT"]})
    e.update({k: str(v) for k, v in extra.items()})
    return e


def run(sw, tmp, expect_rc=0, endpoint=None, cmd="run", **extra):
    p = subprocess.run([str(ECFLOW), cmd, str(PIPELINE)], env=env_for(sw, tmp, endpoint, **extra),
                       capture_output=True, text=True, timeout=600)
    log = p.stdout + p.stderr
    assert p.returncode == expect_rc, f"exit {p.returncode}:\n{log[-4000:]}"
    assert "AddressSanitizer" not in log and "runtime error:" not in log, log[-4000:]
    return log


def rest_env(sw, ns, uri=None, **extra):
    e = dict(CATALOG="rest", CATALOG_URI=uri or sw["ICEBERG_REST_URI"], CATALOG_CREDENTIAL=sw["ICEBERG_CREDENTIAL"],
             WAREHOUSE=sw["ICEBERG_WAREHOUSE"], TABLE=f"{ns}.events")
    e.update(extra)
    return e


def truth_ids(tmp):
    with open(tmp / "truth.ndjson", encoding="utf-8") as f:
        return sorted(json.loads(line)["event_id"] for line in f)


def s3_props(sw, endpoint=None):
    return {"s3.endpoint": endpoint or sw["S3_ENDPOINT"], "s3.access-key-id": sw["AWS_ACCESS_KEY_ID"],
            "s3.secret-access-key": sw["AWS_SECRET_ACCESS_KEY"], "s3.region": sw.get("AWS_REGION", "us-east-1"),
            "s3.path-style-access": "true"}


def latest_s3_metadata(sw, location):
    """s3://bucket/prefix/metadata/vN.metadata.json with the highest N."""
    fs = pyarrow_s3fs(sw)
    from pyarrow.fs import FileSelector
    path = location.removeprefix("s3://") + "/metadata"
    names = [i.base_name for i in fs.get_file_info(FileSelector(path))]
    versions = [int(m.group(1)) for n in names if (m := re.fullmatch(r"v(\d+)\.metadata\.json", n))]
    return f"s3://{path}/v{max(versions)}.metadata.json"


def static_table(sw, location):
    from pyiceberg.table import StaticTable
    return StaticTable.from_metadata(latest_s3_metadata(sw, location), properties=s3_props(sw))


def duck_s3(sw):
    import duckdb
    con = duckdb.connect()
    load_duckdb_extensions(con)
    host = sw["S3_ENDPOINT"].removeprefix("http://")
    con.execute(f"""CREATE SECRET (TYPE S3, KEY_ID '{sw['AWS_ACCESS_KEY_ID']}',
        SECRET '{sw['AWS_SECRET_ACCESS_KEY']}', REGION '{sw.get('AWS_REGION', 'us-east-1')}',
        ENDPOINT '{host}', URL_STYLE 'path', USE_SSL false)""")
    return con


def read_files_with_pyarrow(sw, table):
    import pyarrow.parquet as pq
    fs = pyarrow_s3fs(sw)
    ids = []
    for f in table.inspect.files().to_pylist():
        path = f["file_path"].removeprefix("s3://")
        md = pq.ParquetFile(fs.open_input_file(path)).metadata
        assert md.num_rows == f["record_count"]
        assert fs.get_file_info(path).size == f["file_size_in_bytes"]
        ids += pq.read_table(path, filesystem=fs, columns=["event_id"]).column("event_id").to_pylist()
    return sorted(ids)


# ------------------------------------------------------------------ happy paths


def test_file_catalog_on_s3_reads_back_in_pyiceberg_duckdb_and_pyarrow(tmp_path, seaweedfs):
    location = f"s3://{seaweedfs['S3_BUCKET']}/{uuid.uuid4().hex[:8]}"
    log = run(seaweedfs, tmp_path, WAREHOUSE=location, COUNT=5000)
    assert "committed snapshot" in log
    want = truth_ids(tmp_path)
    table = static_table(seaweedfs, f"{location}/shop/events")
    assert sorted(table.scan().to_arrow().column("event_id").to_pylist()) == want
    assert read_files_with_pyarrow(seaweedfs, table) == want
    con = duck_s3(seaweedfs)
    meta = latest_s3_metadata(seaweedfs, f"{location}/shop/events")
    got = con.execute(f"SELECT count(*), count(DISTINCT event_id) FROM iceberg_scan('{meta}')").fetchone()
    assert got == (5000, 5000)
    # the version hint names the latest version, for readers that trust it
    st, _, body = s3_request(seaweedfs, "GET", f"/{location.removeprefix('s3://')}/shop/events/metadata/version-hint.text")
    assert st == 200 and f"v{body.decode().strip()}.metadata.json" == meta.rsplit("/", 1)[1]


def test_rest_catalog_table_reads_back_in_every_reader_and_appends_on_a_second_run(tmp_path, seaweedfs):
    ns = f"ns_{uuid.uuid4().hex[:8]}"
    log = run(seaweedfs, tmp_path, COUNT=4000, CREATE_NAMESPACE="true", **rest_env(seaweedfs, ns))
    assert f"created namespace '{ns}'" in log and "created table" in log
    first = truth_ids(tmp_path)
    # a second run (other events) appends to the same table through the catalog
    (tmp_path / "second").mkdir()
    run(seaweedfs, tmp_path / "second", COUNT=3000, SEED=99, TOPIC="other", **rest_env(seaweedfs, ns))
    want = sorted(first + truth_ids(tmp_path / "second"))
    table = pyiceberg_rest_catalog(seaweedfs).load_table(f"{ns}.events")
    assert len(table.metadata.snapshots) == 2
    assert sorted(table.scan().to_arrow().column("event_id").to_pylist()) == want
    assert read_files_with_pyarrow(seaweedfs, table) == want
    con = duckdb_rest_connect(seaweedfs)
    got = con.execute(f"SELECT count(*), count(DISTINCT event_id) FROM lh.{ns}.events").fetchone()
    assert got == (7000, 7000)
    summary = table.metadata.snapshots[-1].summary
    assert summary["ecflow.writer-id"] == "iceberg-test/lake" and "ecflow.kafka-offsets" in summary.additional_properties


def test_large_files_stream_as_multipart_uploads_and_leave_none_unfinished(tmp_path, seaweedfs):
    prefix = uuid.uuid4().hex[:8]
    location = f"s3://{seaweedfs['S3_BUCKET']}/{prefix}"
    # one commit at the end (a slow build must not cut the files by commit_interval, nor
    # max_uncommitted_rows by its count)
    run(seaweedfs, tmp_path, WAREHOUSE=location, COUNT=600000, S3_PART_SIZE="5MiB",
        START="2024-03-01T00:00:00Z", BATCH=5000, COMMIT_INTERVAL="1h", MAX_UNCOMMITTED=1000000)
    table = static_table(seaweedfs, f"{location}/shop/events")
    sizes = [f["file_size_in_bytes"] for f in table.inspect.files().to_pylist()]
    assert max(sizes) > 5 << 20, sizes  # at least one file went out in several parts
    assert table.scan().to_arrow().num_rows == 600000
    st, _, body = s3_request(seaweedfs, "GET", f"/{seaweedfs['S3_BUCKET']}/", query=f"prefix={prefix}&uploads=")
    assert st == 200 and b"<Upload>" not in body, body[:2000]


# ------------------------------------------------------------------ bad input


def test_wrong_keys_a_missing_bucket_and_an_unknown_namespace_fail_at_start_naming_what(tmp_path, seaweedfs):
    location = f"s3://{seaweedfs['S3_BUCKET']}/{uuid.uuid4().hex[:8]}"
    log = run(seaweedfs, tmp_path, expect_rc=1, WAREHOUSE=location, COUNT=10,
              AWS_SECRET_ACCESS_KEY="not-the-secret")
    assert re.search(r"stage 'lake': s3 GET s3://\S+: HTTP 403 (SignatureDoesNotMatch|InvalidAccessKeyId|AccessDenied)",
                     log), log[-2000:]
    assert "not-the-secret" not in log
    log = run(seaweedfs, tmp_path, expect_rc=1, WAREHOUSE="s3://no-such-bucket-here/x", COUNT=10)
    assert "stage 'lake': s3 GET s3://no-such-bucket-here/" in log and "NoSuchBucket" in log, log[-2000:]
    log = run(seaweedfs, tmp_path, expect_rc=1, COUNT=10, **rest_env(seaweedfs, "no_such_ns"))
    assert f"has no namespace 'no_such_ns'" in log and seaweedfs["ICEBERG_REST_URI"] in log, log[-2000:]
    log = run(seaweedfs, tmp_path, expect_rc=1, COUNT=10,
              **rest_env(seaweedfs, "x", CATALOG_CREDENTIAL=f"{seaweedfs['AWS_ACCESS_KEY_ID']}:wrong"))
    assert "OAuth2 token from" in log and ":wrong" not in log, log[-2000:]


def test_validate_with_the_catalog_down_names_the_uri_that_did_not_answer(tmp_path, seaweedfs):
    uri = f"http://127.0.0.1:{free_port()}"
    log = run(seaweedfs, tmp_path, expect_rc=1, cmd="validate", S3_MAX_ATTEMPTS=2, **rest_env(seaweedfs, "x", uri=uri))
    assert uri in log and re.search(r"(Connection refused|Couldn't connect|Failed to connect)", log), log[-2000:]


# ------------------------------------------------------------------ faults


def test_s3_errors_and_stalls_are_retried_and_every_row_lands_once(tmp_path, seaweedfs):
    def rule(req):
        if req.method == "PUT" and req.path.endswith("/metadata/v2.metadata.json") and not lost:
            lost.append(req.n)  # the commit applied, its answer lost: the retry meets a 412
            return "lose-502"
        if req.n % 11 == 0:
            return "hang"
        if req.n % 5 == 0:
            return "503"
        if req.n % 7 == 0:
            return "500"
        if req.n % 13 == 0:
            return "429"
        return None

    lost = []
    location = f"s3://{seaweedfs['S3_BUCKET']}/{uuid.uuid4().hex[:8]}"
    with FaultProxy(seaweedfs["S3_ENDPOINT"], hang_s=2.5) as proxy:
        proxy.rule = rule
        run(seaweedfs, tmp_path, endpoint=proxy.url, WAREHOUSE=location, COUNT=20000,
            TARGET_FILE_SIZE="64KiB", ROW_GROUP_SIZE="32KiB", S3_TIMEOUT="1s", S3_MAX_ATTEMPTS=10)
    assert lost and all(proxy.counts.get(f, 0) > 0 for f in ("hang", "503", "500", "429")), proxy.counts
    table = static_table(seaweedfs, f"{location}/shop/events")
    # the commit whose answer was lost is in the table once (its retry met its own version)
    assert sum(int(s.summary["added-records"]) for s in table.metadata.snapshots) == 20000
    assert sorted(table.scan().to_arrow().column("event_id").to_pylist()) == truth_ids(tmp_path)


def test_s3_that_stays_down_fails_the_rows_with_the_reason_and_the_table_stays_readable(tmp_path, seaweedfs):
    location = f"s3://{seaweedfs['S3_BUCKET']}/{uuid.uuid4().hex[:8]}"
    run(seaweedfs, tmp_path, WAREHOUSE=location, COUNT=100)
    with FaultProxy(seaweedfs["S3_ENDPOINT"]) as proxy:
        proxy.rule = lambda req: "500" if req.method in ("PUT", "POST") else None
        log = run(seaweedfs, tmp_path, expect_rc=1, endpoint=proxy.url, WAREHOUSE=location, COUNT=1000,
                  SEED=8, TOPIC="later", S3_MAX_ATTEMPTS=3)
    assert re.search(r"s3 PUT s3://\S+/data/\S+\.parquet: HTTP 500 InternalError: .* \(after 3 attempts\)", log), log[-3000:]
    assert re.search(r"generated 1000 events: 0 durable, 1000 failed", log), log[-3000:]
    table = static_table(seaweedfs, f"{location}/shop/events")
    assert table.scan().to_arrow().num_rows == 100
    assert len(read_files_with_pyarrow(seaweedfs, table)) == 100  # no snapshot names a missing file


def test_a_rest_commit_applied_but_answered_502_is_not_appended_twice(tmp_path, seaweedfs):
    def rule(req):
        if req.method == "POST" and b'"add-snapshot"' in req.body and not lost:
            lost.append(req.n)
            return "lose-502"
        return None

    lost = []
    ns = f"ns_{uuid.uuid4().hex[:8]}"
    with FaultProxy(seaweedfs["ICEBERG_REST_URI"]) as proxy:
        proxy.rule = rule
        run(seaweedfs, tmp_path, COUNT=3000, CREATE_NAMESPACE="true", **rest_env(seaweedfs, ns, uri=proxy.url))
    assert lost
    table = pyiceberg_rest_catalog(seaweedfs).load_table(f"{ns}.events")
    assert len(table.metadata.snapshots) == 1
    assert sorted(table.scan().to_arrow().column("event_id").to_pylist()) == truth_ids(tmp_path)


def pyiceberg_rows(table, ids):
    """An arrow table of `ids` in the table's schema (the required columns filled)."""
    import datetime as dt
    import pyarrow as pa
    schema = table.schema().as_arrow()
    n = len(ids)
    given = {"event_id": ids, "event_type": ["page_view"] * n, "user_id": ["py"] * n,
             "timestamp": [dt.datetime(2024, 3, 1, tzinfo=dt.timezone.utc)] * n}
    cols = [pa.array(given[f.name], type=f.type) if f.name in given else pa.nulls(n, type=f.type) for f in schema]
    return pa.Table.from_arrays(cols, schema=schema)


def test_two_ecflow_writers_and_pyiceberg_commit_to_one_rest_table_and_every_commit_survives(tmp_path, seaweedfs):
    from pyiceberg.exceptions import CommitFailedException
    ns = f"ns_{uuid.uuid4().hex[:8]}"
    (tmp_path / "warm").mkdir()
    run(seaweedfs, tmp_path / "warm", COUNT=10, CREATE_NAMESPACE="true", TOPIC="warm", **rest_env(seaweedfs, ns))
    want = truth_ids(tmp_path / "warm")
    catalog = pyiceberg_rest_catalog(seaweedfs)
    procs = []
    for k, name in enumerate(("w1", "w2")):
        (tmp_path / name).mkdir()
        # each its own topic: their positions never overlap (their writer ids are the same)
        procs.append(subprocess.Popen(
            [str(ECFLOW), "run", str(PIPELINE)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=env_for(seaweedfs, tmp_path / name, COUNT=3000, RATE=1500, SEED=k + 1, TOPIC=name,
                        COMMIT_INTERVAL="200ms", BATCH=100, **rest_env(seaweedfs, ns))))
    conflicts = 0
    for i in range(8):  # pyiceberg appends while both ecflow processes commit
        ids = [f"py-{i}-{k}" for k in range(50)]
        for attempt in range(50):
            try:
                t = catalog.load_table(f"{ns}.events")
                t.append(pyiceberg_rows(t, ids))
                break
            except CommitFailedException:
                conflicts += 1
        else:
            pytest.fail("pyiceberg could not commit in 50 attempts")
        want += ids
    logs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(log[-3000:] for log in logs)
    want = sorted(want + truth_ids(tmp_path / "w1") + truth_ids(tmp_path / "w2"))
    table = catalog.load_table(f"{ns}.events")
    assert sorted(table.scan().to_arrow().column("event_id").to_pylist()) == want
    ours = [s for s in table.metadata.snapshots if s.summary.additional_properties.get("ecflow.writer-id")]
    assert len(ours) >= 4  # both processes committed several times


# ------------------------------------------------------------------ maintenance


def table_cmd(sw, tmp, *args, **extra):
    p = subprocess.run([str(ECFLOW), "table", *args, str(PIPELINE)], env=env_for(sw, tmp, **extra),
                       capture_output=True, text=True, timeout=600)
    out = p.stdout + p.stderr
    assert p.returncode == 0, f"exit {p.returncode}:\n{out[-4000:]}"
    assert "AddressSanitizer" not in out and "runtime error:" not in out, out[-4000:]
    return p.stdout


def test_maintenance_through_the_rest_catalog_on_s3_compacts_expires_and_cleans(tmp_path, seaweedfs):
    ns = f"ns_{uuid.uuid4().hex[:8]}"
    env = rest_env(seaweedfs, ns, COMMIT_INTERVAL="0.1s", CREATE_NAMESPACE="true", MAINTENANCE="false")
    run(seaweedfs, tmp_path, COUNT=12000, RATE=3000, **env)
    want = truth_ids(tmp_path)
    catalog = pyiceberg_rest_catalog(seaweedfs)
    before = catalog.load_table(f"{ns}.events")
    n_files = len(before.inspect.files().to_pylist())
    assert n_files >= 40 and len(before.metadata.snapshots) >= 8
    time.sleep(1.2)  # every snapshot older than MAX_AGE
    out = table_cmd(seaweedfs, tmp_path, "all", **dict(env, COMPACT_MIN_FILES=2, KEEP_LAST=1, MAX_AGE="1s",
                                                         ORPHAN_AGE="1s", COMMIT_INTERVAL="0.4s"))
    assert "compact:" in out and "expire:" in out and "clean:" in out, out
    table = catalog.load_table(f"{ns}.events")
    (snap,) = table.metadata.snapshots
    assert snap.summary.operation.value == "replace"
    assert "ecflow.kafka-offsets@iceberg-test/lake" in snap.summary.additional_properties
    files = table.inspect.files().to_pylist()
    assert len(files) <= 10 < n_files
    assert sorted(table.scan().to_arrow().column("event_id").to_pylist()) == want
    assert read_files_with_pyarrow(seaweedfs, table) == want
    assert sorted(duckdb_rest_ids(seaweedfs, f"{ns}.events", len(want))) == want
    # a second run appends on top of the compacted table and resumes where the carried positions say
    run(seaweedfs, tmp_path, COUNT=12000, RATE=0, **env)
    table = catalog.load_table(f"{ns}.events")
    assert sorted(table.scan().to_arrow().column("event_id").to_pylist()) == want
