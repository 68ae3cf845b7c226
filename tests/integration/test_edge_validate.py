"""Edge validation (issue 17) in the shipped pipeline, against a real broker: source-http
checks each event against pipelines/schemas/ecommerce_event.yaml at the door.

One `ecflow run pipelines/ecommerce.yaml --profile ci` (test_e2e's Runs/Ecflow):
  * a single invalid event -> 422 naming field, rule and value; not in the main topic;
  * a mixed JSON array -> 207 with the index, field and rule of each rejected event; the
    valid ones reach the table exactly once;
  * NDJSON of invalid events only -> 422;
  * numeric strings for price/quantity (the schema's coerce rule) -> 200, numbers in the table;
  * every rejected event in the dead-letter topic with its reason, source "http", and counted
    in http_events_invalid_total by reason class;
  * and in the dead-letter table (ecommerce.events_dlq), once each, with class, reason, field;
  * a 422 lists each problem of the event, and the DLQ reason text names them all;
  * the dead-letter table stays exactly once across SIGKILLs while dead letters flow.
"""
import http.client
import json
import random
import subprocess
import threading
import time
import uuid
from collections import Counter
from datetime import datetime, timezone
from decimal import Decimal

from conftest import ECFLOW, ROOT, free_port
from harness import check_sanitizers, sigterm, wait_until
from test_e2e import duckdb_connect, rows_in_table, runs, table_dir, topic_payloads  # noqa: F401

NOW = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def event(eid, **over):
    e = {"event_id": eid, "event_type": "page_view", "user_id": "u1", "session_id": "s1",
         "timestamp": NOW, "page_url": "https://shop.example/p/1"}
    e.update(over)
    return {k: v for k, v in e.items() if v is not None}


