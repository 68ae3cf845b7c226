"""ecflow table-maintenance benchmark (run it through bench/maintenance/run.sh).

Two questions, one run, local warehouse, the pipeline of tests/integration/pipelines/sink_iceberg.yaml
(source-generate -> transform-records, the sink-iceberg test fixture -> sink-iceberg):

  query   What does maintenance buy a reader? A table gets COMMITS commits of EVENTS_PER_COMMIT
          events each, as a pipeline committing every second for COMMITS seconds would make it
          (the clock is compressed: RATE events/s with commit_interval = EVENTS_PER_COMMIT / RATE;
          the table's structure, one small file per partition per commit, is what matters, not
          the wall time), with maintenance off. The table directory is then copied and
          `ecflow table all` runs on the copy (timed: wall and CPU). DuckDB then reads both,
          alternating, REPEATS times each on a fresh connection: count(*), and a filtered scan
          (one event type, an hour of event time, sum(price)). Medians.
  ingest  What does maintenance cost a writer? A backlog of BACKLOG events as fast as they go
          (RATE=0) with 0.1 s commits, maintenance off and on (every 2 s, the same ratio to the
          commit interval as 1 min to the default pipeline's 10 s... compressed further), runs
          interleaved REPEATS times: rows/s and CPU seconds of the process (wait4 rusage).

--smoke makes tiny tables, runs each part once and asserts nothing about numbers. Only the
standard library plus duckdb and its iceberg/avro extension wheels (tests/requirements.txt).
"""

import argparse
import datetime as dt
import glob
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # bench/, for benchlib
import benchlib  # noqa: E402
from benchlib import fmt  # noqa: E402

REPO = benchlib.REPO
PIPELINE = os.path.join(REPO, "tests", "integration", "pipelines", "sink_iceberg.yaml")
RUNNING_RE = re.compile(r"^(\S+)Z .*pipeline 'iceberg-test' running", re.M)
DRAINED_RE = re.compile(r"^(\S+)Z .*pipeline 'iceberg-test' drained and stopped", re.M)


def log(msg):
    print(f"bench-maintenance: {msg}", file=sys.stderr, flush=True)


def die(msg):
    log(msg)
    sys.exit(1)


def env_for(build, tmp, **extra):
    e = dict(os.environ)
    plugins = os.path.join(build, "plugins")
    e.update({"ECFLOW_PLUGIN_PATH": f"{plugins}:{plugins}/sink-iceberg/tests/fixtures",
              "WAREHOUSE": os.path.join(tmp, "wh"), "NDJSON": "/dev/null"})
    e.update({k: str(v) for k, v in extra.items()})
    return e


def run_timed(args, env):
    """(stdout + stderr, wall seconds) of a child run to its end (reaped: its CPU time is in
    children_cpu() now)."""
    t0 = time.monotonic()
    p = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out, _ = p.communicate()
    wall = time.monotonic() - t0
    if p.returncode != 0:
        die(f"{' '.join(args[:3])} exited {p.returncode}:\n{out[-3000:]}")
    return out, wall


def cpu_of(fn):
    """Runs fn(); (its result, CPU seconds its children used)."""
    c0 = benchlib.children_cpu()
    r = fn()
    return r, benchlib.children_cpu() - c0


def ts(s):
    return dt.datetime.fromisoformat(s)


def drained_rate(log_text, rows):
    a, b = RUNNING_RE.search(log_text), DRAINED_RE.search(log_text)
    if not a or not b:
        return float("nan")
    secs = (ts(b.group(1)) - ts(a.group(1))).total_seconds()
    return rows / secs if secs > 0 else float("nan")


def latest_metadata(table):
    files = glob.glob(os.path.join(table, "metadata", "v*.metadata.json"))
    return max(files, key=lambda p: int(os.path.basename(p)[1:].split(".")[0]))


def table_facts(table):
    meta_path = latest_metadata(table)
    meta = json.load(open(meta_path))
    head = meta["snapshots"][-1]["summary"] if meta.get("snapshots") else {}
    data = [p for p in glob.glob(os.path.join(table, "data", "**", "*.parquet"), recursive=True)]
    return {"metadata": meta_path, "files": int(head.get("total-data-files", 0)),
            "rows": int(head.get("total-records", 0)), "snapshots": len(meta.get("snapshots", [])),
            "metadata_kb": os.path.getsize(meta_path) / 1024, "data_files_on_disk": len(data)}


