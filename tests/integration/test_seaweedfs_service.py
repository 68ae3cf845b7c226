"""The S3 + Iceberg REST catalog service for tests (tests/services/seaweedfs.sh, SeaweedFS)
works with independent clients: pyiceberg writes a table through the catalog, DuckDB reads
it through the catalog, pyarrow reads its files on S3; S3 puts are conditional; two servers
never share ports. No ecflow here: this checks the service the sink tests rely on."""
import re
import shutil
import tempfile
import threading
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lakehouse import (duckdb_rest_connect, pyarrow_s3fs, pyiceberg_rest_catalog, s3_request,
                       seaweedfs, seaweedfs_sh, start_seaweedfs, stop_seaweedfs)  # noqa: F401

ROWS = pa.table({"id": pa.array([1, 2, 3], pa.int64()),
                 "name": pa.array(["a", "b", "c"], pa.string())})


@pytest.fixture(scope="module")
def written(seaweedfs):
    """A table pyiceberg created and appended ROWS to: (namespace, table name, table)."""
    cat = pyiceberg_rest_catalog(seaweedfs)
    ns = f"svc_{uuid.uuid4().hex[:8]}"
    cat.create_namespace(ns)
    t = cat.create_table(f"{ns}.events", schema=ROWS.schema)
    t.append(ROWS)
    return ns, "events", cat.load_table(f"{ns}.events")


def test_env_lines(seaweedfs):
    for k in ("S3_ENDPOINT", "S3_BUCKET", "S3_TABLE_BUCKET", "ICEBERG_REST_URI",
              "ICEBERG_WAREHOUSE", "ICEBERG_CREDENTIAL", "AWS_ACCESS_KEY_ID",
              "AWS_SECRET_ACCESS_KEY", "AWS_REGION"):
        assert seaweedfs.get(k), k
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", seaweedfs["S3_ENDPOINT"])
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", seaweedfs["ICEBERG_REST_URI"])
    assert seaweedfs["ICEBERG_CREDENTIAL"] == \
        f"{seaweedfs['AWS_ACCESS_KEY_ID']}:{seaweedfs['AWS_SECRET_ACCESS_KEY']}"


def test_pyiceberg_round_trip(seaweedfs, written):
    ns, name, t = written
    assert t.location() == f"s3://{seaweedfs['S3_TABLE_BUCKET']}/{ns}/{name}"
    assert t.metadata_location.startswith(t.location() + "/metadata/")
    got = pyiceberg_rest_catalog(seaweedfs).load_table(f"{ns}.{name}").scan().to_arrow()
    assert got.sort_by("id").equals(ROWS)


def test_duckdb_reads_through_the_catalog(seaweedfs, written):
    ns, name, _ = written
    con = duckdb_rest_connect(seaweedfs)
    rows = con.execute(f"SELECT id, name FROM lh.{ns}.{name} ORDER BY id").fetchall()
    assert rows == [(1, "a"), (2, "b"), (3, "c")]


def test_pyarrow_reads_the_files_on_s3(seaweedfs, written):
    from pyarrow import fs as pafs
    _, _, t = written
    s3 = pyarrow_s3fs(seaweedfs)
    root = t.location().removeprefix("s3://")
    files = [i.path for i in s3.get_file_info(pafs.FileSelector(root, recursive=True))
             if i.type == pafs.FileType.File]
    data = [f for f in files if f.startswith(root + "/data/") and f.endswith(".parquet")]
    assert data, files
    assert any(f.endswith(".metadata.json") for f in files), files
    assert any(f.endswith(".avro") for f in files), files   # manifest list + manifest
    got = pa.concat_tables(pq.read_table(f, filesystem=s3) for f in data)
    assert got.select(["id", "name"]).sort_by("id").equals(ROWS)


