"""Rows sink-iceberg cannot write (issue 18, item 4): a null in a column the table requires.
Such a row must never hold back the others of its batch. Before, the sink nacked the whole
batch, and source-kafka (on_failure: redeliver) offered it again forever: the good rows of
every batch with one bad row never reached the table.

Kafka -> transform-records (the fixture, told to emit nulls where a required field is missing:
a transform breaking the schema it declared) -> sink-iceberg, whose `rejected` port feeds a
dead-letter topic through sink-kafka, or is left unread (then the bad rows are nacked). One bad
row sits at the head of each partition (offset 0), where the commit's positions start.

Environment: ECFLOW_BIN, ECFLOW_PLUGIN_PATH with the transform-records fixture (ctest sets both).
"""
import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from conftest import ECFLOW, ROOT
from harness import (check_sanitizers, create_topic, duck, end_offsets, ensure_kcat, read_topic, session_broker, sigterm,
                     wait_until)

PLUGIN_PATH = os.environ.get(
    "ECFLOW_PLUGIN_PATH",
    f"{ROOT / 'build' / 'plugins'}:{ROOT / 'build' / 'plugins' / 'sink-iceberg' / 'tests' / 'fixtures'}",
)
PARTITIONS = 2
PER_PARTITION = 3000
TS = "2024-03-01T10:00:00Z"

PIPELINE = """
pipeline:
  name: lake-reject
  batch_size: 50
stages:
  from_kafka:
    plugin: source-kafka
    bootstrap: "${KAFKA_BOOTSTRAP}"
    group: "${GROUP}"
    topics: ["${TOPIC}"]
    on_failure: redeliver
    redeliver_backoff: 100ms
    commit_interval: 200ms
    kafka: {session.timeout.ms: 6000, heartbeat.interval.ms: 500}
  parse:
    plugin: transform-records
    inputs: [from_kafka]
    schema: "id:u!,note:u!,timestamp:tsu:UTC!"
    null_required: true
  lake:
    plugin: sink-iceberg
    inputs: [parse]
    warehouse: "${WAREHOUSE}"
    table: t.events
    partition_by: ["day(timestamp)"]
    commit_interval: 300ms
    max_uncommitted_rows: 100
    maintenance: false
"""
DLQ_STAGE = """
  dlq:
    plugin: sink-kafka
    inputs: [lake.rejected]
    bootstrap: "${KAFKA_BOOTSTRAP}"
    topic: "${DLQ_TOPIC}"
    create_topic: true
    partitions: 1
    replication: 1
"""


@pytest.fixture(scope="session")
def kafka():
    ensure_kcat("to produce test data")
    yield from session_broker("ecflow-lake-reject-")


def is_bad(p, i):
    return i % 37 == 0  # offset 0 of each partition, then every 37th


def produce(bootstrap, topic, lo, hi):
    for p in range(PARTITIONS):
        lines = []
        for i in range(lo, hi):
            e = {"id": f"{p}-{i}", "timestamp": TS}
            if not is_bad(p, i):
                e["note"] = f"n{i}"
            lines.append(json.dumps(e, separators=(",", ":")))
        r = subprocess.run(["kcat", "-b", bootstrap, "-P", "-t", topic, "-p", str(p)],
                           input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr


def want_ids(hi):
    return {f"{p}-{i}" for p in range(PARTITIONS) for i in range(hi) if not is_bad(p, i)}


def bad_positions(hi):
    return {(p, i) for p in range(PARTITIONS) for i in range(hi) if is_bad(p, i)}


def table_ids(tmp):
    t = tmp / "wh" / "t" / "events"
    if not (t / "metadata" / "version-hint.text").exists():
        return []
    return [r[0] for r in duck().execute(f"select id from iceberg_scan('{t}')").fetchall()]


class Lake:
    def __init__(self, tmp, kafka, dlq):
        tag = uuid.uuid4().hex[:8]
        self.tmp, self.kafka = tmp, kafka
        self.topic, self.dlq_topic = f"reject-{tag}", (f"reject-dlq-{tag}" if dlq else None)
        self.file = tmp / "pipeline.yaml"
        self.file.write_text(PIPELINE + (DLQ_STAGE if dlq else ""))
        self.env = dict(os.environ, ECFLOW_PLUGIN_PATH=PLUGIN_PATH, KAFKA_BOOTSTRAP=kafka,
                        TOPIC=self.topic, DLQ_TOPIC=self.dlq_topic or "", GROUP=f"g-{tag}",
                        WAREHOUSE=str(tmp / "wh"))
        create_topic(kafka, self.topic, PARTITIONS,
                     lambda: sorted(end_offsets(kafka, self.topic, PARTITIONS).values())[:1] == [0])
        self.proc, self.runs = None, 0

    def start(self):
        self.runs += 1
        self.log_path = self.tmp / f"run{self.runs}.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([str(ECFLOW), "run", str(self.file)], env=self.env,
                                     stdout=self.log, stderr=subprocess.STDOUT)

    def log_text(self):
        return self.log_path.read_text()

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            if sig == signal.SIGKILL:
                self.proc.kill()
                self.proc.wait()
            else:
                sigterm(self.proc, 60)
        self.log.close()
        return self.proc.returncode

    def envelopes(self):
        return [(json.loads(m["payload"]), m) for m in read_topic(self.kafka, self.dlq_topic)]


