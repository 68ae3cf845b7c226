"""Watching a pipeline (issue 19): the shipped pipeline (`pipelines/ecommerce.yaml --profile
ci`) runs against a real broker while clients post events (some invalid, so the dead-letter leg
moves too), and

  - `ecflow top pipelines/ecommerce.yaml --once` finds the metrics address in the pipeline file
    and prints every stage with a non-zero rate, and the table's commits and freshness;
  - /status.json holds the same series as /metrics, with the same values (a counter read
    between two scrapes lies between their values), the DAG of the file, and freshness buckets
    fitted to the lake's commit_interval;
  - the status page, loaded in a real headless browser (Debian's chromium, driven over the
    DevTools protocol by browser.py), draws every stage and edge of the DAG with rates that
    are numbers and change between refreshes, with no console error; its screenshot is kept
    (ECF_ARTIFACTS, else the test's tmp dir; ECF_DOCS_SCREENSHOT=1 also writes
    docs/status-page.png for the README);
  - commits are logged as structured events (JSON log lines with event "commit" and fields).

Environment: ECFLOW_BIN, ECFLOW_PLUGIN_PATH, KAFKA_BOOTSTRAP (conftest.py).
"""
import http.client
import json
import math
import os
import random
import re
import shutil
import subprocess
import threading
import time
import urllib.request
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest

from conftest import ECFLOW, ROOT, ecflow_env, free_port
from harness import check_sanitizers, sigterm, wait_until
import browser

PIPELINE = ROOT / "pipelines" / "ecommerce.yaml"
STAGES = ("http", "to_kafka", "from_kafka", "check", "lake", "dlq", "from_dlq", "dlq_rows", "dlq_lake")

pytestmark = pytest.mark.skipif(not ECFLOW.exists(), reason=f"{ECFLOW} not built")


def events(n, run):
    """n events as a JSON array body; one in ten fails the schema (event_type not in the enum)."""
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    out = []
    for i in range(n):
        out.append({"event_id": str(uuid.uuid4()), "user_id": f"u{i % 97}",
                    "session_id": f"{run}-s{random.randrange(500)}", "timestamp": now,
                    "event_type": "teleport" if i % 10 == 0 else "page_view",
                    "page_url": "https://shop.example/p/1"})
    return json.dumps(out).encode()


