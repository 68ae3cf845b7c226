"""ecflow end-to-end benchmark (run it through bench/e2e/run.sh).

The whole default flow in one process, as users run it: `ecflow run pipelines/ecommerce.yaml
--profile ci` (source-http -> sink-kafka, source-kafka -> transform-validate -> sink-iceberg),
against a private local Kafka broker (tests/services/kafka.sh, a state dir of its own,
stopped at the end whatever happens) unless KAFKA_BOOTSTRAP names one. Every run gets its own
topic, consumer group, warehouse and free ports.

Load: realistic events (source-generate's shopper sessions, pipelines/demo.yaml, as in
bench/ingest), each posted with an event_id of its own, BATCH per request (a JSON array),
keep-alive connections. Two modes, interleaved over the repeats:

    rate R      Python threads post at R events/s (open loop: request i is due at
                start + i * BATCH / R, whichever connection is free takes it; 503 is retried
                after Retry-After with the same events) for --duration seconds. The driver
                records the time of every 200; every --sample-every-th event is a sample.
    max         wrk (post_unique.lua: ids made per request in LuaJIT) as fast as the pipeline
                answers, for --max-duration seconds; a Python probe posts one sample event
                every 50 ms on a connection of its own beside it.

Measured per run:
    table events/s  rows that became visible in the table per second, between the first and
                    the last table change seen inside the measured window (load start +
                    --warmup .. load end): what the whole flow sustains, not what HTTP accepted
    freshness       for each sample answered 200 after the warm-up: the time from its 200 to
                    the first poll in which it is in the table. A separate process polls with
                    DuckDB every --poll-interval: it watches metadata/version-hint.text and, when
                    it changes, lists the table's data files with iceberg_metadata() (the
                    iceberg extension, loaded offline like scripts/query.py) and reads the
                    sample ids of the new files only (read_parquet), so a poll costs the same at
                    the end of a run as at its start. A row counts as seen at the start of the
                    poll that found it: the figures are upper bounds with the poll interval as
                    resolution.
    CPU, memory     utime + stime of the ecflow process (all threads, /proc/PID/stat) from load
                    start until every row is visible, per row; its VmHWM; the broker's CPU;
                    the generator's and the poller's CPU (they share the machine).
    files           the table's data files after the run (iceberg_metadata, sizes from disk).
    /metrics        ecflow's Prometheus endpoint before and after each run (deltas, latency
                    quantiles from its histograms), and its consumer lag every second.
    checks          after the run, with DuckDB's iceberg_scan over the whole table: no
                    duplicate event_id, rows == records delivered to Kafka (exactly once), and in
                    rate mode every event answered 200 is in the table; ecflow exits 0 on
                    SIGTERM. A failed check fails the benchmark (exit 1) after the report.

Only the standard library in this process; DuckDB runs in the poller process.
"""

import argparse
import datetime as dt
import http.client
import multiprocessing as mp
import os
import re
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # bench/, for benchlib
import benchlib  # noqa: E402
from benchlib import (cpu_secs, fmt, free_port, http_get, machine_ticks, med,  # noqa: E402
                      read)

REPO = benchlib.REPO
KAFKA_SH = benchlib.KAFKA_SH
PIPELINE = os.path.join(REPO, "pipelines", "ecommerce.yaml")
LUA = os.path.join(HERE, "post_unique.lua")
ID_PREFIX = '{"event_id":"'
PROBE_EVERY = 0.05  # seconds between probe requests in max mode


