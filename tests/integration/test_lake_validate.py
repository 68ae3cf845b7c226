"""Kafka -> transform-validate against a real broker: a generated stream with
a known share of invalid events lands exactly — every valid event downstream
as a record, every invalid one in the dead-letter topic with its reason in the
body and in headers, none lost, none in both places."""
import json
import re
import signal
import subprocess
import time
import uuid
from pathlib import Path

from conftest import ECFLOW, ecflow_env

PIPELINE = Path(__file__).resolve().parent / "pipelines" / "lake_validate.yaml"
COUNT = 20000
TYPES = {"page_view", "add_to_cart", "remove_from_cart", "purchase", "search"}
TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:?\d\d)$")


def is_valid(line):
    """An independent check of the rules the generator's corruptions break."""
    try:
        e = json.loads(line)
    except ValueError:
        return False
    return (isinstance(e, dict) and e.get("event_type") in TYPES and isinstance(e.get("user_id"), str)
            and isinstance(e.get("session_id"), str) and isinstance(e.get("event_id"), str)
            and bool(TS.match(str(e.get("timestamp", "")))))


def read_topic(bootstrap, topic):
    r = subprocess.run(["kcat", "-b", bootstrap, "-C", "-t", topic, "-e", "-q", "-J"],
                       capture_output=True, text=True, timeout=120)
    return [json.loads(l) for l in r.stdout.splitlines() if l.strip()]


def lines(path):
    return [l for l in Path(path).read_text().splitlines() if l] if Path(path).exists() else []


def test_valid_and_invalid_events_land_exactly(kafka, tmp_path):
    run_id = uuid.uuid4().hex[:8]
    env = ecflow_env(KAFKA_BOOTSTRAP=kafka, TOPIC=f"events-{run_id}", DLQ_TOPIC=f"dlq-{run_id}",
                     GROUP=f"g-{run_id}", COUNT=COUNT, TRUTH=tmp_path / "truth.ndjson",
                     VALID=tmp_path / "valid.ndjson")
    produced = subprocess.run([str(ECFLOW), "run", str(PIPELINE), "--profile", "produce"], env=env,
                              capture_output=True, text=True, timeout=300)
    assert produced.returncode == 0, produced.stderr
    assert f"generated {COUNT} events: {COUNT} durable" in produced.stderr

    truth = lines(tmp_path / "truth.ndjson")
    assert len(truth) == COUNT
    want_valid = [l for l in truth if is_valid(l)]
    want_invalid = [l for l in truth if not is_valid(l)]
    assert 0.05 * COUNT < len(want_invalid) < 0.15 * COUNT  # invalid_ratio 0.1

    lake = subprocess.Popen([str(ECFLOW), "run", str(PIPELINE)], env=env, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(lines(tmp_path / "valid.ndjson")) < len(want_valid):
            time.sleep(0.5)
        time.sleep(1.0)  # the last dead letters' delivery reports
    finally:
        lake.send_signal(signal.SIGTERM)
        _, err = lake.communicate(timeout=60)
    assert lake.returncode == 0, err

    valid = lines(tmp_path / "valid.ndjson")
    assert sorted(valid) == sorted(want_valid)  # exact bytes, each once

    dead = read_topic(kafka, f"dlq-{run_id}")
    assert len(dead) == len(want_invalid)
    raws = []
    for m in dead:
        envelope = json.loads(m["payload"])
        headers = dict(zip(m["headers"][0::2], m["headers"][1::2])) if m.get("headers") else {}
        assert envelope["reason"] and headers.get("ecflow.dlq.reason") == envelope["reason"]
        assert envelope["source"]["kind"] == "kafka" and envelope["source"]["topic"] == f"events-{run_id}"
        raws.append(envelope.get("raw"))
    assert sorted(raws) == sorted(want_invalid)
    assert f"{len(want_valid)} valid, {len(want_invalid)} invalid" in err
