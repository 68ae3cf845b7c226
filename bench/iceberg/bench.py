#!/usr/bin/env python3
"""sink-iceberg benchmark: Parquet encode speed and size against pyarrow, and commit latency.

    python3 bench/iceberg/bench.py BUILD_DIR [--rows N] [--runs K] [--smoke] [--out FILE.md]

1. Encode: BUILD_DIR/bench/iceberg_parquet writes N event rows (the e-commerce schema: 10
   strings, timestamptz, decimal(10,2), int, date; nulls where the generator leaves fields
   out) from in-memory Arrow arrays into one Parquet file, for zstd (level 1) and snappy.
   pyarrow then writes the very same rows (read back from that file) with the same codec,
   level, row-group row count, 1 MiB pages and dictionary encoding, in the same run. MB/s is
   the Arrow in-memory size (Table.nbytes) over the encode time, for both; medians of K runs.
2. Commit latency: the test pipeline (source-generate -> transform-records fixture ->
   sink-iceberg, partitioned by event_type and day) with commits every 0.5 s; the sink logs
   each commit's wall time (finish the open files, manifest, manifest list, metadata, link).
Needs pyarrow (pip install pyarrow==26.0.1).
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[2]


def ours(binary, rows, codec, path, runs):
    results = []
    for _ in range(runs):
        out = subprocess.run([str(binary), str(rows), codec, str(path)], capture_output=True, text=True,
                             check=True).stdout
        results.append(json.loads(out))
    return statistics.median(r["seconds"] for r in results), results[-1]


def theirs(table, codec, path, rows_per_group, runs):
    times = []
    kw = {"compression": codec, "row_group_size": rows_per_group, "use_dictionary": True,
          "data_page_size": 1 << 20, "write_statistics": True}
    if codec == "zstd":
        kw["compression_level"] = 1
    for _ in range(runs):
        t0 = time.perf_counter()
        pq.write_table(table, path, **kw)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def commit_latency(build, tmp, count, rate):
    env = dict(os.environ, ECFLOW_PLUGIN_PATH=f"{build}/plugins:{build}/plugins/sink-iceberg/tests/fixtures",
               WAREHOUSE=str(tmp / "wh"), NDJSON="/dev/null", COUNT=str(count), RATE=str(rate),
               COMMIT_INTERVAL="0.5s", START="2024-03-01T00:00:00Z")
    p = subprocess.run([f"{build}/ecflow", "run", str(ROOT / "tests/integration/pipelines/sink_iceberg.yaml")],
                       env=env, capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        raise SystemExit(p.stdout + p.stderr)
    ms = [float(m.group(3)) for m in re.finditer(r"committed snapshot \d+ \((\w+)\): (\d+) files, \d+ rows, ([\d.]+) ms",
                                                 p.stdout + p.stderr)]
    files = [int(m.group(2)) for m in re.finditer(r"committed snapshot \d+ \((\w+)\): (\d+) files",
                                                   p.stdout + p.stderr)]
    return ms, files


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--out")
    a = ap.parse_args()
    if a.smoke:
        a.rows, a.runs = 20_000, 1
    build = Path(a.build).resolve()
    binary = build / "bench" / "iceberg_parquet"
    lines = [f"# sink-iceberg Parquet encode vs pyarrow {pq.__name__ and __import__('pyarrow').__version__}",
             "", f"{a.rows} event rows, median of {a.runs}, one core, same codec / level / row groups / page size", "",
             "| codec | ecflow MB/s | ecflow rows/s | pyarrow MB/s | pyarrow rows/s | speed ratio | ecflow size | pyarrow size | size ratio |",
             "|---|---|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        for codec in ("zstd", "snappy"):
            mine = d / f"ours-{codec}.parquet"
            t_ours, info = ours(binary, a.rows, codec, mine, a.runs)
            pf = pq.ParquetFile(mine)
            table = pf.read()
            rg_rows = max(pf.metadata.row_group(i).num_rows for i in range(pf.metadata.num_row_groups))
            theirs_path = d / f"pyarrow-{codec}.parquet"
            t_theirs = theirs(table, codec, theirs_path, rg_rows, a.runs)
            assert pq.read_table(theirs_path).equals(table)
            mb = table.nbytes / 1e6
            s_ours, s_theirs = mine.stat().st_size, theirs_path.stat().st_size
            lines.append(f"| {codec} | {mb / t_ours:.0f} | {a.rows / t_ours / 1e3:.0f}k | {mb / t_theirs:.0f} | "
                         f"{a.rows / t_theirs / 1e3:.0f}k | {t_theirs / t_ours:.2f}x | {s_ours / 1e6:.2f} MB | "
                         f"{s_theirs / 1e6:.2f} MB | {s_ours / s_theirs:.3f} |")
        count = 20_000 if a.smoke else 300_000
        ms, files = commit_latency(build, d, count, 0 if a.smoke else 60_000)
    lines += ["", "Commit latency (interval commits of a partitioned table, local disk, fsync on):", ""]
    if ms:
        ms_sorted = sorted(ms)
        lines.append(f"{len(ms)} commits, {statistics.median(files):.0f} files each (median): "
                     f"p50 {statistics.median(ms):.1f} ms, max {ms_sorted[-1]:.1f} ms")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        Path(a.out).write_text(text)


if __name__ == "__main__":
    main()