def log(msg):
    print(f"bench-e2e: {msg}", file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


def die(msg):
    raise BenchError(msg)


def parse_args(argv):
    p = argparse.ArgumentParser(prog="bench/e2e/run.sh", description=__doc__.split("\n\n")[0])
    p.add_argument("build_dir", nargs="?", default=os.path.join(REPO, "build"),
                   help="CMake build directory holding ecflow and plugins/ (default: %(default)s)")
    p.add_argument("--smoke", action="store_true",
                   help="a few seconds per mode, one repeat, no results file unless --out "
                        "(for CI: proves the harness; checks still fail it, numbers do not)")
    p.add_argument("--rates", help="fixed rates in events/s, comma separated (default "
                                   "5000,20000; smoke 2000)")
    p.add_argument("--no-max", action="store_true", help="skip the maximum-rate mode")
    p.add_argument("--duration", type=float, help="seconds of load per fixed-rate run (30)")
    p.add_argument("--max-duration", type=int, help="whole seconds of load per max run (20)")
    p.add_argument("--warmup", type=float,
                   help="seconds at the start of each load left out of the table rate and "
                        "freshness (3; smoke 1)")
    p.add_argument("--repeats", type=int, help="runs of each mode, interleaved (3; smoke 1)")
    p.add_argument("--batch", type=int, default=100, help="events per request (100)")
    p.add_argument("--connections", type=int, default=8,
                   help="keep-alive connections of the fixed-rate generator (8)")
    p.add_argument("--max-connections", type=int,
                   help="wrk connections in max mode (32; smoke 8)")
    p.add_argument("--commit-interval", default=os.environ.get("COMMIT_INTERVAL", "1s"),
                   help="sink-iceberg commit_interval, through the ci profile's "
                        "COMMIT_INTERVAL (default $COMMIT_INTERVAL or 1s)")
    p.add_argument("--poll-interval", type=float, default=0.25,
                   help="seconds between DuckDB polls of the table (0.25)")
    p.add_argument("--sample-every", type=int, default=100,
                   help="in rate mode every Nth event is a freshness sample (100)")
    p.add_argument("--drain-timeout", type=float, default=180,
                   help="seconds to wait after the load for every row to be visible (180)")
    p.add_argument("--fresh-topic", action="store_true",
                   help="let the pipeline create its topic itself instead of making it "
                        "first (shows the start-up race in README.md: no rows for minutes)")
    p.add_argument("--out", help="results file (default bench/results/e2e.md; none in --smoke)")
    a = p.parse_args(argv)
    a.rates = [int(float(x)) for x in (a.rates or ("2000" if a.smoke else "5000,20000"))
               .split(",") if x.strip()]
    a.duration = a.duration or (4.0 if a.smoke else 30.0)
    a.max_duration = a.max_duration or (3 if a.smoke else 20)
    a.warmup = a.warmup if a.warmup is not None else (1.0 if a.smoke else 3.0)
    a.repeats = a.repeats or (1 if a.smoke else 3)
    a.max_connections = a.max_connections or (8 if a.smoke else 32)
    if a.smoke:
        a.drain_timeout = min(a.drain_timeout, 60)
    if (any(r <= 0 for r in a.rates) or a.batch < 1 or a.connections < 1 or a.repeats < 1
            or a.duration <= a.warmup or a.max_duration <= a.warmup or a.sample_every < 1
            or a.poll_interval <= 0):
        p.error("rates, batch, connections, repeats, sample-every and poll-interval must be "
                "positive and durations longer than the warm-up")
    if not a.rates and a.no_max:
        p.error("nothing to run: no rates and --no-max")
    return a


# ---------------------------------------------------------------- small tools

def self_cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def pctl(values, q):
    """Percentile (0..100) by linear interpolation; nan for no values."""
    if not values:
        return float("nan")
    v = sorted(values)
    k = (len(v) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def die_with_parent():
    """preexec_fn: the child gets SIGTERM when this process dies, even by SIGKILL."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


# ---------------------------------------------------------------- Prometheus text

def parse_metrics(text):
    out = {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        series, _, v = line.rpartition(" ")
        try:
            out[series] = float(v)
        except ValueError:
            pass
    return out


def _match(series, name, labels):
    n, _, lab = series.partition("{")
    return n == name and all(f'{k}="{v}"' in lab for k, v in labels.items())


def msum(m, name, **labels):
    vals = [v for s, v in m.items() if _match(s, name, labels)]
    return sum(vals) if vals else float("nan")


def mdelta(m0, m1):
    return {s: v - m0.get(s, 0.0) for s, v in m1.items()}


def hist_quantile(m, name, q, **labels):
    """q-quantile (0..1) of a Prometheus histogram (cumulative buckets), linear in a bucket."""
    buckets = []
    for s, v in m.items():
        if _match(s, name + "_bucket", labels):
            le = re.search(r'le="([^"]+)"', s).group(1)
            buckets.append((float("inf") if le == "+Inf" else float(le), v))
    buckets.sort()
    if not buckets or buckets[-1][1] <= 0:
        return float("nan")
    target = q * buckets[-1][1]
    prev_le, prev_c = 0.0, 0.0
    for le, c in buckets:
        if c >= target:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * ((target - prev_c) / (c - prev_c) if c > prev_c
                                                else 1.0)
        prev_le, prev_c = le, c
    return prev_le


def hist_mean(m, name, **labels):
    s, c = msum(m, name + "_sum", **labels), msum(m, name + "_count", **labels)
    return s / c if c and c == c else float("nan")


# ---------------------------------------------------------------- the poller (own process)

def poller_main(table, interval, conn, rows_seen):
    """Polls the table with DuckDB until told to stop; then verifies the whole table.

    Runs in a process of its own (multiprocessing, spawn) so DuckDB's CPU and GIL never stall
    the load generator. Talks over `conn`: sends ("ready", info), answers "stop" with the
    polling results, then "verify" with the checks, and exits on "exit" or EOF."""
    sys.path.insert(0, os.path.join(REPO, "scripts"))
    import query  # scripts/query.py: duckdb + the iceberg/avro extensions from their wheels
    import duckdb

    con = query.connect()
    versions = dict(con.execute("SELECT extension_name, extension_version FROM "
                                "duckdb_extensions() WHERE loaded").fetchall())
    conn.send(("ready", {"duckdb": duckdb.__version__, "iceberg": versions.get("iceberg", "?"),
                         "avro": versions.get("avro", "?")}))
    hint = os.path.join(table, "metadata", "version-hint.text")
    tq = table.replace("'", "''")
    files = {}          # data file path -> record count
    first_seen = {}     # sample event_id -> monotonic time of the poll that found it
    timeline = []       # (poll start, rows visible) at every change
    poll_secs = []
    last = None
    polls = 0

    def data_files():
        return con.execute(
            f"SELECT file_path, record_count FROM iceberg_metadata('{tq}') "
            "WHERE status <> 'DELETED' AND content <> 'DELETED'").fetchall()

    while True:
        t0 = time.monotonic()
        try:
            v = open(hint).read().strip()
        except OSError:
            v = None
        if v is not None and v != last:
            polls += 1
            listed = data_files()
            new = [(p, n) for p, n in listed if p not in files]
            if new:
                plist = ", ".join("'" + p.replace("'", "''") + "'" for p, _ in new)
                for (eid,) in con.execute(f"SELECT event_id FROM read_parquet([{plist}]) "
                                          "WHERE starts_with(event_id, 'S-')").fetchall():
                    first_seen.setdefault(eid, t0)
                for p, n in new:
                    files[p] = n
                total = sum(files.values())
                rows_seen.value = total
                timeline.append((t0, total))
            last = v
            poll_secs.append(time.monotonic() - t0)
        wait = max(0.0, interval - (time.monotonic() - t0))
        try:
            if conn.poll(wait):
                cmd = conn.recv()
                if cmd == "stop":
                    break
                if cmd == "exit":
                    return
        except (EOFError, OSError):
            return
    conn.send({"first_seen": first_seen, "timeline": timeline, "polls": polls,
               "poll_p50": pctl(poll_secs, 50), "poll_max": max(poll_secs or [float("nan")])})

    try:
        cmd = conn.recv()
    except (EOFError, OSError):
        return
    if not isinstance(cmd, tuple) or cmd[0] != "verify":
        return
    accepted_ranges = cmd[1]  # [(id prefix, first seq, count)] of events answered 200, or None
    out = {}
    try:
        scan = f"iceberg_scan('{tq}')"
        out["rows"], out["distinct"] = con.execute(
            f"SELECT count(*), count(DISTINCT event_id) FROM {scan}").fetchone()
        listed = data_files()
        sizes = sorted(os.path.getsize(p) for p, _ in listed if os.path.exists(p))
        out["files"] = len(listed)
        out["files_missing"] = len(listed) - len(sizes)
        out["file_sizes"] = sizes
        out["file_rows"] = sorted(n for _, n in listed)
        on_disk = 0
        for root, _, names in os.walk(os.path.join(table, "data")):
            on_disk += sum(1 for n in names if n.endswith(".parquet"))
        out["files_on_disk"] = on_disk
        if accepted_ranges is not None:
            only_samples = all(p.startswith("S-") for p, _, _ in accepted_ranges)
            where = " WHERE starts_with(event_id, 'S-')" if only_samples else ""
            present = set()
            for (eid,) in con.execute(f"SELECT event_id FROM {scan}{where}").fetchall():
                present.add(eid)
            missing, examples = 0, []
            for prefix, first, count in accepted_ranges:
                for s in range(first, first + count):
                    if f"{prefix}{s}" not in present:
                        missing += 1
                        if len(examples) < 5:
                            examples.append(f"{prefix}{s}")
            out["missing"], out["missing_examples"] = missing, examples
    except Exception as e:  # reported, and fails the checks
        out["error"] = f"{type(e).__name__}: {e}"
    conn.send(out)


class Poller:
    def __init__(self, table, interval):
        ctx = mp.get_context("spawn")
        self.rows = ctx.Value("q", 0, lock=False)
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=poller_main, args=(table, interval, child, self.rows),
                                daemon=True)
        self.proc.start()
        child.close()
        if not self.conn.poll(120):
            die("the DuckDB poller did not start within 120 s")
        kind, self.info = self.conn.recv()
        self.cpu0 = cpu_secs(self.proc.pid)

    def stop(self):
        self.cpu = cpu_secs(self.proc.pid) - self.cpu0
        self.conn.send("stop")
        if not self.conn.poll(60):
            die("the DuckDB poller did not answer 'stop'")
        return self.conn.recv()

    def verify(self, accepted_ranges):
        self.conn.send(("verify", accepted_ranges))
        if not self.conn.poll(600):
            die("the DuckDB poller did not finish verifying the table")
        return self.conn.recv()

    def close(self):
        try:
            self.conn.send("exit")
        except OSError:
            pass
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(10)


# ---------------------------------------------------------------- Kafka, pool, ecflow

def watchdog(tmp):
    """A detached shell that outlives this process: once it is gone, however it died (even
    SIGKILL, as from a test timeout), it stops the private broker (kafka.sh stop on
    TMP/kafka; a no-op when there is none) and deletes TMP. ecflow and the poller die with
    this process on their own (PR_SET_PDEATHSIG, the poller's pipe)."""
    subprocess.Popen(
        ["bash", "-c", 'while kill -0 "$1" 2>/dev/null; do sleep 1; done; '
                       'bash "$2" stop "$3/kafka" >/dev/null 2>&1; rm -rf "$3"',
         "bench-e2e-watchdog", str(os.getpid()), KAFKA_SH, tmp],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)


def make_pool(ecflow, plugin_dir, path, count):
    """Realistic events: source-generate's shopper sessions (pipelines/demo.yaml). Returns
    the part of each event after its event_id value (the id is replaced when sending)."""
    benchlib.generate_pool(ecflow, plugin_dir, path, count, die)
    suffixes, sizes, types = [], [], {}
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            if not line.startswith(ID_PREFIX):
                die(f"{path}: an event that does not start with {ID_PREFIX}: {line[:80]}")
            close = line.index('"', len(ID_PREFIX))
            suffixes.append(line[close:])
            sizes.append(len(line))
            t = re.search(r'"event_type":"([^"]+)"', line)
            types[t.group(1) if t else "?"] = types.get(t.group(1) if t else "?", 0) + 1
    sessions = len(set(re.findall(r'"session_id":"([^"]+)"', read(path))))
    return suffixes, {"events": len(suffixes), "avg_bytes": sum(sizes) / len(sizes),
                      "types": types, "sessions": sessions}


TOPIC_MAKER = """\
# Written by bench/e2e: creates the run's topic (as the ci profile's to_kafka would, 3
# partitions) before the pipeline starts; see precreate_topic().
pipeline: {name: e2e-topic, metrics: "127.0.0.1:${METRICS_PORT}"}
stages:
  http: {plugin: source-http, port: 0}
  topic: {plugin: sink-kafka, inputs: [http], bootstrap: "${KAFKA_BOOTSTRAP}",
          topic: "${KAFKA_TOPIC}", create_topic: true, partitions: 3, replication: 1}
"""


def precreate_topic(ctx, topic):
    """Makes the topic before the pipeline starts. Started on a topic that does not exist yet,
    the pipeline's source-kafka subscribes before its own sink-kafka creates the topic, and
    librdkafka only learns of the new topic at its next metadata refresh (5 minutes by
    default): no row reaches the table until then. Topics made beforehand, as a platform would
    make them, keep that start-up race out of the numbers (bench/e2e/README.md)."""
    path = os.path.join(ctx["tmp"], "topic.yaml")
    if not os.path.exists(path):
        with open(path, "w") as f:
            f.write(TOPIC_MAKER)
    mport = free_port()
    env = dict(os.environ, METRICS_PORT=str(mport), KAFKA_BOOTSTRAP=ctx["bootstrap"],
               KAFKA_TOPIC=topic, ECFLOW_PLUGIN_PATH=ctx["plugin_dir"])
    env.pop("ECFLOW_PROFILE", None)
    p = subprocess.Popen([ctx["ecflow"], "run", path], env=env, cwd=ctx["tmp"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         preexec_fn=die_with_parent)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and p.poll() is None:
            if http_get(mport, "/ready", timeout=1)[0] == 200:
                break
            time.sleep(0.05)
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        out = p.communicate(timeout=60)[0]
    if p.returncode != 0 or "created topic" not in out and "exists" not in out:
        die(f"could not create topic {topic} (exit {p.returncode}):\n{out[-3000:]}")


class Ecflow:
    def __init__(self, ctx, tag, warehouse):
        self.port, self.mport = free_port(), free_port()
        self.topic = f"e2e_{tag}"
        if ctx["precreate"]:
            precreate_topic(ctx, self.topic)
        self.env = dict(os.environ, HTTP_PORT=str(self.port), METRICS_PORT=str(self.mport),
                        KAFKA_BOOTSTRAP=ctx["bootstrap"], KAFKA_TOPIC=self.topic,
                        KAFKA_DLQ_TOPIC=f"{self.topic}_dlq", KAFKA_GROUP=f"e2e-{tag}",
                        WAREHOUSE=warehouse, COMMIT_INTERVAL=ctx["commit_interval"],
                        ECFLOW_PLUGIN_PATH=ctx["plugin_dir"])
        self.env.pop("ECFLOW_PROFILE", None)
        self.log_path = os.path.join(ctx["tmp"], f"ecflow-{tag}.log")
        with open(self.log_path, "w") as lf:
            self.proc = subprocess.Popen([ctx["ecflow"], "run", PIPELINE, "--profile", "ci"],
                                         env=self.env, cwd=ctx["tmp"], stdout=lf,
                                         stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
        self.pid = self.proc.pid
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                die(f"ecflow exited {self.proc.returncode} before it was ready:\n"
                    f"{self.log_tail()}")
            if http_get(self.mport, "/ready", timeout=1)[0] == 200:
                return
            time.sleep(0.1)
        self.stop(30)
        die(f"ecflow did not get ready within 90 s:\n{self.log_tail()}")

    def log_tail(self, n=3000):
        return read(self.log_path)[-n:]

    def metrics(self):
        status, text = http_get(self.mport, "/metrics")
        if status != 200:
            die(f"ecflow's /metrics answered {status}:\n{self.log_tail()}")
        return parse_metrics(text)

    def stop(self, timeout=120):
        code = benchlib.terminate(self.proc, timeout)
        if code is None:
            log(f"ecflow did not exit {timeout} s after SIGTERM: killing it")
            return "hung"
        return code


# ---------------------------------------------------------------- load

def post(conn, body, tries=20):
    """POST one body; honours 503 + Retry-After by sending the same body again.
    Returns (status, t_sent_first, t_answer, n_503)."""
    n503 = 0
    t_first = None
    while True:
        t_sent = time.monotonic()
        t_first = t_first or t_sent
        conn.request("POST", "/events", body, {"Content-Type": "application/json"})
        r = conn.getresponse()
        r.read()
        t_ans = time.monotonic()
        if r.status == 503 and n503 < tries:
            n503 += 1
            try:
                wait = float(r.getheader("Retry-After") or 1)
            except ValueError:
                wait = 1.0
            time.sleep(wait)
            continue
        return r.status, t_first, t_ans, n503


class FixedRate:
    """Open-loop load at `rate` events/s from `conns` keep-alive connections (threads)."""

    def __init__(self, port, suffixes, rate, duration, batch, conns, sample_every, tag):
        self.port, self.suffixes, self.batch = port, suffixes, batch
        self.interval = batch / rate
        self.n_req = max(1, int(round(duration * rate / batch)))
        self.conns, self.sample_every = conns, sample_every
        self.n_pfx, self.s_pfx = f"N-{tag}-", f"S-{tag}-"
        self.lock = threading.Lock()
        self.next = 0
        self.results = []       # (req, status, t_sent, t_answer, n503)
        self.samples = []       # (event_id, t_answer) of sample events answered 200
        self.late = []          # seconds a request went out after it was due
        self.errors = []

    def body(self, req):
        seq0, n = req * self.batch, len(self.suffixes)
        parts, sampled = [], []
        for s in range(seq0, seq0 + self.batch):
            if s % self.sample_every == 0:
                eid = f"{self.s_pfx}{s}"
                sampled.append(eid)
            else:
                eid = f"{self.n_pfx}{s}"
            parts.append(ID_PREFIX + eid + self.suffixes[s % n])
        return ("[" + ",".join(parts) + "]").encode(), sampled

    def worker(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            while True:
                with self.lock:
                    req = self.next
                    self.next += 1
                if req >= self.n_req:
                    return
                body, sampled = self.body(req)
                due = self.t0 + req * self.interval
                d = due - time.monotonic()
                if d > 0:
                    time.sleep(d)
                self.late.append(max(0.0, time.monotonic() - due))
                try:
                    status, t_sent, t_ans, n503 = post(conn, body)
                except (OSError, http.client.HTTPException) as e:
                    self.errors.append(f"{type(e).__name__}: {e}")
                    self.results.append((req, None, due, time.monotonic(), 0))
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                    continue
                self.results.append((req, status, t_sent, t_ans, n503))
                if status == 200:
                    self.samples.extend((eid, t_ans) for eid in sampled)
        finally:
            conn.close()

    def run(self):
        self.t0 = time.monotonic() + 0.05
        threads = [threading.Thread(target=self.worker, daemon=True) for _ in range(self.conns)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.t_end = max([r[3] for r in self.results] or [time.monotonic()])

    def accepted_ranges(self):
        """(prefix, first seq, count) runs of the events answered 200, sample ids apart."""
        out = []
        for req, status, *_ in self.results:
            if status != 200:
                continue
            seq0 = req * self.batch
            start = None
            for s in range(seq0, seq0 + self.batch + 1):
                is_sample = s < seq0 + self.batch and s % self.sample_every == 0
                if s == seq0 + self.batch or is_sample:
                    if start is not None:
                        out.append((self.n_pfx, start, s - start))
                        start = None
                    if is_sample:
                        out.append((self.s_pfx, s, 1))
                elif start is None:
                    start = s
        return out


class Probe:
    """Max mode: one sample event per request every PROBE_EVERY s on a connection of its own."""

    def __init__(self, port, suffixes, tag):
        self.port, self.suffixes, self.pfx = port, suffixes, f"S-{tag}-p"
        self.samples, self.errors, self.latency = [], [], []
        self.stop_evt = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        i = 0
        nxt = time.monotonic()
        while not self.stop_evt.is_set():
            eid = f"{self.pfx}{i}"
            body = ("[" + ID_PREFIX + eid + self.suffixes[(i * 7919) % len(self.suffixes)]
                    + "]").encode()
            i += 1
            try:
                status, t_sent, t_ans, _ = post(conn, body)
                if status == 200:
                    self.samples.append((eid, t_ans))
                    self.latency.append(t_ans - t_sent)
            except (OSError, http.client.HTTPException) as e:
                self.errors.append(f"{type(e).__name__}: {e}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            nxt += PROBE_EVERY
            self.stop_evt.wait(max(0.0, nxt - time.monotonic()))
        conn.close()

    def stop(self):
        self.stop_evt.set()
        self.thread.join(90)


class LagSampler:
    """Reads ecflow's /metrics every second during a run: consumer lag and rows taken."""

    def __init__(self, mport):
        self.mport, self.points = mport, []
        self.stop_evt = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop_evt.wait(1.0):
            status, text = http_get(self.mport, "/metrics", timeout=2)
            if status == 200:
                m = parse_metrics(text)
                self.points.append((time.monotonic(), msum(m, "ecflow_kafka_consumer_lag")))

    def stop(self):
        self.stop_evt.set()
        self.thread.join(10)

    def max_lag(self, t_from, t_to):
        vals = [v for t, v in self.points if t_from <= t <= t_to and v == v]
        return max(vals) if vals else float("nan")


# ---------------------------------------------------------------- one run

def table_rate(timeline, w0, w1):
    """Rows/s between the first and the last table change seen inside [w0, w1]."""
    pts = [(t, n) for t, n in timeline if w0 <= t <= w1]
    if len(pts) < 2:
        return float("nan")
    (ta, na), (tb, nb) = pts[0], pts[-1]
    return (nb - na) / (tb - ta) if tb > ta else float("nan")


def run_once(a, ctx, mode, rate, rep):
    tag = f"{mode}{rate or ''}r{rep}{uuid.uuid4().hex[:6]}"
    warehouse = os.path.join(ctx["tmp"], f"warehouse-{tag}")
    table = os.path.join(warehouse, "ecommerce", "events")
    log(f"run {rep}/{a.repeats}: {'max rate' if mode == 'max' else f'{rate:,} events/s'}")
    ef = Ecflow(ctx, tag, warehouse)
    poller = None
    r = {"mode": mode, "rate": rate, "rep": rep, "checks": [], "exit": None}
    try:
        poller = Poller(table, a.poll_interval)
        ctx.setdefault("duckdb", poller.info)
        m0 = ef.metrics()
        lag = LagSampler(ef.mport)
        c0, b0, mt0 = cpu_secs(ef.pid), cpu_secs(ctx["broker_pid"]), machine_ticks()
        g0 = self_cpu()
        t0 = time.monotonic()

        if mode == "rate":
            load = FixedRate(ef.port, ctx["suffixes"], rate, a.duration, a.batch,
                             a.connections, a.sample_every, tag)
            load.run()
            t_start, t_end = load.t0, load.t_end
            ok = [x for x in load.results if x[1] == 200]
            r["http_events"] = len(ok) * a.batch
            # achieved rate: events answered 200 over the time the requests went out in
            sent_secs = max([x[2] for x in ok] or [t_start]) - t_start + load.interval
            r["http_eps"] = r["http_events"] / sent_secs
            r["requests"] = len(load.results)
            r["s503"] = sum(x[4] for x in load.results)
            r["http_other"] = sum(1 for x in load.results if x[1] != 200)
            lat = [x[3] - x[2] for x in ok]
            r["http_p50_ms"], r["http_p99_ms"] = pctl(lat, 50) * 1e3, pctl(lat, 99) * 1e3
            r["late_p99_ms"] = pctl(load.late, 99) * 1e3
            r["late_max_ms"] = max(load.late or [float("nan")]) * 1e3
            samples = load.samples
            r["errors"] = load.errors[:5]
            gen_cpu = self_cpu() - g0
        else:
            probe = Probe(ef.port, ctx["suffixes"], tag)
            t_start = time.monotonic()
            w = benchlib.run_wrk(LUA, ef.port, a.max_connections, a.max_duration,
                                 [ctx["pool_path"], a.batch, f"N-{tag}"], die)
            t_end = time.monotonic()
            probe.stop()
            secs = w["duration_us"] / 1e6
            r["http_events"] = w["status_200"] * a.batch + len(probe.samples)
            r["requests"] = w["requests"] + len(probe.samples)
            r["s503"] = w["status_503"]
            r["http_other"] = w["status_207"] + w["status_other"] + w["errors"]
            r["http_p50_ms"], r["http_p99_ms"] = w["p50_us"] / 1e3, w["p99_us"] / 1e3
            r["probe_p50_ms"] = pctl(probe.latency, 50) * 1e3
            samples = probe.samples
            r["errors"] = (probe.errors + w["samples"])[:5]
            gen_cpu = w["cpu"] + (self_cpu() - g0)
            r["wrk_secs"] = secs
            r["http_eps"] = w["status_200"] * a.batch / secs
        c_load = cpu_secs(ef.pid)
        b_load = cpu_secs(ctx["broker_pid"])
        mt_load = machine_ticks()
        r["load_secs"] = t_end - t_start

        # Drain: every record Kafka confirmed becomes a row (all of ours are valid).
        expect, deadline = None, time.monotonic() + a.drain_timeout
        while time.monotonic() < deadline and ef.proc.poll() is None:
            m = ef.metrics()
            delivered = msum(m, "ecflow_kafka_messages_delivered_total", stage="to_kafka")
            invalid = msum(m, "ecflow_validate_invalid_total")
            inflight = msum(m, "ecflow_kafka_in_flight_messages", stage="to_kafka")
            if inflight == 0:
                expect = delivered - (invalid if invalid == invalid else 0)
                if poller.rows.value >= expect:
                    break
            time.sleep(0.1)
            if ef.proc.poll() is not None:
                break
        t_drained = time.monotonic()
        r["drained"] = expect is not None and poller.rows.value >= expect
        r["drain_secs"] = t_drained - t_end
        c1, b1, mt1 = cpu_secs(ef.pid), cpu_secs(ctx["broker_pid"]), machine_ticks()
        r["rss_mb"] = benchlib.vm_hwm_mb(ef.pid)
        lag.stop()
        m1 = ef.metrics() if ef.proc.poll() is None else m0
        res = poller.stop()
        r["poller_cpu_pct"] = 100 * poller.cpu / (t_drained - t0)
        r["gen_cpu_pct"] = 100 * gen_cpu / r["load_secs"]
        r["exit"] = ef.stop()
        if r["exit"] != 0:
            r["checks"].append(f"ecflow exited {r['exit']} on SIGTERM:\n{ef.log_tail()}")

        # Throughput, freshness.
        w0, w1 = t_start + a.warmup, t_end
        r["table_eps"] = table_rate(res["timeline"], w0, w1)
        fresh, unseen = [], 0
        for eid, t_ans in samples:
            if t_ans < w0:
                continue
            seen = res["first_seen"].get(eid)
            if seen is None:
                unseen += 1
            else:
                fresh.append(seen - t_ans)
        r["fresh_n"], r["fresh_unseen"] = len(fresh), unseen
        for q in (50, 95, 99):
            r[f"fresh_p{q}"] = pctl(fresh, q)
        r["fresh_max"] = max(fresh or [float("nan")])
        r["polls"], r["poll_p50_ms"] = res["polls"], res["poll_p50"] * 1e3
        r["poll_max_ms"] = res["poll_max"] * 1e3
        r["max_lag"] = lag.max_lag(t_start, t_end)

        # Resources.
        rows_total = res["timeline"][-1][1] if res["timeline"] else 0
        r["rows"] = rows_total
        r["cpu_us_row"] = (c1 - c0) / rows_total * 1e6 if rows_total else float("nan")
        r["cpu_cores_load"] = (c_load - c0) / r["load_secs"]
        r["broker_us_row"] = ((b1 - b0) / rows_total * 1e6 if rows_total and b1 == b1
                              else float("nan"))
        r["busy"] = benchlib.busy_pct(mt0, mt_load)

        # ecflow's own metrics over the run.
        d = mdelta(m0, m1)
        r["metrics"] = d
        r["metrics_end"] = m1

        # Checks over the whole table.
        ranges = load.accepted_ranges() if mode == "rate" else None
        if mode == "max":
            ranges = [(f"S-{tag}-p", int(eid.rsplit("p", 1)[1]), 1) for eid, _ in samples]
        v = poller.verify(ranges)
        r["verify"] = v
        delivered = msum(m1, "ecflow_kafka_messages_delivered_total", stage="to_kafka")
        invalid = msum(m1, "ecflow_validate_invalid_total")
        if "error" in v:
            r["checks"].append(f"reading the table failed: {v['error']}")
        else:
            if v["rows"] != v["distinct"]:
                r["checks"].append(f"{v['rows'] - v['distinct']} duplicate rows "
                                   f"({v['rows']} rows, {v['distinct']} distinct event_id)")
            if v["rows"] < r["http_events"]:
                r["checks"].append(f"{v['rows']} rows < {r['http_events']} events answered 200")
            if delivered == delivered and v["rows"] != delivered - (invalid or 0):
                r["checks"].append(f"{v['rows']} rows in the table, but Kafka confirmed "
                                   f"{delivered:.0f} records ({invalid:.0f} invalid)")
            if v.get("missing"):
                r["checks"].append(f"{v['missing']} events answered 200 are not in the table, "
                                   f"e.g. {', '.join(v['missing_examples'])}")
            if v["files_missing"] or v["files_on_disk"] != v["files"]:
                r["checks"].append(f"data files: {v['files']} in the table, "
                                   f"{v['files_on_disk']} on disk, {v['files_missing']} missing")
            sizes = v["file_sizes"]
            r["files"] = v["files"]
            r["file_med_kb"] = statistics.median(sizes) / 1024 if sizes else float("nan")
            r["file_min_kb"] = sizes[0] / 1024 if sizes else float("nan")
            r["file_max_kb"] = sizes[-1] / 1024 if sizes else float("nan")
            r["bytes_row"] = sum(sizes) / v["rows"] if v["rows"] else float("nan")
            r["table_mb"] = sum(sizes) / 1e6
            r["rows_per_file_med"] = (statistics.median(v["file_rows"]) if v["file_rows"]
                                      else float("nan"))
        if not r["drained"]:
            r["checks"].append(f"not every row was visible {a.drain_timeout:g} s after the "
                               f"load ({poller.rows.value} of {expect})")
        if unseen:
            r["checks"].append(f"{unseen} samples answered 200 never appeared in the polls")
        if r["http_other"]:
            r["checks"].append(f"{r['http_other']} answers other than 200/503 or socket "
                               f"errors: {r['errors']}")
        log(f"  HTTP {fmt(r['http_eps'])} events/s, table {fmt(r['table_eps'])} events/s, "
            f"freshness p50/p99 {fmt(r['fresh_p50'], 2)}/{fmt(r['fresh_p99'], 2)} s, "
            f"{fmt(r['cpu_us_row'], 2)} µs CPU/row, drained in {fmt(r['drain_secs'], 1)} s"
            + (f"; CHECK FAILED: {r['checks']}" if r["checks"] else ""))
        return r
    finally:
        if poller:
            poller.close()
        if ef.proc.poll() is None:
            r["exit"] = ef.stop()
        if not r["checks"]:
            shutil.rmtree(warehouse, ignore_errors=True)  # the table and log stay on failure
        else:
            ctx["kept"].append((warehouse, ef.log_path))


# ---------------------------------------------------------------- report

def machine_info(a, ctx):
    return {
        **benchlib.machine(),
        "commit": benchlib.git_commit(list_changes=True),
        "build_type": benchlib.cmake_cache(a.build_dir).get("CMAKE_BUILD_TYPE", "?"),
        "ecflow": benchlib.ecflow_version(ctx["ecflow"]),
        "rdkafka": benchlib.pkg_version("rdkafka"),
        "wrk": benchlib.deb_version("wrk"),
        "kafka": (os.environ.get("KAFKA_VERSION", "3.9.1") if ctx["own_kafka"]
                  else f"external ({ctx['bootstrap']})"),
        "java": benchlib.java_version(),
    }


METRIC_ROWS = [
    # (label, function of (delta, end metrics, run) -> value, decimals)
    ("http: events answered as durable", lambda d, e, r: msum(d, "ecflow_http_events_accepted_total"), 0),
    ("http: 5xx answers", lambda d, e, r: http_5xx(d), 0),
    ("http: request time p50 / p99, ms (server side, acks included)",
     lambda d, e, r: (hist_quantile(d, "ecflow_http_request_duration_seconds", .5) * 1e3,
                      hist_quantile(d, "ecflow_http_request_duration_seconds", .99) * 1e3), 1),
    ("to_kafka: records delivered", lambda d, e, r: msum(d, "ecflow_kafka_messages_delivered_total", stage="to_kafka"), 0),
    ("to_kafka: delivery latency p50 / p99, ms",
     lambda d, e, r: (hist_quantile(d, "ecflow_kafka_delivery_latency_seconds", .5, stage="to_kafka") * 1e3,
                      hist_quantile(d, "ecflow_kafka_delivery_latency_seconds", .99, stage="to_kafka") * 1e3), 1),
    ("to_kafka: waits for producer queue room", lambda d, e, r: msum(d, "ecflow_kafka_queue_full_waits_total", stage="to_kafka"), 0),
    ("from_kafka: records consumed", lambda d, e, r: msum(d, "ecflow_kafka_consumer_messages_total"), 0),
    ("http: ack latency mean / p50, ms (received → durable in Kafka)",
     lambda d, e, r: (hist_mean(d, "ecflow_ack_latency_seconds", stage="http") * 1e3,
                      hist_quantile(d, "ecflow_ack_latency_seconds", .5, stage="http") * 1e3), 1),
    ("from_kafka: ack latency mean / p50 / p99, s (consumed → committed in the table)",
     lambda d, e, r: (hist_mean(d, "ecflow_ack_latency_seconds", stage="from_kafka"),
                      hist_quantile(d, "ecflow_ack_latency_seconds", .5, stage="from_kafka"),
                      hist_quantile(d, "ecflow_ack_latency_seconds", .99, stage="from_kafka")), 2),
    ("from_kafka: max consumer lag (records, sampled each second; counts from the committed "
     "offset, so it includes rows waiting for their table commit)", lambda d, e, r: r["max_lag"], 0),
    ("from_kafka: pauses (backpressure)", lambda d, e, r: msum(d, "ecflow_kafka_consumer_pauses_total"), 0),
    ("from_kafka: offset commits", lambda d, e, r: msum(d, "ecflow_kafka_consumer_commits_total"), 0),
    ("check: valid / invalid", lambda d, e, r: (msum(d, "ecflow_validate_valid_total"), msum(d, "ecflow_validate_invalid_total")), 0),
    ("lake: rows taken", lambda d, e, r: msum(d, "ecflow_iceberg_rows_total"), 0),
    ("lake: snapshots committed (failed)",
     lambda d, e, r: f"{fmt(msum(d, 'ecflow_iceberg_commits_total'))} ({fmt(msum(d, 'ecflow_iceberg_commit_failures_total'))})", None),
    ("lake: commit time mean / p99, ms",
     lambda d, e, r: (hist_mean(d, "ecflow_iceberg_commit_seconds") * 1e3,
                      hist_quantile(d, "ecflow_iceberg_commit_seconds", .99) * 1e3), 1),
    ("lake: data files / MB finished",
     lambda d, e, r: (msum(d, "ecflow_iceberg_data_files_total"), msum(d, "ecflow_iceberg_data_bytes_total") / 1e6), 1),
    ("lake: freshness p50 / p99, s (ecflow's own histogram: Kafka record time → commit)",
     lambda d, e, r: (hist_quantile(d, "ecflow_iceberg_freshness_seconds", .5),
                      hist_quantile(d, "ecflow_iceberg_freshness_seconds", .99)), 2),
    ("lake: redelivered records skipped", lambda d, e, r: msum(d, "ecflow_iceberg_skipped_redelivered_total"), 0),
    ("acks outstanding at the end", lambda d, e, r: msum(e, "ecflow_acks_outstanding"), 0),
]


def http_5xx(m):
    """5xx answers, summed over the http_responses_total{code="5.."} series."""
    return sum(v for s, v in m.items() if s.startswith("ecflow_http_responses_total{")
               and re.search(r'code="5\d\d"', s))


def metric_cell(fn, nd, r):
    v = fn(r["metrics"], r["metrics_end"], r)
    if nd is None:
        return v
    if isinstance(v, tuple):
        return " / ".join(fmt(x, nd) for x in v)
    return fmt(v, nd)


def report(a, ctx, results, info, pool, argv, secs):
    modes = [("rate", x) for x in a.rates] + ([] if a.no_max else [("max", None)])
    groups = {m: [r for r in results if (r["mode"], r["rate"]) == m] for m in modes}
    names = {m: (f"{m[1]:,} ev/s" if m[0] == "rate" else "max rate") for m in modes}
    ci = ctx["commit_interval"]
    L = []
    now = dt.datetime.now(dt.timezone.utc)
    L.append(f"# ecflow end-to-end benchmark, {now:%Y-%m-%d %H:%M} UTC\n")
    L.append(f"{'Smoke run: ' if a.smoke else ''}HTTP → Kafka → validate → Iceberg in one "
             f"process (`ecflow run pipelines/ecommerce.yaml --profile ci`), **commit interval "
             f"{ci}**, one local Kafka broker on the same {info['nproc']} cores, the load "
             f"generator and the DuckDB poller too. Medians of {a.repeats} run(s) per mode "
             f"(interleaved; each run a fresh process, topic, group and table). Rate mode: "
             f"{a.duration:g} s at the target rate, {a.connections} keep-alive connections "
             f"(Python threads, open loop); max mode: wrk, {a.max_connections} connections, "
             f"{a.max_duration} s. {a.batch} events per request (JSON array), "
             f"~{pool['avg_bytes']:.0f} bytes each; the first {a.warmup:g} s of each load are "
             f"left out of the table rate and freshness.\n")
    L.append("| | " + " | ".join(names[m] for m in modes) + " |")
    L.append("|---|" + "---:|" * len(modes))

    def row(label, key, nd=0, scale=1.0):
        cells = []
        for m in modes:
            v = med(groups[m], key)
            cells.append(fmt(v * scale if v == v else v, nd))
        L.append(f"| {label} | " + " | ".join(cells) + " |")

    def row2(label, k1, k2, nd=0):
        cells = [f"{fmt(med(groups[m], k1), nd)} / {fmt(med(groups[m], k2), nd)}" for m in modes]
        L.append(f"| {label} | " + " | ".join(cells) + " |")

    row("**table events/s** (rows visible per s, sustained)", "table_eps")
    row("HTTP events/s answered 200 (generator achieved)", "http_eps")
    L.append("| **freshness p50 / p95 / p99, s** (200 → visible to DuckDB) | " + " | ".join(
        f"{fmt(med(groups[m], 'fresh_p50'), 2)} / {fmt(med(groups[m], 'fresh_p95'), 2)} / "
        f"{fmt(med(groups[m], 'fresh_p99'), 2)}" for m in modes) + " |")
    row("freshness max, s", "fresh_max", 2)
    row("freshness samples (per run)", "fresh_n")
    row2("HTTP latency p50 / p99, ms (send → 200)", "http_p50_ms", "http_p99_ms", 1)
    row("503 answers", "s503")
    row("drain: load end → every row visible, s", "drain_secs", 2)
    row("max consumer lag, records", "max_lag")
    row("**ecflow CPU µs per row** (both legs, load start → drained)", "cpu_us_row", 2)
    row("ecflow CPU during the load, cores", "cpu_cores_load", 2)
    row("**ecflow peak RSS, MB** (VmHWM)", "rss_mb", 1)
    row("Kafka broker CPU µs per row", "broker_us_row", 2)
    row("machine busy during the load, %", "busy")
    row("generator CPU, % of a core", "gen_cpu_pct")
    row("DuckDB poller CPU, % of a core", "poller_cpu_pct")
    row("rows in the table (per run)", "rows")
    row("**data files** (per run)", "files")
    L.append("| data file size median / min / max, KB | " + " | ".join(
        f"{fmt(med(groups[m], 'file_med_kb'))} / {fmt(med(groups[m], 'file_min_kb'))} / "
        f"{fmt(med(groups[m], 'file_max_kb'))}" for m in modes) + " |")
    row("rows per data file, median", "rows_per_file_med")
    row("table bytes per row (Parquet, zstd)", "bytes_row", 1)
    if any(r["mode"] == "rate" for r in results):
        L.append("| generator: requests late p99 / max, ms | " + " | ".join(
            (f"{fmt(med(groups[m], 'late_p99_ms'), 1)} / {fmt(med(groups[m], 'late_max_ms'), 1)}"
             if m[0] == "rate" else "—") for m in modes) + " |")
    L.append("")
    failed = [r for r in results if r["checks"]]
    L.append("Checks after every run (DuckDB `iceberg_scan` over the whole table): no duplicate "
             "event_id; rows = records Kafka confirmed (exactly once); in rate mode every event "
             "answered 200 is in the table; every sample seen; ecflow exits 0 on SIGTERM: "
             + ("**all passed**." if not failed else f"**{len(failed)} run(s) FAILED** "
                                                     "(see below)."))
    L.append("")
    L.append("## What the columns mean\n")
    L.append(f"- **table events/s**: rows that became visible in the table per second, between "
             f"the first and the last table change the poller saw inside the window (load "
             f"start + {a.warmup:g} s .. load end). In rate mode it matches the rate when the "
             f"flow keeps up; in max mode it is what the lake leg sustains while the ingest leg "
             f"takes everything wrk sends (any gap builds Kafka lag, see drain).")
    L.append(f"- **freshness**: from the 200 of a sample event to the start of the first DuckDB "
             f"poll that found it in the table; polls every {a.poll_interval:g} s (the "
             f"resolution: figures are upper bounds by up to that much). Rate mode samples "
             f"every {a.sample_every}th event of the load; max mode samples one-event probe "
             f"requests every {PROBE_EVERY * 1000:.0f} ms sent beside wrk. The poller "
             f"watches `metadata/version-hint.text`; on a change it lists data files with "
             f"`iceberg_metadata()` and reads only the new files' sample ids (`read_parquet`). "
             f"Poll time when the table changed: median "
             f"{fmt(statistics.median([r['poll_p50_ms'] for r in results if r['poll_p50_ms'] == r['poll_p50_ms']] or [float('nan')]), 1)} ms.")
    L.append("- **HTTP latency** is the client's (rate mode: Python, per request; max mode: "
             "wrk's). 503 answers are retried after Retry-After with the same events (rate "
             "mode); wrk does not retry them.")
    L.append("- **CPU** is utime + stime of the ecflow process (every thread of both legs) from "
             "the load's start until every row was visible, divided by the rows; the broker "
             "(JVM), the generator and the poller are measured apart and share the cores.")
    L.append("- **data files**: the table's files after the run (`iceberg_metadata`, sizes "
             "from disk). Commits happen every commit interval; each writes one file per "
             "partition touched (`event_type` × `day(timestamp)`: 5 here).")
    L.append("")
    L.append("## ecflow's own metrics (/metrics, change over one run, median run)\n")
    L.append("Quantiles from ecflow's histograms are interpolated inside its buckets "
             "(… 0.1, 0.25, 0.5, 1, 2.5, 5 s …): coarse; the means are exact.\n")
    mid = {m: (sorted(groups[m], key=lambda r: r.get("table_eps") or 0)[len(groups[m]) // 2]
               if groups[m] else None) for m in modes}
    L.append("| series | " + " | ".join(names[m] for m in modes) + " |")
    L.append("|---|" + "---:|" * len(modes))
    for label, fn, nd in METRIC_ROWS:
        L.append(f"| {label} | " + " | ".join(
            metric_cell(fn, nd, mid[m]) if mid[m] else "—" for m in modes) + " |")
    L.append("")
    L.append("## Every run\n")
    L.append("| run | mode | HTTP ev/s | table ev/s | fresh p50 / p99 s | HTTP p99 ms | drain s "
             "| CPU µs/row | RSS MB | files | rows | checks |")
    L.append("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in results:
        L.append(f"| {r['rep']} | {names[(r['mode'], r['rate'])]} | {fmt(r['http_eps'])} | "
                 f"{fmt(r['table_eps'])} | {fmt(r['fresh_p50'], 2)} / {fmt(r['fresh_p99'], 2)} "
                 f"| {fmt(r['http_p99_ms'], 1)} | {fmt(r['drain_secs'], 2)} | "
                 f"{fmt(r['cpu_us_row'], 2)} | {fmt(r['rss_mb'], 1)} | {fmt(r.get('files'))} | "
                 f"{fmt(r['rows'])} | {'ok' if not r['checks'] else 'FAILED'} |")
    for r in failed:
        L.append(f"\nRun {r['rep']} ({names[(r['mode'], r['rate'])]}) failed:\n")
        L += ["    " + line for c in r["checks"] for line in c.splitlines()]
    L.append("")
    L.append("## Machine, build, settings\n")
    L.append(f"- machine: {info['cpu']}; nproc {info['nproc']}; RAM {info['mem_gib']} GiB; "
             f"{info['os']}, kernel {info['kernel']}; load average before: "
             f"{' '.join(info['load'])} (other tenants skew numbers)")
    L.append(f"- git commit: {info['commit']}; build type {info['build_type']}; "
             f"{info['ecflow']}")
    L.append(f"- Kafka {info['kafka']} (KRaft, 1 node, tests/services/kafka.sh) on "
             f"{info['java']}; librdkafka {info['rdkafka']}; wrk {info['wrk']}; DuckDB "
             f"{ctx.get('duckdb', {}).get('duckdb', '?')} (iceberg "
             f"{ctx.get('duckdb', {}).get('iceberg', '?')}, from the PyPI wheels)")
    types = ", ".join(f"{k} {100 * v / pool['events']:.0f} %" for k, v in
                      sorted(pool["types"].items(), key=lambda kv: -kv[1]))
    L.append(f"- events: a pool of {pool['events']:,} from source-generate (pipelines/demo.yaml;"
             f" {pool['sessions']:,} sessions; {types}), sent round robin, each with an "
             f"event_id of its own")
    L.append(f"- settings: commit_interval {ci} (COMMIT_INTERVAL of the ci profile); batch "
             f"{a.batch} events per request; rate mode {a.connections} connections at "
             f"{', '.join(f'{x:,}' for x in a.rates) or '—'} events/s for {a.duration:g} s; "
             f"max mode {'off' if a.no_max else f'wrk -t1 -c{a.max_connections} for {a.max_duration} s'}; "
             f"warm-up {a.warmup:g} s; poll every {a.poll_interval:g} s; "
             f"sample every {a.sample_every}th event")
    L.append(f"- command: `{' '.join(['bench/e2e/run.sh'] + [shlex.quote(x) for x in argv])}` "
             f"({secs / 60:.1f} min in all)")
    L.append(f"- each run: `ecflow run pipelines/ecommerce.yaml --profile ci` with HTTP_PORT, "
             f"METRICS_PORT, KAFKA_BOOTSTRAP, KAFKA_TOPIC, KAFKA_DLQ_TOPIC, KAFKA_GROUP, "
             f"WAREHOUSE and COMMIT_INTERVAL={ci} set; drained with SIGTERM")
    return "\n".join(L) + "\n", failed


# ---------------------------------------------------------------- main

def main(argv):
    a = parse_args(argv)
    a.build_dir = os.path.abspath(a.build_dir)
    ecflow = os.path.join(a.build_dir, "ecflow")
    plugin_dir = os.path.join(a.build_dir, "plugins")
    for f in [ecflow] + [os.path.join(plugin_dir, p + ".so") for p in
                         ("source-http", "sink-kafka", "source-kafka", "transform-validate",
                          "sink-iceberg", "source-generate", "sink-file")]:
        if not os.path.exists(f):
            die(f"{f} not found: build first (bash scripts/build.sh {a.build_dir})")
    if not a.no_max:
        benchlib.need_tool("wrk", "wrk", log, die)
    try:
        import duckdb_extension_iceberg  # noqa: F401  (checked here, used by the poller)
        import duckdb  # noqa: F401
    except ImportError:
        die("DuckDB and its iceberg extension are needed: bash scripts/deps.sh "
            "(pip: duckdb duckdb-extension-iceberg duckdb-extension-avro)")

    t_begin = time.monotonic()
    tmp = tempfile.mkdtemp(prefix="ecflow-bench-e2e-")
    watchdog(tmp)
    ctx = {"ecflow": ecflow, "plugin_dir": plugin_dir, "tmp": tmp, "kept": [],
           "commit_interval": a.commit_interval, "precreate": not a.fresh_topic}
    kafka = None
    results = []
    try:
        ctx["pool_path"] = os.path.join(tmp, "events.ndjson")
        ctx["suffixes"], pool = make_pool(ecflow, plugin_dir, ctx["pool_path"],
                                          2000 if a.smoke else 20000)
        if os.environ.get("KAFKA_BOOTSTRAP"):
            ctx["bootstrap"], ctx["broker_pid"], ctx["own_kafka"] = \
                os.environ["KAFKA_BOOTSTRAP"], None, False
            log(f"using the broker at {ctx['bootstrap']} (KAFKA_BOOTSTRAP)")
        else:
            log("starting a Kafka broker")
            kafka = benchlib.Kafka(os.path.join(tmp, "kafka"), die)  # the watchdog knows it
            ctx["bootstrap"], ctx["broker_pid"], ctx["own_kafka"] = \
                kafka.bootstrap, kafka.pid, True
            log(f"broker at {kafka.bootstrap}")
        info = machine_info(a, ctx)
        plan = [("rate", x) for x in a.rates] + ([] if a.no_max else [("max", None)])
        for rep in range(1, a.repeats + 1):
            for mode, rate in plan:
                results.append(run_once(a, ctx, mode, rate, rep))
        text, failed = report(a, ctx, results, info, pool, argv, time.monotonic() - t_begin)
        print(text, end="")
        out = a.out or (None if a.smoke else os.path.join(REPO, "bench", "results", "e2e.md"))
        if out:
            os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
            with open(out, "w") as f:
                f.write(text)
            log(f"wrote {out}")
        if failed:
            keep = os.path.join(tempfile.gettempdir(), f"ecflow-bench-e2e-failed-{os.getpid()}")
            os.makedirs(keep, exist_ok=True)
            for wh, lg in ctx["kept"]:
                for src in (wh, lg):
                    if os.path.exists(src):
                        shutil.move(src, keep)
            log(f"{len(failed)} run(s) failed their checks; tables and logs kept in {keep}")
            return 1
        return 0
    except BenchError as e:
        log(str(e))
        return 1
    finally:
        if kafka:
            log("stopping the Kafka broker")
            kafka.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, on_sigterm)
    sys.exit(main(sys.argv[1:]))
