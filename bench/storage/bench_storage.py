"""ecflow storage benchmark (run it through bench/storage/run.sh).

sink-iceberg against three storage modes, in one run, on one real S3 + Iceberg REST catalog
(SeaweedFS from tests/services/seaweedfs.sh, a state dir of its own, stopped at the end
whatever happens):

    local      the file catalog on local disk (warehouse: a directory; fsync on, the default)
    s3-file    the file catalog on S3 (warehouse: s3://bucket/prefix; the commit is a
               conditional PUT, If-None-Match: *, of vN.metadata.json)
    s3-rest    the Iceberg REST catalog (catalog: rest; data and manifests on S3 under the
               location the catalog assigns; the commit is a POST to the catalog)

The pipeline is bench/storage/storage.yaml: tests/integration/pipelines/sink_iceberg.yaml
(source-generate -> transform-records, the sink-iceberg test fixture -> sink-iceberg) without
its NDJSON copy of every event and with /metrics on. Every run gets a table of its own (a new
directory, S3 prefix or REST namespace), so no run inherits another's metadata.

Three parts, the first two interleaved over the repeats (the order of the modes rotates from
one repeat to the next, so a machine that gets busier or quieter favours none of them):

    steady     RATE events/s (default 20,000) for DURATION s (15) at each commit interval
               (1s and 250ms). Per commit, the sink's log line "committed snapshot N
               (interval): F files, R rows, X ms" (the time to finish the open data files
               and commit; flush commits at shutdown are left out); /metrics is read just
               before SIGTERM and ecflow_iceberg_commit_seconds' count and sum must agree
               with the log lines. p50/p99 per run, medians over the repeats.
    backlog    COUNT events (1,000,000) as fast as they go (RATE=0) at COMMIT_INTERVAL 1s: rows
               per second between the pipeline's "running" and "drained and stopped" lines,
               and the process's wall time, CPU time (utime + stime) and peak RSS from
               wait4(2)'s rusage (no sampling). SeaweedFS's CPU in the same window is
               reported beside it: it shares the two cores.
    requests   (after the measured runs; not timed against the others) the two S3 modes
               again, steady, with tests/integration/fault_proxy.py's FaultProxy in front of
               S3 (and of the catalog) passing everything through. Every request is
               classified by method and path (data PUT, multipart, manifest PUT, manifest-list
               GET/PUT, metadata PUT If-None-Match, version-hint PUT, HEAD, LIST, REST
               GET/POST, ...) and timed upstream, then assigned to the commit whose window
               (the log line's time minus its duration) it falls in: requests per commit by
               kind and where a commit's time goes. The proxy (Python, a new upstream
               connection per request) slows every request, so these runs are reported apart.

--smoke runs each mode once for a couple of seconds (and the request pass too) and asserts
only that it works: commits happen, every event is durable, ecflow exits 0, the proxy sees
the commit's requests. No numbers are asserted, ever. Only the standard library.
"""

import argparse
import datetime as dt
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # bench/, for benchlib
import benchlib  # noqa: E402
from benchlib import fmt, free_port, http_get, machine_ticks, read  # noqa: E402

REPO = benchlib.REPO
PIPELINE = os.path.join(HERE, "storage.yaml")
SEAWEEDFS_SH = os.path.join(REPO, "tests", "services", "seaweedfs.sh")
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))  # fault_proxy.py
MODES = ("local", "s3-file", "s3-rest")
MODE_NAMES = {"local": "local disk, file catalog", "s3-file": "S3, file catalog (conditional PUT)",
              "s3-rest": "S3, REST catalog"}
COMMIT_RE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z \w+\s+\[lake\] committed snapshot (-?\d+) "
                       r"\((\w+)\): (\d+) files, (\d+) rows, ([\d.]+) ms", re.M)
TS_RE = r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z \w+\s+"


