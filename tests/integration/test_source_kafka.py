"""source-kafka against a real Apache Kafka broker.

Runs `ecflow run tests/integration/pipelines/source_kafka.yaml` (source-kafka -> sink-file, or
-> the sink-test fixture with `--profile ledger`) and checks what reached the sink against
what was produced with kcat:
  - every keyed message arrives exactly once, with its key, partition, offset and timestamp;
  - a restart resumes at the committed offsets: nothing lost, and after a clean stop nothing
    twice;
  - two consumers in one group split the partitions, and rebalances (one joins, one leaves)
    lose nothing (at-least-once: the duplicates are counted and printed);
  - a revoke waits for acks a sink holds back, so a clean hand-over duplicates nothing;
  - a sink failure is never committed past: a restart starts exactly at the failed message;
    on_failure: redeliver retries it in place;
  - backpressure pauses the partitions and loses nothing;
  - configuration mistakes exit 2 before anything connects, and `validate` connects to nothing.

The broker comes from tests/services/kafka.sh in a private state dir, started once per session
and always stopped, unless KAFKA_BOOTSTRAP names one already running. Every test uses its own
topic and consumer group, so tests never see each other's data.

Environment: ECFLOW_BIN (default build/ecflow), ECFLOW_PLUGIN_PATH (default: plugins/ beside
the binary; the sink-test fixture's directory, <build>/tests/fixtures, is added when
missing), KAFKA_BOOTSTRAP (use this broker).
Only the standard library, pytest and kcat (Debian package `kcat`).
"""

import json
import os
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import ECFLOW, free_port
from harness import (create_topic as _create_topic, ensure_kcat, plugin_path_with_fixtures,
                     metric_sum, read_topic, scrape_metrics, session_broker, sigterm,
                     started, unique_names, wait_until)

# The sink-test fixture is built into <build>/tests/fixtures, not among the shipped
# plugins: added when the given path does not have it.
PLUGIN_PATH = plugin_path_with_fixtures()
PIPELINE = Path(__file__).resolve().parent / "pipelines" / "source_kafka.yaml"
PARTITIONS = 4

pytestmark = pytest.mark.skipif(not ECFLOW.exists(), reason=f"{ECFLOW} not built")


# ------------------------------------------------------------------ helpers


@pytest.fixture(scope="session")
def bootstrap():
    ensure_kcat("to produce test data")
    yield from session_broker("ecflow-source-kafka-")


def create_topic(bootstrap, topic, partitions=PARTITIONS):
    _create_topic(bootstrap, topic, partitions,
                  lambda: topic_partitions(bootstrap, topic) == partitions)


def topic_partitions(bootstrap, topic):
    r = subprocess.run(["kcat", "-b", bootstrap, "-L", "-t", topic, "-J"], capture_output=True,
                       text=True, timeout=60)
    if r.returncode != 0:
        return 0
    topics = json.loads(r.stdout).get("topics", [])
    return len(topics[0]["partitions"]) if topics and not topics[0].get("error") else 0


def payload(run, partition, i, extra=""):
    return json.dumps({"run": run, "p": partition, "i": i, "x": extra}, separators=(",", ":"))


