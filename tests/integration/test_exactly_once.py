"""Exactly once from Kafka into Iceberg, across crashes.

Pipeline (pipelines/exactly_once.yaml): source-kafka -> transform-validate (the shipped
pipelines/schemas/ecommerce_event.yaml) -> sink-iceberg with a short commit_interval, against
a real broker and a real table. Checks:
  - SIGKILL at random moments, several times, restarting each time while events keep
    arriving; then every produced event is in the table exactly once by event_id (none
    missing, no duplicates), pyiceberg and DuckDB agree, the version hint names the latest
    metadata, every file the table references exists, and the last snapshot's positions
    are the topic's end offsets;
  - the restart positions: with only sink-iceberg downstream, source-kafka starts where the
    table's snapshot says ("sinks"); with a dead-letter branch into a sink that keeps no
    positions it falls back to the group's offsets (or auto_offset_reset), and sink-iceberg
    skips the redelivered records it already has;
  - SIGTERM commits what is buffered and exits 0 promptly; a restart adds nothing;
  - records delivered again before their commit (another sink failed one, and the source
    rewound the partition) are settled with that commit, not written twice;
  - two pipelines writing one table under their own writer ids read back their own positions.

The broker comes from tests/services/kafka.sh in a private state dir, started once per session
and always stopped, unless KAFKA_BOOTSTRAP names one already running. Every test uses its own
topic, consumer group and warehouse.

Environment: ECFLOW_BIN (default build/ecflow), ECFLOW_PLUGIN_PATH (default: plugins/ beside
the binary), KAFKA_BOOTSTRAP (use this broker), EXACTLY_ONCE_EVENTS (default 50000; the
end-to-end issue wants >= 200000), EXACTLY_ONCE_KILLS (default 6), EXACTLY_ONCE_SEED (the
kill schedule; printed, so a failing run can be replayed).
Standard library, pytest, kcat (Debian package), pyiceberg and duckdb (tests/requirements.txt).
"""

import datetime as dt
import json
import os
import random
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import ECFLOW, ROOT, free_port
from harness import (check_sanitizers, create_topic as _create_topic, duck, metadata_versions,
                     metric_sum, plugin_path_with_fixtures, scrape_metrics, session_broker, sigterm,
                     started, unique_names, wait_until)
from harness import end_offsets as _end_offsets
from lakehouse import seaweedfs  # noqa: F401  (the session fixture, for the REST variant)

# The sink-test fixture (profile `rewind`) is built into <build>/tests/fixtures, not among
# the shipped plugins: added when the given path does not have it.
PLUGIN_PATH = plugin_path_with_fixtures()
PIPELINE = Path(__file__).resolve().parent / "pipelines" / "exactly_once.yaml"
SCHEMA = ROOT / "pipelines" / "schemas" / "ecommerce_event.yaml"
PARTITIONS = 4
N_EVENTS = int(os.environ.get("EXACTLY_ONCE_EVENTS", "50000"))
KILLS = int(os.environ.get("EXACTLY_ONCE_KILLS", "6"))
SEED = int(os.environ.get("EXACTLY_ONCE_SEED", str(random.randrange(1 << 30))))
WRITER = "exactly-once-test/lake"  # the pipeline's default writer_id

pytestmark = pytest.mark.skipif(not ECFLOW.exists(), reason=f"{ECFLOW} not built")


# ------------------------------------------------------------------ helpers


@pytest.fixture(scope="session")
def bootstrap():
    if not shutil.which("kcat"):
        pytest.fail("kcat is needed to produce test data: apt-get install -y kcat")
    yield from session_broker("ecflow-exactly-once-")


def create_topic(bootstrap, topic, partitions=PARTITIONS):
    _create_topic(bootstrap, topic, partitions,
                  lambda: len(end_offsets(bootstrap, topic, partitions)) == partitions)


def end_offsets(bootstrap, topic, partitions=PARTITIONS):
    """{partition: high watermark}, only the partitions kcat could look up."""
    return {p: o for p, o in _end_offsets(bootstrap, topic, partitions).items() if o >= 0}


TYPES = ["page_view", "add_to_cart", "remove_from_cart", "purchase", "search"]