def test_put_if_absent(seaweedfs, written):
    """If-None-Match: * answers 412 when the key exists: in the plain bucket, and in the
    table bucket under a table's data/ (where only .parquet/.avro/.orc names may go)."""
    _, _, t = written
    tb_key = t.location().removeprefix("s3://") + f"/data/put-if-absent-{uuid.uuid4().hex}.parquet"
    for path in (f"/{seaweedfs['S3_BUCKET']}/svc/{uuid.uuid4().hex}.json", "/" + tb_key):
        st, _, body = s3_request(seaweedfs, "PUT", path, b"first", ["If-None-Match: *"])
        assert st == 200, (path, body)
        st, _, body = s3_request(seaweedfs, "PUT", path, b"second", ["If-None-Match: *"])
        assert st == 412, (path, st, body)
        assert b"PreconditionFailed" in body
        st, _, body = s3_request(seaweedfs, "GET", path)
        assert (st, body) == (200, b"first")


def test_multipart_upload(seaweedfs):
    """CreateMultipartUpload / UploadPart / CompleteMultipartUpload, and Abort."""
    path = f"/{seaweedfs['S3_BUCKET']}/svc/mpu-{uuid.uuid4().hex}.bin"
    part1, part2 = b"x" * (5 << 20), b"tail"
    st, _, body = s3_request(seaweedfs, "POST", path, query="uploads=")
    assert st == 200, body
    upload = re.search(rb"<UploadId>([^<]+)</UploadId>", body).group(1).decode()
    etags = []
    for n, part in ((1, part1), (2, part2)):
        st, h, body = s3_request(seaweedfs, "PUT", path, part,
                                 query=f"partNumber={n}&uploadId={upload}")
        assert st == 200, body
        etags.append(h["etag"])
    done = "".join(f"<Part><PartNumber>{n}</PartNumber><ETag>{e}</ETag></Part>"
                   for n, e in enumerate(etags, 1))
    st, _, body = s3_request(seaweedfs, "POST", path,
                             f"<CompleteMultipartUpload>{done}</CompleteMultipartUpload>".encode(),
                             query=f"uploadId={upload}")
    assert st == 200, body
    st, _, body = s3_request(seaweedfs, "GET", path)
    assert st == 200 and body == part1 + part2

    st, _, body = s3_request(seaweedfs, "POST", path + ".aborted", query="uploads=")
    upload = re.search(rb"<UploadId>([^<]+)</UploadId>", body).group(1).decode()
    assert s3_request(seaweedfs, "PUT", path + ".aborted", b"p",
                      query=f"partNumber=1&uploadId={upload}")[0] == 200
    assert s3_request(seaweedfs, "DELETE", path + ".aborted", query=f"uploadId={upload}")[0] == 204
    assert s3_request(seaweedfs, "HEAD", path + ".aborted")[0] == 404


def test_two_servers_get_different_ports():
    """Two servers started at once (other DIRs, their own keys) share no port."""
    dirs = [Path(tempfile.mkdtemp(prefix="ecflow-it-seaweedfs-pair-")) for _ in range(2)]
    envs, errors = [None, None], []

    def start(i):
        try:
            envs[i] = start_seaweedfs(dirs[i])
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    try:
        threads = [threading.Thread(target=start, args=(i,)) for i in range(2)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(300)
        assert not errors, errors
        ports = []
        for d in dirs:
            text = (d / "ports").read_text()
            ports.append({int(p) for p in re.findall(r"=(\d+)", text)})
        assert len(ports[0]) == len(ports[1]) == 11
        assert not ports[0] & ports[1]
        assert envs[0]["S3_ENDPOINT"] != envs[1]["S3_ENDPOINT"]
        assert envs[0]["ICEBERG_REST_URI"] != envs[1]["ICEBERG_REST_URI"]
        for env in envs:   # each answers for its own keys
            cat = pyiceberg_rest_catalog(env)
            assert cat.list_namespaces() == []
            st, _, _ = s3_request(env, "GET", "/" + env["S3_BUCKET"])
            assert st == 200
        st = seaweedfs_sh("status", str(dirs[0]))
        assert st.returncode == 0 and "S3_ENDPOINT=" in st.stdout
    finally:
        for d in dirs:
            stop_seaweedfs(d)
    for d in dirs:
        assert seaweedfs_sh("status", str(d)).returncode == 1
        assert not (d / "data").exists() and (d / "logs" / "weed.log").exists()
        shutil.rmtree(d, ignore_errors=True)