def duck():
    sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
    from harness import duck as connect
    return connect()


def query_times(meta_path, repeats, event_day):
    """Median seconds of count(*) and a filtered scan, each on a fresh connection."""
    lo = event_day + dt.timedelta(hours=22)  # START: the first hour of event time
    filtered = (f"SELECT count(*), sum(price) FROM iceberg_scan('{meta_path}') WHERE event_type = 'purchase' "
                f"AND \"timestamp\" >= TIMESTAMPTZ '{lo.isoformat()}+00' "
                f"AND \"timestamp\" < TIMESTAMPTZ '{(lo + dt.timedelta(hours=1)).isoformat()}+00'")
    count = f"SELECT count(*) FROM iceberg_scan('{meta_path}')"
    out = {}
    for name, sql in (("count", count), ("filtered", filtered)):
        times, result = [], None
        for _ in range(repeats):
            con = duck()
            t0 = time.perf_counter()
            result = con.execute(sql).fetchone()
            times.append(time.perf_counter() - t0)
            con.close()
        out[name] = statistics.median(times)
        out[name + "_result"] = result
    return out


def part_query(a, tmp):
    rate = a.events_per_commit / a.commit_secs
    count = a.commits * a.events_per_commit
    log(f"query: building a table of {a.commits} commits x {a.events_per_commit} events "
        f"({count} events at {rate:.0f}/s, commit_interval {a.commit_secs}s), maintenance off")
    raw = os.path.join(tmp, "raw")
    out, wall = run_timed([a.ecflow, "run", PIPELINE],
                          env_for(a.build, raw, COUNT=count, RATE=int(rate), COMMIT_INTERVAL=f"{a.commit_secs}s",
                                  MAINTENANCE="false", START="2024-03-01T22:00:00Z"))
    commits = out.count("committed snapshot")
    table = os.path.join(raw, "wh", "shop", "events")
    maint = os.path.join(tmp, "maint")
    shutil.copytree(raw, maint)
    log(f"query: {commits} commits in {wall:.0f} s; `ecflow table all` on a copy")
    env = env_for(a.build, maint, COMPACT_MIN_FILES=8, KEEP_LAST=100, MAX_AGE="1s", ORPHAN_AGE="1h",
                  COMMIT_INTERVAL="1s")
    (maint_out, wall_m), cpu_m = cpu_of(lambda: run_timed([a.ecflow, "table", "all", PIPELINE], env))
    before, after = table_facts(table), table_facts(os.path.join(maint, "wh", "shop", "events"))
    day = dt.datetime(2024, 3, 1)
    qa, qb = {}, {}
    for r in range(a.repeats):  # interleaved, so neither side gets the quieter moments
        for q, meta in ((qa, before["metadata"]), (qb, after["metadata"])):
            t = query_times(meta, 1, day)
            for k, v in t.items():
                q.setdefault(k, []).append(v)
    med = lambda q, k: statistics.median(q[k])  # noqa: E731
    res = lambda q, k: q[k + "_result"][-1]  # noqa: E731
    if res(qa, "count") != res(qb, "count") or res(qa, "filtered") != res(qb, "filtered"):
        die(f"the tables disagree: {res(qa, 'count')}, {res(qa, 'filtered')} vs {res(qb, 'count')}, "
            f"{res(qb, 'filtered')}")
    return {"commits": commits, "events": count, "ingest_wall": wall, "before": before, "after": after,
            "maint_wall": wall_m, "maint_cpu": cpu_m, "maint_out": maint_out.strip(),
            "count": (med(qa, "count"), med(qb, "count")), "filtered": (med(qa, "filtered"), med(qb, "filtered")),
            "rows": res(qa, "count")[0], "filtered_rows": res(qa, "filtered")[0]}


def part_ingest(a, tmp):
    rows = {"off": [], "on": []}
    cpu = {"off": [], "on": []}
    for r in range(a.repeats):
        for mode in (("off", "on") if r % 2 == 0 else ("on", "off")):
            d = os.path.join(tmp, f"ingest-{mode}-{r}")
            env = env_for(a.build, d, COUNT=a.backlog, RATE=0, COMMIT_INTERVAL="0.1s",
                          MAINTENANCE="true" if mode == "on" else "false", MAINTENANCE_INTERVAL="2s",
                          COMPACT_MIN_FILES=8)
            (out, wall), c = cpu_of(lambda: run_timed([a.ecflow, "run", PIPELINE], env))
            rate = drained_rate(out, a.backlog)
            rows[mode].append(rate)
            cpu[mode].append(c)
            ran = out.count("table maintenance: compact")
            log(f"ingest {mode} #{r + 1}: {fmt(rate)} rows/s, {c:.1f} CPU s, {ran} compactions logged")
            shutil.rmtree(d, ignore_errors=True)
    return {m: (statistics.median(rows[m]), statistics.median(cpu[m])) for m in rows}


