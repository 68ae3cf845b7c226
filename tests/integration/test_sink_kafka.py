"""sink-kafka against a real Apache Kafka broker.

Runs `build/ecflow run tests/integration/pipelines/sink_kafka.yaml` (source-generate ->
sink-kafka) and reads the topic back with kcat (librdkafka's CLI; Debian package `kcat`).

The broker comes from tests/services/kafka.sh, started once per session, unless
KAFKA_BOOTSTRAP names one already running. Tests that stop and restart a broker always get
their own from the script, so they never disturb a shared one.

Exit codes this file relies on (the core's): 0 ok; 2 a configuration error found at create
(e.g. an unknown `kafka.*` property); 1 a failure at start (librdkafka refuses properties
that conflict, or no broker answers within connect_timeout) or at run time (flush could not
deliver everything before flush_timeout).

Environment: ECFLOW_BIN (default build/ecflow), KAFKA_BOOTSTRAP (use this broker).
"""

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime
from pathlib import Path

import pytest

from conftest import ECFLOW, free_port
from harness import ensure_kcat, kafka_sh, read_topic, session_broker, start_broker, wait_until

PIPELINE = Path(__file__).resolve().parent / "pipelines" / "sink_kafka.yaml"

# source-generate's closing line: what its sources were told, token by token.
SOURCE_SUMMARY = re.compile(r"\[shoppers\] generated (\d+) events: (\d+) durable, (\d+) failed")
SUMMARY = re.compile(
    r"\[kafka\] closed: (\d+) message\(s\) produced, (\d+) delivered, (\d+) failed; "
    r"waited (\d+) time\(s\)"
)


# ------------------------------------------------------------------ helpers