class Traffic(threading.Thread):
    """Posts batches to /events until stopped; counts the answers."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port, self.stop, self.answers = port, threading.Event(), {}

    def run(self):
        run = uuid.uuid4().hex[:6]
        while not self.stop.is_set():
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                c.request("POST", "/events", body=events(50, run),
                          headers={"Content-Type": "application/json"})
                r = c.getresponse()
                r.read()
                self.answers[r.status] = self.answers.get(r.status, 0) + 1
                c.close()
            except OSError:
                time.sleep(0.1)
            time.sleep(0.02)


@pytest.fixture(scope="module")
def pipeline(kafka, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("watch")
    tag = uuid.uuid4().hex[:10]
    env = ecflow_env(KAFKA_BOOTSTRAP=kafka, HTTP_PORT=free_port(), METRICS_PORT=free_port(),
                     WAREHOUSE=tmp / "warehouse", KAFKA_TOPIC=f"watch_{tag}",
                     KAFKA_DLQ_TOPIC=f"watch_{tag}_dlq", KAFKA_GROUP=f"watch_{tag}_lake",
                     ECFLOW_WRITER_ID=f"watch/{tag}", COMMIT_INTERVAL="1s",
                     # invalid events through the lake leg's check, as before edge validation
                     HTTP_ON_INVALID="off")
    env.pop("ECFLOW_PROFILE", None)
    log_path = tmp / "ecflow.log"
    log = open(log_path, "w")
    proc = subprocess.Popen([str(ECFLOW), "run", str(PIPELINE), "--profile", "ci"], stdout=log,
                            stderr=subprocess.STDOUT, env=env)
    traffic = Traffic(int(env["HTTP_PORT"]))
    state = {"env": env, "proc": proc, "log": log_path, "tmp": tmp,
             "metrics": f"http://127.0.0.1:{env['METRICS_PORT']}"}
    try:
        wait_until("/ready", lambda: proc.poll() is None and get(state, "/ready")[0] == 200, 90, 0.1)
        traffic.start()
        # every stage has moved, and the table has committed
        wait_until("a commit and dead letters", lambda: committed(state), 90, 0.25)
        yield state
    finally:
        traffic.stop.set()
        traffic.join(60)
        if proc.poll() is None:
            sigterm(proc, 60)
        log.close()
        check_sanitizers(log_path.read_text(errors="replace"))


def get(state, path):
    try:
        with urllib.request.urlopen(state["metrics"] + path, timeout=10) as r:
            return r.status, r.read().decode()
    except OSError as e:
        return getattr(e, "code", None), ""


def committed(state):
    _, text = get(state, "/metrics")
    commits = re.search(r'^ecflow_iceberg_commits_total\{[^}]*stage="lake"[^}]*\} (\S+)$', text, re.M)
    dlq = re.search(r'^ecflow_events_in_total\{[^}]*stage="dlq"[^}]*\} (\S+)$', text, re.M)
    return commits and float(commits.group(1)) >= 1 and dlq and float(dlq.group(1)) > 0


# ------------------------------------------------------------------ ecflow top --once


def test_top_once_shows_every_stage_moving_and_the_commits(pipeline):
    r = subprocess.run([str(ECFLOW), "top", str(PIPELINE), "--profile", "ci", "--once", "--interval", "2"],
                       capture_output=True, text=True, timeout=60, env=pipeline["env"])
    assert r.returncode == 0, r.stderr
    out = r.stdout
    print(out)
    assert f"http://127.0.0.1:{pipeline['env']['METRICS_PORT']}" in out  # found through the file
    rows = {}
    for line in out.splitlines():
        cols = line.split()
        if cols and cols[0] in STAGES:
            rows[cols[0]] = cols
    assert set(rows) == set(STAGES), out
    for name, cols in rows.items():
        in_s, out_s = cols[3], cols[4]
        rates = [v for v in (in_s, out_s) if v != "-"]
        assert any(rate_value(v) > 0 for v in rates), f"{name} does not move: {cols}"
        assert cols[-1] == "running", cols
    m = re.search(r"Table commits\s+lake: (\S+) commits", out)
    assert m and rate_value(m.group(1)) >= 1, out
    assert re.search(r"Freshness\s+lake: last commit [\d.]+m?s ago, newest event [\d.]+m?s old, p95 ", out), out
    assert re.search(r"HTTP responses\s+200: \S+/s", out), out
    assert re.search(r"Invalid \(DLQ\)\s+enum: \S+/s", out), out
    assert re.search(r"Kafka lag\s+total \d+", out), out


def rate_value(s):
    mult = {"k": 1e3, "M": 1e6, "G": 1e9}.get(s[-1], 1)
    return float(s[:-1] if s[-1] in "kMG" else s) * mult


def test_top_says_when_nothing_answers():
    port = free_port()
    r = subprocess.run([str(ECFLOW), "top", "--url", f"http://127.0.0.1:{port}", "--once"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert f"cannot reach 127.0.0.1:{port}" in r.stderr, r.stderr


# ------------------------------------------------------------------ /status.json vs /metrics


def parse_prometheus(text):
    """{(name, stage, labels without pipeline/stage): value} of every sample line."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$", line)
        assert m, line
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        labels.pop("pipeline", None)
        stage = labels.pop("stage", None)
        out[(m.group(1), stage, tuple(sorted(labels.items())))] = float(m.group(3))
    return out