def report(a, q, ing):
    m = benchlib.machine()
    b, f = q["before"], q["after"]
    lines = [
        f"# Table maintenance benchmark, {dt.date.today().isoformat()}",
        "",
        f"Machine: {m['cpu']}, {m['nproc']} cores, {m['mem_gib']} GiB, load {' '.join(m['load'])} at the end "
        f"(shared with other work: read ratios, not absolutes). Commit {benchlib.git_commit()}. "
        f"Command: `bench/maintenance/run.sh {' '.join(sys.argv[1:])}`.",
        "",
        f"## What a reader gains: {q['commits']} commits (an hour of 1 s commits, clock compressed), "
        f"{q['events']:,} events",
        "",
        "| | no maintenance | after `ecflow table all` | ratio |",
        "|---|---:|---:|---:|",
        f"| data files in the current snapshot | {b['files']} | {f['files']} | {b['files'] / max(f['files'], 1):.0f}x |",
        f"| snapshots in the metadata | {b['snapshots']} | {f['snapshots']} | |",
        f"| current metadata JSON (KiB) | {b['metadata_kb']:.0f} | {f['metadata_kb']:.0f} | |",
        f"| data files on disk | {b['data_files_on_disk']} | {f['data_files_on_disk']} | |",
        f"| DuckDB count(*) (s, median of {a.repeats}) | {q['count'][0]:.3f} | {q['count'][1]:.3f} | "
        f"{q['count'][0] / q['count'][1]:.1f}x faster |",
        f"| DuckDB filtered scan (s, median of {a.repeats}) | {q['filtered'][0]:.3f} | {q['filtered'][1]:.3f} | "
        f"{q['filtered'][0] / q['filtered'][1]:.1f}x faster |",
        "",
        f"Both tables answer {q['rows']:,} rows and {q['filtered_rows']:,} for the filter (one event type, "
        f"an hour of event time). `ecflow table all` took {q['maint_wall']:.1f} s wall, {q['maint_cpu']:.1f} s CPU "
        f"for the whole backlog of small files: `{q['maint_out'].splitlines()[-3] if len(q['maint_out'].splitlines()) >= 3 else q['maint_out']}`.",
        "",
        f"## What a writer pays: a {a.backlog:,}-event backlog, 0.1 s commits, medians of {a.repeats}, interleaved",
        "",
        "| maintenance | rows/s | CPU s | ",
        "|---|---:|---:|",
        f"| off | {fmt(ing['off'][0])} | {ing['off'][1]:.1f} |",
        f"| on, every 2 s | {fmt(ing['on'][0])} | {ing['on'][1]:.1f} |",
        "",
        f"Throughput with maintenance running: {100 * ing['on'][0] / ing['off'][0]:.1f}% of without; CPU "
        f"{100 * (ing['on'][1] / ing['off'][1] - 1):+.1f}%.",
    ]
    return "\n".join(lines) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("build", nargs="?", default=os.path.join(REPO, "build"))
    p.add_argument("--commits", type=int, default=3600)
    p.add_argument("--events-per-commit", type=int, default=500)
    p.add_argument("--commit-secs", type=float, default=0.1)
    p.add_argument("--backlog", type=int, default=1_000_000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--out")
    a = p.parse_args()
    a.build = os.path.abspath(a.build)
    a.ecflow = os.path.join(a.build, "ecflow")
    if not os.path.exists(a.ecflow):
        die(f"{a.ecflow} is not built")
    if a.smoke:
        a.commits, a.events_per_commit, a.backlog, a.repeats = 40, 100, 20000, 1
    tmp = tempfile.mkdtemp(prefix="ecflow-bench-maint-")
    try:
        q = part_query(a, tmp)
        ing = part_ingest(a, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    text = report(a, q, ing)
    print(text)
    if not a.smoke:
        out = a.out or os.path.join(REPO, "bench", "results", f"maintenance-{dt.date.today().isoformat()}.md")
        with open(out, "w") as f:
            f.write(text)
        log(f"wrote {out}")


if __name__ == "__main__":
    main()