class Broker:
    """A broker of our own, started by kafka.sh, that a test may stop and bring back.

    kafka.sh's stop wipes the data and its start picks new ports, but a real outage keeps
    both. So `down()` stops the broker's JVM with SIGTERM (a clean broker shutdown) after
    noting its command line, and `up()` runs that same command again: same port, same data,
    same cluster. The new pid goes into the state dir's kafka.pid for kafka.sh stop.
    """

    def __init__(self, state_dir):
        self.state = Path(state_dir)
        self.bootstrap = start_broker(self.state)
        self._argv = self._env = self._cwd = None

    def _pid(self):
        return int((self.state / "kafka.pid").read_text().strip())

    def down(self):
        pid = self._pid()
        proc = Path(f"/proc/{pid}")
        self._argv = [a.decode() for a in (proc / "cmdline").read_bytes().split(b"\0") if a]
        self._cwd = os.readlink(proc / "cwd")
        self._env = dict(
            kv.decode().split("=", 1)
            for kv in (proc / "environ").read_bytes().split(b"\0")
            if b"=" in kv
        )
        os.kill(pid, signal.SIGTERM)
        try:
            wait_until("the broker to exit", lambda: not proc.exists(), 60)
        except AssertionError:
            os.kill(pid, signal.SIGKILL)
            wait_until("the killed broker to exit", lambda: not proc.exists(), 10)

    def up(self):
        log = self.state / "logs" / "restart.out"
        env = dict(self._env, ECF_RESTART_LOG=str(log))
        # Through sh so the JVM is not our child: kafka.sh stop waits for the pid to vanish,
        # and an unreaped child of ours would linger as a zombie.
        r = subprocess.run(
            ["sh", "-c", '"$@" >>"$ECF_RESTART_LOG" 2>&1 </dev/null & echo $!', "sh", *self._argv],
            cwd=self._cwd,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        (self.state / "kafka.pid").write_text(r.stdout.strip() + "\n")
        wait_until(
            "the restarted broker to answer",
            lambda: kafka_sh("status", str(self.state), timeout=30).returncode == 0,
            90,
            step=0.5,
        )

    def stop(self):
        kafka_sh("stop", str(self.state), timeout=120)
        shutil.rmtree(self.state, ignore_errors=True)


def topic_partitions(bootstrap, topic):
    r = subprocess.run(
        ["kcat", "-b", bootstrap, "-L", "-t", topic, "-J"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    (t,) = json.loads(r.stdout)["topics"]
    return len(t["partitions"])


def pipeline_env(bootstrap, topic, **knobs):
    env = dict(os.environ, KAFKA_BOOTSTRAP=bootstrap, TOPIC=topic)
    env.update({k: str(v) for k, v in knobs.items()})
    return env


def run_pipeline(env, *extra, timeout=300):
    return subprocess.run(
        [str(ECFLOW), "run", str(PIPELINE), *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_pipeline(env, *extra):
    return subprocess.Popen(
        [str(ECFLOW), "run", str(PIPELINE), *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def summary(log):
    """(produced, delivered, failed, queue waits) from sink-kafka's closing line."""
    m = SUMMARY.search(log)
    assert m, f"no sink-kafka summary line in:\n{log[-3000:]}"
    return tuple(int(x) for x in m.groups())


def source_summary(log):
    """(generated, durable, failed) as the source heard it from the acks."""
    m = SOURCE_SUMMARY.search(log)
    assert m, f"no source-generate summary line in:\n{log[-3000:]}"
    return tuple(int(x) for x in m.groups())


def metric(port, name):
    """Sum of one metric over its series, read from the pipeline's /metrics."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except (urllib.error.URLError, OSError):
        return None
    values = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") or line.startswith(name + " ")
    ]
    return sum(values) if values else None


def ready(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as r:
            return r.status == 200
    except urllib.error.HTTPError as e:
        return e.code == 200
    except (urllib.error.URLError, OSError):
        return None


def metric_at_least(port, name, n):
    v = metric(port, name)
    return v is not None and v >= n


def new_topic(label):
    return f"sink_kafka_{label}_{uuid.uuid4().hex[:8]}"


def check_records(records, expected=None):
    """Every record is a distinct event whose Kafka key is its session_id."""
    events = [json.loads(r["payload"]) for r in records]
    ids = [e["event_id"] for e in events]
    assert len(set(ids)) == len(ids), "duplicate events in the topic"
    for r, e in zip(records, events):
        assert r["key"] == e["session_id"], r
    if expected is not None:
        assert len(records) == expected
    # One key, one partition: the producer hashes keys (murmur2, like the Java client).
    where = {}
    for r in records:
        where.setdefault(r["key"], set()).add(r["partition"])
    assert all(len(p) == 1 for p in where.values())
    return events


DELIVERED = "ecflow_kafka_messages_delivered_total"
FAILED = "ecflow_kafka_messages_failed_total"


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="session")
def ecflow_bin():
    if not ECFLOW.exists():
        pytest.fail(f"{ECFLOW} not built: cmake -S . -B build -G Ninja && ninja -C build")
    return ECFLOW


@pytest.fixture(scope="session")
def kafka(ecflow_bin):
    """Bootstrap address of the session's broker."""
    ensure_kcat()
    yield from session_broker("ecflow-kafka-sink-")


@pytest.fixture
def own_broker(ecflow_bin):
    """A broker only this test uses, so it may stop and restart it."""
    ensure_kcat()
    state = tempfile.mkdtemp(prefix="ecflow-kafka-outage-")
    try:
        broker = Broker(state)
    except Exception:
        kafka_sh("stop", state, timeout=120)
        shutil.rmtree(state, ignore_errors=True)
        raise
    try:
        yield broker
    finally:
        broker.stop()


# ------------------------------------------------------------------ tests


def test_every_event_lands_in_the_topic_with_its_session_key(kafka):
    topic = new_topic("all")
    r = run_pipeline(pipeline_env(kafka, topic, COUNT=20000, SEED=11))
    assert r.returncode == 0, r.stderr
    assert summary(r.stderr)[:3] == (20000, 20000, 0)
    assert source_summary(r.stderr) == (20000, 20000, 0)

    events = check_records(read_topic(kafka, topic), expected=20000)
    assert all(isinstance(e, dict) and e.get("event_type") for e in events)
    assert topic_partitions(kafka, topic) == 4  # create_topic with partitions: 4


@pytest.mark.parametrize("codec", ["zstd", "gzip", "none"])
def test_every_codec_round_trips(kafka, codec):
    topic = new_topic(codec)
    r = run_pipeline(pipeline_env(kafka, topic, COUNT=2000, COMPRESSION=codec))
    assert r.returncode == 0, r.stderr
    check_records(read_topic(kafka, topic), expected=2000)


def test_event_time_becomes_the_record_timestamp_and_headers_ride_along(kafka):
    topic = new_topic("ts")
    r = run_pipeline(pipeline_env(kafka, topic, COUNT=500), "--profile", "event-time-headers")
    assert r.returncode == 0, r.stderr
    records = read_topic(kafka, topic)
    events = check_records(records, expected=500)
    for rec, ev in zip(records, events):
        when = datetime.fromisoformat(ev["timestamp"].replace("Z", "+00:00"))
        assert rec["tstype"] == "create"
        assert rec["ts"] == int(when.timestamp() * 1000)
        assert rec["headers"] == ["producer", "ecflow", "schema", "ecommerce-v1"]
    assert records[0]["ts"] // 1000 >= 1709294400  # 2024-03-01T12:00:00Z, not now


def test_full_producer_queue_blocks_the_stage_and_loses_nothing(kafka):
    topic = new_topic("queue")
    r = run_pipeline(pipeline_env(kafka, topic, COUNT=20000, QUEUE_MAX_MESSAGES=64))
    assert r.returncode == 0, r.stderr
    produced, delivered, failed, waits = summary(r.stderr)
    assert (produced, delivered, failed) == (20000, 20000, 0)
    assert waits > 0, "a 64-record queue never filled: the test proves nothing"
    check_records(read_topic(kafka, topic), expected=20000)


def test_unknown_kafka_property_is_a_config_error_in_librdkafkas_words(kafka):
    r = run_pipeline(pipeline_env(kafka, new_topic("bad")), "--profile", "bad-property")
    assert r.returncode == 2, r.stderr
    line = next(l for l in r.stderr.splitlines() if "linger.mss" in l)
    assert "sink_kafka.yaml:" in line and "stage 'kafka'" in line
    assert "option 'kafka.linger.mss'" in line
    assert 'No such configuration property: "linger.mss"' in line


def test_conflicting_kafka_properties_stop_the_pipeline_at_start(kafka):
    r = run_pipeline(pipeline_env(kafka, new_topic("conflict")), "--profile",
                     "conflicting-properties")
    assert r.returncode == 1, r.stderr
    assert "stage 'kafka' could not start" in r.stderr
    assert "`acks` must be set to `all` when `enable.idempotence` is true" in r.stderr


def test_unreachable_broker_fails_start_naming_the_address():
    port = free_port()  # nothing listens there
    t0 = time.monotonic()
    r = run_pipeline(pipeline_env(f"127.0.0.1:{port}", new_topic("nobody"), CONNECT_TIMEOUT="1s"))
    assert r.returncode == 1, r.stderr
    assert f"no Kafka broker answered at '127.0.0.1:{port}' within 1.0s" in r.stderr
    assert "Connection refused" in r.stderr
    assert time.monotonic() - t0 < 20


def test_sasl_password_never_reaches_the_logs(kafka):
    secret = "Hunter2-" + uuid.uuid4().hex
    env = pipeline_env(kafka, new_topic("sasl"), SASL_PASSWORD=secret)
    r = run_pipeline(env, "--profile", "sasl-secret")
    assert r.returncode == 1  # SASL against a PLAINTEXT listener cannot connect
    assert "librdkafka CONF" in r.stderr, "debug logs did not run: the test proves nothing"
    assert secret not in r.stdout + r.stderr
    v = subprocess.run([str(ECFLOW), "validate", str(PIPELINE), "--profile", "sasl-secret"],
                       env=env, capture_output=True, text=True, timeout=60)
    assert secret not in v.stdout + v.stderr


def test_broker_outage_fails_after_delivery_timeout_then_recovers(own_broker):
    """Broker stopped mid-run: not ready, records fail with librdkafka's reason once
    delivery_timeout passes (and not before), nothing is called durable that is not in the
    topic; broker back: ready again and delivering, without a restart of the pipeline."""
    topic, port, count = new_topic("outage"), free_port(), 25000
    env = pipeline_env(own_broker.bootstrap, topic, COUNT=count, RATE=1000,
                       DELIVERY_TIMEOUT="3s", METRICS_PORT=port)
    proc = start_pipeline(env)
    try:
        wait_until("first deliveries", lambda: metric_at_least(port, DELIVERED, 2000), 60)
        assert ready(port) is True

        down_at = time.monotonic()  # records from here on cannot be delivered
        own_broker.down()
        wait_until("/ready to say 503", lambda: ready(port) is False, 30)
        wait_until("failed deliveries", lambda: metric_at_least(port, FAILED, 1), 30)
        took = time.monotonic() - down_at
        assert took > 2.5, f"records failed {took:.1f}s into the outage, before delivery_timeout"
        # librdkafka checks a down broker's records once per reconnect backoff (ours: 1s).
        assert took < 10.0, f"first failure only {took:.1f}s into the outage"

        delivered_in_outage = metric(port, DELIVERED)
        own_broker.up()
        wait_until("/ready to say 200", lambda: ready(port) is True, 60)
        wait_until("deliveries after the broker came back",
                   lambda: metric_at_least(port, DELIVERED, delivered_in_outage + 1000), 60)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()

    print(err)  # shown by pytest -rP, and with any failure
    assert proc.returncode == 0, err
    produced, delivered, failed, _ = summary(err)
    assert produced == count and delivered + failed == count
    assert failed > 0 and delivered > 0
    # What the source was told agrees with the sink. source-generate holds one
    # token per batch, so a batch with any failed record counts as failed:
    # the source may hear of more failures than the sink saw, never fewer.
    assert_source_agrees(source_summary(err), count, delivered, failed)
    assert "not delivered: Local: Message timed out" in err
    assert "Kafka brokers unreachable; not ready" in err
    records = read_topic(own_broker.bootstrap, topic)
    check_records(records)
    # Everything acked is in the topic; at most what failed in flight is there besides.
    assert delivered <= len(records) <= produced


def test_start_without_broker_is_unready_until_it_comes(own_broker):
    """require_broker: false starts with the broker down, not ready; when the broker comes
    the sink notices without traffic, turns ready and delivers what waited."""
    topic, port = new_topic("late"), free_port()
    own_broker.down()
    env = pipeline_env(own_broker.bootstrap, topic, COUNT=3000, RATE=500,
                       REQUIRE_BROKER="false", CONNECT_TIMEOUT="1s", METRICS_PORT=port)
    proc = start_pipeline(env)
    try:
        wait_until("/ready to answer", lambda: ready(port) is not None, 30)
        assert ready(port) is False
        own_broker.up()
        wait_until("/ready to say 200", lambda: ready(port) is True, 60)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert summary(err)[:3] == (3000, 3000, 0)
    check_records(read_topic(own_broker.bootstrap, topic), expected=3000)


def test_shutdown_with_broker_down_fails_leftovers_within_flush_timeout(own_broker):
    """SIGTERM while the broker is down: flush waits flush_timeout (not delivery_timeout),
    then fails what is left with a reason; nothing stays unsettled; exit 1."""
    topic, port = new_topic("flush"), free_port()
    env = pipeline_env(own_broker.bootstrap, topic, COUNT=0, RATE=1000,
                       DELIVERY_TIMEOUT="120s", FLUSH_TIMEOUT="2s", METRICS_PORT=port)
    proc = start_pipeline(env)
    try:
        wait_until("first deliveries", lambda: metric_at_least(port, DELIVERED, 1000), 60)
        own_broker.down()
        time.sleep(1.5)  # records pile up in the producer
        proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        out, err = proc.communicate(timeout=90)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    print(err)
    assert proc.returncode == 1, err
    assert took < 30, f"shutdown took {took:.1f}s"
    produced, delivered, failed, _ = summary(err)
    assert failed > 0 and delivered + failed == produced
    assert_source_agrees(source_summary(err), produced, delivered, failed)
    assert "not delivered within 2.0s; failed them" in err
    assert "did not settle" not in err  # the core's complaint about unsettled acks
    assert delivered <= len(read_topic_after_restart(own_broker, topic))


def assert_source_agrees(src, produced, delivered, failed):
    generated, durable, src_failed = src
    assert generated == produced
    assert durable + src_failed == produced
    assert durable <= delivered and src_failed >= failed, (src, delivered, failed)


def read_topic_after_restart(broker, topic):
    broker.up()
    return read_topic(broker.bootstrap, topic)
