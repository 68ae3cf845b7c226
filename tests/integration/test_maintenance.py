"""Table maintenance (sink-iceberg's background thread and `ecflow table`): compaction, manifest
merging, snapshot expiry and orphan removal keep a table committed many times a second small and
fast to read, and never lose or duplicate a row, even when killed mid-way.

Pipeline: tests/integration/pipelines/sink_iceberg.yaml (source-generate -> transform-records
-> sink-iceberg, with the NDJSON ground truth beside it). Readers: DuckDB and pyiceberg.
"""

import collections
import glob
import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import ECFLOW, ROOT
from harness import duck, metadata_versions

PLUGIN_PATH = os.environ.get(
    "ECFLOW_PLUGIN_PATH",
    f"{ROOT / 'build' / 'plugins'}:{ROOT / 'build' / 'plugins' / 'sink-iceberg' / 'tests' / 'fixtures'}",
)
PIPELINE = Path(__file__).resolve().parent / "pipelines" / "sink_iceberg.yaml"

pytestmark = pytest.mark.skipif(not ECFLOW.exists(), reason=f"{ECFLOW} not built")


def env_for(tmp, **env):
    e = dict(os.environ)
    e.update({"ECFLOW_PLUGIN_PATH": PLUGIN_PATH, "WAREHOUSE": str(tmp / "wh"),
              "NDJSON": str(tmp / "truth.ndjson")})
    e.update({k: str(v) for k, v in env.items()})
    return e