def log(msg):
    print(f"bench-storage: {msg}", file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


def die(msg):
    raise BenchError(msg)


def parse_args(argv):
    p = argparse.ArgumentParser(prog="bench/storage/run.sh", description=__doc__.split("\n\n")[0])
    p.add_argument("build_dir", nargs="?", default=os.path.join(REPO, "build"),
                   help="CMake build directory holding ecflow and plugins/ (default: %(default)s)")
    p.add_argument("--smoke", action="store_true",
                   help="each mode once for a few seconds, no results file unless --out (for CI: "
                        "proves the harness and the three modes work; no number is asserted)")
    p.add_argument("--modes", default=",".join(MODES), help="comma separated (default: all three)")
    p.add_argument("--rate", type=int, help="events/s of the steady runs (20000; smoke 5000)")
    p.add_argument("--duration", type=float, help="seconds of each steady run (15; smoke 3)")
    p.add_argument("--intervals", help="commit intervals of the steady runs (1s,250ms; smoke 500ms)")
    p.add_argument("--backlog", type=int, help="events of each backlog run (1000000; smoke 50000)")
    p.add_argument("--backlog-interval", default="1s", help="commit interval of the backlog runs (1s)")
    p.add_argument("--batch", type=int, default=500, help="pipeline batch_size (500, the test pipeline's)")
    p.add_argument("--repeats", type=int, help="runs of each mode and part, interleaved (3; smoke 1)")
    p.add_argument("--request-duration", type=float,
                   help="seconds of each proxied steady run of the request pass (10; smoke 3)")
    p.add_argument("--no-requests", action="store_true", help="skip the request-count pass")
    p.add_argument("--out", help="results file (default bench/results/storage-DATE.md; none in --smoke)")
    a = p.parse_args(argv)
    a.modes = [m.strip() for m in a.modes.split(",") if m.strip()]
    if not a.modes or any(m not in MODES for m in a.modes):
        p.error(f"--modes: choose from {', '.join(MODES)}")
    a.rate = a.rate or (5000 if a.smoke else 20000)
    a.duration = a.duration or (3.0 if a.smoke else 15.0)
    a.intervals = [x.strip() for x in (a.intervals or ("500ms" if a.smoke else "1s,250ms")).split(",")
                   if x.strip()]
    a.backlog = a.backlog or (50000 if a.smoke else 1000000)
    a.repeats = a.repeats or (1 if a.smoke else 3)
    a.request_duration = a.request_duration or (3.0 if a.smoke else 10.0)
    if a.rate <= 0 or a.duration <= 0 or a.backlog <= 0 or a.repeats < 1 or a.batch < 1 or not a.intervals:
        p.error("rate, duration, backlog, batch and repeats must be positive")
    return a


# ---------------------------------------------------------------- small tools

def pctl(values, q):
    """Percentile (0..100) by linear interpolation; nan for no values."""
    if not values:
        return float("nan")
    v = sorted(values)
    k = (len(v) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def med(values):
    vals = [v for v in values if isinstance(v, (int, float)) and v == v]
    return statistics.median(vals) if vals else float("nan")


def parse_ts(s):
    return dt.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=dt.timezone.utc).timestamp()


def log_time(text, pattern):
    """Wall-clock time (epoch s) of the first log line whose message matches `pattern`."""
    m = re.search(TS_RE + pattern, text, re.M)
    return parse_ts(m.group(1)) if m else None


def commits_of(text):
    """[{ts (end, epoch s), why, files, rows, ms}] of the sink's commit lines."""
    return [{"ts": parse_ts(m.group(1)), "why": m.group(3), "files": int(m.group(4)),
             "rows": int(m.group(5)), "ms": float(m.group(6))} for m in COMMIT_RE.finditer(text)]


def metric(text, name):
    """Sum of a metric's series in Prometheus text (nan when absent)."""
    vals = [float(l.rpartition(" ")[2]) for l in text.splitlines()
            if l and l[0] != "#" and l.partition("{")[0].partition(" ")[0] == name]
    return sum(vals) if vals else float("nan")


def die_with_parent():
    """preexec_fn: the child gets SIGTERM when this process dies, even by SIGKILL."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def cpu_of(pid):
    return benchlib.cpu_secs(pid) if pid else float("nan")


def watchdog(tmp):
    """A detached shell that outlives this process: once it is gone, however it died (even
    SIGKILL, as from a test timeout), it stops the SeaweedFS server in TMP/seaweedfs (a no-op
    when there is none) and deletes TMP. ecflow dies with this process (PR_SET_PDEATHSIG)."""
    subprocess.Popen(
        ["bash", "-c", 'while kill -0 "$1" 2>/dev/null; do sleep 1; done; '
                       'bash "$2" stop "$3/seaweedfs" >/dev/null 2>&1; rm -rf "$3"',
         "bench-storage-watchdog", str(os.getpid()), SEAWEEDFS_SH, tmp],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)


# ---------------------------------------------------------------- SeaweedFS

class SeaweedFS:
    def __init__(self, state):
        self.state = state
        r = subprocess.run(["bash", SEAWEEDFS_SH, "start", state], capture_output=True, text=True,
                           timeout=300)
        if r.returncode != 0:
            self.stop()
            die(f"seaweedfs.sh start failed:\n{r.stderr[-3000:]}")
        self.env = {}
        for line in r.stdout.splitlines():
            k, sep, v = line.partition("=")
            if sep:
                self.env[k.strip()] = v.strip()
        need = ("S3_ENDPOINT", "S3_BUCKET", "ICEBERG_REST_URI", "ICEBERG_WAREHOUSE", "ICEBERG_CREDENTIAL",
                "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
        if any(k not in self.env for k in need):
            self.stop()
            die(f"seaweedfs.sh start printed no {', '.join(k for k in need if k not in self.env)}")
        self.pid = int(self.env.get("SEAWEEDFS_PID") or 0) or None

    def stop(self):
        subprocess.run(["bash", SEAWEEDFS_SH, "stop", self.state], capture_output=True, timeout=300)


# ---------------------------------------------------------------- one ecflow run

def run_env(ctx, mode, tag, count, rate, interval, batch, s3_endpoint=None, catalog_uri=None):
    """The environment of one `ecflow run storage.yaml` (a table of its own)."""
    sw = ctx["sw"].env
    e = dict(os.environ)
    for k in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN", "AWS_PROFILE",
              "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "CATALOG", "CATALOG_URI",
              "CATALOG_CREDENTIAL", "CREATE_NAMESPACE", "TABLE", "WAREHOUSE", "ECFLOW_PROFILE"):
        e.pop(k, None)
    e.update({"ECFLOW_PLUGIN_PATH": ctx["plugin_path"], "METRICS_PORT": str(free_port()),
              "COUNT": str(count), "RATE": str(rate), "COMMIT_INTERVAL": interval, "BATCH": str(batch)})
    if mode == "local":
        e["WAREHOUSE"] = os.path.join(ctx["tmp"], "wh", tag)
        return e
    e.update({"AWS_ACCESS_KEY_ID": sw["AWS_ACCESS_KEY_ID"], "AWS_SECRET_ACCESS_KEY": sw["AWS_SECRET_ACCESS_KEY"],
              "AWS_REGION": sw.get("AWS_REGION", "us-east-1"), "AWS_ENDPOINT_URL": s3_endpoint or sw["S3_ENDPOINT"]})
    if mode == "s3-file":
        e["WAREHOUSE"] = f"s3://{sw['S3_BUCKET']}/{tag}"
    else:
        e.update({"CATALOG": "rest", "CATALOG_URI": catalog_uri or sw["ICEBERG_REST_URI"],
                  "CATALOG_CREDENTIAL": sw["ICEBERG_CREDENTIAL"], "WAREHOUSE": sw["ICEBERG_WAREHOUSE"],
                  "CREATE_NAMESPACE": "true", "TABLE": f"ns_{tag.replace('-', '_')}.events"})
    return e


class Ecflow:
    """`ecflow run storage.yaml`, its log in a file; reaped with wait4(2) for its rusage."""

    def __init__(self, ctx, env, tag):
        self.log_path = os.path.join(ctx["tmp"], f"{tag}.log")
        self.port = int(env["METRICS_PORT"])
        self.tag = tag
        self.t_spawn = time.monotonic()
        with open(self.log_path, "w") as lf:
            self.proc = subprocess.Popen([ctx["ecflow"], "run", PIPELINE], env=env, stdin=subprocess.DEVNULL,
                                         stdout=lf, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
        self.status = self.rusage = None
        self.wall = float("nan")

    def text(self):
        return read(self.log_path)

    def tail(self, n=3000):
        return self.text()[-n:]

    def wait_running(self, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if re.search(r"pipeline '[^']+' running", self.text()):
                return
            if self.reap(block=False):
                die(f"{self.tag}: ecflow exited ({self.exit_code()}) before running:\n{self.tail()}")
            time.sleep(0.02)
        die(f"{self.tag}: ecflow not running after {timeout} s:\n{self.tail()}")

    def reap(self, block=True, timeout=None):
        """Reaps the process with wait4; True once it is gone. Polls every 10 ms."""
        if self.status is not None:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            pid, status, ru = os.wait4(self.proc.pid, os.WNOHANG)
            if pid:
                self.wall = time.monotonic() - self.t_spawn
                self.status, self.rusage = status, ru
                self.proc.returncode = self.exit_code()
                return True
            if not block or (deadline is not None and time.monotonic() >= deadline):
                return False
            time.sleep(0.01)

    def exit_code(self):
        return os.waitstatus_to_exitcode(self.status) if self.status is not None else None

    def stop(self, timeout=120):
        if self.status is None:
            self.proc.send_signal(signal.SIGTERM)
            if not self.reap(timeout=timeout):
                self.proc.kill()
                self.reap()
                die(f"{self.tag}: ecflow did not stop within {timeout} s of SIGTERM:\n{self.tail()}")
        return self.exit_code()

    def kill(self):
        if self.status is None:
            try:
                self.proc.kill()
            except OSError:
                pass
            self.reap(timeout=10)


def check_run(ef, count=None):
    """Fails the run unless ecflow exited 0, every generated event is durable and no commit
    failed; returns the log text."""
    text = ef.text()
    if ef.exit_code() != 0:
        die(f"{ef.tag}: ecflow exited {ef.exit_code()}:\n{ef.tail()}")
    m = re.search(r"generated (\d+) events: (\d+) durable, (\d+) failed", text)
    if not m or m.group(2) != m.group(1) or m.group(3) != "0" or (count is not None and int(m.group(1)) != count):
        die(f"{ef.tag}: not every event is durable ({m.group(0) if m else 'no summary line'}):\n{ef.tail()}")
    if re.search(r"commit to \S+ failed", text):
        die(f"{ef.tag}: a commit failed:\n{ef.tail()}")
    return text


def steady(ctx, a, mode, interval, rep, duration=None, proxies=None):
    """One steady run: RATE events/s for `duration` s; /metrics read just before SIGTERM."""
    duration = duration or a.duration
    tag = f"{mode}-steady-{interval}-{rep}-{uuid.uuid4().hex[:6]}"
    count = int(a.rate * (duration + 60))  # never runs out before SIGTERM
    env = run_env(ctx, mode, tag, count, a.rate, interval, a.batch,
                  s3_endpoint=proxies and proxies["s3"].url,
                  catalog_uri=proxies and proxies.get("rest") and proxies["rest"].url)
    sw_pid = ctx["sw"].pid
    ef = Ecflow(ctx, env, tag)
    try:
        ef.wait_running()
        t0, m0, w0 = time.monotonic(), machine_ticks(), cpu_of(sw_pid)
        e0 = benchlib.cpu_secs(ef.proc.pid)
        time.sleep(duration)
        st, mtext = http_get(ef.port, "/metrics")
        t_scrape = time.time()
        elapsed = time.monotonic() - t0
        e1, w1, m1 = benchlib.cpu_secs(ef.proc.pid), cpu_of(sw_pid), machine_ticks()
        if st != 200:
            die(f"{tag}: /metrics answered {st}:\n{ef.tail()}")
        ef.stop()
    finally:
        ef.kill()
    text = check_run(ef)
    commits = [c for c in commits_of(text) if c["why"] == "interval" and c["ts"] <= t_scrape]
    if not commits:
        die(f"{tag}: no commit by interval in {duration:g} s:\n{ef.tail()}")
    ms = [c["ms"] for c in commits]
    third = max(1, len(ms) // 3)
    mcount = metric(mtext, "ecflow_iceberg_commit_seconds_count")
    msum = metric(mtext, "ecflow_iceberg_commit_seconds_sum")
    r = {"part": "steady", "mode": mode, "interval": interval, "rep": rep, "tag": tag,
         "commits": len(commits), "ms": ms, "p50": pctl(ms, 50), "p99": pctl(ms, 99), "max": max(ms),
         "mean": statistics.fmean(ms), "first_p50": pctl(ms[:third], 50), "last_p50": pctl(ms[-third:], 50),
         "files": med([c["files"] for c in commits]), "rows": med([c["rows"] for c in commits]),
         "metric_count": mcount, "metric_mean_ms": 1000 * msum / mcount if mcount else float("nan"),
         "rate_reached": metric(mtext, "ecflow_generated_events_total") / elapsed,
         "cpu_pct": 100 * (e1 - e0) / elapsed, "weed_pct": 100 * (w1 - w0) / elapsed,
         "busy": benchlib.busy_pct(m0, m1), "log": text, "commit_list": commits}
    # the histogram saw what the log says (a commit finishing during the scrape may differ by one)
    if abs(mcount - len(commits)) > 1:
        die(f"{tag}: ecflow_iceberg_commit_seconds_count {mcount:g} but {len(commits)} commit lines "
            f"before the scrape:\n{ef.tail()}")
    log(f"  {tag}: {len(commits)} commits, p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms, "
        f"{r['files']:g} files and {r['rows']:,.0f} rows each, {r['rate_reached']:,.0f} ev/s")
    if mode == "local":
        shutil.rmtree(env["WAREHOUSE"], ignore_errors=True)
    return r


def backlog(ctx, a, mode, rep):
    """One backlog run: COUNT events at RATE=0; rows/s, CPU and peak RSS of the process."""
    tag = f"{mode}-backlog-{rep}-{uuid.uuid4().hex[:6]}"
    env = run_env(ctx, mode, tag, a.backlog, 0, a.backlog_interval, a.batch)
    sw_pid = ctx["sw"].pid
    w0, m0 = cpu_of(sw_pid), machine_ticks()
    ef = Ecflow(ctx, env, tag)
    try:
        if not ef.reap(timeout=600):
            die(f"{tag}: not done after 600 s:\n{ef.tail()}")
    finally:
        ef.kill()
    w1, m1 = cpu_of(sw_pid), machine_ticks()
    text = check_run(ef, a.backlog)
    t_run = log_time(text, r"pipeline '[^']+' running")
    t_done = log_time(text, r"pipeline '[^']+' drained and stopped")
    if t_run is None or t_done is None or t_done <= t_run:
        die(f"{tag}: no running / drained lines in the log:\n{ef.tail()}")
    commits = commits_of(text)
    ru = ef.rusage
    cpu = ru.ru_utime + ru.ru_stime
    r = {"part": "backlog", "mode": mode, "rep": rep, "tag": tag, "rows": a.backlog,
         "secs": t_done - t_run, "rows_s": a.backlog / (t_done - t_run), "wall": ef.wall,
         "cpu": cpu, "cpu_us_row": 1e6 * cpu / a.backlog, "user": ru.ru_utime, "sys": ru.ru_stime,
         "rss_mb": ru.ru_maxrss / 1024.0, "commits": len(commits), "files": sum(c["files"] for c in commits),
         "commit_p50": pctl([c["ms"] for c in commits], 50), "commit_max": max([c["ms"] for c in commits] or [0]),
         "weed_cpu": w1 - w0, "busy": benchlib.busy_pct(m0, m1)}
    log(f"  {tag}: {r['rows_s']:,.0f} rows/s ({r['secs']:.2f} s), CPU {cpu:.2f} s, "
        f"RSS {r['rss_mb']:.0f} MB, {len(commits)} commits")
    if mode == "local":
        shutil.rmtree(env["WAREHOUSE"], ignore_errors=True)
    return r


# ---------------------------------------------------------------- the request pass

def timing_proxy(upstream):
    """FaultProxy passing everything through, recording each request: wall time it went
    upstream, method, path, whether it carried If-None-Match, body bytes, status and the
    upstream time (a new connection per request: the proxy's own cost is not in it)."""
    from fault_proxy import FaultProxy

    class TimingProxy(FaultProxy):
        def __init__(self, up):
            super().__init__(up)
            self.records = []  # (FaultProxy answers with TCP_NODELAY: no delayed-ACK wait)

        def _forward(self, req):
            t0, c0 = time.time(), time.monotonic()
            status, headers, data = super()._forward(req)
            self.records.append({"t": t0, "secs": time.monotonic() - c0, "method": req.method,
                                 "path": req.path, "inm": "If-None-Match" in req.headers,
                                 "bytes": len(req.body), "status": status})
            return status, headers, data

    return TimingProxy(upstream)


def kind_of(rec):
    """The kind of one recorded request, from its method and path."""
    u = urllib.parse.urlsplit(rec["path"])
    path, q = u.path, urllib.parse.parse_qs(u.query, keep_blank_values=True)
    m = rec["method"]
    if path.startswith("/v1/"):
        if path.endswith("/oauth/tokens"):
            return "REST POST oauth2 token"
        if path == "/v1/config":
            return "REST GET config"
        if re.search(r"/namespaces/[^/]+/tables/[^/]+$", path):
            return "REST POST commit (update table)" if m == "POST" else f"REST {m} load table"
        if path.endswith("/tables"):
            return f"REST {m} create table" if m == "POST" else f"REST {m} list tables"
        if "/namespaces" in path:
            return f"REST {m} namespace"
        return f"REST {m} other"
    if m == "POST" and "uploads" in q:
        return "S3 multipart initiate"
    if m == "PUT" and "partNumber" in q:
        return "S3 multipart part PUT"
    if m == "POST" and "uploadId" in q:
        return "S3 multipart complete"
    if m == "DELETE" and "uploadId" in q:
        return "S3 multipart abort"
    if m == "GET" and "list-type" in q:
        return "S3 LIST"
    if m == "HEAD":
        return "S3 HEAD probe"
    name = path.rsplit("/", 1)[-1]
    if name.endswith(".parquet"):
        return f"S3 data file {m}"
    if re.match(r"snap-.*\.avro$", name):
        return f"S3 manifest list {m}"
    if name.endswith(".avro"):
        return f"S3 manifest {m}"
    if name.endswith(".metadata.json"):
        return "S3 metadata PUT If-None-Match" if m == "PUT" and rec["inm"] else f"S3 metadata {m}"
    if name == "version-hint.text":
        return f"S3 version hint {m}"
    return f"S3 {m} other"


def requests_pass(ctx, a, mode, interval):
    """A proxied steady run: requests per commit by kind and their upstream time."""
    from_sw = ctx["sw"].env
    proxies = {"s3": timing_proxy(from_sw["S3_ENDPOINT"])}
    if mode == "s3-rest":
        proxies["rest"] = timing_proxy(from_sw["ICEBERG_REST_URI"])
    for p in proxies.values():
        p.__enter__()
    try:
        r = steady(ctx, a, mode, interval, "req", duration=a.request_duration, proxies=proxies)
    finally:
        for p in proxies.values():
            p.__exit__(None, None, None)
    recs = [dict(x, kind=kind_of(x)) for p in proxies.values() for x in p.records]
    recs.sort(key=lambda x: x["t"])
    t_run = log_time(r["log"], r"pipeline '[^']+' running")
    every = commits_of(r["log"])  # interval commits, also those after the scrape, and the flush
    # a commit's window: from (its log line - its duration) to its log line; 2 ms of slack
    windows = [(c["ts"] - c["ms"] / 1000 - 0.002, c["ts"] + 0.002) for c in every]
    in_commit = [dict() for _ in every]
    outside = {"startup": {}, "between commits (streamed data parts, none expected)": {}}
    for x in recs:
        k = x["kind"]
        for i, (lo, hi) in enumerate(windows):
            if lo <= x["t"] <= hi:
                d = in_commit[i].setdefault(k, [0, 0.0, 0])
                break
        else:
            where = "startup" if t_run is None or x["t"] < t_run else next(iter(list(outside)[1:]))
            d = outside[where].setdefault(k, [0, 0.0, 0])
        d[0] += 1
        d[1] += x["secs"]
        d[2] += x["bytes"]
    commits = [c for c in every if c["why"] == "interval"]
    per_commit = [pc for pc, c in zip(in_commit, every) if c["why"] == "interval"]
    flush = [pc for pc, c in zip(in_commit, every) if c["why"] != "interval"]
    if flush:
        outside["the flush commit at shutdown"] = flush[-1]
    kinds = sorted({k for pc in per_commit for k in pc})
    table = []
    for k in kinds:
        n = [pc.get(k, [0, 0.0, 0])[0] for pc in per_commit]
        s = [pc.get(k, [0, 0.0, 0])[1] * 1000 for pc in per_commit]
        each = [x["secs"] * 1000 for x in recs if x["kind"] == k]
        b = [pc[k][2] / pc[k][0] for pc in per_commit if k in pc and pc[k][0]]
        table.append({"kind": k, "per_commit": med(n), "min": min(n), "max": max(n), "ms_each": med(each),
                      "ms_per_commit": med(s), "bytes_each": med(b)})
    totals = [sum(v[1] for v in pc.values()) * 1000 for pc in per_commit]
    counts = [sum(v[0] for v in pc.values()) for pc in per_commit]
    res = {"mode": mode, "interval": interval, "commits": len(commits),
           "commit_p50": pctl([c["ms"] for c in commits], 50),
           "upstream_ms": med(totals), "requests": med(counts), "table": table, "outside": outside,
           "statuses": sorted({x["status"] for x in recs}), "n_requests": len(recs),
           "files": med([c["files"] for c in commits]), "rows": med([c["rows"] for c in commits]),
           "share": med([t / c["ms"] for t, c in zip(totals, commits) if c["ms"] > 0])}
    if not any("metadata PUT If-None-Match" in t["kind"] or "REST POST commit" in t["kind"] for t in table):
        die(f"{r['tag']}: the proxy saw no commit request inside a commit window: {[t['kind'] for t in table]}")
    log(f"  {r['tag']}: {len(recs)} requests, {res['requests']:g} per commit, "
        f"{res['upstream_ms']:.1f} of {res['commit_p50']:.1f} ms upstream (medians)")
    return res


# ---------------------------------------------------------------- the report

def machine_info(a, ctx):
    info = benchlib.machine()
    cache = benchlib.cmake_cache(a.build_dir)
    info["build_type"] = cache.get("CMAKE_BUILD_TYPE") or "?"
    info["commit"] = benchlib.git_commit()
    info["ecflow"] = benchlib.ecflow_version(ctx["ecflow"])
    weed = ctx.get("weed_bin") or shutil.which("weed") or "weed"
    info["weed"] = (benchlib.cmd_out([weed, "version"]).splitlines() or ["?"])[0]
    info["curl"] = benchlib.pkg_version("libcurl")
    info["disk"] = benchlib.cmd_out(["df", "--output=fstype,source", ctx["tmp"]]).splitlines()[-1:] or ["?"]
    return info


def report(a, ctx, results, reqs, info, argv, secs):
    L = []
    now = dt.datetime.now(dt.timezone.utc)
    steady_runs = [r for r in results if r["part"] == "steady"]
    back_runs = [r for r in results if r["part"] == "backlog"]
    L.append(f"# ecflow storage benchmark, {now:%Y-%m-%d %H:%M} UTC\n")
    L.append(f"{'Smoke run: ' if a.smoke else ''}sink-iceberg writing to local disk, to S3 with the file "
             f"catalog and to S3 through the Iceberg REST catalog, in one run against one SeaweedFS "
             f"({info['weed']}; S3 and the catalog in one `weed mini` process on 127.0.0.1, the same "
             f"{info['nproc']} cores). Pipeline: `bench/storage/storage.yaml`, source-generate → "
             f"transform-records → sink-iceberg (14 columns, partitioned by event_type and "
             f"day(timestamp), zstd). Medians of {a.repeats} run(s) per cell, the modes interleaved and "
             f"their order rotated each repeat; every run a fresh process and a fresh table.\n")

    L.append(f"## Commit latency under a steady stream ({a.rate:,} events/s, {a.duration:g} s per run)\n")
    L.append("Per commit, from the sink's log line `committed snapshot N (interval): F files, R rows, X ms` "
             "(finishing the open data files + writing the snapshot; flush commits at shutdown left "
             "out). p50/p99/max per run, then the median over the runs; `commits` counts all runs. "
             "`metrics mean` is ecflow_iceberg_commit_seconds' sum ÷ count from /metrics (it agreed with "
             "the log lines' count in every run).\n")
    L.append("| mode | commit_interval | commits | files / commit | rows / commit | p50 ms | p99 ms | max ms "
             "| metrics mean ms | p50 ÷ local | last ÷ first third p50 | rate reached ev/s | ecflow CPU % "
             "| weed CPU % | machine busy % |")
    L.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for iv in a.intervals:
        loc = [r for r in steady_runs if r["mode"] == "local" and r["interval"] == iv]
        for mode in a.modes:
            g = [r for r in steady_runs if r["mode"] == mode and r["interval"] == iv]
            if not g:
                continue
            p50 = med([r["p50"] for r in g])
            ratio = p50 / med([r["p50"] for r in loc]) if loc else float("nan")
            L.append(f"| {MODE_NAMES[mode]} | {iv} | {sum(r['commits'] for r in g)} | {fmt(med([r['files'] for r in g]))} "
                     f"| {fmt(med([r['rows'] for r in g]))} | {fmt(p50, 1)} | {fmt(med([r['p99'] for r in g]), 1)} "
                     f"| {fmt(med([r['max'] for r in g]), 1)} | {fmt(med([r['metric_mean_ms'] for r in g]), 1)} "
                     f"| {fmt(ratio, 1)} | {fmt(med([r['last_p50'] / r['first_p50'] for r in g]), 2)} "
                     f"| {fmt(med([r['rate_reached'] for r in g]))} | {fmt(med([r['cpu_pct'] for r in g]))} "
                     f"| {fmt(med([r['weed_pct'] for r in g]))} | {fmt(med([r['busy'] for r in g]))} |")
    L.append("")

    L.append(f"## Backlog write ({a.backlog:,} events at RATE=0, commit_interval {a.backlog_interval})\n")
    L.append("rows/s between the pipeline's `running` and `drained and stopped` log lines (the table "
             "already created; the last commit included); wall, CPU (utime + stime, all threads) and "
             "peak RSS of the whole process from wait4(2). weed CPU is SeaweedFS's in the same window.\n")
    L.append("| mode | rows/s | ÷ local | write s | process wall s | CPU s | CPU µs / row | peak RSS MB "
             "| commits | commit p50 ms | data files | weed CPU s | machine busy % |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    loc = [r for r in back_runs if r["mode"] == "local"]
    for mode in a.modes:
        g = [r for r in back_runs if r["mode"] == mode]
        if not g:
            continue
        rs = med([r["rows_s"] for r in g])
        ratio = rs / med([r["rows_s"] for r in loc]) if loc else float("nan")
        L.append(f"| {MODE_NAMES[mode]} | {fmt(rs)} | {fmt(ratio, 2)} | {fmt(med([r['secs'] for r in g]), 2)} "
                 f"| {fmt(med([r['wall'] for r in g]), 2)} | {fmt(med([r['cpu'] for r in g]), 2)} "
                 f"| {fmt(med([r['cpu_us_row'] for r in g]), 2)} | {fmt(med([r['rss_mb'] for r in g]))} "
                 f"| {fmt(med([r['commits'] for r in g]))} | {fmt(med([r['commit_p50'] for r in g]), 1)} "
                 f"| {fmt(med([r['files'] for r in g]))} | {fmt(med([r['weed_cpu'] for r in g]), 2)} "
                 f"| {fmt(med([r['busy'] for r in g]))} |")
    L.append("")

    if reqs:
        L.append("## Where the time goes in an S3 commit (proxied runs)\n")
        L.append("tests/integration/fault_proxy.py's FaultProxy in front of S3 (and the catalog), "
                 "passing every request through; each request classified by method and path and timed "
                 "upstream (proxy → SeaweedFS, a new connection each), and assigned to the commit whose "
                 "window (the log line's time minus its duration, ±2 ms) it went out in. Medians over "
                 "the commits of one run per row group. The proxy is Python and adds its own time to "
                 "every request, so these commits are slower than the unproxied ones above (both "
                 "p50s shown).\n")
        for q in reqs:
            unproxied = med([r["p50"] for r in steady_runs if r["mode"] == q["mode"] and r["interval"] == q["interval"]])
            local = med([r["p50"] for r in steady_runs if r["mode"] == "local" and r["interval"] == q["interval"]])
            extra = (unproxied - local) / q["requests"] if q["requests"] else float("nan")
            L.append(f"**{MODE_NAMES[q['mode']]}, commit_interval {q['interval']}**: {q['commits']} commits of "
                     f"{fmt(q['files'])} files / {fmt(q['rows'])} rows; {fmt(q['requests'])} requests per "
                     f"commit, one after the other; their upstream time {fmt(q['upstream_ms'], 1)} ms of a "
                     f"{fmt(q['commit_p50'], 1)} ms proxied commit (p50; median share {fmt(100 * q['share'])} %). "
                     f"Unproxied (the table above): p50 {fmt(unproxied, 1)} ms against {fmt(local, 1)} ms on local "
                     f"disk, i.e. {fmt(extra, 2)} ms more per request.\n")
            L.append("| request kind | per commit (min–max) | upstream ms each (p50) | ms per commit | bytes each |")
            L.append("|---|---:|---:|---:|---:|")
            for t in sorted(q["table"], key=lambda t: -t["ms_per_commit"]):
                L.append(f"| {t['kind']} | {fmt(t['per_commit'], 1 if t['per_commit'] % 1 else 0)} "
                         f"({t['min']}–{t['max']}) | {fmt(t['ms_each'], 2)} | {fmt(t['ms_per_commit'], 1)} "
                         f"| {fmt(t['bytes_each'])} |")
            for where, d in q["outside"].items():
                if d:
                    L.append(f"\n{where}: " + ", ".join(
                        f"{k} ×{v[0]}" for k, v in sorted(d.items(), key=lambda kv: -kv[1][0])))
            L.append(f"\nHTTP statuses seen: {', '.join(str(s) for s in q['statuses'])}.\n")

    L.append("## Every run\n")
    L.append("| # | mode | part | commit_interval | commits | p50 ms | p99 ms | max ms | rows/s | CPU s | RSS MB "
             "| weed CPU | busy % |")
    L.append("|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        if r["part"] == "steady":
            L.append(f"| {r['rep']} | {r['mode']} | steady | {r['interval']} | {r['commits']} | {fmt(r['p50'], 1)} "
                     f"| {fmt(r['p99'], 1)} | {fmt(r['max'], 1)} | — | — | — | {fmt(r['weed_pct'])} % "
                     f"| {fmt(r['busy'])} |")
        else:
            L.append(f"| {r['rep']} | {r['mode']} | backlog | {a.backlog_interval} | {r['commits']} "
                     f"| {fmt(r['commit_p50'], 1)} | — | {fmt(r['commit_max'], 1)} | {fmt(r['rows_s'])} "
                     f"| {fmt(r['cpu'], 2)} | {fmt(r['rss_mb'])} | {fmt(r['weed_cpu'], 2)} s | {fmt(r['busy'])} |")
    L.append("")

    L.append("## Machine, build, settings\n")
    L.append(f"- machine: {info['cpu']}; nproc {info['nproc']}; RAM {info['mem_gib']} GiB; {info['os']}, kernel "
             f"{info['kernel']}; load average before: {' '.join(info['load'])} (a shared machine: other "
             f"tenants skew numbers, see `machine busy`); local warehouse on {' '.join(info['disk'])}")
    L.append(f"- git commit: {info['commit']}; build type {info['build_type']}; {info['ecflow']}; libcurl "
             f"{info['curl']}; SeaweedFS {info['weed']} (tests/services/seaweedfs.sh, `weed mini`)")
    L.append(f"- settings: steady {a.rate:,} events/s for {a.duration:g} s at commit_interval "
             f"{', '.join(a.intervals)}; backlog {a.backlog:,} events, commit_interval {a.backlog_interval}; "
             f"batch_size {a.batch}; target_file_size 128MiB, s3_part_size 8MiB (the pipeline's defaults); "
             f"{a.repeats} repeat(s); request pass {'off' if a.no_requests else f'{a.request_duration:g} s per mode and interval'}")
    L.append(f"- command: `{' '.join(['bench/storage/run.sh'] + [shlex.quote(x) for x in argv])}` "
             f"({secs / 60:.1f} min in all)")
    L.append("- each run: `ecflow run bench/storage/storage.yaml` with WAREHOUSE (a new directory, "
             "s3://BUCKET/RUN, or the catalog's warehouse), TABLE (shop.events, or ns_RUN.events with "
             "CATALOG=rest, CATALOG_URI, CATALOG_CREDENTIAL, CREATE_NAMESPACE=true), COUNT, RATE, "
             "COMMIT_INTERVAL, BATCH, METRICS_PORT and AWS_ENDPOINT_URL / AWS_ACCESS_KEY_ID / "
             "AWS_SECRET_ACCESS_KEY / AWS_REGION set; steady runs end with SIGTERM (drained, exit 0), "
             "backlog runs on their own")
    return "\n".join(L) + "\n"


# ---------------------------------------------------------------- main

def main(argv):
    a = parse_args(argv)
    a.build_dir = os.path.abspath(a.build_dir)
    ecflow = os.path.join(a.build_dir, "ecflow")
    plugins = os.path.join(a.build_dir, "plugins")
    fixtures = os.path.join(plugins, "sink-iceberg", "tests", "fixtures")
    for f in [ecflow] + [os.path.join(plugins, p + ".so") for p in ("source-generate", "sink-iceberg")]:
        if not os.path.exists(f):
            die(f"{f} not found: build first (bash scripts/build.sh {a.build_dir})")
    if not any(os.path.exists(os.path.join(d, "transform-records.so")) for d in (plugins, fixtures)):
        die(f"transform-records.so (the sink-iceberg test fixture) is in neither {plugins} nor {fixtures}")

    t_begin = time.monotonic()
    tmp = tempfile.mkdtemp(prefix="ecflow-bench-storage-")
    watchdog(tmp)
    ctx = {"ecflow": ecflow, "plugin_path": f"{plugins}:{fixtures}", "tmp": tmp}
    sw = None
    results, reqs = [], []
    try:
        info_load = benchlib.machine()["load"]
        log("starting SeaweedFS (S3 + Iceberg REST catalog)")
        sw = SeaweedFS(os.path.join(tmp, "seaweedfs"))  # running in local runs too: all modes
        ctx["sw"] = sw                                   # share the machine with it alike
        log(f"S3 at {sw.env['S3_ENDPOINT']}, catalog at {sw.env['ICEBERG_REST_URI']} (weed pid {sw.pid})")
        info = machine_info(a, ctx)
        info["load"] = info_load
        for rep in range(1, a.repeats + 1):
            order = a.modes[(rep - 1) % len(a.modes):] + a.modes[:(rep - 1) % len(a.modes)]
            log(f"repeat {rep}/{a.repeats}: {', '.join(order)}")
            for iv in a.intervals:
                for mode in order:
                    results.append(steady(ctx, a, mode, iv, rep))
            for mode in order:
                results.append(backlog(ctx, a, mode, rep))
        if not a.no_requests:
            log("request pass (proxied)")
            for iv in a.intervals:
                for mode in a.modes:
                    if mode != "local":
                        reqs.append(requests_pass(ctx, a, mode, iv))
        text = report(a, ctx, results, reqs, info, argv, time.monotonic() - t_begin)
        print(text, end="")
        out = a.out or (None if a.smoke else
                        os.path.join(REPO, "bench", "results", f"storage-{dt.date.today():%Y-%m-%d}.md"))
        if out:
            os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
            with open(out, "w") as f:
                f.write(text)
            log(f"wrote {out}")
        log(f"done in {(time.monotonic() - t_begin) / 60:.1f} min")
        return 0
    finally:
        if sw:
            sw.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def on_signal(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, on_signal)
    try:
        sys.exit(main(sys.argv[1:]))
    except BenchError as e:
        log(f"error: {e}")
        sys.exit(1)
    except KeyboardInterrupt as e:
        log(f"interrupted ({e}); SeaweedFS stopped, temp dir removed")
        sys.exit(130)