def produce(bootstrap, topic, records, headers=()):
    """records: (partition or None, key, value); each partition's in order (offsets = order).
    headers: "name=value" strings put on every record."""
    by_part = {}
    for p, k, v in records:
        by_part.setdefault(p, []).append(f"{k}\t{v}")
    for p, lines in by_part.items():
        cmd = ["kcat", "-b", bootstrap, "-P", "-t", topic, "-K", "\t", "-z", "lz4"]
        for h in headers:
            cmd += ["-H", h]
        if p is not None:
            cmd += ["-p", str(p)]
        r = subprocess.run(cmd, input="\n".join(lines) + "\n", capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0, r.stderr


def numbered(run, n, per_partition=False, extra=lambda p, i: ""):
    """n records per partition (explicit partitions, offset == i), or n keyed records."""
    if per_partition:
        return [(p, f"key-{p}-{i % 7}", payload(run, p, i, extra(p, i)))
                for p in range(PARTITIONS) for i in range(n)]
    return [(None, f"session-{i % 53}", payload(run, None, i)) for i in range(n)]


class Consumer:
    """One `ecflow run` of the source-kafka pipeline, writing to its own output file."""

    def __init__(self, tmp, bootstrap, topic, group, name="c", profile=None, **knobs):
        self.out = Path(tmp) / f"{name}.out"
        self.log_path = Path(tmp) / f"{name}.log"
        self.metrics_port = free_port()
        env = dict(os.environ, KAFKA_BOOTSTRAP=bootstrap, TOPIC=topic, GROUP=group,
                   OUT=str(self.out), ECFLOW_PLUGIN_PATH=PLUGIN_PATH,
                   METRICS_PORT=str(self.metrics_port))
        env.update({k: str(v) for k, v in knobs.items()})
        cmd = [str(ECFLOW), "run", str(PIPELINE)]
        if profile:
            cmd += ["--profile", profile]
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self.t0 = time.monotonic()

    def log_text(self):
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text()

    def lines(self):
        if not self.out.exists():
            return []
        return [line for line in self.out.read_text().splitlines() if line]

    def wait_assigned(self, timeout=60):
        def assigned():
            if self.proc.poll() is not None:
                raise AssertionError(f"ecflow exited {self.proc.returncode}:\n{self.log_text()}")
            return "assigned" in self.log_text()
        wait_until("a partition assignment", assigned, timeout)

    def wait_lines(self, n, timeout=60):
        def enough():
            if self.proc.poll() is not None and len(self.lines()) < n:
                raise AssertionError(f"ecflow exited {self.proc.returncode} after "
                                     f"{len(self.lines())} of {n} lines:\n{self.log_text()}")
            return len(self.lines()) >= n
        wait_until(f"{n} lines in {self.out.name}", enough, timeout)

    def metric(self, name):
        """Sum of a metric's series on /metrics (None when absent)."""
        return metric_sum(scrape_metrics(self.metrics_port), name)

    def wait(self, timeout=60):
        try:
            self.proc.wait(timeout)
        finally:
            self.log.close()
        return self.proc.returncode

    def stop(self, check=True):
        if self.proc.poll() is None:
            sigterm(self.proc, 60)
        if not self.log.closed:
            self.log.close()
        text = self.log_path.read_text()
        assert "ERROR: AddressSanitizer" not in text, text
        assert "runtime error:" not in text, text
        if check:
            assert self.proc.returncode == 0, f"exit {self.proc.returncode}:\n{text}"
        return text


@pytest.fixture
def names(request):
    return unique_names(request, "sk")


@pytest.fixture
def consumers(tmp_path):
    yield from started(lambda *args, **kwargs: Consumer(tmp_path, *args, **kwargs))


def values(records):
    return [v for _, _, v in records]


def dup_count(lines):
    return len(lines) - len(set(lines))


# ------------------------------------------------------------------ tests


def test_consumes_every_keyed_message_exactly_once(bootstrap, names, consumers):
    topic, group, run = names
    create_topic(bootstrap, topic)
    recs = numbered(run, 2000)
    produce(bootstrap, topic, recs)

    t0 = time.monotonic()
    c = consumers(bootstrap, topic, group)
    c.wait_lines(len(recs))
    took = time.monotonic() - t0
    c.stop()
    lines = c.lines()
    assert sorted(lines) == sorted(values(recs)), "sink-file holds exactly the produced payloads"
    assert dup_count(lines) == 0
    print(f"\n2000 keyed messages consumed in {took:.2f}s (including the group join)")


def test_carries_key_partition_offset_timestamp_and_headers(bootstrap, names, consumers):
    topic, group, run = names
    create_topic(bootstrap, topic)
    produce(bootstrap, topic, numbered(run, 50, per_partition=True),
            headers=["trace=t-42", "source=kcat", "empty="])
    truth = {(m["partition"], m["offset"]): m for m in read_topic(bootstrap, topic)}
    assert len(truth) == 50 * PARTITIONS

    c = consumers(bootstrap, topic, group, profile="ledger", FORMAT="origin")
    c.wait_lines(len(truth))
    c.stop()
    got = [json.loads(line) for line in c.lines()]
    assert len(got) == len(truth)
    for g in got:
        t = truth[(g["partition"], g["offset"])]
        assert g["topic"] == topic
        assert g["key"] == t["key"]
        assert json.dumps(g["payload"], separators=(",", ":")) == t["payload"]
        assert g["event_time_us"] == t["ts"] * 1000, "event time = the record's timestamp"
        assert g["payload"]["p"] == g["partition"] and g["payload"]["i"] == g["offset"]
        assert g["headers"] == {"trace": "t-42", "source": "kcat", "empty": ""}


def test_restart_resumes_from_committed_offsets(bootstrap, names, consumers):
    topic, group, run = names
    create_topic(bootstrap, topic)
    first = numbered(run, 3000)
    produce(bootstrap, topic, first)

    # Slow sink, so the stop lands mid-stream with batches in flight.
    a = consumers(bootstrap, topic, group, name="a", profile="ledger", DELAY="20ms",
                  BATCH_SIZE=50, RING_CAPACITY=4)
    a.wait_lines(500)
    a.stop()
    got_a = a.lines()
    assert 500 <= len(got_a) < len(first), "stopped mid-stream"

    second = [(None, f"session-{i % 53}", payload(run, "second", i)) for i in range(1000)]
    produce(bootstrap, topic, second)
    b = consumers(bootstrap, topic, group, name="b")
    b.wait_lines(len(first) + len(second) - len(got_a))
    time.sleep(1)  # anything extra (a duplicate) would show up now
    b.stop()
    got_b = b.lines()

    everything = set(values(first) + values(second))
    union = got_a + got_b
    assert set(union) == everything, f"lost {len(everything - set(union))}"
    assert dup_count(union) == 0, "a clean stop commits everything it acknowledged"


COOP = {"ASSIGNOR": "cooperative-sticky"}
# A slow sink behind a ring of two batches, and a revoke that may not wait: the batches
# taken from Kafka but refused by the full ring are abandoned, never committed.
BACKPRESSURED = {"DELAY": "40ms", "BATCH_SIZE": 50, "RING_CAPACITY": 2,
                 "REBALANCE_TIMEOUT": "30ms"}


@pytest.mark.parametrize("knobs", [
    pytest.param({}, id="eager"),
    # The sink holds acks longer than the revoke may wait: what is unsettled at the
    # revoke is not committed, so the next owner redelivers it. Duplicates, no loss.
    pytest.param({"HOLD": "1500ms", "REBALANCE_TIMEOUT": "200ms"}, id="eager-acks-outlast-revoke"),
    pytest.param(BACKPRESSURED, id="eager-backpressured"),
    pytest.param(COOP, id="cooperative"),
    pytest.param(dict(COOP, **BACKPRESSURED), id="cooperative-backpressured"),
])
def test_two_consumers_split_partitions_and_rebalances_lose_nothing(bootstrap, names,
                                                                    consumers, knobs):
    topic, group, run = names
    create_topic(bootstrap, topic)
    produced = []
    stop_producing = threading.Event()

    def producer():
        i = 0
        while not stop_producing.is_set():
            chunk = [(None, f"session-{j % 53}", payload(run, None, j))
                     for j in range(i, i + 100)]
            produce(bootstrap, topic, chunk)
            produced.extend(values(chunk))
            i += 100
            time.sleep(0.1)

    def assigned(c):
        return c.metric("kafka_consumer_assigned_partitions")

    opts = dict({"profile": "ledger", "DELAY": "5ms", "BATCH_SIZE": 100}, **knobs)
    t = threading.Thread(target=producer)
    t.start()
    try:
        a = consumers(bootstrap, topic, group, name="a", **opts)
        a.wait_assigned()
        a.wait_lines(500)
        b = consumers(bootstrap, topic, group, name="b", **opts)
        # The join rebalances the group: each ends up with half of the partitions.
        wait_until("the group to split the partitions",
                   lambda: assigned(a) == PARTITIONS / 2 and assigned(b) == PARTITIONS / 2, 60)
        n_a, n_b = len(a.lines()), len(b.lines())
        b.wait_lines(n_b + 300)
        a.wait_lines(n_a + 300)
        a.stop()  # b takes over everything
        wait_until("b to own every partition", lambda: assigned(b) == PARTITIONS, 60)
        time.sleep(1)
    finally:
        stop_producing.set()
        t.join()
    total = set(produced)
    wait_until("b to catch up", lambda: total <= set(a.lines()) | set(b.lines()), 90)
    time.sleep(0.5)
    log_b = b.stop()

    union = a.lines() + b.lines()
    assert total <= set(union), f"lost {len(total - set(union))} of {len(total)}"
    assert len(a.lines()) > 0 and len(b.lines()) > 0
    dups = dup_count(union)
    if not knobs:
        # Eager, prompt acks: each revoke committed everything it had emitted. (With
        # cooperative-sticky, librdkafka 2.0.2 may declare the assignment lost in the
        # middle of the incremental rebalance, and a lost assignment commits nothing.)
        assert dups == 0, "every ack settled before the revoke committed"
    proto = "cooperative" if "ASSIGNOR" in knobs else "eager"
    assert f"({proto})" in log_b
    print(f"\nrebalances {knobs}: {len(total)} produced, a took {len(a.lines())}, "
          f"b took {len(b.lines())}, duplicates {dups}")


@pytest.mark.parametrize("assignor", [
    pytest.param({}, id="eager"),
    pytest.param(COOP, id="cooperative"),
])
def test_revoke_under_backpressure_abandons_what_the_ring_refused(bootstrap, names, consumers,
                                                                  assignor):
    """The revoke cannot wait for a full ring: records taken but not emitted are abandoned
    (never committed); partitions kept (cooperative) are read again from the first of them."""
    topic, group, run = names
    create_topic(bootstrap, topic)
    recs = numbered(run, 4000)
    produce(bootstrap, topic, recs)
    slow = dict(profile="ledger", DELAY="300ms", BATCH_SIZE=50, RING_CAPACITY=2,
                REBALANCE_TIMEOUT="50ms", **assignor)
    a = consumers(bootstrap, topic, group, name="a", **slow)
    a.wait_lines(150)
    b = consumers(bootstrap, topic, group, name="b", profile="ledger", **assignor)
    wait_until("the abandoned batches", lambda: "abandoned" in a.log_text(), 60)
    b.wait_assigned()
    time.sleep(1)
    a.stop()
    wait_until("every record", lambda: set(values(recs)) <= set(a.lines()) | set(b.lines()), 90)
    b.stop()
    # Whether an abandoned batch held records of partitions `a` kept (then read again from
    # the first of them) depends on timing; every record arriving somewhere is the check.
    rewound = "read again from the first of them" in a.log_text()
    union = a.lines() + b.lines()
    print(f"\nrevoke under backpressure {assignor or 'eager'}: a {len(a.lines())}, "
          f"b {len(b.lines())}, duplicates {dup_count(union)}, kept partitions rewound: {rewound}")


def test_crash_loses_nothing(bootstrap, names, consumers):
    """SIGKILL: nothing drains, nothing is committed at stop; the restart redelivers."""
    topic, group, run = names
    create_topic(bootstrap, topic)
    recs = numbered(run, 3000)
    produce(bootstrap, topic, recs)
    a = consumers(bootstrap, topic, group, name="a", profile="ledger", DELAY="20ms",
                  BATCH_SIZE=50, COMMIT_INTERVAL="100ms")
    a.wait_lines(1000)
    a.proc.kill()
    a.proc.wait()
    got_a = a.lines()
    # The dead member holds its partitions until session.timeout.ms (6s in the pipeline).
    b = consumers(bootstrap, topic, group, name="b")
    wait_until("every record", lambda: set(values(recs)) <= set(got_a) | set(b.lines()), 90)
    b.stop()
    union = got_a + b.lines()
    print(f"\ncrash: a wrote {len(got_a)} before SIGKILL, b {len(b.lines())}, "
          f"duplicates {dup_count(union)} (at most what was acked since the last commit)")
    assert dup_count(union) < len(got_a)


def test_revoke_waits_for_acks_a_sink_holds(bootstrap, names, consumers):
    """A sink that acknowledges late (like an Iceberg commit): the revoke waits for it."""
    topic, group, run = names
    create_topic(bootstrap, topic)
    recs = numbered(run, 2000)
    produce(bootstrap, topic, recs)
    a = consumers(bootstrap, topic, group, name="a", profile="ledger", HOLD="5s")
    a.wait_lines(len(recs))
    b = consumers(bootstrap, topic, group, name="b", profile="ledger")
    wait_until("the revoke", lambda: "revoked" in a.log_text(), 60)
    b.wait_assigned()
    produce(bootstrap, topic, [(None, "late", payload(run, "late", i)) for i in range(100)])
    wait_until("the late records", lambda: len(set(a.lines()) | set(b.lines())) >= 2100, 60)
    time.sleep(1)
    a.stop()
    b.stop()
    union = a.lines() + b.lines()
    assert len(set(union)) == 2100
    assert dup_count(union) == 0, "acks settled within rebalance_timeout were committed"
    m = re.search(r"revoked \d+ partition\(s\) after (\d+) ms", a.log_text())
    assert m and int(m.group(1)) >= 500, "the revoke waited for the held acks"


def test_sink_failure_is_never_committed_past(bootstrap, names, consumers):
    topic, group, run = names
    create_topic(bootstrap, topic)
    recs = numbered(run, 100, per_partition=True,
                    extra=lambda p, i: "FAIL-ME" if (p, i) == (1, 50) else "")
    produce(bootstrap, topic, recs)

    a = consumers(bootstrap, topic, group, name="a", profile="ledger", FAIL_MATCH="FAIL-ME")
    assert a.wait(60) == 1, a.log_text()
    log = a.stop(check=False)
    # Records read one after another share an ack token (a run): the failure
    # names the run that holds the failed record, and all of it comes again.
    m = re.search(re.escape(topic) + r"\[1\]@(\d+)(?:\.\.(\d+) \(\d+ records\))? failed downstream", log)
    assert m, log
    first, last = int(m.group(1)), int(m.group(2) or m.group(1))
    assert first <= 50 <= last
    assert "ledger: refused by fail_match" in log

    # The restart must start partition 1 at the failed record's run, not past it.
    b = consumers(bootstrap, topic, group, name="b")
    got_a = a.lines()
    missing = set(values(recs)) - set(got_a)
    b.wait_lines(len(missing))
    time.sleep(1)
    b.stop()
    got_b = [json.loads(line) for line in b.lines()]
    p1 = sorted(r["i"] for r in got_b if r["p"] == 1)
    assert p1 and p1[0] == first, f"partition 1 resumed at {p1[:1]}, not at the failed run ({first})"
    assert set(values(recs)) <= set(got_a) | set(b.lines())
    assigned = next(line for line in b.log_text().splitlines() if "assigned" in line)
    if first > 0:
        assert f"{topic}[1]@{first}" in assigned, f"assigned at the committed offset {first}: {assigned}"
    else:  # the failed run was partition 1's first: nothing of it was committed
        assert not re.search(re.escape(topic) + r"\[1\]@\d", assigned), f"assigned uncommitted: {assigned}"


def test_redeliver_policy_retries_the_failed_message(bootstrap, names, consumers):
    topic, group, run = names
    create_topic(bootstrap, topic)
    recs = numbered(run, 100, per_partition=True,
                    extra=lambda p, i: "FAIL-ME" if (p, i) == (2, 30) else "")
    produce(bootstrap, topic, recs)
    c = consumers(bootstrap, topic, group, profile="ledger", ON_FAILURE="redeliver",
                  FAIL_MATCH="FAIL-ME", FAIL_TIMES=2)
    wait_until("every record, the failed one after two retries",
               lambda: set(values(recs)) <= set(c.lines()), 60)
    assert c.metric("kafka_consumer_redeliveries_total") == 2
    log = c.stop()
    assert log.count("redelivering from there") == 2
    lines = c.lines()
    assert lines.count(payload(run, 2, 30, "FAIL-ME")) == 1
    print(f"\nredeliver: {len(lines)} lines for {len(recs)} records "
          f"({dup_count(lines)} duplicates from the seeks back)")


def test_backpressure_pauses_partitions_and_loses_nothing(bootstrap, names, consumers):
    topic, group, run = names
    create_topic(bootstrap, topic)
    recs = numbered(run, 600)
    produce(bootstrap, topic, recs)
    # 400 ms per batch of 50: the ring (2 batches) stays full longer than the 250 ms after
    # which the source pauses its partitions.
    c = consumers(bootstrap, topic, group, profile="ledger", DELAY="400ms", BATCH_SIZE=50,
                  RING_CAPACITY=2)
    c.wait_assigned()
    wait_until("a backpressure pause", lambda: (c.metric("kafka_consumer_pauses_total") or 0) >= 1,
               30)
    c.wait_lines(len(recs), timeout=60)
    c.stop()
    assert sorted(c.lines()) == sorted(values(recs))


def test_a_full_prefetch_queue_is_refilled_at_once(bootstrap, names, consumers):
    """librdkafka 2.0 looks at a full prefetch queue again only when its broker thread wakes (up
    to a second later): the source wakes it once the queue has half drained (fetch_nudge.c)."""
    topic, group, run = names
    create_topic(bootstrap, topic)
    recs = numbered(run, 3000)
    produce(bootstrap, topic, recs)
    # ~100-byte records, fetches of 4 KiB a partition into a 16 KiB queue, a sink taking 50
    # records every 20 ms: the queue fills while the pipeline works through it, many times over.
    c = consumers(bootstrap, topic, group, profile="ledger", PREFETCH="16KiB", PARTITION_FETCH=4096,
                  DELAY="20ms", BATCH_SIZE=50, RING_CAPACITY=2)
    c.wait_lines(len(recs), timeout=120)
    nudges = c.metric("kafka_consumer_fetch_nudges_total") or 0
    c.stop()
    assert sorted(c.lines()) == sorted(values(recs))
    assert nudges >= 3, f"{nudges} nudge(s)"


def test_topic_regex_subscribes_to_matching_topics(bootstrap, names, consumers):
    topic, group, run = names
    create_topic(bootstrap, topic + "-a", 1)
    create_topic(bootstrap, topic + "-b", 2)
    ra = [(0, "k", payload(run, "a", i)) for i in range(30)]
    rb = [(1, "k", payload(run, "b", i)) for i in range(40)]
    produce(bootstrap, topic + "-a", ra)
    produce(bootstrap, topic + "-b", rb)
    c = consumers(bootstrap, topic, group, profile="regex")
    c.wait_lines(70)
    c.stop()
    assert sorted(c.lines()) == sorted(values(ra + rb))


def test_topic_created_after_start_is_consumed_within_seconds(bootstrap, names, consumers):
    """A named topic that does not exist yet when the stage subscribes (in the default
    pipeline, the producer stage creates it a moment later) is assigned as soon as it is
    created, not at librdkafka's next metadata refresh (topic.metadata.refresh.interval.ms,
    five minutes by default)."""
    topic, group, run = names
    c = consumers(bootstrap, topic, group)
    wait_until("the missing topic's warning",
               lambda: "does not exist (yet)" in c.log_text(), 30)
    time.sleep(1.5)  # the stage is past its start, consuming nothing
    create_topic(bootstrap, topic)
    recs = numbered(run, 200)
    produce(bootstrap, topic, recs)
    c.wait_lines(len(recs), timeout=30)
    c.stop()
    assert sorted(c.lines()) == sorted(values(recs))


def run_quick(bootstrap, tmp_path, *args, **env):
    e = dict(os.environ, KAFKA_BOOTSTRAP=bootstrap, TOPIC="t", GROUP="g",
             OUT=str(tmp_path / "out"), ECFLOW_PLUGIN_PATH=PLUGIN_PATH)
    e.update(env)
    return subprocess.run([str(ECFLOW), *args], env=e, capture_output=True, text=True,
                          timeout=60)


def test_unknown_property_fails_create_in_librdkafkas_words(tmp_path):
    r = run_quick("127.0.0.1:9", tmp_path, "run", str(PIPELINE), "--profile", "bad-property")
    assert r.returncode == 2, r.stderr
    assert "option 'kafka.fetch.wait.max.mss': librdkafka rejected it" in r.stderr
    assert "No such configuration property" in r.stderr


def test_auto_commit_cannot_be_turned_on(tmp_path):
    r = run_quick("127.0.0.1:9", tmp_path, "run", str(PIPELINE), "--profile", "auto-commit")
    assert r.returncode == 2, r.stderr
    assert "option 'kafka.enable.auto.commit'" in r.stderr


def test_validate_connects_to_nothing(tmp_path):
    # Port 9 (discard) has no broker: create must not try to reach it.
    t0 = time.monotonic()
    r = run_quick("127.0.0.1:9", tmp_path, "validate", str(PIPELINE))
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - t0 < 5


def test_unreachable_broker_fails_start(tmp_path):
    port = free_port()
    r = run_quick(f"127.0.0.1:{port}", tmp_path, "run", str(PIPELINE), CONNECT_TIMEOUT="1s")
    assert r.returncode == 1, r.stderr
    assert f"no Kafka broker answered at '127.0.0.1:{port}'" in r.stderr