def run(tmp, **env):
    p = subprocess.run([str(ECFLOW), "run", str(PIPELINE)], env=env_for(tmp, **env),
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, f"exit {p.returncode}:\n{p.stdout}\n{p.stderr[-5000:]}"
    return p.stdout + p.stderr


def table_cmd(tmp, *args, expect_rc=0, **env):
    p = subprocess.run([str(ECFLOW), "table", *args, str(PIPELINE)], env=env_for(tmp, **env),
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == expect_rc, f"exit {p.returncode}:\n{p.stdout}\n{p.stderr[-5000:]}"
    return p.stdout


def table_dir(tmp):
    return tmp / "wh" / "shop" / "events"


def current_metadata(tmp):
    t = table_dir(tmp)
    return t / "metadata" / f"v{metadata_versions(t)[-1]}.metadata.json"


def truth_ids(tmp):
    with open(tmp / "truth.ndjson", encoding="utf-8") as f:
        return [json.loads(line)["event_id"] for line in f]


def live_files(meta_path):
    from pyiceberg.table import StaticTable
    t = StaticTable.from_metadata(str(meta_path))
    return t, t.inspect.files().to_pylist()


def check_rows(meta_path, expected_ids):
    """Every reader sees each expected event exactly once."""
    from pyiceberg.table import StaticTable
    table = StaticTable.from_metadata(str(meta_path))
    ids = table.scan(selected_fields=("event_id",)).to_arrow().column("event_id").to_pylist()
    assert len(ids) == len(expected_ids), (len(ids), len(expected_ids))
    assert collections.Counter(ids) == collections.Counter(expected_ids)
    con = duck()
    n, distinct = con.execute(
        f"SELECT count(*), count(DISTINCT event_id) FROM iceberg_scan('{meta_path}')").fetchone()
    assert n == distinct == len(expected_ids)
    return table


def disk_files(tmp, sub):
    return {p for p in glob.glob(str(table_dir(tmp) / sub / "**" / "*"), recursive=True) if os.path.isfile(p)}


def make_small_files(tmp, count=24000, rate=4000, interval="0.1s", **env):
    """Many commits with maintenance off: one small file per partition per commit."""
    run(tmp, COUNT=count, RATE=rate, COMMIT_INTERVAL=interval, MAINTENANCE="false", **env)
    return truth_ids(tmp)


# ------------------------------------------------------------------ tests


def test_background_maintenance_bounds_files_and_snapshots(tmp_path):
    """1 s-like commits (0.1 s here) with steady traffic: hundreds of small files, yet the
    current snapshot's files per partition and the snapshot count stay bounded."""
    log = run(tmp_path, COUNT=40000, RATE=2000, COMMIT_INTERVAL="0.1s", MAINTENANCE_INTERVAL="2s",
              COMPACT_MIN_FILES=4, KEEP_LAST=10, MAX_AGE="2s", MAX_MANIFESTS=4)
    ids = truth_ids(tmp_path)
    assert len(ids) == 40000
    meta_path = current_metadata(tmp_path)
    meta = json.loads(meta_path.read_text())
    appends = int(meta["snapshots"][-1]["summary"].get("total-data-files", 0))
    ops = collections.Counter(s["summary"]["operation"] for s in meta["snapshots"])
    assert "table maintenance: compact" in log, log[-3000:]
    table = check_rows(meta_path, ids)
    files = table.inspect.files().to_pylist()
    per_part = collections.Counter((f["partition"]["event_type"], f["partition"]["timestamp_day"])
                                   for f in files)
    commits = int(log.count("committed snapshot"))
    print(f"commits {commits}, files in the head {len(files)}, per partition {dict(per_part)}, "
          f"snapshots {len(meta['snapshots'])} {dict(ops)}")
    assert commits >= 30, commits  # ~100 on a quiet machine; fewer under ASan and load
    # bounded: small files of each tier (< 4 before they merge) plus what arrived since the
    # last run (2 s at 0.1 s commits), never one per commit
    assert max(per_part.values()) <= 4 * 3 + 25, per_part
    assert len(files) < commits, (len(files), commits)
    # snapshots: keep_last plus the ones younger than max_age, plus the commits of the last run
    assert len(meta["snapshots"]) <= 10 + 40, (len(meta["snapshots"]), ops)
    assert appends == len(files)


def test_compact_cli_rewrites_small_files_and_time_travel_survives(tmp_path):
    ids = make_small_files(tmp_path)
    before = current_metadata(tmp_path)
    table, files_before = live_files(before)
    assert len(files_before) >= 40  # one per partition per commit (fewer on a loaded machine)
    snaps_before = table.metadata.snapshots

    out = table_cmd(tmp_path, "compact", "--dry-run", COMPACT_MIN_FILES=4)
    assert "(dry run) compact:" in out and current_metadata(tmp_path) == before

    out = table_cmd(tmp_path, "compact", COMPACT_MIN_FILES=4)
    assert "compact:" in out and "rewritten into" in out, out
    after = current_metadata(tmp_path)
    meta = json.loads(after.read_text())
    head = meta["snapshots"][-1]
    assert head["summary"]["operation"] == "replace"
    assert int(head["summary"]["deleted-data-files"]) > 0
    table = check_rows(after, ids)
    files_after = table.inspect.files().to_pylist()
    assert len(files_after) <= len(files_before) // 4
    # one manifest for the whole head
    assert len(table.current_snapshot().manifests(table.io)) == 1
    # time travel: every older snapshot still reads what it held
    for s in snaps_before[-5:]:
        n = table.scan(snapshot_id=s.snapshot_id).to_arrow().num_rows
        assert n == int(s.summary["total-records"])
    stats = table_cmd(tmp_path, "stats")
    assert "total" in stats and "snapshots:" in stats


def test_expire_keeps_what_exactly_once_needs_and_deletes_unreferenced_files(tmp_path):
    ids = make_small_files(tmp_path)
    table_cmd(tmp_path, "compact", COMPACT_MIN_FILES=4)
    meta = json.loads(current_metadata(tmp_path).read_text())
    n_before = len(meta["snapshots"])
    on_disk_before = disk_files(tmp_path, "data")
    # keep only the head: the compaction's replace snapshot, which carries the writer's state
    time.sleep(1.2)  # every other snapshot older than MAX_AGE
    out = table_cmd(tmp_path, "expire", KEEP_LAST=1, MAX_AGE="1s")
    assert f"snapshots {n_before} -> 1;" in out, out
    meta = json.loads(current_metadata(tmp_path).read_text())
    (head,) = meta["snapshots"]
    assert head["summary"]["operation"] == "replace"
    # the writer's Kafka positions survive its snapshots (exactly-once resumes from them)
    assert json.loads(head["summary"]["ecflow.kafka-offsets@iceberg-test/lake"]) == {
        "events": {"0": 8000, "1": 8000, "2": 8000}}
    check_rows(current_metadata(tmp_path), ids)
    # the small files compaction replaced are gone from disk now
    table, files = live_files(current_metadata(tmp_path))
    live = {f["file_path"] for f in files}
    on_disk = disk_files(tmp_path, "data")
    assert len(on_disk) < len(on_disk_before)
    assert live <= on_disk
    # every kept snapshot still reads its total
    for s in table.metadata.snapshots:
        assert table.scan(snapshot_id=s.snapshot_id).to_arrow().num_rows == int(s.summary["total-records"])


def test_orphans_of_a_sigkilled_writer_are_removed_after_their_age(tmp_path):
    # a writer that dies with files written and not committed
    e = env_for(tmp_path, COUNT=1_000_000, RATE=20000, COMMIT_INTERVAL="30s", MAINTENANCE="false",
                ORPHAN_AGE="1m")
    p = subprocess.Popen([str(ECFLOW), "run", str(PIPELINE)], env=e, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and not disk_files(tmp_path, "data"):
        time.sleep(0.2)
    time.sleep(1.0)
    p.send_signal(signal.SIGKILL)
    p.wait()
    orphans = disk_files(tmp_path, "data")
    assert orphans, "the killed writer left no data files"
    # a committed table beside them
    ids = make_small_files(tmp_path, count=3000, rate=0, interval="1s", NDJSON=tmp_path / "t2.ndjson")
    ids = [json.loads(line)["event_id"] for line in open(tmp_path / "t2.ndjson")]
    # young: kept
    out = table_cmd(tmp_path, "clean", ORPHAN_AGE="1h", COMMIT_INTERVAL="1s")
    assert "0 removed" in out and orphans <= disk_files(tmp_path, "data"), out
    # old enough: removed, and only they
    time.sleep(1.1)
    out = table_cmd(tmp_path, "clean", "--dry-run", ORPHAN_AGE="1s", COMMIT_INTERVAL="0.4s")
    assert orphans <= disk_files(tmp_path, "data"), "a dry run removed files"
    out = table_cmd(tmp_path, "clean", ORPHAN_AGE="1s", COMMIT_INTERVAL="0.4s")
    assert f"{len(orphans)} removed" in out or "removed" in out, out
    assert not (orphans & disk_files(tmp_path, "data"))
    check_rows(current_metadata(tmp_path), ids)


def test_clean_keeps_the_dedupe_files_a_snapshot_names(tmp_path):
    """sink-iceberg's dedupe window lives in metadata/dedupe-*.stats files that snapshot
    summaries name (ecflow.dedupe-files), not the Iceberg metadata: orphan removal keeps those a
    snapshot names and removes, once old enough, those none names (a crash between writing one
    and its commit)."""
    make_small_files(tmp_path, count=3000, rate=3000, interval="0.1s", ECFLOW_PROFILE="dedupe")
    meta = json.loads(current_metadata(tmp_path).read_text())
    named = {n for s in meta["snapshots"]
             for n in s["summary"].get("ecflow.dedupe-files", "").split(",") if n}
    md = table_dir(tmp_path) / "metadata"
    assert named and all((md / n).is_file() for n in named), named
    orphan = md / "dedupe-0123456789abcdef-00000000-0000-4000-8000-000000000000.stats"
    orphan.write_bytes(b"ECFDEDUP")
    time.sleep(1.1)
    out = table_cmd(tmp_path, "clean", ORPHAN_AGE="1s", COMMIT_INTERVAL="0.4s", ECFLOW_PROFILE="dedupe")
    assert all((md / n).is_file() for n in named), f"clean removed a dedupe file a snapshot names:\n{out}"
    assert not orphan.exists(), out

    # after compaction and an expiry down to the replace snapshot, the writer's newest list is
    # named only as the entry carried for it: clean keeps those files too
    newest = [s for s in meta["snapshots"] if "ecflow.dedupe-files" in s["summary"]][-1]
    window = set(newest["summary"]["ecflow.dedupe-files"].split(","))
    table_cmd(tmp_path, "compact", COMPACT_MIN_FILES=2, MAX_MANIFESTS=1, ECFLOW_PROFILE="dedupe")
    time.sleep(1.2)
    table_cmd(tmp_path, "expire", KEEP_LAST=1, MAX_AGE="1s", ECFLOW_PROFILE="dedupe")
    (head,) = json.loads(current_metadata(tmp_path).read_text())["snapshots"]
    assert set(head["summary"]["ecflow.dedupe-files@iceberg-test/lake"].split(",")) == window
    out = table_cmd(tmp_path, "clean", ORPHAN_AGE="1s", COMMIT_INTERVAL="0.4s", ECFLOW_PROFILE="dedupe")
    assert all((md / n).is_file() for n in window), f"clean removed the carried dedupe window:\n{out}"


@pytest.mark.parametrize("verb", ["compact", "expire"])
def test_sigkill_during_maintenance_loses_nothing_and_the_next_run_completes(tmp_path, verb):
    ids = make_small_files(tmp_path, count=30000, rate=10000, interval="0.1s")
    if verb == "expire":
        table_cmd(tmp_path, "compact", COMPACT_MIN_FILES=2)
    rnd = random.Random(5)
    env = env_for(tmp_path, COMPACT_MIN_FILES=2, KEEP_LAST=2, MAX_AGE="1s")
    for i in range(6):
        p = subprocess.Popen([str(ECFLOW), "table", verb, str(PIPELINE)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rnd.uniform(0.05, 0.6))
        p.send_signal(signal.SIGKILL)
        p.wait()
        check_rows(current_metadata(tmp_path), ids)  # readable, nothing lost, nothing twice
    time.sleep(1.2)  # every snapshot older than MAX_AGE
    out = table_cmd(tmp_path, "all", COMPACT_MIN_FILES=2, KEEP_LAST=1, MAX_AGE="1s", ORPHAN_AGE="1s",
                    COMMIT_INTERVAL="0.4s")
    assert "clean:" in out, out
    table = check_rows(current_metadata(tmp_path), ids)
    # no data file left on disk that the table (its one kept snapshot) does not reference
    assert len(table.metadata.snapshots) == 1
    files = {f["file_path"] for f in table.inspect.files().to_pylist()}
    time.sleep(1.1)
    table_cmd(tmp_path, "clean", ORPHAN_AGE="1s", COMMIT_INTERVAL="0.4s")
    assert disk_files(tmp_path, "data") == files


def test_table_command_errors_are_clear(tmp_path):
    out = subprocess.run([str(ECFLOW), "table", "frobnicate", str(PIPELINE)], env=env_for(tmp_path),
                         capture_output=True, text=True)
    assert out.returncode != 0 and "unknown verb 'frobnicate'" in out.stderr
    out = subprocess.run([str(ECFLOW), "table", "stats", str(PIPELINE)], env=env_for(tmp_path),
                         capture_output=True, text=True)
    assert out.returncode == 1 and "no table at" in out.stderr, out.stderr
    out = subprocess.run([str(ECFLOW), "table", "--help"], env=env_for(tmp_path), capture_output=True,
                         text=True)
    assert out.returncode == 0 and "compact" in out.stdout and "sink-iceberg" in out.stdout
    out = subprocess.run([str(ECFLOW), "table", "stats", str(PIPELINE), "--stage", "nope"],
                         env=env_for(tmp_path), capture_output=True, text=True)
    assert out.returncode == 2 and "stage 'nope'" in out.stderr
