"""sink-iceberg's Parquet reader and pq_rewrite, checked against pyarrow.

pq_tool (built beside this file, path in $PQ_TOOL) dumps what the reader
decodes, writes files with pq_writer, and runs pq_rewrite; pyarrow writes the
inputs the reader must understand and reads what the rewrite produces.
"""
import decimal
import json
import math
import os
import subprocess

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

PQ_TOOL = os.environ.get("PQ_TOOL", "pq_tool")
N = 2500


def fid(name, type_, fid_, nullable=True):
    return pa.field(name, type_, nullable=nullable, metadata={b"PARQUET:field_id": str(fid_).encode()})


def table():
    def opt(i, v):
        return None if i % 11 == 3 else v

    cols = {
        "id": (fid("id", pa.int64(), 1, False), [i * 7919 - 10**12 for i in range(N)]),
        "qty": (fid("qty", pa.int32(), 2), [opt(i, (i * 37) % 1000 - 500) for i in range(N)]),
        "small": (fid("small", pa.int8(), 3), [opt(i, i % 100 - 50) for i in range(N)]),
        "flag": (fid("flag", pa.bool_(), 4), [opt(i, i % 3 == 0) for i in range(N)]),
        "price": (fid("price", pa.float64(), 5), [opt(i, math.nan if i % 97 == 5 else i / 7 - 100) for i in range(N)]),
        "pricef": (fid("pricef", pa.float32(), 6), [opt(i, (i % 500) / 4) for i in range(N)]),
        "day": (fid("day", pa.date32(), 7), [opt(i, 18000 + i % 400) for i in range(N)]),
        "ts": (fid("ts", pa.timestamp("us"), 8), [opt(i, 1_700_000_000_000_000 + i * 1001) for i in range(N)]),
        "tstz": (fid("tstz", pa.timestamp("us", tz="UTC"), 9, False), [1_600_000_000_000_000 + i for i in range(N)]),
        "tsms": (fid("tsms", pa.timestamp("ms", tz="UTC"), 10), [opt(i, 1_600_000_000_000 + i * 3) for i in range(N)]),
        "name": (fid("name", pa.string(), 11), [opt(i, f"user-{i // 2}-é\"\\") for i in range(N)]),
        "cat": (fid("cat", pa.string(), 12), [opt(i, ["view", "cart", "buy", ""][i % 4]) for i in range(N)]),
        "blob": (fid("blob", pa.binary(), 13), [opt(i, bytes([i % 256, (i * 7) % 256][: i % 3])) for i in range(N)]),
        "dec": (fid("dec", pa.decimal128(5, 2), 14),
                [opt(i, decimal.Decimal(i * 13 % 99999 - 50000).scaleb(-2)) for i in range(N)]),
        "dec30": (fid("dec30", pa.decimal128(30, 4), 15),
                  [opt(i, decimal.Decimal((i * 10**20 + 12345) * (-1) ** i).scaleb(-4)) for i in range(N)]),
    }
    arrays = []
    for f, vals in cols.values():
        if pa.types.is_timestamp(f.type) or pa.types.is_date(f.type):
            raw = pa.array(vals, pa.int64() if pa.types.is_timestamp(f.type) else pa.int32())
            arrays.append(raw.cast(f.type))
        else:
            arrays.append(pa.array(vals, f.type))
    return pa.Table.from_arrays(arrays, schema=pa.schema([f for f, _ in cols.values()]))


def canon(f, v):
    """A pyarrow value in pq_tool dump's JSON form."""
    if v is None:
        return None
    t = f.type
    if pa.types.is_decimal(t):
        return str(int(v.scaleb(t.scale)))
    if pa.types.is_floating(t):
        return "NaN" if math.isnan(v) else float(v)
    if pa.types.is_binary(t):
        return v.hex()
    return v


def expected_rows(tbl):
    cols = []
    for f, col in zip(tbl.schema, tbl.columns):
        t = f.type
        if pa.types.is_timestamp(t):
            scale = {"us": 1, "ms": 1000}[t.unit]
            vals = [None if v is None else v * scale for v in col.cast(pa.int64()).to_pylist()]
        elif pa.types.is_date(t):
            vals = col.cast(pa.int32()).to_pylist()
        else:
            vals = [canon(f, v) for v in col.to_pylist()]
        cols.append(vals)
    return [list(r) for r in zip(*cols)]