def make_events(run, n):
    """(session_id, JSON) pairs that the shipped schema accepts, unique event_ids."""
    now = dt.datetime.now(dt.timezone.utc)
    out = []
    for i in range(n):
        t = TYPES[i % len(TYPES)]
        ts = (now - dt.timedelta(milliseconds=n - i)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        e = {"event_id": f"{run}-{i:07d}", "event_type": t, "user_id": f"u{i % 5003}",
             "session_id": f"s{i % 997}", "location": "Berlin", "device": "mobile",
             "timestamp": ts}
        if t == "search":
            e["query"] = f"shoes size {i % 13}"
        elif t == "page_view":
            e["page_url"] = f"https://shop.example/p/{i % 811}"
        else:
            e.update(product_id=f"p{i % 811}", quantity=1 + i % 3, currency="EUR")
        body = json.dumps(e, separators=(",", ":"))
        if t not in ("search", "page_view"):  # an exact decimal, spelled as JSON
            body = body[:-1] + f',"price":{i % 10000 // 100}.{i % 100:02d}}}'
        out.append((e["session_id"], body))
    return out


def produce(bootstrap, topic, events):
    r = subprocess.run(["kcat", "-b", bootstrap, "-P", "-t", topic, "-K", "\t", "-z", "lz4"],
                       input="".join(f"{k}\t{v}\n" for k, v in events), capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr


class Pipeline:
    """One `ecflow run` of exactly_once.yaml."""

    def __init__(self, tmp, bootstrap, topic, group, name, profile=None, **knobs):
        self.name = name
        self.log_path = Path(tmp) / f"{name}.log"
        self.metrics_port = free_port()
        env = dict(os.environ, KAFKA_BOOTSTRAP=bootstrap, TOPIC=topic, GROUP=group,
                   WAREHOUSE=str(Path(tmp) / "wh"), SCHEMA_FILE=str(SCHEMA),
                   ECFLOW_PLUGIN_PATH=PLUGIN_PATH, METRICS_PORT=str(self.metrics_port))
        env.update({k: str(v) for k, v in knobs.items()})
        cmd = [str(ECFLOW), "run", str(PIPELINE)] + (["--profile", profile] if profile else [])
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def log_text(self):
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text()

    def alive(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name}: ecflow exited {self.proc.returncode}:\n"
                                 f"{self.log_text()[-5000:]}")
        return True

    def wait_assigned(self, timeout=60):
        wait_until(f"{self.name}: a partition assignment",
                   lambda: self.alive() and re.search(r"assigned [1-9]\d* partition",
                                                      self.log_text()), timeout)

    def metric(self, name):
        """Sum of a metric's series on /metrics (None when absent or not serving)."""
        try:
            text = scrape_metrics(self.metrics_port)
        except OSError:
            return None
        return metric_sum(text, name)

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self.log.close()
        self._check_sanitizers()

    def term(self, timeout=60):
        """SIGTERM; returns (exit code, seconds until exit)."""
        t0 = time.monotonic()
        sigterm(self.proc, timeout)
        took = time.monotonic() - t0
        self.log.close()
        self._check_sanitizers()
        return self.proc.returncode, took

    def _check_sanitizers(self):
        check_sanitizers(self.log_path.read_text())


@pytest.fixture
def names(request):
    return unique_names(request, "eo")


@pytest.fixture
def pipelines(tmp_path):
    yield from started(lambda *args, **kwargs: Pipeline(tmp_path, *args, **kwargs))


# ------------------------------------------------------------------ the table


def table_dir(tmp):
    return Path(tmp) / "wh" / "shop" / "events"


def current_metadata(t):
    """The latest committed metadata (what our catalog and pyiceberg read), or None."""
    v = metadata_versions(t)
    return json.loads((t / "metadata" / f"v{v[-1]}.metadata.json").read_text()) if v else None


def current_summary(t):
    meta = current_metadata(t)
    if not meta or meta.get("current-snapshot-id") in (None, -1):
        return {}
    snap = next(s for s in meta["snapshots"] if s["snapshot-id"] == meta["current-snapshot-id"])
    return snap["summary"]


def total_records(t):
    return int(current_summary(t).get("total-records", 0))


@pytest.fixture(scope="session")
def readers():
    try:
        import duckdb  # noqa: F401
        import duckdb_extension_avro  # noqa: F401
        import duckdb_extension_iceberg  # noqa: F401
        from pyiceberg.table import StaticTable  # noqa: F401
    except ImportError as e:
        pytest.fail(f"{e}: pip install -r tests/requirements.txt")
    return True


def writer_positions(t, writer):
    """The Kafka positions of `writer`'s newest snapshot in the current lineage."""
    meta = current_metadata(t)
    by_id = {s["snapshot-id"]: s for s in meta.get("snapshots", [])}
    sid = meta.get("current-snapshot-id")
    while sid in by_id:
        summary = by_id[sid]["summary"]
        if summary.get("ecflow.writer-id") == writer:
            return json.loads(summary.get("ecflow.kafka-offsets", "{}"))
        sid = by_id[sid].get("parent-snapshot-id")
    return None


def check_positions(t, bootstrap, topic, writer=WRITER):
    """The writer's stored positions are where the topic ends, and name no other topic."""
    stored = writer_positions(t, writer)
    ends = end_offsets(bootstrap, topic)
    assert stored is not None and set(stored) == {topic}, f"{writer}: {stored}"
    assert {int(p): v for p, v in stored[topic].items()} == {p: v for p, v in ends.items() if v > 0}, \
        f"{writer}: positions {stored} vs end offsets {ends}"


def verify_table(t, produced_ids, bootstrap=None, topic=None):
    """Every produced event exactly once, in both readers; returns a report dict."""
    from pyiceberg.table import StaticTable
    versions = metadata_versions(t)
    latest = t / "metadata" / f"v{versions[-1]}.metadata.json"
    hint = (t / "metadata" / "version-hint.text").read_text().strip()
    assert hint == str(versions[-1]), f"version-hint.text says {hint}, latest is v{versions[-1]}"

    table = StaticTable.from_metadata(str(latest))
    py_ids = table.scan(selected_fields=("event_id",)).to_arrow().column("event_id").to_pylist()
    con = duck()
    # the table folder: DuckDB goes through version-hint.text, as users' queries do
    dk_ids = [r[0] for r in con.execute(f"select event_id from iceberg_scan('{t}')").fetchall()]
    dk_count = con.execute(f"select count(*) from iceberg_scan('{latest}')").fetchone()[0]

    want = set(produced_ids)
    report = {}
    for reader, ids in (("pyiceberg", py_ids), ("duckdb", dk_ids)):
        got = set(ids)
        report[reader] = {"rows": len(ids), "duplicates": len(ids) - len(got),
                          "missing": len(want - got), "unexpected": len(got - want)}
    print(f"\n{t}: {report}")
    for reader in ("pyiceberg", "duckdb"):
        r = report[reader]
        assert r["duplicates"] == 0, f"{reader}: {r['duplicates']} duplicated event_ids"
        assert r["missing"] == 0, f"{reader}: {r['missing']} produced events not in the table"
        assert r["unexpected"] == 0, f"{reader}: {r['unexpected']} event_ids nobody produced"
    assert len(py_ids) == len(dk_ids) == dk_count == len(want)
    assert total_records(t) == len(want), "the snapshot summary's total-records"

    # Nothing a reader can reach is missing; what crashes left behind is unreachable.
    files = table.inspect.files().column("file_path").to_pylist()
    gone = [f for f in files if not os.path.exists(f.removeprefix("file://"))]
    assert not gone, f"the table references files that do not exist: {gone[:5]}"
    on_disk = {str(p) for p in (t / "data").rglob("*") if p.is_file()}
    report["orphan_data_files"] = len(on_disk - {f.removeprefix("file://") for f in files})

    if topic:
        check_positions(t, bootstrap, topic)
    return report


def start_positions(log):
    """How the assign lines of a log started the partitions: counts by origin."""
    out = {"sinks": 0, "group": 0, "auto_offset_reset": 0}
    for line in re.findall(r"assigned \d+ partition\(s\) \([a-z]+\): (.*)", log):
        out["sinks"] += len(re.findall(r"\(sinks", line))
        out["group"] += len(re.findall(r"\(group\)", line))
        out["auto_offset_reset"] += len(re.findall(r"\(auto_offset_reset\)", line))
    return out


# ------------------------------------------------------------------ tests


def test_sigkill_at_random_moments_loses_and_duplicates_nothing(bootstrap, names, pipelines,
                                                                 tmp_path, readers):
    topic, group, run = names
    create_topic(bootstrap, topic)
    events = make_events(run, N_EVENTS)
    rng = random.Random(SEED)
    print(f"\nseed {SEED} (EXACTLY_ONCE_SEED), {N_EVENTS} events, {KILLS} kills")

    # Events keep arriving at a steady rate through the whole kill phase (each cycle is about
    # 8 s: a restart waits ~6 s for the group to drop the killed member), and the rest goes
    # out when the kills are done: every kill lands with work in flight.
    kills_done = [False]
    produced = [0]
    producer_error = []
    rate = len(events) / (KILLS * 8.0 + 4)
    step = 0.2

    def producer():
        try:
            t0 = time.monotonic()
            while produced[0] < len(events):
                due = len(events) if kills_done[0] else int(rate * (time.monotonic() - t0))
                due = min(due, len(events))
                if due > produced[0]:
                    produce(bootstrap, topic, events[produced[0]:due])
                    produced[0] = due
                time.sleep(step)
        except Exception as e:  # reported by the test thread
            producer_error.append(e)

    th = threading.Thread(target=producer, daemon=True)
    th.start()
    t_start = time.monotonic()
    logs = []
    for k in range(KILLS):
        # every other run with the dead-letter branch: resume unknown, group offsets
        profile = "dlq" if k % 2 else None
        p = pipelines(bootstrap, topic, group, name=f"run{k}", profile=profile)
        when = rng.random()
        if when < 0.2:
            # early: while starting, joining the group or creating the table
            time.sleep(rng.uniform(0.05, 1.5))
        else:
            p.wait_assigned()
            # right after the assignment (catching up on the backlog), or later (steady)
            time.sleep(rng.uniform(0.0, 0.6) if when < 0.5 else rng.uniform(0.6, 3.0))
        taken, acked = p.metric("kafka_consumer_messages_total"), p.metric("kafka_consumer_acked_total")
        rows = total_records(table_dir(tmp_path))
        p.kill()
        logs.append(p.log_text())
        print(f"kill {k + 1} ({profile or 'default'}): {produced[0]} produced, {rows} rows in the "
              f"table, this run read {taken or 0:.0f} and had {(taken or 0) - (acked or 0):.0f} "
              f"unacknowledged (uncommitted) at the kill")
    kills_done[0] = True
    th.join(120)
    assert not producer_error, producer_error
    assert produced[0] == len(events)

    # The last run consumes the rest and is stopped cleanly.
    final = pipelines(bootstrap, topic, group, name="final")
    final.wait_assigned()
    t = table_dir(tmp_path)
    wait_until(f"{len(events)} rows in the table",
               lambda: final.alive() and total_records(t) >= len(events), 180, 0.25)
    time.sleep(1.0)  # a duplicate would have time to land now
    rc, took = final.term()
    logs.append(final.log_text())
    assert rc == 0, final.log_text()[-5000:]
    print(f"all consumed {time.monotonic() - t_start:.1f}s after the first start; "
          f"SIGTERM exit in {took:.1f}s")

    report = verify_table(t, [json.loads(v)["event_id"] for _, v in events], bootstrap, topic)
    starts = start_positions("\n".join(logs))
    skipped_runs = sum("skipping redelivered records" in log for log in logs)
    print(f"kills {KILLS}; start positions {starts}; runs that skipped redeliveries "
          f"{skipped_runs}; orphan data files left by the kills {report['orphan_data_files']}")
    assert starts["sinks"] > 0, "no restart resumed from the table's positions"


def test_restart_positions_come_from_the_table_or_skips_cover_the_fallback(
        bootstrap, names, pipelines, tmp_path, readers):
    topic, group, run = names
    create_topic(bootstrap, topic)
    events = make_events(run, 6000)
    produce(bootstrap, topic, events)
    t = table_dir(tmp_path)
    # Group offsets are never committed (an hour apart, and SIGKILL skips the final commit):
    # only the table knows what is done.
    knobs = {"KAFKA_COMMIT_INTERVAL": "1h"}

    a = pipelines(bootstrap, topic, group, name="a", **knobs)
    wait_until("6000 rows in the table", lambda: a.alive() and total_records(t) >= 6000, 90)
    a.kill()
    ends = end_offsets(bootstrap, topic)
    assert sum(ends.values()) == 6000

    # Only sink-iceberg downstream: every partition starts where the table says.
    b = pipelines(bootstrap, topic, group, name="b", **knobs)
    b.wait_assigned()
    log = b.log_text()
    for p, end in ends.items():
        if end == 0:
            continue  # the table never saw it: unknown, the group decides
        assert re.search(rf"{re.escape(topic)}\[{p}\]@{end} \(sinks\)", log), log[-3000:]
    time.sleep(1.5)
    assert not b.metric("kafka_consumer_messages_total"), "nothing is read again"
    b.kill()

    # A branch that keeps no positions: unknown, so the group decides (it has nothing:
    # auto_offset_reset earliest), everything is delivered again, and skipped.
    c = pipelines(bootstrap, topic, group, name="c", profile="dlq", **knobs)
    c.wait_assigned()
    wait_until("6000 redelivered records skipped",
               lambda: c.alive() and c.metric("iceberg_skipped_redelivered_total") == 6000, 60)
    assert not c.metric("iceberg_rows_total"), "nothing is written again"
    rc, _ = c.term()
    log = c.log_text()
    assert rc == 0, log[-5000:]
    assert start_positions(log) == {"sinks": 0, "group": 0, "auto_offset_reset": PARTITIONS}
    assert "skipping redelivered records below offset" in log

    verify_table(t, [json.loads(v)["event_id"] for _, v in events], bootstrap, topic)


def test_sigterm_commits_what_is_buffered_and_exits_0(bootstrap, names, pipelines, tmp_path,
                                                      readers):
    topic, group, run = names
    create_topic(bootstrap, topic)
    events = make_events(run, 5000)
    produce(bootstrap, topic, events)
    t = table_dir(tmp_path)

    # No commit by interval: everything stays buffered until the stop.
    p = pipelines(bootstrap, topic, group, name="buffered", COMMIT_INTERVAL="1h")
    wait_until("5000 rows taken into data files",
               lambda: p.alive() and p.metric("iceberg_rows_total") == 5000, 60)
    assert total_records(t) == 0, "nothing committed before the stop"
    rc, took = p.term()
    log = p.log_text()
    assert rc == 0, log[-5000:]
    assert took < 20, f"SIGTERM took {took:.1f}s"
    assert re.search(r"committed snapshot \d+ \(flush\)", log), log[-3000:]
    ids = [json.loads(v)["event_id"] for _, v in events]
    verify_table(t, ids, bootstrap, topic)
    snapshots = len(current_metadata(t)["snapshots"])

    # A restart resumes at the end and adds nothing (no new snapshot either).
    again = pipelines(bootstrap, topic, group, name="again", COMMIT_INTERVAL="200ms")
    again.wait_assigned()
    fed = sum(1 for v in end_offsets(bootstrap, topic).values() if v > 0)
    assert start_positions(again.log_text())["sinks"] == fed
    time.sleep(1.5)
    rc, _ = again.term()
    assert rc == 0, again.log_text()[-5000:]
    verify_table(t, ids, bootstrap, topic)
    assert len(current_metadata(t)["snapshots"]) == snapshots


def test_copies_of_an_event_are_written_once_by_event_id(bootstrap, names, pipelines, tmp_path,
                                                         readers):
    """A client that never got its answer sends the same events again: new Kafka records with
    the same event_ids. With dedupe_key the table has each event once, whether the copy
    arrives in the commit of its original or after it, and the copies' positions count, so a
    restart does not bring them back. (The window's eviction: sink-iceberg's unit tests.)"""
    topic, group, run = names
    create_topic(bootstrap, topic)
    events = make_events(run, 3000)
    produce(bootstrap, topic, events + events[:500])  # copies in the originals' commit
    t = table_dir(tmp_path)
    p = pipelines(bootstrap, topic, group, name="dedupe", profile="dedupe")
    wait_until("500 copies dropped",
               lambda: p.alive() and p.metric("iceberg_skipped_duplicates_total") == 500, 60)
    wait_until("3000 rows committed",
               lambda: p.alive() and p.metric("iceberg_committed_rows_total") == 3000, 60)
    produce(bootstrap, topic, events[2000:2400])  # copies of committed rows
    wait_until("900 copies dropped",
               lambda: p.alive() and p.metric("iceberg_skipped_duplicates_total") == 900, 60)
    # freshness is observed once per row made readable, copies not counted
    assert p.metric("iceberg_freshness_seconds_count") == 3000
    rc, _ = p.term()
    assert rc == 0, p.log_text()[-5000:]
    ids = [json.loads(v)["event_id"] for _, v in events]
    verify_table(t, ids, bootstrap, topic)  # the table's positions cover the copies too

    again = pipelines(bootstrap, topic, group, name="again", profile="dedupe")
    again.wait_assigned()
    time.sleep(1.5)
    assert not again.metric("iceberg_rows_total"), "a restart brings no copy back"
    rc, _ = again.term()
    assert rc == 0, again.log_text()[-5000:]
    verify_table(t, ids, bootstrap, topic)


def table_properties(t):
    return current_metadata(t).get("properties", {})


def writer_summary(t, writer=WRITER):
    """The summary of `writer`'s newest snapshot in the current lineage ({} when none)."""
    meta = current_metadata(t)
    by_id = {s["snapshot-id"]: s for s in meta.get("snapshots", [])}
    sid = meta.get("current-snapshot-id")
    while sid in by_id:
        if by_id[sid]["summary"].get("ecflow.writer-id") == writer:
            return by_id[sid]["summary"]
        sid = by_id[sid].get("parent-snapshot-id")
    return {}


class TableView:
    """What the dedupe tests look at, in a file-catalog table or through the REST catalog:
    the table's properties, the writer's newest summary, whether a metadata/ file exists."""

    def __init__(self, tmp_path, sw=None, table=None):
        self.t, self.sw, self.table = table_dir(tmp_path), sw, table

    def _rest(self):
        from lakehouse import pyiceberg_rest_catalog
        return pyiceberg_rest_catalog(self.sw).load_table(self.table)

    def properties(self):
        return dict(self._rest().metadata.properties) if self.sw else table_properties(self.t)

    def summary(self):
        if not self.sw:
            return writer_summary(self.t) if metadata_versions(self.t) else {}
        try:
            meta = self._rest().metadata
        except Exception:  # noqa: BLE001  (not created yet)
            return {}
        snaps = {s.snapshot_id: s for s in meta.snapshots}
        sid = meta.current_snapshot_id
        while sid in snaps:
            props = snaps[sid].summary.additional_properties
            if props.get("ecflow.writer-id") == WRITER:
                return dict(props)
            sid = snaps[sid].parent_snapshot_id
        return {}

    def positions_sum(self, topic):
        return sum(json.loads(self.summary().get("ecflow.kafka-offsets", "{}")).get(topic, {}).values())

    def metadata_file_exists(self, name):
        if not self.sw:
            return (self.t / "metadata" / name).is_file()
        t = self._rest()
        return t.io.new_input(f"{t.location()}/metadata/{name}").exists()

    def verify(self, ids, bootstrap, topic):
        if self.sw:
            verify_rest_table(self.sw, self.table, ids, bootstrap, topic)
        else:
            verify_table(self.t, ids, bootstrap, topic)


@pytest.mark.parametrize("storage", ["local", "rest"])
def test_a_copy_after_a_sigkill_is_written_once_by_event_id(bootstrap, names, pipelines, tmp_path,
                                                            readers, storage, request):
    """Issue 15, item 4: an event is committed, the process is SIGKILLed, and after the restart
    the same events come again as new Kafka records (a client retrying requests it never got an
    answer for). The window of recent event_ids comes back from the dedupe files the writer's
    newest snapshot lists, under the table's own hash key, so the copies are dropped: one row
    per event_id. `rest`: the table in SeaweedFS's REST catalog (the key is set through a
    set-properties update), its files on S3."""
    topic, group, run = names
    create_topic(bootstrap, topic)
    events = make_events(run, 300)
    knobs = {}
    if storage == "rest":
        sw = request.getfixturevalue("seaweedfs")
        knobs = rest_knobs(sw, f"eo_{run.lower()}"[:40])
        view = TableView(tmp_path, sw, knobs["TABLE"])
    else:
        view = TableView(tmp_path)
    p = pipelines(bootstrap, topic, group, name="first", profile="dedupe", **knobs)
    produce(bootstrap, topic, events)
    wait_until("300 rows committed",
               lambda: p.alive() and p.metric("iceberg_committed_rows_total") == 300, 60)
    wait_until("positions at the end offsets", lambda: view.positions_sum(topic) == 300, 30)
    key = view.properties().get("ecflow.dedupe.hash-key", "")
    assert re.fullmatch(r"[0-9a-f]{32}", key), f"the table's hash key: {key!r}"
    listed = view.summary().get("ecflow.dedupe-files", "")
    assert listed and all(view.metadata_file_exists(n) for n in listed.split(",")), listed
    p.kill()

    again = pipelines(bootstrap, topic, group, name="again", profile="dedupe", **knobs)
    again.wait_assigned()
    produce(bootstrap, topic, events)  # the same event_ids, new records
    settled = lambda: (again.metric("iceberg_committed_rows_total") or 0) + \
        (again.metric("iceberg_skipped_duplicates_total") or 0)  # noqa: E731
    wait_until("the copies settled", lambda: again.alive() and settled() >= 300, 60)
    wait_until("positions past the copies", lambda: view.positions_sum(topic) == 600, 30)
    assert again.metric("iceberg_skipped_duplicates_total") == 300, again.log_text()[-3000:]
    assert re.search(r"dedupe: 300 keys from \d+ files? ", again.log_text()), again.log_text()[-3000:]
    rc, _ = again.term()
    assert rc == 0, again.log_text()[-5000:]
    assert view.properties().get("ecflow.dedupe.hash-key") == key, "the key survives a restart"
    view.verify([json.loads(v)["event_id"] for _, v in events], bootstrap, topic)


def test_each_table_gets_its_own_dedupe_hash_key(bootstrap, names, pipelines, tmp_path, readers):
    """Issue 18, item 11: the dedupe hash is keyed per table (16 random bytes, a table
    property set at the first start with dedupe_key), so clients cannot choose ids that
    collide; two tables never share a key."""
    topic, group, run = names
    create_topic(bootstrap, topic)
    keys = []
    for table in ("shop.events", "shop.others"):
        p = pipelines(bootstrap, topic, group + table, name=table, profile="dedupe", TABLE=table)
        p.wait_assigned()
        rc, _ = p.term()
        assert rc == 0, p.log_text()[-5000:]
        t = Path(tmp_path) / "wh" / "shop" / table.split(".")[1]
        keys.append(table_properties(t).get("ecflow.dedupe.hash-key", ""))
    assert all(re.fullmatch(r"[0-9a-f]{32}", k) for k in keys), keys
    assert keys[0] != keys[1]

    # A damaged key is reported, and the pipeline runs anyway (dedupe in memory only).
    t = table_dir(tmp_path)
    latest = t / "metadata" / f"v{metadata_versions(t)[-1]}.metadata.json"
    meta = json.loads(latest.read_text())
    meta["properties"]["ecflow.dedupe.hash-key"] = "not hex"
    latest.write_text(json.dumps(meta))
    p = pipelines(bootstrap, topic, group + "again", name="damaged", profile="dedupe")
    p.wait_assigned()
    events = make_events(run, 20)
    produce(bootstrap, topic, events + events[:5])
    wait_until("20 rows committed, 5 copies dropped",
               lambda: p.alive() and p.metric("iceberg_committed_rows_total") == 20 and
               p.metric("iceberg_skipped_duplicates_total") == 5, 60)
    rc, _ = p.term()
    assert rc == 0, p.log_text()[-5000:]
    assert re.search(r"warn .*dedupe: no hash key kept with the table \(table .*property "
                     r"'ecflow.dedupe.hash-key' is not 32 hex digits", p.log_text()), p.log_text()[-3000:]


def test_two_pipelines_on_one_table_keep_their_own_positions(bootstrap, names, pipelines,
                                                              tmp_path, readers):
    """Each writer id reads back its own positions, whoever committed last."""
    topic, group, run = names
    topics = {"writer-a": f"{topic}-a", "writer-b": f"{topic}-b"}
    ids = []
    for w, tp in topics.items():
        create_topic(bootstrap, tp)
        events = make_events(f"{run}-{w}", 4000)
        produce(bootstrap, tp, events)
        ids += [json.loads(v)["event_id"] for _, v in events]
    t = table_dir(tmp_path)
    # group offsets never committed: a restart knows only what its writer's snapshots say
    knobs = {"KAFKA_COMMIT_INTERVAL": "1h", "COMMIT_INTERVAL": "150ms"}

    first = [pipelines(bootstrap, tp, f"{group}-{w}", name=f"{w}-1", WRITER_ID=w, **knobs)
             for w, tp in topics.items()]
    wait_until("8000 rows in the table",
               lambda: all(p.alive() for p in first) and total_records(t) >= 8000, 90)
    for p in first:
        p.kill()
    writers = {s["summary"].get("ecflow.writer-id") for s in current_metadata(t)["snapshots"]}
    assert writers == set(topics), writers
    for w, tp in topics.items():
        check_positions(t, bootstrap, tp, writer=w)

    again = [pipelines(bootstrap, tp, f"{group}-{w}", name=f"{w}-2", WRITER_ID=w, **knobs)
             for w, tp in topics.items()]
    for p in again:
        p.wait_assigned()
    time.sleep(1.5)
    for p, (w, tp) in zip(again, topics.items()):
        log = p.log_text()
        fed = sum(1 for v in end_offsets(bootstrap, tp).values() if v > 0)
        assert start_positions(log)["sinks"] == fed, log[-3000:]
        assert not p.metric("kafka_consumer_messages_total"), f"{w} read records again"
        rc, _ = p.term()
        assert rc == 0, p.log_text()[-5000:]
    verify_table(t, ids)


def test_rewind_after_another_sink_failed_writes_nothing_twice(bootstrap, names, pipelines,
                                                                tmp_path, readers):
    """A second sink fails one record once; with on_failure: redeliver the source rewinds that
    partition once the record settles (after sink-iceberg's commit, which holds it too), and
    sink-iceberg gets records again that it has committed already."""
    topic, group, run = names
    create_topic(bootstrap, topic)
    events = make_events(run, 4000)
    produce(bootstrap, topic, events)
    victim = json.loads(events[1500][1])["event_id"]
    ledger = tmp_path / "ledger.out"
    ids = [json.loads(v)["event_id"] for _, v in events]

    p = pipelines(bootstrap, topic, group, name="rewind", profile="rewind",
                  COMMIT_INTERVAL="300ms", LEDGER_OUT=ledger,
                  FAIL_MATCH=f'"event_id":"{victim}"')

    def ledger_ids():
        if not ledger.exists():
            return set()
        return {json.loads(line)["event_id"] for line in ledger.read_text().splitlines() if line}

    wait_until("every record in the ledger, the failed one redelivered",
               lambda: p.alive() and ledger_ids() >= set(ids), 60)
    wait_until("the redelivered records skipped by sink-iceberg",
               lambda: (p.metric("iceberg_skipped_redelivered_total") or 0) > 0, 30)
    rc, _ = p.term()
    log = p.log_text()
    assert rc == 0, log[-5000:]
    assert "skipping redelivered records below offset" in log, log[-3000:]
    verify_table(table_dir(tmp_path), ids, bootstrap, topic)


def test_reassigned_before_the_commit_writes_nothing_twice(bootstrap, names, pipelines,
                                                           tmp_path, readers):
    """The same process gets its partitions back while their records wait for the commit: an
    eager rebalance (another member joins the group for another topic) revokes them, the held
    acks cannot settle in time, nothing is committed, and the partitions start over. The
    records arrive again while the first copies sit in the commit being prepared."""
    topic, group, run = names
    create_topic(bootstrap, topic)
    create_topic(bootstrap, f"{topic}-other")
    events = make_events(run, 4000)
    produce(bootstrap, topic, events)
    ids = [json.loads(v)["event_id"] for _, v in events]
    t = table_dir(tmp_path)

    a = pipelines(bootstrap, topic, group, name="a", COMMIT_INTERVAL="1h", REBALANCE_TIMEOUT="300ms")
    wait_until("4000 rows taken, none committed",
               lambda: a.alive() and a.metric("iceberg_rows_total") == 4000, 60)
    b = pipelines(bootstrap, f"{topic}-other", group, name="b", WAREHOUSE=tmp_path / "wh-b")
    wait_until("the rebalance: a revoked and assigned again",
               lambda: a.alive() and len(re.findall(r"assigned [1-9]", a.log_text())) >= 2, 60)
    wait_until("4000 records delivered again and held, not written",
               lambda: a.alive() and a.metric("iceberg_skipped_redelivered_total") == 4000, 60)
    assert a.metric("iceberg_rows_total") == 4000, "nothing written twice"
    assert total_records(t) == 0
    rc, _ = a.term()
    log = a.log_text()
    assert rc == 0, log[-5000:]
    assert "delivered again before the commit" in log, log[-3000:]
    assert b.term()[0] == 0
    verify_table(t, ids, bootstrap, topic)


def rest_knobs(sw, ns):
    """exactly_once.yaml's lake on the seaweedfs fixture's REST catalog and S3."""
    return dict(CATALOG="rest", CATALOG_URI=sw["ICEBERG_REST_URI"], CATALOG_CREDENTIAL=sw["ICEBERG_CREDENTIAL"],
                WAREHOUSE=sw["ICEBERG_WAREHOUSE"], TABLE=f"{ns}.events", CREATE_NAMESPACE="true",
                AWS_ENDPOINT_URL=sw["S3_ENDPOINT"], AWS_ACCESS_KEY_ID=sw["AWS_ACCESS_KEY_ID"],
                AWS_SECRET_ACCESS_KEY=sw["AWS_SECRET_ACCESS_KEY"], AWS_REGION=sw.get("AWS_REGION", "us-east-1"))


def rest_total_records(sw, table):
    from lakehouse import pyiceberg_rest_catalog
    try:
        snap = pyiceberg_rest_catalog(sw).load_table(table).current_snapshot()
    except Exception:  # noqa: BLE001  (not created yet)
        return 0
    return int(snap.summary.additional_properties.get("total-records", 0)) if snap else 0


def verify_rest_table(sw, table, produced_ids, bootstrap, topic):
    """verify_table() through the REST catalog: pyiceberg and DuckDB, each event once, and
    the writer's positions at the topic's ends."""
    from lakehouse import duckdb_rest_ids, pyiceberg_rest_catalog
    t = pyiceberg_rest_catalog(sw).load_table(table)
    py_ids = t.scan(selected_fields=("event_id",)).to_arrow().column("event_id").to_pylist()
    dk_ids = duckdb_rest_ids(sw, table, len(py_ids))
    want = set(produced_ids)
    for reader, ids in (("pyiceberg", py_ids), ("duckdb", dk_ids)):
        assert len(ids) == len(set(ids)), f"{reader}: {len(ids) - len(set(ids))} duplicated event_ids"
        assert set(ids) == want, f"{reader}: {len(want - set(ids))} missing, {len(set(ids) - want)} unexpected"
    snaps = {s.snapshot_id: s for s in t.metadata.snapshots}
    sid = t.metadata.current_snapshot_id
    while sid in snaps and snaps[sid].summary.additional_properties.get("ecflow.writer-id") != WRITER:
        sid = snaps[sid].parent_snapshot_id
    stored = json.loads(snaps[sid].summary.additional_properties["ecflow.kafka-offsets"])
    ends = end_offsets(bootstrap, topic)
    assert {int(p): v for p, v in stored[topic].items()} == {p: v for p, v in ends.items() if v > 0}
    print(f"\n{table}: {len(py_ids)} rows, each once, in pyiceberg and DuckDB (REST)")


@pytest.mark.parametrize("storage", ["local", "rest"])
def test_two_processes_share_partitions_and_table_through_rebalances_and_a_sigkill(
        bootstrap, names, pipelines, tmp_path, readers, storage, request):
    """Scale-out: two `ecflow run` of the same pipeline (same group, same table, the same
    writer_id) split the partitions; a third joins after one is SIGKILLed. Partitions move on
    every join and on the kill, while events keep arriving; every event is in the table
    exactly once, and both processes committed. `rest`: the table in SeaweedFS's REST catalog,
    its files on S3."""
    topic, group, run = names
    create_topic(bootstrap, topic)
    events = make_events(run, 40000)
    done, produced, producer_error = [False], [0], []

    def producer():
        try:
            t0 = time.monotonic()
            while produced[0] < len(events):
                due = min(len(events), int(len(events) * (time.monotonic() - t0) / 25.0))
                if due > produced[0]:
                    produce(bootstrap, topic, events[produced[0]:due])
                    produced[0] = due
                time.sleep(0.2)
        except Exception as e:  # reported by the test thread
            producer_error.append(e)

    knobs = dict(COMMIT_INTERVAL="500ms")
    if storage == "rest":
        sw = request.getfixturevalue("seaweedfs")
        knobs.update(rest_knobs(sw, f"eo_{run.lower()}"[:40]))
        rows = lambda: rest_total_records(sw, knobs["TABLE"])  # noqa: E731
    else:
        rows = lambda: total_records(table_dir(tmp_path))  # noqa: E731
    th = threading.Thread(target=producer, daemon=True)
    th.start()
    a = pipelines(bootstrap, topic, group, name="a", **knobs)
    a.wait_assigned()
    time.sleep(2)
    b = pipelines(bootstrap, topic, group, name="b", **knobs)
    b.wait_assigned()
    wait_until("a's partitions split with b",
               lambda: a.alive() and len(re.findall(r"assigned [1-9]\d* partition", a.log_text())) >= 2, 60)
    time.sleep(3)
    a.kill()  # its uncommitted rows are lost with it; b takes its partitions after 6 s
    wait_until("b takes every partition",
               lambda: b.alive() and re.search(rf"assigned {PARTITIONS} partition", b.log_text()), 60)
    c = pipelines(bootstrap, topic, group, name="c", **knobs)
    c.wait_assigned()
    th.join(120)
    assert not producer_error, producer_error
    wait_until(f"{len(events)} rows in the table",
               lambda: b.alive() and c.alive() and rows() >= len(events), 180, 0.5)
    time.sleep(1.0)  # a duplicate would have time to land now
    logs = {}
    for p in (b, c):
        rc, _ = p.term()
        logs[p.name] = p.log_text()
        assert rc == 0, logs[p.name][-5000:]
    logs["a"] = a.log_text()
    commits = {n: len(re.findall(r"committed snapshot", log)) for n, log in logs.items()}
    print(f"commits per process: {commits}")
    assert all(commits.values()), commits
    ids = [json.loads(v)["event_id"] for _, v in events]
    if storage == "rest":
        verify_rest_table(sw, knobs["TABLE"], ids, bootstrap, topic)
    else:
        verify_table(table_dir(tmp_path), ids, bootstrap, topic)


def test_a_commit_a_rebalance_outran_is_refused_not_written_twice(bootstrap, names, pipelines,
                                                                  tmp_path, readers):
    """Scale-out when a revoke gives up: `a` holds every partition's records for a commit that
    is an hour away, `b` joins, a's revoke stops waiting after 300 ms, and `b` reads and commits
    the partitions it got. a's commit at SIGTERM holds records `b` committed: refused with the
    reason, and its rows fail back instead of landing twice; `b` takes a's partitions when `a`
    leaves, and every event is in the table once."""
    topic, group, run = names
    create_topic(bootstrap, topic)
    events = make_events(run, 4000)
    produce(bootstrap, topic, events)
    ids = [json.loads(v)["event_id"] for _, v in events]
    t = table_dir(tmp_path)
    a = pipelines(bootstrap, topic, group, name="a", COMMIT_INTERVAL="1h", REBALANCE_TIMEOUT="300ms")
    wait_until("4000 rows taken by a, none committed",
               lambda: a.alive() and a.metric("iceberg_rows_total") == 4000, 60)
    b = pipelines(bootstrap, topic, group, name="b", COMMIT_INTERVAL="200ms")
    wait_until("b committed the partitions it got",
               lambda: b.alive() and (b.metric("iceberg_commits_total") or 0) >= 1, 60)
    assert 0 < total_records(t) < 4000
    a.term()
    log = a.log_text()
    assert re.search(r"was committed up to offset \d+ by another process under writer id "
                     r"'exactly-once-test/lake' while this one holds its records from offset \d+ .*"
                     r"refused, so that nothing is written twice", log), log[-4000:]
    wait_until("b took a's partitions and committed them",
               lambda: b.alive() and total_records(t) >= 4000, 120, 0.25)
    time.sleep(1.0)  # a duplicate would have time to land now
    assert b.term()[0] == 0, b.log_text()[-4000:]
    verify_table(t, ids, bootstrap, topic)