def post(port, body, ctype="application/json"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        c.request("POST", "/events", body=body, headers={"Content-Type": ctype})
        r = c.getresponse()
        return r.status, json.loads(r.read() or b"null")
    finally:
        c.close()


def test_edge_rejects_answers_and_dead_letters(kafka, runs):
    env = runs.env(kafka, HTTP_ON_INVALID="reject")
    p = runs.start(env, "edge")
    p.wait_ready()
    run = uuid.uuid4().hex[:6]

    # The example: no user_id, no timestamp, an event_type outside the enum.
    status, body = post(p.port, json.dumps({"event_id": f"{run}-bad0", "event_type": "bogus",
                                            "session_id": "s1"}))
    assert status == 422, body
    assert body["accepted"] == 0 and len(body["rejected"]) == 1
    r = body["rejected"][0]
    assert r["index"] == 0 and r["field"] == "event_type" and r["rule"] == "enum"
    assert "bogus" in r["value"] and "event_type" in r["reason"] and r["retryable"] is False
    # every problem of the event, the first being its reason; missing fields in schema order
    problems = [(x["field"], x["rule"]) for x in r["problems"]]
    assert problems[0] == ("event_type", "enum") and r["problems"][0]["message"] == r["reason"], r
    assert sorted(problems[1:]) == [("timestamp", "required"), ("user_id", "required")], r
    assert r["problems"][0]["value"] == r["value"] and r["problems"][1]["value"] is None, r

    ok = [f"{run}-ok{i}" for i in range(3)]
    mixed = [event(ok[0]), event(f"{run}-bad1", user_id=None), event(ok[1]),
             event(f"{run}-bad2", event_type="purchase", product_id="p1", price=3, currency="EUR",
                   quantity=0),
             event(ok[2])]
    status, body = post(p.port, json.dumps(mixed))
    assert status == 207, body
    assert body["accepted"] == 3
    got = {(x["index"], x["field"], x["rule"]) for x in body["rejected"]}
    assert got == {(1, "user_id", "required"), (3, "quantity", "range")}, body

    ndjson = "\n".join(json.dumps(event(f"{run}-bad{3 + i}", timestamp="yesterday")) for i in range(2))
    status, body = post(p.port, ndjson, "application/x-ndjson")
    assert status == 422, body
    assert [x["field"] for x in body["rejected"]] == ["timestamp", "timestamp"]
    assert {x["rule"] for x in body["rejected"]} == {"format"}

    # coerce: numeric strings for the schema's number fields; still strict elsewhere
    coerced = event(f"{run}-coerced", event_type="purchase", product_id="p7", price="12.50",
                    quantity="2", currency="EUR", page_url=None)
    status, body = post(p.port, json.dumps(coerced))
    assert status == 200, body
    status, body = post(p.port, json.dumps(event(f"{run}-bad5", user_id=12)))
    assert status == 422 and body["rejected"][0]["rule"] == "type", body
    # no key field: the door's check would say "missing key field"; the schema says more
    status, body = post(p.port, json.dumps(event(f"{run}-bad6", session_id=None)))
    assert status == 422, body
    assert (body["rejected"][0]["field"], body["rejected"][0]["rule"]) == ("session_id", "required"), body

    want_rows = ok + [f"{run}-coerced"]
    t = table_dir(env)
    wait_until("the valid events in the table", lambda: rows_in_table(t) >= len(want_rows), 90, 0.5)
    time.sleep(2.5)  # a later commit would show a duplicate
    con = duckdb_connect()
    rows = con.execute(f"select event_id, price, quantity from iceberg_scan('{t}')").fetchall()
    assert sorted(r[0] for r in rows) == sorted(want_rows)  # each once, no invalid one
    by_id = {r[0]: r for r in rows}
    assert by_id[f"{run}-coerced"][1] == Decimal("12.50") and by_id[f"{run}-coerced"][2] == 2

    bad = {f"{run}-bad{i}" for i in range(7)}
    main = [json.loads(x)["event_id"] for x in topic_payloads(kafka, env["KAFKA_TOPIC"])]
    assert sorted(main) == sorted(want_rows), "a rejected event reached the main topic"

    def letters():
        out = {}
        for x in topic_payloads(kafka, env["KAFKA_DLQ_TOPIC"]):
            e = json.loads(x)
            out[json.loads(e["raw"])["event_id"]] = e
        return out
    wait_until("the dead letters", lambda: set(letters()) >= bad, 30, 0.5)
    dead = letters()
    assert set(dead) == bad
    assert all(e["source"]["kind"] == "http" and e["stage"] == "http" for e in dead.values())
    assert dead[f"{run}-bad1"]["class"] == "required" and dead[f"{run}-bad1"]["field"] == "user_id"
    assert "user_id" in dead[f"{run}-bad1"]["reason"]

    # the dead-letter table: each dead letter once, with its reason and source
    dt = table_dir(env).parent / "events_dlq"
    wait_until("the dead letters in the DLQ table", lambda: rows_in_table(dt) >= len(bad), 60, 0.5)
    time.sleep(2.5)  # a later commit would show a duplicate
    rows = con.execute(f"select raw, class, reason, field, stage, extras->>'$.source.kind', event_date "
                       f"from iceberg_scan('{dt}')").fetchall()
    by_id = {json.loads(r[0])["event_id"]: r for r in rows}
    assert len(rows) == len(bad) and set(by_id) == bad
    assert by_id[f"{run}-bad0"][1:5] == ("enum", dead[f"{run}-bad0"]["reason"], "event_type", "http")
    # the reason text names every problem, the first first
    assert dead[f"{run}-bad0"]["reason"].startswith("field 'event_type': "), dead[f"{run}-bad0"]
    assert "field 'user_id': required but missing" in dead[f"{run}-bad0"]["reason"]
    assert "field 'timestamp': required but missing" in dead[f"{run}-bad0"]["reason"]
    assert by_id[f"{run}-bad2"][1] == "range" and by_id[f"{run}-bad2"][3] == "quantity"
    assert all(r[5] == "http" and r[6] is not None for r in rows)

    invalid = p.metric("http_events_invalid_total")
    by_class = {k.split('reason="')[1].split('"')[0]: v for k, v in invalid.items() if 'reason="' in k}
    assert by_class.get("enum") == 1 and by_class.get("required") == 2 and by_class.get("range") == 1
    assert by_class.get("format") == 2 and by_class.get("type") == 1
    code, took = p.term()
    assert code == 0


REPLAY = ROOT / "pipelines" / "replay_dlq.yaml"
SCHEMA = ROOT / "pipelines" / "schemas" / "ecommerce_event.yaml"


def payloads(bootstrap, topic):
    """topic_payloads(), [] while the topic does not exist yet."""
    try:
        return topic_payloads(bootstrap, topic)
    except AssertionError as e:
        if "Unknown topic" in str(e):
            return []
        raise


def test_replay_after_schema_fix(kafka, runs, tmp_path):
    """Events refused for an event_type the schema did not know yet: the schema is fixed,
    pipelines/replay_dlq.yaml replays the dead-letter topic, and the rows appear once, even
    when the replay runs twice from the beginning (a new consumer group)."""
    env = runs.env(kafka, HTTP_ON_INVALID="reject")
    p = runs.start(env, "main")
    p.wait_ready()
    run = uuid.uuid4().hex[:6]
    ok = [f"{run}-ok{i}" for i in range(2)]
    late = [f"{run}-wish{i}" for i in range(3)]
    body = [event(ok[0]), *[event(e, event_type="wishlist") for e in late], event(ok[1]),
            event(f"{run}-nouser", event_type="wishlist", user_id=None)]
    status, answer = post(p.port, json.dumps(body))
    assert status == 207 and answer["accepted"] == 2, answer

    t = table_dir(env)
    con = duckdb_connect()

    def ids():
        if rows_in_table(t) == 0:
            return []
        return sorted(r[0] for r in con.execute(f"select event_id from iceberg_scan('{t}')").fetchall())
    wait_until("the valid events in the table", lambda: len(ids()) >= 2, 60, 0.5)
    wait_until("the dead letters", lambda: len(topic_payloads(kafka, env["KAFKA_DLQ_TOPIC"])) >= 4, 30, 0.5)

    fixed = tmp_path / "fixed.yaml"
    text = SCHEMA.read_text()
    assert "enum: [page_view, add_to_cart, remove_from_cart, purchase, search]" in text
    fixed.write_text(text.replace("purchase, search]", "purchase, search, wishlist]"))

    replay_topic = env["KAFKA_DLQ_TOPIC"] + "_replay"
    for attempt in range(2):
        renv = dict(env, REPLAY_SCHEMA=str(fixed), REPLAY_GROUP=f"replay_{run}_{attempt}",
                    REPLAY_METRICS_PORT=str(free_port()))
        log = open(tmp_path / f"replay{attempt}.log", "w")
        proc = subprocess.Popen([str(ECFLOW), "run", str(REPLAY), "--profile", "ci"], env=renv,
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            # the one still invalid (no user_id) goes to the replay's own topic, once per run
            wait_until("the still-invalid letter", lambda: len(payloads(kafka, replay_topic)) > attempt,
                       90, 0.5)
            wait_until("the replayed rows", lambda: len(ids()) >= 5, 60, 0.5)
            time.sleep(2.5)  # a later commit would show a duplicate
        finally:
            sigterm(proc, 60)
            log.close()
        replay_log = (tmp_path / f"replay{attempt}.log").read_text(errors="replace")
        check_sanitizers(replay_log)
        assert proc.returncode == 0, replay_log[-3000:]
        assert ids() == sorted(ok + late), f"after replay {attempt + 1}"
    letters = [json.loads(x) for x in topic_payloads(kafka, replay_topic)]
    assert len(letters) == 2
    assert all(json.loads(x["raw"])["event_id"] == f"{run}-nouser" and x["class"] == "required"
               for x in letters)
    code, _ = p.term()
    assert code == 0


def test_pass_mode_counts_but_lets_invalid_events_through(kafka, runs):
    """on_invalid: pass: what rejecting would refuse is counted, and the event goes on to Kafka
    (the lake leg then dead-letters it, as before edge validation)."""
    env = runs.env(kafka, HTTP_ON_INVALID="pass")
    p = runs.start(env, "pass")
    p.wait_ready()
    run = uuid.uuid4().hex[:6]
    status, body = post(p.port, json.dumps([event(f"{run}-a", event_type="bogus"), event(f"{run}-b")]))
    assert status == 200 and body == {"accepted": 2}, body
    invalid = p.metric("http_events_invalid_total")
    assert [v for k, v in invalid.items() if 'reason="enum"' in k] == [1.0], invalid
    main = sorted(json.loads(x)["event_id"] for x in topic_payloads(kafka, env["KAFKA_TOPIC"]))
    assert main == [f"{run}-a", f"{run}-b"]
    wait_until("the lake leg's dead letter", lambda: any(
        json.loads(json.loads(x)["raw"])["event_id"] == f"{run}-a" and json.loads(x)["stage"] == "check"
        for x in payloads(kafka, env["KAFKA_DLQ_TOPIC"])), 60, 0.5)
    code, _ = p.term()
    assert code == 0


def test_dlq_table_exactly_once_across_sigkill(kafka, runs):
    """The dead-letter table is written exactly once like the main table: dead letters keep
    arriving in the DLQ topic (each produced once, so the topic holds each exactly once) while
    the pipeline is SIGKILLed at random moments and restarted; in the end ecommerce.events_dlq
    holds each of them exactly once."""
    env = runs.env(kafka)
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    run = uuid.uuid4().hex[:6]
    n, kills = 1500, 4
    print(f"\nseed {seed}, {n} dead letters, {kills} kills")
    at = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    letters = [json.dumps({"reason": "field 'event_type': \"bogus\" is not one of [page_view]",
                           "class": "enum", "field": "event_type", "stage": "check", "at": at,
                           "source": {"kind": "kafka", "topic": env["KAFKA_TOPIC"], "partition": 0,
                                      "offset": i},
                           "raw": json.dumps(event(f"{run}-d{i}", event_type="bogus"))})
               for i in range(n)]
    p = runs.start(env, "run0")
    p.wait_ready()  # the dlq stage created the DLQ topic

    produced = [0]
    done = threading.Event()

    def producer():  # about 40 letters a second, in small chunks, through the kill phase
        while produced[0] < n and not done.is_set():
            chunk = letters[produced[0]:produced[0] + 20]
            r = subprocess.run(["kcat", "-b", kafka, "-P", "-t", env["KAFKA_DLQ_TOPIC"]],
                               input="\n".join(chunk).encode() + b"\n", capture_output=True,
                               timeout=60)
            assert r.returncode == 0, r.stderr.decode(errors="replace")
            produced[0] += len(chunk)
            time.sleep(0.5)

    t = threading.Thread(target=producer, daemon=True)
    t.start()
    dt_dir = table_dir(env).parent / "events_dlq"
    try:
        for k in range(kills):
            wait_until("the DLQ leg's assignment", lambda: p.alive() and p.assigned(), 60)
            time.sleep(rng.uniform(0.5, 4.0))  # consuming, writing, committing
            p.kill()
            print(f"kill {k + 1}: {produced[0]} produced, {rows_in_table(dt_dir)} rows in the "
                  f"DLQ table")
            p = runs.start(env, f"run{k + 1}")
            p.wait_ready()
        t.join(120)
        assert produced[0] == n and not t.is_alive()
        wait_until("every dead letter in the DLQ table", lambda: p.alive() and rows_in_table(dt_dir) >= n,
                   180, 0.5)
        time.sleep(2.5)  # a later commit would show a duplicate
    finally:
        done.set()
    in_topic = Counter(json.loads(json.loads(x)["raw"])["event_id"]
                       for x in topic_payloads(kafka, env["KAFKA_DLQ_TOPIC"]))
    assert len(in_topic) == n and set(in_topic.values()) == {1}, "each produced once"
    con = duckdb_connect()
    rows = con.execute(f"select raw, class, field from iceberg_scan('{dt_dir}')").fetchall()
    ids = Counter(json.loads(r[0])["event_id"] for r in rows)
    assert sorted(ids) == sorted(in_topic), "a dead letter missing from the DLQ table"
    assert [i for i, c in ids.items() if c > 1] == [], "a dead letter twice in the DLQ table"
    assert all(r[1] == "enum" and r[2] == "event_type" for r in rows)
    code, _ = p.term()
    assert code == 0