def dump(path):
    p = subprocess.run([PQ_TOOL, "dump", str(path)], capture_output=True, text=True)
    if p.returncode:
        return p.returncode, p.stderr, None, None
    lines = p.stdout.splitlines()
    head = json.loads(lines[0])
    rows = [json.loads(line) for line in lines[1:]]
    return 0, "", head, rows


def norm(rows):
    return [[("NaN" if isinstance(v, float) and math.isnan(v) else v) for v in r] for r in rows]


@pytest.mark.parametrize("version", ["1.0", "2.0"])
@pytest.mark.parametrize("compression", ["none", "snappy", "gzip", "zstd"])
@pytest.mark.parametrize("dictionary", [True, False])
def test_reads_pyarrow_files(tmp_path, version, compression, dictionary):
    tbl = table()
    path = tmp_path / "in.parquet"
    # a small dictionary page limit makes pyarrow fall back to PLAIN mid-chunk for "name"
    pq.write_table(tbl, path, data_page_version=version, compression=compression, use_dictionary=dictionary,
                   row_group_size=900, data_page_size=2048, write_statistics=True, dictionary_pagesize_limit=1024)
    rc, err, head, rows = dump(path)
    assert rc == 0, err
    assert head["rows"] == N and head["row_groups"] == 3
    by_name = {c["name"]: c for c in head["columns"]}
    assert [by_name[f.name]["field_id"] for f in tbl.schema] == list(range(1, 16))
    assert by_name["id"]["required"] and not by_name["qty"]["required"]
    assert by_name["tstz"]["type"] == "timestamptz" and by_name["ts"]["type"] == "timestamp"
    assert by_name["tsms"]["type"] == "timestamptz" and by_name["small"]["type"] == "int"
    assert by_name["dec30"]["type"] == "decimal(30, 4)" and by_name["blob"]["type"] == "binary"
    assert norm(rows) == norm(expected_rows(tbl))


@pytest.mark.parametrize("case,needle", [
    ("delta", "DELTA_BINARY_PACKED"),
    ("byte_stream_split", "BYTE_STREAM_SPLIT"),
    ("lz4", "LZ4"),
    ("nested", "not flat"),
    ("int96", "INT96"),
])
def test_refuses_unsupported_with_file_and_reason(tmp_path, case, needle):
    path = tmp_path / f"{case}.parquet"
    t = pa.table({"a": pa.array([1, 2, 3], pa.int64()), "b": pa.array([1.5, 2.5, None])})
    kw = {}
    if case == "delta":
        kw = dict(use_dictionary=False, column_encoding={"a": "DELTA_BINARY_PACKED"})
    elif case == "byte_stream_split":
        kw = dict(use_dictionary=False, column_encoding={"b": "BYTE_STREAM_SPLIT"})
    elif case == "lz4":
        kw = dict(compression="lz4")
    elif case == "nested":
        t = t.append_column("l", pa.array([[1], [], None], pa.list_(pa.int32())))
    elif case == "int96":
        t = t.append_column("ts", pa.array([1, 2, 3], pa.int64()).cast(pa.timestamp("us")))
        kw = dict(use_deprecated_int96_timestamps=True)
    pq.write_table(t, path, **kw)
    rc, err, _, _ = dump(path)
    assert rc == 2, err
    assert str(path) in err and needle in err
    if case in ("delta", "byte_stream_split"):
        assert "column '" + ("a" if case == "delta" else "b") + "'" in err


OLD = "id:1:long:r;qty:2:int:o;price:3:float:o;amount:4:decimal(5,2):o;name:5:string:o;legacy:8:boolean:o"
NEW = ("id:1:long:r;qty:2:long:o;price:3:double:o;amount:4:decimal(12,2):o;name:5:string:o;"
       "added:6:string:o;seen:7:timestamptz:o")