def status_samples(doc):
    """The same keys as parse_prometheus, from /status.json."""
    out = {}
    for m in doc["metrics"]:
        labels = tuple(sorted(m["labels"].items()))
        if m["type"] != "histogram":
            out[(m["name"], m["stage"], labels)] = math.nan if m["value"] is None else m["value"]
            continue
        for le, count in m["buckets"]:
            out[(m["name"] + "_bucket", m["stage"], tuple(sorted(labels + (("le", "%g" % le),))))] = count
        out[(m["name"] + "_bucket", m["stage"], tuple(sorted(labels + (("le", "+Inf"),))))] = m["count"]
        out[(m["name"] + "_sum", m["stage"], labels)] = m["sum"]
        out[(m["name"] + "_count", m["stage"], labels)] = m["count"]
    return out


def test_status_json_matches_metrics(pipeline):
    _, before = get(pipeline, "/metrics")
    time.sleep(0.5)  # so that counters move between the readings
    status, body = get(pipeline, "/status.json")
    time.sleep(0.5)
    _, after = get(pipeline, "/metrics")
    assert status == 200
    doc = json.loads(body)
    assert doc["version"] == 1 and doc["pipeline"] == "ecommerce"
    assert [s["name"] for s in doc["stages"]] == list(STAGES)
    by_name = {s["name"]: s for s in doc["stages"]}
    assert by_name["dlq"]["inputs"] == [{"stage": "check", "port": "invalid"}, {"stage": "http", "port": "invalid"},
                                        {"stage": "lake", "port": "rejected"}]
    assert by_name["http"]["ports"] == ["default", "invalid"]
    assert by_name["lake"]["kind"] == "sink" and by_name["lake"]["plugin"] == "sink-iceberg"
    assert by_name["check"]["ports"] == ["default", "invalid"]

    m1, m2, s = parse_prometheus(before), parse_prometheus(after), status_samples(doc)
    assert set(s) == set(m1) == set(m2), (set(s) ^ set(m1)) | (set(s) ^ set(m2))
    types = {}
    for m in doc["metrics"]:
        types[m["name"]] = m["type"]
    moved = 0
    for key, v in s.items():
        base = re.sub(r"_(bucket|sum|count)$", "", key[0]) if key[0] not in types else key[0]
        if types.get(base) == "gauge":
            continue  # gauges may go either way between scrapes
        lo, hi = min(m1[key], m2[key]), max(m1[key], m2[key])
        assert lo <= v <= hi, f"{key}: /metrics {m1[key]} then {m2[key]}, /status.json {v}"
        moved += m1[key] != m2[key]
    assert moved > 0, "nothing moved between the scrapes: is traffic flowing?"

    # freshness: the two timestamps, and buckets fitted to commit_interval (1s in this run)
    fresh = next(m for m in doc["metrics"] if m["name"] == "ecflow_iceberg_freshness_seconds")
    bounds = [le for le, _ in fresh["buckets"]]
    assert 0.95 in bounds and 1.05 in bounds and 1.1 in bounds, bounds
    assert sum(1 for b in bounds if 0.5 <= b <= 1.5) >= 8, bounds
    gauges = {m["name"]: m["value"] for m in doc["metrics"] if m["stage"] == "lake" and m["type"] == "gauge"}
    now = doc["time"]
    assert 0 <= now - gauges["ecflow_iceberg_last_commit_timestamp_seconds"] < 120
    assert 0 <= now - gauges["ecflow_iceberg_newest_event_timestamp_seconds"] < 120
    for st in STAGES:
        assert (("ecflow_stage_ready", st, ()) in s) and s[("ecflow_stage_failed", st, ())] == 0


