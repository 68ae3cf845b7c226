"""The shipped pipeline end to end, with crashes: HTTP clients -> source-http -> sink-kafka ->
a real broker -> source-kafka -> transform-validate -> sink-iceberg (invalid -> DLQ topic).

Runs `ecflow run pipelines/ecommerce.yaml --profile ci` as users do, with everything unique per
test through the environment (HTTP_PORT, METRICS_PORT, WAREHOUSE, KAFKA_TOPIC, KAFKA_DLQ_TOPIC,
KAFKA_GROUP, ECFLOW_WRITER_ID, COMMIT_INTERVAL, HTTP_ACK_TIMEOUT, KAFKA_DELIVERY_TIMEOUT).
Clients are several threads, each on a keep-alive http.client connection, posting batches of
50-200 realistic events (JSON arrays or NDJSON, unique event_ids, ~1% that fail the schema). A
503 or a connection error means "send the same events again later"; every attempt is kept,
so each event_id has a count of attempts that may have put it in Kafka (answered 200/207, or
never answered), and the set of event_ids that got a 200.

What it proves:
  - crashes: SIGKILL at random moments (E2E_KILLS, a seeded schedule), restarting each time
    while clients keep posting; then SIGTERM exits 0 promptly, and
      * every event answered 200 is in the topic and in the table (none missing);
      * in the topic no event is more often than the attempts that may have landed it (a
        copy more needs a retry of a request that got no answer: HTTP is at least once,
        counted and printed);
      * every valid event_id of the topic is in the table exactly once, however many copies
        the topic has: records are taken once by their Kafka position, and the copies a
        retry made are dropped by event_id (sink-iceberg's dedupe_key);
      * invalid events are in the dead-letter topic (with a reason), never in the table;
      * pyiceberg and DuckDB (iceberg_scan on the table folder, through version-hint.text)
        read the same rows; the version hint names the latest metadata; every manifest list,
        manifest and data file the current snapshot references exists;
  - the broker hung (SIGSTOP) and then killed (kafka.sh pause with SIGKILL) mid-run, and
    started again (kafka.sh resume), on a broker of the test's own: dead letters on their way
    out fail and are read again (on_failure: redeliver) instead of ending the run; requests
    answered while it is down get 503 (never a 200), /ready says 503; after it is back, ingest
    recovers by itself and everything acked lands once;
  - an unwritable warehouse (permission denied: ecflow as an unprivileged user when the test
    runs as root, and chmod; disk full: a small tmpfs filled up, skipped where mounting is not
    allowed): an error naming the path and the OS's reason, the process stays up and keeps
    answering 200 (the events are durable in Kafka), no Kafka offset is committed past the
    rows in the table, SIGTERM exits 0, and after the warehouse is fixed a restart lands every
    event exactly once.

Runs in about 1.5 minutes with 200000 events, plain or ASan build (2 cores).
Environment: E2E_EVENTS (default 200000), E2E_KILLS (default 4), E2E_SEED (printed, so a
failing schedule can be replayed), ECFLOW_BIN, ECFLOW_PLUGIN_PATH, KAFKA_BOOTSTRAP
(conftest.py). Needs kcat, pyiceberg and duckdb with its iceberg extension (scripts/deps.sh);
the permission test needs setpriv when run as root, the disk-full one mount(8) and root.
"""
import heapq
import http.client
import importlib.util
import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from conftest import ECFLOW, KAFKA_SH, ROOT, ecflow_env, free_port
import harness
from harness import (check_sanitizers, metadata_versions, recv_exactly, sigterm, start_broker,
                     wait_until)
from lakehouse import seaweedfs  # noqa: F401  (the session fixture, for the s3 profile)

PIPELINE = ROOT / "pipelines" / "ecommerce.yaml"
N_EVENTS = int(os.environ.get("E2E_EVENTS", "200000"))
KILLS = int(os.environ.get("E2E_KILLS", "4"))
SEED = int(os.environ.get("E2E_SEED", str(random.randrange(1 << 30))))
PARTITIONS = 3  # the ci profile's to_kafka partitions
CLIENT_THREADS = 4

pytestmark = pytest.mark.skipif(not ECFLOW.exists(), reason=f"{ECFLOW} not built")


# ------------------------------------------------------------------ events

TYPES = ("page_view", "add_to_cart", "remove_from_cart", "purchase", "search")
CITIES = ("Berlin", "Lagos", "São Paulo", "Toronto", "Sydney", "Osaka", "Paris")
DEVICES = ("mobile", "desktop", "tablet")
# Each passes source-http's door (an object with a string session_id) and fails the schema.
BREAKS = (
    lambda e: e.update(event_type="teleport"),      # not in the enum
    lambda e: e.update(quantity=0),                  # below min
    lambda e: e.update(currency="eur"),              # regex [A-Z]{3}
    lambda e: e.pop("user_id"),                      # required
    lambda e: e.update(timestamp="yesterday"),       # not a timestamp
    lambda e: e.update(price_raw="12.345"),          # decimal(12,2) never rounds
)