def wait_for_rows(lake, hi, timeout=120):
    want = want_ids(hi)

    def done():
        assert lake.proc.poll() is None, lake.log_text()[-4000:]
        return set(table_ids(lake.tmp)) >= want
    wait_until(f"{len(want)} good rows in the table", done, timeout, step=0.5)


def test_rejected_rows_go_to_the_dead_letter_topic_and_survive_a_kill(kafka, tmp_path):
    """Killed as soon as the first commit lands, with rows and dead letters in flight; the
    restart resumes at the group's offsets (sink-kafka keeps no positions), so what was in
    flight comes again: good rows the table has are skipped, bad rows are rejected again."""
    lake = Lake(tmp_path, kafka, dlq=True)
    produce(kafka, lake.topic, 0, PER_PARTITION)
    lake.start()
    try:
        wait_until("the first commit", lambda: table_ids(tmp_path), 120, step=0.05)
    finally:
        lake.stop(signal.SIGKILL)
    killed_with = len(set(table_ids(tmp_path)))
    lake.start()
    try:
        wait_for_rows(lake, PER_PARTITION)
        bad = bad_positions(PER_PARTITION)
        wait_until("every bad row in the dead-letter topic",
                   lambda: {(e["source"]["partition"], e["source"]["offset"])
                            for e, _ in lake.envelopes()} >= bad, 60, step=0.5)
    finally:
        assert lake.stop() == 0, lake.log_text()[-4000:]
    print(f"killed with {killed_with} of {len(want_ids(PER_PARTITION))} rows committed")

    ids = table_ids(tmp_path)
    assert len(ids) == len(set(ids)), "a row was written twice"
    assert set(ids) == want_ids(PER_PARTITION)
    # at least once on the dead-letter side (the kill may repeat one), nothing else in it
    envelopes = lake.envelopes()
    assert {(e["source"]["partition"], e["source"]["offset"]) for e, _ in envelopes} == bad
    for e, m in envelopes:
        assert (e["class"], e["field"], e["stage"]) == ("required", "note", "lake")
        assert e["source"]["topic"] == lake.topic
        row = json.loads(e["raw"])
        p, i = e["source"]["partition"], e["source"]["offset"]
        assert row == {"id": f"{p}-{i}", "note": None, "timestamp": "2024-03-01T10:00:00.000000Z"}
        headers = dict(zip(m["headers"][0::2], m["headers"][1::2]))
        assert headers["ecflow.dlq.reason"] == e["reason"] and "'note'" in e["reason"]
        assert headers["ecflow.dlq.class"] == "required"
    assert "sent to 'rejected'" in (tmp_path / "run1.log").read_text()
    check_sanitizers((tmp_path / "run1.log").read_text() + lake.log_text())


def test_without_a_reader_of_rejected_only_the_bad_rows_are_nacked(kafka, tmp_path):
    """Nothing reads `rejected`: each bad row alone is nacked, and the good rows of its batch
    are written. What follows is the source's on_failure: redeliver offers the bad row again
    (and holds its partition there), so only the rows up to the second bad row of each
    partition (offsets 1-36, in the batch of the bad row at offset 0) are sure to land."""
    lake = Lake(tmp_path, kafka, dlq=False)
    produce(kafka, lake.topic, 0, PER_PARTITION)
    lake.start()
    head = {f"{p}-{i}" for p in range(PARTITIONS) for i in range(1, 37)}
    try:
        def landed():
            assert lake.proc.poll() is None, lake.log_text()[-4000:]
            return set(table_ids(tmp_path)) >= head
        wait_until("the good rows beside the first bad ones", landed, 120, step=0.5)
    finally:
        rc = lake.stop()
    assert rc == 0, lake.log_text()[-4000:]
    check_sanitizers(lake.log_text())
    ids = table_ids(tmp_path)
    assert len(ids) == len(set(ids)) and set(ids) <= want_ids(PER_PARTITION)
    assert "column 'note' is required by the table but null; nacked" in lake.log_text()