def test_commits_are_structured_log_events(pipeline):
    """Text logs: the sentence people read, then the event's fields as key=value (JSON logs
    carry them as members: tests/unit/test_status.c)."""
    wait_until("a commit event in the log", lambda: "event=commit" in pipeline["log"].read_text(), 30)
    line = next(l for l in pipeline["log"].read_text().splitlines() if "event=commit" in l)
    assert re.search(r"\[lake\] committed snapshot -?\d+ \(\w+\): \d+ files, \d+ rows, [\d.]+ ms event=commit ", line), line
    fields = dict(re.findall(r"(\w+)=(\S+)", line.split("event=commit", 1)[1]))
    assert fields["table"] == "ecommerce.events", line
    assert int(fields["rows"]) > 0 and int(fields["files"]) > 0 and float(fields["duration_ms"]) >= 0, line
    int(fields["snapshot_id"])
    assert re.search(r"\[from_kafka\] assigned \d+ partition\(s\).* event=rebalance kind=assign partitions=\d+",
                     pipeline["log"].read_text()), "no rebalance event"


# ------------------------------------------------------------------ the page, in a browser


def artifact_dir(tmp):
    d = Path(os.environ.get("ECF_ARTIFACTS", tmp))
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.mark.skipif(not browser.chromium(), reason="never: scripts/deps.sh installs chromium")
def test_status_page_draws_the_dag_and_live_numbers(pipeline):
    assert browser.chromium(), "chromium is not installed (scripts/deps.sh)"
    status, html = get(pipeline, "/")
    assert status == 200 and "<svg" in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), "the page must not load anything from outside"
    with browser.Browser() as b:
        page = b.open(pipeline["metrics"] + "/status")
        page.wait_for("document.body && Number(document.body.dataset.updates || 0) >= 3", 60)
        nodes = page.evaluate("[...document.querySelectorAll('#nodes g.node')].map(g => g.dataset.stage)")
        assert sorted(nodes) == sorted(STAGES), nodes
        edges = page.evaluate("[...document.querySelectorAll('#edges g.edge')]"
                              ".map(g => [g.dataset.from, g.dataset.to, g.querySelector('text').textContent])")
        assert sorted((a, b) for a, b, _ in edges) == sorted(
            [("http", "to_kafka"), ("from_kafka", "check"), ("check", "lake"), ("check", "dlq"), ("http", "dlq"),
             ("lake", "dlq"), ("from_dlq", "dlq_rows"), ("dlq_rows", "dlq_lake")]), edges
        for a, b, label in edges:
            assert re.match(r"^\d+(\.\d+)?[kMG]?( \((invalid|rejected)\))?$", label), (a, b, label)
        rows = page.evaluate("[...document.querySelectorAll('#stages tbody tr')].map(r => [...r.cells].map(c => c.textContent))")
        assert {r[0] for r in rows} == set(STAGES), rows
        facts = page.evaluate("Object.fromEntries([...document.querySelectorAll('#facts tr')].map(r => [r.cells[0].textContent, r.cells[1].textContent]))")
        assert re.match(r"^\S+ commits", facts.get("Table lake", "")), facts
        assert "p95" in facts.get("Freshness lake", ""), facts
        first = page.evaluate("document.querySelector('#edges').textContent + document.querySelector('#stages').textContent")
        n = page.evaluate("Number(document.body.dataset.updates)")
        page.wait_for(f"Number(document.body.dataset.updates) >= {n + 3}", 60)
        # with traffic flowing, the numbers are not frozen
        page.wait_for("document.querySelector('#edges').textContent + document.querySelector('#stages').textContent"
                      f" !== {json.dumps(first)}", 30)
        points = page.evaluate("document.querySelector('#chart-throughput polyline').getAttribute('points').trim().split(' ').length")
        assert points >= 3, points
        fresh = page.evaluate("document.querySelector('#chart-freshness polyline[data-series=newest]').getAttribute('points').trim().split(' ').filter(Boolean).length")
        assert fresh >= 3, fresh
        shot = artifact_dir(pipeline["tmp"]) / "status-page.png"
        page.screenshot(shot)
        print(f"screenshot: {shot}")
        assert shot.stat().st_size > 10000
        if os.environ.get("ECF_DOCS_SCREENSHOT"):
            shutil.copy(shot, ROOT / "docs" / "status-page.png")
        assert page.errors == [], page.errors