def make_events(rng, run, n, invalid_ratio=0.01):
    """[(event_id, compact JSON bytes, valid)] in the seed's event model, unique event_ids."""
    now = datetime.now(timezone.utc)
    out = []
    for i in range(n):
        t = TYPES[rng.randrange(len(TYPES))]
        when = now - timedelta(seconds=rng.randrange(3 * 86400), milliseconds=rng.randrange(1000))
        ts = when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        if i % 7 == 3:  # a client in another zone
            ts = (when + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S") + "+02:00"
        e = {"event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)), "event_type": t,
             "user_id": f"u{rng.randrange(50000):06d}",
             "session_id": f"{run}-s{rng.randrange(20000):05d}",
             "location": CITIES[rng.randrange(len(CITIES))], "device": DEVICES[rng.randrange(3)],
             "timestamp": ts}
        if t == "search":
            e["query"] = f"running shoes size {rng.randrange(36, 48)}"
        elif t == "page_view":
            e["page_url"] = f"https://shop.example/p/{rng.randrange(9973)}"
        else:
            e.update(product_id=f"p{rng.randrange(9973)}", quantity=1 + rng.randrange(3),
                     currency="EUR")
            cents = rng.randrange(1, 100000)
            e["price_raw"] = f"{cents // 100}.{cents % 100:02d}"
        valid = rng.random() >= invalid_ratio
        if not valid:
            rng.choice(BREAKS)(e)
        price = e.pop("price_raw", None)
        body = json.dumps(e, separators=(",", ":"), ensure_ascii=False)
        if price is not None:  # an exact decimal, spelled as JSON
            body = body[:-1] + f',"price":{price}}}'
        out.append((e["event_id"], body.encode(), valid))
    return out


def make_batches(rng, events, lo=50, hi=200):
    """Requests: (events, "json" | "ndjson"), 50-200 events each."""
    batches, i = [], 0
    while i < len(events):
        k = rng.randint(lo, hi)
        batches.append((events[i:i + k], rng.choice(("json", "ndjson"))))
        i += k
    return batches


def encode(events, fmt):
    if fmt == "ndjson":
        return b"\n".join(b for _, b, _ in events) + b"\n", "application/x-ndjson"
    return b"[" + b",".join(b for _, b, _ in events) + b"]", "application/json"


# ------------------------------------------------------------------ clients


class Clients:
    """Keep-alive clients posting batches, each batch until it is taken. Per event_id it keeps
    `landable` (attempts that may have put it in Kafka: answered 200, accepted in a 207, or
    never answered; 503s count too when `count_503` says so) and `acked` (got a 200 or was
    accepted in a 207). `up` is cleared while the server is down: clients wait for it."""

    def __init__(self, port, batches, threads=CLIENT_THREADS, rate=None, count_503=False):
        self.port = port
        self.fresh = list(reversed(batches))
        self.retry = []  # heap of (not_before, seq, events, fmt)
        self.seq = 0
        self.lock = threading.Lock()
        self.in_flight = 0
        self.rate, self.t0, self.taken = rate, None, 0
        self.count_503 = count_503
        self.up = threading.Event()
        self.up.set()
        self.stopping = threading.Event()
        self.acked, self.landable = set(), Counter()
        self.answers = []  # (sent, answered, status)
        self.statuses, self.reasons = Counter(), Counter()
        self.unexpected = []
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def start(self):
        self.t0 = time.monotonic()
        for t in self.threads:
            t.start()

    def full_speed(self):
        with self.lock:
            self.rate = None

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(60)
        assert not any(t.is_alive() for t in self.threads), "a client hung"

    def done(self):
        with self.lock:
            return not self.fresh and not self.retry and self.in_flight == 0

    def counts(self):
        with self.lock:
            return len(self.acked), self.taken

    def _next(self):
        with self.lock:
            now = time.monotonic()
            if self.retry and self.retry[0][0] <= now:
                _, _, events, fmt = heapq.heappop(self.retry)
            elif self.fresh and (self.rate is None or self.taken + len(self.fresh[-1][0])
                                 <= self.rate * (now - self.t0)):
                events, fmt = self.fresh.pop()
                self.taken += len(events)
            else:
                return None
            self.in_flight += 1
            return events, fmt

    def _again(self, events, fmt, delay):
        self.seq += 1
        heapq.heappush(self.retry, (time.monotonic() + delay, self.seq, events, fmt))

    def _run(self):
        conn = None
        while not self.stopping.is_set():
            if not self.up.is_set():
                if conn:
                    conn.close()
                    conn = None
                self.up.wait(0.2)
                continue
            work = self._next()
            if work is None:
                time.sleep(0.01)
                continue
            events, fmt = work
            body, ctype = encode(events, fmt)
            sent = time.monotonic()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                conn.request("POST", "/events", body, {"Content-Type": ctype})
                r = conn.getresponse()
                data, status = r.read(), r.status
                close = "close" in (r.getheader("Connection") or "").lower()
                retry_after = float(r.getheader("Retry-After") or "1")
            except (OSError, http.client.HTTPException) as e:
                # No answer: unless the connection was refused, the events may or may not be
                # in Kafka. Send them again later.
                if conn:
                    conn.close()
                    conn = None
                refused = isinstance(e, ConnectionRefusedError)
                with self.lock:
                    for eid, _, _ in events:
                        self.landable[eid] += not refused
                    self.statuses["refused" if refused else "no answer"] += 1
                    self.answers.append((sent, time.monotonic(), None))
                    self._again(events, fmt, 0.2)
                    self.in_flight -= 1
                continue
            answered = time.monotonic()
            try:
                answer = json.loads(data) if data else {}
            except ValueError:
                answer = {"error": data[:200]}
            with self.lock:
                self.statuses[status] += 1
                self.answers.append((sent, answered, status))
                if status == 200:
                    for eid, _, _ in events:
                        self.acked.add(eid)
                        self.landable[eid] += 1
                elif status in (207, 503):
                    rejected = {r["index"]: r for r in answer.get("rejected", [])}
                    if status == 503 and not rejected:  # {"error": ...}: nothing taken
                        rejected = {i: {"retryable": True, "reason": answer.get("error")}
                                    for i in range(len(events))}
                    again = []
                    for i, ev in enumerate(events):
                        r = rejected.get(i)
                        if r is None:
                            self.acked.add(ev[0])
                            self.landable[ev[0]] += 1
                            continue
                        self.reasons[r.get("reason")] += 1
                        if self.count_503:
                            self.landable[ev[0]] += 1
                        if r.get("retryable"):
                            again.append(ev)
                        else:
                            self.unexpected.append((status, ev[0], r))
                    if again:
                        self._again(again, fmt, retry_after)
                else:
                    self.unexpected.append((status, [e[0] for e in events[:3]], answer))
                self.in_flight -= 1
            if close and conn:
                conn.close()
                conn = None
        if conn:
            conn.close()


# ------------------------------------------------------------------ the pipeline


class Ecflow:
    """One `ecflow run pipelines/ecommerce.yaml --profile ci` with the test's environment."""

    def __init__(self, env, log_path, prefix=()):
        self.env, self.log_path = env, Path(log_path)
        self.port, self.metrics_port = int(env["HTTP_PORT"]), int(env["METRICS_PORT"])
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([*prefix, str(ECFLOW), "run", str(PIPELINE), "--profile",
                                      env.get("E2E_PROFILE", "ci")], stdout=self.log,
                                     stderr=subprocess.STDOUT, env=env)

    def log_text(self):
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text(errors="replace")

    def alive(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"ecflow exited {self.proc.returncode}:\n"
                                 f"{self.log_text()[-5000:]}")
        return True

    def get(self, path, port=None):
        c = http.client.HTTPConnection("127.0.0.1", port or self.port, timeout=5)
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, r.read().decode(errors="replace")
        except OSError:
            return None, ""
        finally:
            c.close()

    def ready(self):
        self.alive()
        return self.get("/ready")[0] == 200

    def wait_ready(self, timeout=60):
        wait_until("/ready on the HTTP port to say 200", self.ready, timeout, 0.05)

    def metric(self, name):
        """{labels: value} of ecflow_<name> on /metrics."""
        _, text = self.get("/metrics", self.metrics_port)
        return {m.group(1) or "": float(m.group(2)) for m in
                re.finditer(rf"^ecflow_{name}(\{{[^}}]*\}})? (\S+)$", text, re.M)}

    def assigned(self):
        return re.search(r"assigned [1-9]\d* partition", self.log_text()) is not None

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self.log.close()

    def term(self, timeout=60):
        """SIGTERM; returns (exit code, seconds until it exited)."""
        t0 = time.monotonic()
        sigterm(self.proc, timeout)
        took = time.monotonic() - t0
        self.log.close()
        check_sanitizers(self.log_text())
        return self.proc.returncode, took

    def cleanup(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if not self.log.closed:
            self.log.close()


class Runs:
    """The test's pipeline runs: an environment unique to the test, and every run stopped."""

    def __init__(self, tmp):
        self.tmp, self.started = Path(tmp), []

    def env(self, bootstrap, warehouse=None, s3=None, **over):
        """The ci profile on a local warehouse; with `s3` (the seaweedfs fixture's dict), the
        s3 profile: the table in its REST catalog, the files on its S3."""
        tag = uuid.uuid4().hex[:10]
        knobs = dict(KAFKA_BOOTSTRAP=bootstrap, HTTP_PORT=free_port(), METRICS_PORT=free_port(),
                     WAREHOUSE=warehouse or self.tmp / "warehouse", KAFKA_TOPIC=f"e2e_{tag}",
                     KAFKA_DLQ_TOPIC=f"e2e_{tag}_dlq", KAFKA_GROUP=f"e2e_{tag}_lake",
                     ECFLOW_WRITER_ID=f"e2e/{tag}", COMMIT_INTERVAL="1s", HTTP_ACK_TIMEOUT="10s",
                     KAFKA_DELIVERY_TIMEOUT="5s",
                     # These tests post invalid events on purpose to see the lake leg route
                     # them; the door's own check is test_edge_validate.py's.
                     HTTP_ON_INVALID="off")
        if s3:
            knobs.update(s3, E2E_PROFILE="s3", AWS_ENDPOINT_URL=s3["S3_ENDPOINT"],
                         ICEBERG_TABLE=f"e2e_{tag}.events", ICEBERG_DLQ_TABLE=f"e2e_{tag}.events_dlq")
        env = ecflow_env(**dict(knobs, **over))
        env.pop("ECFLOW_PROFILE", None)
        return env

    def start(self, env, name, prefix=()):
        p = Ecflow(env, self.tmp / f"{name}.log", prefix)
        self.started.append(p)
        return p

    def cleanup(self):
        for p in self.started:
            p.cleanup()


@pytest.fixture
def runs(tmp_path):
    r = Runs(tmp_path)
    yield r
    r.cleanup()


# ------------------------------------------------------------------ Kafka


def committed_offsets(bootstrap, group, topic, partitions=PARTITIONS):
    """The group's committed offsets {partition: offset (-1: none)}: OffsetFetch v1 on the
    wire (kcat has no way to ask); a single-node broker is every group's coordinator."""
    host, port = bootstrap.split(",")[0].rsplit(":", 1)
    cid, g, t = b"ecflow-e2e", group.encode(), topic.encode()
    body = struct.pack(">hhih", 9, 1, 1, len(cid)) + cid + struct.pack(">h", len(g)) + g
    body += struct.pack(">ih", 1, len(t)) + t + struct.pack(">i", partitions)
    body += b"".join(struct.pack(">i", p) for p in range(partitions))
    for _ in range(50):
        with socket.create_connection((host, int(port)), timeout=10) as c:
            c.sendall(struct.pack(">i", len(body)) + body)
            r = recv_exactly(c, struct.unpack(">i", recv_exactly(c, 4))[0])
        o, got, retry = 8, {}, False  # correlation id, topic count
        for _ in range(struct.unpack_from(">i", r, 4)[0]):
            o += 2 + struct.unpack_from(">h", r, o)[0]
            n = struct.unpack_from(">i", r, o)[0]
            o += 4
            for _ in range(n):
                p, off, ml = struct.unpack_from(">iqh", r, o)
                o += 14 + max(ml, 0)
                err = struct.unpack_from(">h", r, o)[0]
                o += 2
                retry |= err in (14, 15, 16)  # coordinator loading / not available / not it
                got[p] = off
        if not retry:
            return got
        time.sleep(0.2)
    raise AssertionError(f"OffsetFetch for group {group} kept failing")


def end_offsets(bootstrap, topic, partitions=PARTITIONS):
    return harness.end_offsets(bootstrap, topic, partitions)


def settled(bootstrap, env):
    """The lake leg has settled every record of the topic: the group committed its ends."""
    ends = end_offsets(bootstrap, env["KAFKA_TOPIC"])
    if len(ends) < PARTITIONS:
        return False
    got = committed_offsets(bootstrap, env["KAFKA_GROUP"], env["KAFKA_TOPIC"])
    return all(got.get(p, -1) == end or end == 0 for p, end in ends.items())


def topic_payloads(bootstrap, topic):
    r = subprocess.run(["kcat", "-b", bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q",
                        "-f", "%s\n"], capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    return [line for line in r.stdout.split(b"\n") if line]


ID = re.compile(rb'"event_id":"([^"]*)"')


def topic_ids(bootstrap, topic):
    return Counter(ID.search(p).group(1).decode() for p in topic_payloads(bootstrap, topic))


def dlq_ids(bootstrap, topic):
    """event_id -> copies in the dead-letter topic (from each envelope's raw event)."""
    got = Counter()
    for p in topic_payloads(bootstrap, topic):
        envelope = json.loads(p)
        assert envelope["reason"], envelope
        got[json.loads(envelope["raw"])["event_id"]] += 1
    return got


# ------------------------------------------------------------------ the table


def table_dir(env):
    """The local table's folder; for the s3 profile, the env itself (see rows_in_table)."""
    if env.get("E2E_PROFILE") == "s3":
        return env
    return Path(env["WAREHOUSE"]) / "ecommerce" / "events"


def rest_table(env):
    from lakehouse import pyiceberg_rest_catalog
    return pyiceberg_rest_catalog(env).load_table(env["ICEBERG_TABLE"])


def current_snapshot(t):
    v = metadata_versions(t)
    if not v:
        return {}
    meta = json.loads((t / "metadata" / f"v{v[-1]}.metadata.json").read_text())
    return next((s for s in meta.get("snapshots", [])
                 if s["snapshot-id"] == meta.get("current-snapshot-id")), {})


def rows_in_table(t):
    if isinstance(t, dict):  # the s3 profile's REST table
        try:
            snap = rest_table(t).current_snapshot()
        except Exception:  # noqa: BLE001  (not created yet)
            return 0
        return int(snap.summary.additional_properties.get("total-records", 0)) if snap else 0
    return int(current_snapshot(t).get("summary", {}).get("total-records", 0))


def table_positions(t, topic):
    """{partition: next offset} the current snapshot stores for the topic ({} if none)."""
    summary = current_snapshot(t).get("summary", {})
    stored = json.loads(summary.get("ecflow.kafka-offsets", "{}")).get(topic, {})
    return {int(p): v for p, v in stored.items()}


def duckdb_connect():
    """scripts/query.py's connection: DuckDB with the iceberg extension from its wheel."""
    spec = importlib.util.spec_from_file_location("ecflow_query", ROOT / "scripts" / "query.py")
    query = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(query)
    return query.connect()


def read_rest_table(env):
    """read_table() for the s3 profile: pyiceberg and DuckDB through the REST catalog, the
    files the current snapshot references checked on S3."""
    from pyarrow.fs import FileSelector, FileType
    from lakehouse import duckdb_rest_ids, pyarrow_s3fs
    table = rest_table(env)
    snap = table.current_snapshot()
    manifests = snap.manifests(table.io)
    data_files = table.inspect.files().column("file_path").to_pylist()
    fs = pyarrow_s3fs(env)
    referenced = [snap.manifest_list] + [m.manifest_path for m in manifests] + data_files
    gone = [f for f in referenced if fs.get_file_info(f.removeprefix("s3://")).type == FileType.NotFound]
    assert not gone, f"the current snapshot references files that do not exist: {gone[:5]}"
    py = table.scan(selected_fields=("event_id",)).to_arrow().column("event_id").to_pylist()
    dk = duckdb_rest_ids(env, env["ICEBERG_TABLE"], len(py))
    dk_count = len(dk)
    total = int(snap.summary.additional_properties.get("total-records", -1))
    data = table.location().removeprefix("s3://") + "/data"
    on_s3 = {"s3://" + i.path for i in fs.get_file_info(FileSelector(data, recursive=True))
             if i.path.endswith(".parquet")}
    orphans = len(on_s3 - set(data_files))
    return Counter(py), Counter(dk), dk_count, total, orphans, len(manifests), len(data_files)


def read_table(t):
    """Both readers' event_ids, after checking what a reader depends on."""
    if isinstance(t, dict):
        return read_rest_table(t)
    from pyiceberg.table import StaticTable
    versions = metadata_versions(t)
    hint = (t / "metadata" / "version-hint.text").read_text().strip()
    assert hint == str(versions[-1]), f"version-hint.text says {hint}, latest is v{versions[-1]}"
    table = StaticTable.from_metadata(str(t / "metadata" / f"v{versions[-1]}.metadata.json"))
    snap = table.current_snapshot()
    referenced = [snap.manifest_list]
    manifests = snap.manifests(table.io)
    referenced += [m.manifest_path for m in manifests]
    data_files = table.inspect.files().column("file_path").to_pylist()
    referenced += data_files
    gone = [f for f in referenced if not os.path.exists(f.removeprefix("file://"))]
    assert not gone, f"the current snapshot references files that do not exist: {gone[:5]}"
    py = table.scan(selected_fields=("event_id",)).to_arrow().column("event_id").to_pylist()
    con = duckdb_connect()
    dk = [r[0] for r in con.execute(f"select event_id from iceberg_scan('{t}')").fetchall()]
    dk_count = con.execute(f"select count(*) from iceberg_scan('{t}')").fetchone()[0]
    total = int(snap.summary.additional_properties.get("total-records", -1))
    on_disk = {str(p) for p in (t / "data").rglob("*.parquet")}
    orphans = len(on_disk - {f.removeprefix("file://") for f in data_files})
    return Counter(py), Counter(dk), dk_count, total, orphans, len(manifests), len(data_files)


class Answers:
    """What several Clients saw, together."""

    def __init__(self, *clients):
        self.acked, self.landable, self.unexpected = set(), Counter(), []
        self.statuses, self.reasons = Counter(), Counter()
        for c in clients:
            self.acked |= c.acked
            self.landable += c.landable
            self.unexpected += c.unexpected
            self.statuses += c.statuses
            self.reasons += c.reasons


def verify(bootstrap, env, events, *all_clients):
    """Every check on what landed where; returns the numbers for the report."""
    clients = Answers(*all_clients)
    valid = {eid: ok for eid, _, ok in events}
    topic = topic_ids(bootstrap, env["KAFKA_TOPIC"])
    dlq = dlq_ids(bootstrap, env["KAFKA_DLQ_TOPIC"])
    py, dk, dk_count, total, orphans, n_manifests, n_files = read_table(table_dir(env))

    assert not clients.unexpected, f"answers a client cannot act on: {clients.unexpected[:5]}"
    strangers = set(topic) - set(valid)
    assert not strangers, f"{len(strangers)} event_ids in the topic nobody posted"
    # ingest: no false 200, and no copy an attempt could not have made
    lost = [e for e in clients.acked if not topic[e]]
    assert not lost, f"{len(lost)} events answered 200 are not in the topic: {lost[:5]}"
    extra = {e: n for e, n in topic.items() if n > clients.landable[e]}
    assert not extra, (f"{len(extra)} events more often in the topic than attempts that could "
                       f"have put them there (e.g. a 503'd event delivered): "
                       f"{list(extra.items())[:5]}")
    # the readers agree with each other and with the snapshot summary
    assert py == dk, f"pyiceberg and DuckDB disagree: {len(py)} vs {len(dk)} distinct ids"
    assert sum(py.values()) == dk_count == total, (sum(py.values()), dk_count, total)
    # the lake leg: the table is the topic's valid records, each once
    in_table_invalid = [e for e in py if not valid.get(e, True)]
    assert not in_table_invalid, f"{len(in_table_invalid)} invalid events in the table"
    want = {e for e in topic if valid[e]}
    missing = want - set(py)
    doubled = {e: n for e, n in py.items() if n > 1}
    assert not missing, f"{len(missing)} events of the topic not in the table: {list(missing)[:5]}"
    assert not doubled, f"{len(doubled)} events in the table more than once: " \
                        f"{list(doubled.items())[:5]}"
    # so every valid event answered 200 is in the table exactly once
    acked_valid = [e for e in clients.acked if valid[e]]
    assert all(py[e] == 1 for e in acked_valid)
    # invalid events: in the dead-letter topic (at least once), never in the table
    invalid_in_topic = [e for e in topic if not valid[e]]
    no_letter = [e for e in invalid_in_topic if not dlq[e]]
    assert not no_letter, f"{len(no_letter)} invalid events not in the dead-letter topic"
    assert set(dlq) <= set(invalid_in_topic), "a valid event in the dead-letter topic"

    copies = {e: n for e, n in topic.items() if valid[e] and n > 1}
    report = {
        "events": len(events), "invalid": sum(1 for v in valid.values() if not v),
        "acked": len(clients.acked), "acked_valid": len(acked_valid),
        "answers": dict(clients.statuses), "503 reasons": dict(clients.reasons.most_common(4)),
        "topic_records": sum(topic.values()), "rows": sum(py.values()),
        "rows_never_acked": sum(1 for e in py if e not in clients.acked),
        "topic_copies_dropped_by_event_id": sum(n - 1 for n in copies.values()),
        "dlq_records": sum(dlq.values()), "dlq_redelivered": sum(dlq.values()) - len(dlq),
        "manifests": n_manifests, "data_files": n_files, "orphan_data_files": orphans,
    }
    print(f"\n{report}")
    return report


# ------------------------------------------------------------------ tests


@pytest.mark.parametrize("storage", ["local", "s3"])
def test_sigkill_at_random_moments_while_clients_post(runs, kafka, storage, request):
    """local: the ci profile's table on disk; s3: the s3 profile, the table in SeaweedFS's
    REST catalog with its files on its S3."""
    env = runs.env(kafka, s3=request.getfixturevalue("seaweedfs") if storage == "s3" else None)
    rng = random.Random(SEED)
    run = uuid.uuid4().hex[:6]
    events = make_events(rng, run, N_EVENTS)
    batches = make_batches(rng, events)
    print(f"\nseed {SEED} (E2E_SEED), {N_EVENTS} events (E2E_EVENTS) in {len(batches)} requests, "
          f"{KILLS} kills (E2E_KILLS)")
    t_begin = time.monotonic()

    p = runs.start(env, "run0")
    p.wait_ready()
    # Posts go out at a steady rate through the kill phase (a kill cycle is 1-10 s: a restart's
    # lake leg waits ~6 s for the group to drop the killed member), the rest at full speed.
    clients = Clients(p.port, batches, rate=N_EVENTS / (KILLS * 6.0 + 4))
    clients.start()
    kills = []
    try:
        for k in range(KILLS):
            if rng.random() < 0.3:
                # early: the ingest leg is busy, the lake leg still joining the group
                time.sleep(rng.uniform(0.2, 2.0))
                when = "before the lake's assignment"
            else:
                wait_until("the lake leg's assignment", lambda: p.alive() and p.assigned(), 60)
                time.sleep(rng.uniform(0.0, 4.0))  # skipping, catching up, committing
                when = "lake consuming"
            committed = p.metric("iceberg_commits_total")
            p.kill()  # with requests in flight: they get no answer
            clients.up.clear()  # the others wait for the restart
            acked, taken = clients.counts()
            kills.append(when)
            print(f"kill {k + 1} ({when}) at {time.monotonic() - t_begin:.1f}s: {acked} acked of "
                  f"{taken} sent so far, {sum(committed.values()):.0f} commits in that run, "
                  f"{rows_in_table(table_dir(env))} rows in the table")
            p = runs.start(env, f"run{k + 1}")
            p.wait_ready()
            clients.up.set()
        clients.full_speed()
        wait_until("every request answered 200", lambda: p.alive() and clients.done(), 300, 0.2)
        t_posted = time.monotonic()
        wait_until("the lake leg to settle every record",
                   lambda: p.alive() and settled(kafka, env), 300, 0.5)
        t_settled = time.monotonic()
    finally:
        clients.stop()
    rc, took = p.term()
    log = p.log_text()
    assert rc == 0, log[-5000:]
    assert took < 30, f"SIGTERM took {took:.1f}s"
    print(f"{len(kills)} kills ({', '.join(kills)}); all posted {t_posted - t_begin:.1f}s after "
          f"the first start, settled {t_settled - t_posted:.1f}s later, SIGTERM exit in "
          f"{took:.1f}s")
    report = verify(kafka, env, events, clients)
    assert report["acked"] == N_EVENTS, "every event was acked in the end"


# ------------------------------------------------------------------ broker outage


def post_events(port, body):
    """One POST /events; the HTTP status."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        c.request("POST", "/events", body, {"Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        return r.status
    finally:
        c.close()


def test_an_event_posted_again_after_its_commit_and_a_sigkill_is_one_row(runs, kafka):
    """Issue 15, item 4, as a user meets it: an event is posted and committed to the table,
    the process is SIGKILLed, and after the restart the client posts the same event again (its
    answer was lost): a new Kafka record with the same event_id. The default pipeline's
    dedupe_key window comes back from the table, so the table has the event once."""
    env = runs.env(kafka)
    event = json.dumps({"event_id": f"again-{uuid.uuid4()}", "event_type": "page_view",
                        "user_id": "u1", "session_id": "s1", "location": "Berlin",
                        "device": "mobile", "timestamp": "2026-11-25T12:00:00Z",
                        "page_url": "https://shop.example/p/1"}, separators=(",", ":")).encode()
    t = table_dir(env)
    first = runs.start(env, "first")
    first.wait_ready()
    assert post_events(first.port, event) == 200
    wait_until("the event committed", lambda: first.alive() and rows_in_table(t) == 1, 60)
    first.kill()

    again = runs.start(env, "again")
    again.wait_ready()
    assert post_events(again.port, event) == 200
    wait_until("both records settled", lambda: again.alive() and settled(kafka, env), 60)
    assert sum(again.metric("iceberg_skipped_duplicates_total").values()) == 1, \
        again.log_text()[-3000:]
    rc, _ = again.term()
    assert rc == 0, again.log_text()[-5000:]
    assert topic_ids(kafka, env["KAFKA_TOPIC"])[json.loads(event)["event_id"]] == 2
    py, dk, dk_count, total, _, _, _ = read_table(t)
    want = Counter({json.loads(event)["event_id"]: 1})
    assert py == want and dk == want and dk_count == total == 1, (py, dk, dk_count, total)


@pytest.fixture
def own_broker():
    """A broker of this test's own (state dir, bootstrap): the test stops and starts it, which
    the session's broker (maybe given by KAFKA_BOOTSTRAP) must never see."""
    state = tempfile.mkdtemp(prefix="ecflow-e2e-kafka-")
    try:
        yield state, start_broker(state)  # 3 tries: a port taken under it, now and then
    finally:
        harness.kafka_sh("stop", state, timeout=120)
        shutil.rmtree(state, ignore_errors=True)


def kafka_sh(*args, **env):
    """Not harness.kafka_sh: asserts success, returns stdout, takes environment overrides."""
    r = subprocess.run(["bash", str(KAFKA_SH), *args], capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, **env))
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout.strip()


def test_broker_stopped_and_started_mid_run(runs, own_broker):
    state, bootstrap = own_broker
    rng = random.Random(SEED + 1)
    run = uuid.uuid4().hex[:6]
    n = max(5000, N_EVENTS // 8)
    events = make_events(rng, run, n)
    burst = make_events(rng, run + "x", 300, invalid_ratio=1.0)
    # deliveries fail 3 s into the outage, well before the clients' 10 s ack timeout
    env = runs.env(bootstrap, KAFKA_DELIVERY_TIMEOUT="3s")
    p = runs.start(env, "outage")
    p.wait_ready()
    # A 503 during the outage may come from a delivery that timed out while the broker had
    # (maybe) written it: such a retry may land twice, so 503s count as attempts that may land.
    clients = Clients(p.port, make_batches(rng, events), rate=n / 25.0, count_503=True)
    clients.start()
    t0 = time.monotonic()
    try:
        wait_until("rows in the table", lambda: p.alive() and rows_in_table(table_dir(env)), 60)
        # The outage catches dead letters on their way: the clients hold back until the lake
        # leg is idle, then a burst of invalid events is posted; the lake leg reads them at
        # once and sends them on one batch_wait (100 ms) later, but as soon as the burst is
        # acked the broker hangs (SIGSTOP), and then dies (kafka.sh pause with SIGKILL).
        clients.up.clear()
        consumed_before = consumed_when_idle(p)
        body, ctype = encode(burst, "json")
        broker_pid = int((Path(state) / "kafka.pid").read_text())
        conn = http.client.HTTPConnection("127.0.0.1", p.port, timeout=30)
        conn.request("POST", "/events", body, {"Content-Type": ctype})
        r = conn.getresponse()
        r.read()
        t_acked = time.monotonic()
        os.kill(broker_pid, signal.SIGSTOP)
        t_down = time.monotonic()  # from here on nothing can be made durable
        conn.close()
        assert r.status == 200
        kafka_sh("pause", state, KAFKA_PAUSE_SIGNAL="KILL")
        # Whether the lake leg had taken any of the burst in before the broker hung (nothing
        # more can come now): those dead letters meet the outage on their way to the DLQ.
        burst_in_hand = consumed(p) > consumed_before
        clients.up.set()
        wait_until("/ready to say 503", lambda: p.alive() and p.get("/ready")[0] == 503, 30)
        t_unready = time.monotonic()

        def answered_503_since_down():
            with clients.lock:
                return sum(1 for sent, _, st in clients.answers if st == 503 and sent >= t_down)

        wait_until("503s for events sent during the outage",
                   lambda: p.alive() and answered_503_since_down() >= 5, 30)
        t_resume = time.monotonic()
        assert kafka_sh("resume", state) == bootstrap
        t_up = time.monotonic()
        wait_until("/ready to say 200 again", lambda: p.ready(), 60)
        t_ready = time.monotonic()
        wait_until("every event acked", lambda: p.alive() and clients.done(), 120, 0.2)
        wait_until("the lake leg to settle every record",
                   lambda: p.alive() and settled(bootstrap, env), 120, 0.5)
    finally:
        clients.stop()
    rc, took = p.term()
    assert rc == 0, p.log_text()[-5000:]
    assert took < 30, f"SIGTERM took {took:.1f}s"

    # Never a 200 answered while no broker ran (half a second of grace: an ack the broker
    # sent as it died may still be on its way when kafka.sh pause returns).
    false_200 = [a for a in clients.answers if a[2] == 200 and t_down + 0.5 < a[1] < t_resume]
    assert not false_200, f"{len(false_200)} requests answered 200 while the broker was down"
    during = Counter(st for sent, _, st in clients.answers if t_down < sent < t_resume)
    print(f"\noutage: /ready 503 {t_unready - t_down:.1f}s after the broker died, answers to "
          f"requests sent while it was down {dict(during)}, broker back after "
          f"{t_up - t_down:.1f}s, /ready 200 {t_ready - t_up:.1f}s later, run "
          f"{time.monotonic() - t0:.0f}s")
    # the dead letters that could not be delivered were read again, not the end of the run
    # (unless this process was too slow to stop the broker in time, or the lake leg too slow
    # to fetch the burst before it stopped: then it cannot tell)
    log = p.log_text()
    if t_down - t_acked < 0.05 and burst_in_hand:
        assert re.search(r"\[dlq\] \d+ message\(s\) not delivered", log), log[-5000:]
        assert "failed downstream; redelivering from there" in log, log[-5000:]
    elif not burst_in_hand:
        print("the lake leg had fetched none of the burst when the broker stopped: its dead "
              "letters went out after the outage")
    else:
        print(f"the broker stopped {t_down - t_acked:.3f}s after the burst was acked: the dead "
              f"letters may have been out already")
    posted_burst = Clients(p.port, [])
    posted_burst.acked = {e for e, _, _ in burst}
    posted_burst.landable.update(posted_burst.acked)
    report = verify(bootstrap, env, events + burst, clients, posted_burst)
    assert report["acked"] == n + len(burst)


def consumed(p):
    """Records the pipeline's Kafka sources have taken in so far."""
    return sum(p.metric("kafka_consumer_messages_total").values())


def consumed_when_idle(p, quiet=0.5, timeout=30):
    """consumed(p) once it has not moved for `quiet` seconds (requests still in flight when
    the clients held back have landed and been read)."""
    deadline = time.monotonic() + timeout
    last = consumed(p)
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = consumed(p)
        if now == last:
            return now
        last = now
    raise AssertionError(f"the lake leg kept reading for {timeout}s after the clients paused")


# ------------------------------------------------------------------ unwritable warehouse


def post_all(port, events, threads=1):
    """Posts every event until it is taken (a few requests); returns the Clients."""
    c = Clients(port, [(events[i:i + 1000], "json") for i in range(0, len(events), 1000)],
                threads=threads)
    c.start()
    try:
        wait_until("every event acked", c.done, 60, 0.05)
    finally:
        c.stop()
    return c


NOBODY = 65534


class PermissionDenied:
    """The table's directories lose their write permission (EACCES). Root ignores permission
    bits, so as root ecflow runs as an unprivileged user (setpriv) in a warehouse it owns."""
    reason = "Permission denied"

    def __init__(self, tmp, env):
        self.prefix = ()
        self.warehouse = Path(tempfile.mkdtemp(prefix="ecflow-e2e-wh-"))  # reachable by nobody
        self.warehouse.chmod(0o755)
        if os.geteuid() == 0:
            if not shutil.which("setpriv"):
                pytest.skip("running as root without setpriv: no way to be denied a write")
            os.chown(self.warehouse, NOBODY, NOBODY)
            self.prefix = ("setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups")
            probe = subprocess.run([*self.prefix, str(ECFLOW), "validate", str(PIPELINE),
                                    "--profile", "ci"],
                                   env=dict(env, WAREHOUSE=str(self.warehouse)),
                                   capture_output=True, text=True, timeout=60)
            if probe.returncode != 0:
                pytest.skip(f"ecflow cannot run as uid {NOBODY} here: "
                            f"{probe.stderr.strip()[-300:]}")

    def _dirs(self, t):
        return [t, *(d for d in t.rglob("*") if d.is_dir())]

    def break_it(self, t):
        for d in self._dirs(t):
            d.chmod(0o555)

    def fix(self, t):
        for d in self._dirs(t):
            d.chmod(0o755)

    def close(self):
        shutil.rmtree(self.warehouse, ignore_errors=True)


class DiskFull:
    """The warehouse on a small tmpfs that another file fills up (ENOSPC); fixed by deleting it."""
    reason = "No space left on device"
    prefix = ()

    def __init__(self, tmp, env):
        self.warehouse = Path(tmp) / "tmpfs-warehouse"
        self.warehouse.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m,mode=0755", "tmpfs",
                            str(self.warehouse)], capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs to fill up: {r.stderr.strip() or r.returncode}")
        self.filler = self.warehouse / "filler"

    def break_it(self, t):
        chunk = b"\0" * (1 << 20)
        with open(self.filler, "wb", buffering=0) as f:
            try:
                while True:
                    f.write(chunk)
            except OSError as e:
                assert e.errno == 28, e
        with open(self.filler, "ab", buffering=0) as f:  # the last bytes too
            try:
                while True:
                    f.write(b"\0" * 512)
            except OSError:
                pass

    def fix(self, t):
        self.filler.unlink()

    def close(self):
        subprocess.run(["umount", "-l", str(self.warehouse)], capture_output=True)


@pytest.mark.parametrize("how", [PermissionDenied, DiskFull],
                         ids=["permission-denied", "disk-full"])
def test_unwritable_warehouse_keeps_events_in_kafka_until_fixed(runs, kafka, tmp_path, how):
    probe_env = runs.env(kafka)
    broken = how(tmp_path, probe_env)
    try:
        _unwritable_warehouse(runs, kafka, broken)
    finally:
        broken.close()


def _unwritable_warehouse(runs, kafka, broken):
    env = runs.env(kafka, warehouse=broken.warehouse)
    t = table_dir(env)
    rng = random.Random(SEED + 2)
    run = uuid.uuid4().hex[:6]
    first, second, third = (make_events(rng, f"{run}{k}", m, 0)
                            for k, m in (("a", 3000), ("b", 3000), ("c", 500)))

    # 1. a table with rows
    p = runs.start(env, "before", broken.prefix)
    p.wait_ready()
    a = post_all(p.port, first)
    wait_until("the first events settled", lambda: p.alive() and settled(kafka, env), 60, 0.2)
    assert p.term()[0] == 0, p.log_text()[-5000:]

    # 2. the warehouse cannot take more: the lake leg fails its commits and says why, naming
    # the path and the OS's reason, and keeps trying (on_failure: redeliver, with backoff);
    # the process stays up and ingest still answers 200 (the events are durable in Kafka)
    broken.break_it(t)
    p = runs.start(env, "broken", broken.prefix)
    p.wait_ready()
    b = post_all(p.port, second)

    def errors():
        return [line for line in p.log_text().splitlines()
                if " error [lake] " in line and str(t) in line and broken.reason in line]

    wait_until(f"an error naming a path under {t} and '{broken.reason}'",
               lambda: p.alive() and errors(), 30, 0.2)
    wait_until("the failed records' redelivery",
               lambda: p.alive() and "failed downstream; redelivering" in p.log_text(), 30, 0.2)
    c = post_all(p.port, third)
    print(f"\n{errors()[0]}")
    # nothing past the rows in the table is committed to the group: the rest stays in Kafka
    positions = table_positions(t, env["KAFKA_TOPIC"])
    committed = committed_offsets(kafka, env["KAFKA_GROUP"], env["KAFKA_TOPIC"])
    ends = end_offsets(kafka, env["KAFKA_TOPIC"])
    assert sum(ends.values()) == 6500
    for part in ends:
        assert committed.get(part, -1) <= positions.get(part, 0), \
            f"partition {part}: group committed {committed} past the table's {positions}"
    assert sum(positions.values()) == 3000, positions
    py, *_ = read_table(t)
    assert set(py) == {e for e, _, _ in first}

    # 3. fixed: the failed records come again by themselves (redelivery) and commit; then
    # SIGTERM exits 0 (a SIGTERM racing a batch whose writes failed before the fix would fail
    # that final commit, exit 1, and leave those rows in Kafka), and a restart lands the rest,
    # once
    mark = len(p.log_text())
    broken.fix(t)
    wait_until("a commit once fixed", lambda: p.alive() and "committed snapshot" in p.log_text()[mark:], 60, 0.2)
    rc, took = p.term()
    assert rc == 0, p.log_text()[-5000:]
    assert took < 30, f"SIGTERM took {took:.1f}s"
    p = runs.start(env, "fixed", broken.prefix)
    p.wait_ready()
    wait_until("the rest settled", lambda: p.alive() and settled(kafka, env), 90, 0.2)
    rc, took = p.term()
    assert rc == 0, p.log_text()[-5000:]
    report = verify(kafka, env, first + second + third, a, b, c)
    assert report["rows"] == 6500


# ------------------------------------------------------------------ table maintenance


def test_maintenance_keeps_the_shipped_pipelines_table_small_under_steady_traffic(runs, kafka):
    """1 s commits and steady traffic make a small file per partition every second; with
    maintenance every 3 s the current snapshot holds a bounded number of files per partition
    and the metadata a bounded number of snapshots, every event is there once for pyiceberg and
    DuckDB, and a kept snapshot still time-travels."""
    env = runs.env(kafka, MAINTENANCE_INTERVAL="3s", SNAPSHOT_KEEP_LAST=5, SNAPSHOT_MAX_AGE="4s")
    rng = random.Random(SEED + 1)
    run = uuid.uuid4().hex[:6]
    events = make_events(rng, run, 30000)
    batches = make_batches(rng, events)
    p = runs.start(env, "run0")
    p.wait_ready()
    clients = Clients(p.port, batches, rate=30000 / 30.0)  # 30 s of steady traffic
    clients.start()
    try:
        wait_until("every request answered 200", lambda: p.alive() and clients.done(), 300, 0.2)
        wait_until("the lake leg to settle every record", lambda: p.alive() and settled(kafka, env), 300, 0.5)
        time.sleep(4)  # one more maintenance run after the last commit
    finally:
        clients.stop()
    commits = sum(p.metric("iceberg_commits_total").values())
    compacted = sum(p.metric("iceberg_compacted_input_files_total").values())
    expired = sum(p.metric("iceberg_expired_snapshots_total").values())
    rc, _ = p.term()
    assert rc == 0
    verify(kafka, env, events, clients)
    t = table_dir(env)
    from pyiceberg.table import StaticTable
    meta = current_snapshot(t)
    table = StaticTable.from_metadata(str(sorted(t.glob("metadata/v*.metadata.json"),
                                                 key=lambda q: int(q.name[1:].split(".")[0]))[-1]))
    files = table.inspect.files().to_pylist()
    per_part = Counter((f["partition"]["event_type"], f["partition"]["timestamp_day"]) for f in files)
    snaps = table.metadata.snapshots
    print(f"\n{commits:.0f} commits, {compacted:.0f} files compacted, {expired:.0f} snapshots expired; "
          f"head: {len(files)} files, per partition max {max(per_part.values())}, {len(snaps)} snapshots")
    assert commits >= 15 and compacted > 0 and expired > 0
    # between two runs (3 s) about 3 commits add a file each; 7 per size tier wait for the 8th
    assert max(per_part.values()) <= 7 * 2 + 6, per_part
    assert len(snaps) <= 5 + 10, len(snaps)  # keep_last, and those younger than 4 s
    assert meta["summary"]["operation"] in ("append", "replace")
    for s in snaps:  # time travel to every kept snapshot reads what it held
        assert table.scan(snapshot_id=s.snapshot_id).to_arrow().num_rows == int(s.summary["total-records"])