def run(*args):
    p = subprocess.run([PQ_TOOL, *map(str, args)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_rewrite_is_read_by_pyarrow(tmp_path):
    ins = []
    for i, (spec, opts, rows) in enumerate([
        (OLD, "codec=snappy,page=4096,rg=16384,dict=1", 3000),
        (NEW, "codec=zstd,dict=0,rg=20000", 4000),
        (NEW, "codec=none,page=512,rg=8192,dict=1,dictlimit=300", 1500),
    ]):
        path = tmp_path / f"in{i}.parquet"
        run("gen", path, spec, opts, rows, 100 + i)
        ins.append(path)
    # and one pyarrow wrote: v2 pages, gzip, dictionary, field ids, only some columns
    pa_in = tmp_path / "pyarrow.parquet"
    pa_tbl = pa.Table.from_arrays(
        [pa.array(range(500), pa.int64()), pa.array([f"n{i % 7}" for i in range(500)]),
         pa.array([i * 0.25 for i in range(500)], pa.float64())],
        schema=pa.schema([fid("id", pa.int64(), 1, False), fid("name", pa.string(), 5), fid("price", pa.float64(), 3)]))
    pq.write_table(pa_tbl, pa_in, data_page_version="2.0", compression="gzip", row_group_size=200)
    ins.append(pa_in)

    out = tmp_path / "out.parquet"
    rg_size = 48 << 10
    metrics = json.loads(run("rewrite", out, NEW, f"codec=zstd,page=8192,rg={rg_size},dict=1", *ins))

    got = pq.read_table(out)
    want = []
    new_names = [c.split(":")[0] for c in NEW.split(";")]
    for path in ins:
        t = pq.read_table(path)
        for r in t.to_pylist():
            want.append({n: r.get(n) for n in new_names})
    assert metrics["num_rows"] == len(want) == got.num_rows
    rows = got.to_pylist()
    for a, b in zip(rows, want):
        for n in new_names:
            x, y = a[n], b[n]
            if isinstance(x, float) and isinstance(y, float) and math.isnan(x):
                assert math.isnan(y), n
            else:
                assert x == y, (n, x, y)  # int->long, float->double, decimal(5,2)->(12,2) compare equal

    schema = pq.read_schema(out)
    ids = [int(f.metadata[b"PARQUET:field_id"]) for f in schema]
    assert ids == [1, 2, 3, 4, 5, 6, 7]
    assert schema.field("qty").type == pa.int64() and schema.field("price").type == pa.float64()
    assert schema.field("amount").type == pa.decimal128(12, 2)
    assert schema.field("seen").type == pa.timestamp("us", tz="UTC")

    md = pq.ParquetFile(out).metadata
    assert md.num_row_groups == metrics["row_groups"] > 2
    for g in range(md.num_row_groups):
        rg = md.row_group(g)
        for c in range(rg.num_columns):
            st = rg.column(c).statistics
            assert st is not None and st.null_count is not None
            assert st.has_min_max or st.num_values == 0  # an all-null chunk has no bounds
        size = sum(rg.column(c).total_compressed_size for c in range(rg.num_columns))
        if g < md.num_row_groups - 1:
            # cut once the writer's estimate reaches rg_size, at an input row group boundary
            assert rg_size * 0.5 <= size <= rg_size * 2.5, (g, size)
    by_id = {c["field_id"]: c for c in metrics["columns"]}
    assert by_id[6]["nulls"] == sum(r["added"] is None for r in want) >= 3500  # old and pyarrow files: nulls
    assert all(c["bounds"] and c["values"] == len(want) for c in metrics["columns"])
    assert by_id[1]["nulls"] == 0 and by_id[1]["bounds"]


def test_rewrite_refuses_files_without_field_ids(tmp_path):
    path = tmp_path / "noids.parquet"
    pq.write_table(pa.table({"id": pa.array([1, 2], pa.int64())}), path)
    p = subprocess.run([PQ_TOOL, "rewrite", tmp_path / "o.parquet", "id:1:long:o", "-", path],
                       capture_output=True, text=True)
    assert p.returncode == 2
    assert str(path) in p.stderr and "field_id" in p.stderr


@pytest.mark.parametrize("compression", ["snappy", "gzip", "zstd", "none"])
def test_mutated_pyarrow_files_never_crash(tmp_path, compression):
    """v2 pages, RLE booleans and gzip only come from pyarrow: mutate such files too (ASan build catches)."""
    tbl = table().slice(0, 300)
    path = tmp_path / "f.parquet"
    pq.write_table(tbl, path, data_page_version="2.0", compression=compression, row_group_size=150,
                   data_page_size=512)
    assert dump(path)[0] == 0
    assert run("fuzz", path, 1500, 7).strip() == "ok"


def test_rewrite_refuses_types_iceberg_cannot_take(tmp_path):
    path = tmp_path / "u.parquet"
    t = pa.Table.from_arrays([pa.array([1, 2], pa.uint32())], schema=pa.schema([fid("n", pa.uint32(), 1)]))
    pq.write_table(t, path)
    p = subprocess.run([PQ_TOOL, "rewrite", tmp_path / "o.parquet", "n:1:long:o", "-", path],
                       capture_output=True, text=True)
    assert p.returncode == 2
    assert str(path) in p.stderr and "column 'n'" in p.stderr and "INT32" in p.stderr
