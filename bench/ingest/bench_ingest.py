"""ecflow ingest benchmark (run it through bench/ingest/run.sh).

In one run, against one real local Kafka broker (tests/services/kafka.sh, a private state
dir, stopped at the end), with the same client load (wrk, keep-alive connections, bodies
from a pool of realistic events that source-generate makes):

    pipeline    the ingest leg of pipelines/ecommerce.yaml (its `http` and `to_kafka` stages,
                copied verbatim at run time): source-http -> sink-kafka, answering once the
                events are durable in Kafka (acks=all)
    discard     discard_server.c: libmicrohttpd with source-http's threading model, reads the
                body and throws it away: the HTTP ceiling
    raw         raw_producer.c: librdkafka alone with sink-kafka's settings, producing the
                same events as fast as it can, counting delivery reports: the Kafka ceiling
    raw loop    raw_producer.c in a closed loop: as many records in flight as the batch-1
                load has connections, each delivery report producing the next, with the
                pipeline's linger: the most one-event requests per second that can be
                answered once durable, whatever the HTTP side does (Kafka's bound at batch 1)
    durable     durable_server.c: discard's libmicrohttpd plus one producer with sink-kafka's
                settings; each body is one record, produced from the HTTP worker, answered on
                its delivery report. Nothing else: the stack's bound at batch 1, HTTP included

Runs are interleaved (every scenario once, then again) so slow drift on a shared machine
hits all of them alike; every figure is the median over the repeats. Server CPU is utime +
stime of the server process (all threads) from /proc/PID/stat over the measured window,
divided by the events answered 200 in it; peak RSS is the process's VmHWM; the broker's CPU
is measured the same way. Only the standard library.
"""

import argparse
import datetime as dt
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # bench/, for benchlib
import benchlib  # noqa: E402
from benchlib import (cmd_out, cpu_secs, fmt, free_port, http_get,  # noqa: E402
                      machine_ticks, med, read)

REPO = benchlib.REPO
PIPELINE = os.path.join(REPO, "pipelines", "ecommerce.yaml")
LUA = os.path.join(HERE, "post_events.lua")
TARGET_HTTP, TARGET_KAFKA = 0.5, 0.7


def log(msg):
    print(f"bench-ingest: {msg}", file=sys.stderr, flush=True)


def die(msg):
    log(msg)
    sys.exit(1)


def parse_args(argv):
    p = argparse.ArgumentParser(prog="bench/ingest/run.sh",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("build_dir", nargs="?", default=os.path.join(REPO, "build"),
                   help="CMake build directory holding ecflow and plugins/ (default: %(default)s)")
    p.add_argument("--smoke", action="store_true",
                   help="seconds, one run, no results file unless --out: for CI")
    p.add_argument("--duration", type=int, help="whole seconds per measured run (default 12)")
    p.add_argument("--repeats", type=int, help="interleaved runs per scenario (default 3)")
    p.add_argument("--connections", type=int, default=None,
                   help="keep-alive connections of the main load (default 64, as in DESIGN.md)")
    p.add_argument("--wide", type=int, default=None,
                   help="also run the pipeline (batch 1 and 100) and the reference servers "
                        "(batch 1) at this many connections: the pipeline answers only once "
                        "events are durable, so at 64 it is bound by latency, not CPU "
                        "(default 256; 0 = skip)")
    p.add_argument("--perf", action="store_true",
                   help="record a perf profile (cpu-clock) of the pipeline in the last repeat "
                        "and print where its time goes")
    p.add_argument("--baseline", metavar="BUILD_DIR",
                   help="also run this build's ecflow and plugins (an older commit, say) right "
                        "after every pipeline run, with the same pipeline file, and report "
                        "pipeline ÷ baseline: a before/after in one run, which a shared "
                        "machine's drift between two runs would blur")
    p.add_argument("--baseline-env", metavar="K=V", action="append", default=[],
                   help="environment for the baseline runs only (repeatable): with --baseline "
                        "set to this same build, a before/after of a pipeline knob, e.g. "
                        "HTTP_ON_INVALID=off against the shipped edge validation")
    p.add_argument("--variant", metavar="BUILD_DIR[,K=V...]", action="append", default=[],
                   help="like --baseline, repeatable: also run this build with this environment "
                        "after every pipeline run, e.g. the old and the new build each with "
                        "HTTP_ON_INVALID=off, for a before/after of a knob in one run")
    p.add_argument("--durable-lingers", metavar="MS,MS,...", default="",
                   help="also run durable_server at these lingers (ms), at both connection "
                        "counts: whether any linger lifts the stack's batch-1 bound")
    p.add_argument("--out", help="results file (default bench/results/ingest-DATE.md)")
    a = p.parse_args(argv)
    try:
        a.durable_lingers = [float(x) for x in a.durable_lingers.split(",") if x.strip()]
    except ValueError:
        p.error("--durable-lingers: a comma-separated list of milliseconds, as 0,0.2,0.5")
    a.duration = a.duration or (2 if a.smoke else 12)
    a.repeats = a.repeats or 1 if a.smoke else a.repeats or 3
    a.connections = a.connections or (16 if a.smoke else 64)
    if a.wide is None:
        a.wide = 0 if a.smoke else 256
    a.warmup = 1.0 if a.smoke else 2.0
    if a.duration <= 0 or a.repeats < 1 or a.connections < 1:
        p.error("--duration, --repeats and --connections must be positive")
    return a


# ---------------------------------------------------------------- small tools

def wait_until(what, cond, timeout, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        if cond():
            return True
        time.sleep(0.05)
    log(f"timed out after {timeout}s waiting for {what}")
    return False


def metric_sum(text, name):
    vals = [float(l.rsplit(" ", 1)[1]) for l in text.splitlines()
            if l.startswith(name + "{") or l.startswith(name + " ")]
    return sum(vals) if vals else None


def compile_tools(out_dir):
    """gcc builds the three reference programs; pkg-config supplies the library flags."""
    apt = {"libmicrohttpd": "libmicrohttpd-dev", "rdkafka": "librdkafka-dev"}
    built = {}
    for name, libs in (("discard_server", ["libmicrohttpd"]), ("raw_producer", ["rdkafka"]),
                       ("durable_server", ["libmicrohttpd", "rdkafka"])):
        flags = []
        for lib in libs:
            f = cmd_out(["pkg-config", "--cflags", "--libs", lib])
            if not f:
                die(f"pkg-config knows no {lib}: apt-get install {apt[lib]}")
            flags += shlex.split(f)
        exe = os.path.join(out_dir, name)
        cmd = ["gcc", "-O2", "-Wall", "-o", exe, os.path.join(HERE, name + ".c")] + flags + \
            ["-lpthread"]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            die(f"compiling {name}.c failed:\n{r.stderr}")
        built[name] = exe
    return built


# ---------------------------------------------------------------- the pieces

def make_pool(ecflow, plugin_dir, path, count):
    """Realistic events: source-generate's shopper sessions (pipelines/demo.yaml)."""
    benchlib.generate_pool(ecflow, plugin_dir, path, count, die)
    with open(path, "rb") as f:
        lines = [l for l in f.read().splitlines() if l]
    return len(lines), sum(len(l) for l in lines) / len(lines)


def ingest_leg(src, dst):
    """pipelines/ecommerce.yaml is the whole flow (HTTP -> Kafka -> validate -> Iceberg); this
    benchmark is about its ingest leg. Copies the `http` and `to_kafka` stages verbatim (so
    the numbers follow the shipped options), with the topic created as the ci profile does."""
    stages, name, block = {}, None, None
    in_stages = False
    for line in read(src).splitlines():
        if re.match(r"^\S", line):
            in_stages, name = line.startswith("stages:"), None
            continue
        if not in_stages:
            continue
        m = re.match(r"^  ([A-Za-z0-9_]+):\s*(.*)$", line)
        if m:
            name = m.group(1)
            block = stages.setdefault(name, [])
        elif re.match(r"^  \S", line):  # a comment at stage level ends the block
            name = None
            continue
        if name:
            block.append(line)
    missing = [n for n in ("http", "to_kafka") if n not in stages]
    if missing:
        die(f"{src}: no stage(s) {', '.join(missing)}: the benchmark runs http -> to_kafka")
    # File options are relative to the pipeline file: point them at the original's folder.
    base = os.path.dirname(os.path.abspath(src))
    stages["http"] = [re.sub(r"^(\s+schema:\s*)([^\s\"'/][^\s]*)\s*$",
                             lambda m: m.group(1) + os.path.join(base, m.group(2)), line)
                      for line in stages["http"]]
    text = ("# Written by bench/ingest: the ingest leg of pipelines/ecommerce.yaml, verbatim.\n"
            "pipeline:\n  name: ecommerce-ingest\n"
            '  metrics: "127.0.0.1:${METRICS_PORT}"\n'
            "stages:\n" + "\n".join(stages["http"] + stages["to_kafka"]) + "\n"
            "profiles:\n  bench:\n    stages:\n"
            "      to_kafka: {create_topic: true, partitions: 3}\n")
    with open(dst, "w") as f:
        f.write(text)
    return dst


def run_wrk(port, batch, conns, seconds, pool):
    return benchlib.run_wrk(LUA, port, conns, seconds, [pool, batch], die)


class Window:
    """CPU of the server, the broker and the whole machine over one measured run."""

    def __init__(self, pid, broker_pid):
        self.pid, self.broker_pid = pid, broker_pid

    def __enter__(self):
        self.t0 = time.monotonic()
        self.c0 = cpu_secs(self.pid)
        self.b0 = cpu_secs(self.broker_pid) if self.broker_pid else 0
        self.m0 = machine_ticks()
        return self

    def __exit__(self, *exc):
        self.secs = time.monotonic() - self.t0
        self.cpu = cpu_secs(self.pid) - self.c0
        self.broker_cpu = cpu_secs(self.broker_pid) - self.b0 if self.broker_pid else 0.0
        self.busy = benchlib.busy_pct(self.m0, machine_ticks())


def http_result(kind, batch, conns, w, win, pid):
    ok_events = w["status_200"] * batch
    secs = w["duration_us"] / 1e6
    r = {
        "kind": kind, "batch": batch, "conns": conns,
        "req_s": w["requests"] / secs,
        "ok_req_s": w["status_200"] / secs,
        "events_s": ok_events / secs,
        "s503_s": w["status_503"] / secs,
        "other": w["status_207"] + w["status_other"] + w["errors"],
        "p50_ms": w["p50_us"] / 1000, "p99_ms": w["p99_us"] / 1000,
        "cpu_us_ev": win.cpu / ok_events * 1e6 if ok_events else float("nan"),
        "broker_us_ev": win.broker_cpu / ok_events * 1e6 if ok_events and win.broker_cpu
        else float("nan"),
        "client_us_ev": w["cpu"] / ok_events * 1e6 if ok_events else float("nan"),
        "busy": win.busy, "rss_mb": benchlib.vm_hwm_mb(pid), "ok_events": ok_events,
        "samples": w["samples"],
    }
    return r


def run_pipeline(a, ctx, batch, conns, perf_to=None, seconds=None, build=None):
    build = build or ctx["build"]
    port, mport = free_port(), free_port()
    topic = f"bench_ingest_{batch}_{conns}_{uuid.uuid4().hex[:8]}"
    env = dict(os.environ, HTTP_PORT=str(port), METRICS_PORT=str(mport),
               KAFKA_BOOTSTRAP=ctx["kafka"].bootstrap, KAFKA_TOPIC=topic,
               ECFLOW_PLUGIN_PATH=build["plugin_dir"])
    env.update(build.get("env", {}))
    env.pop("ECFLOW_PROFILE", None)
    log_path = os.path.join(ctx["tmp"], f"ecflow-{topic}.log")
    with open(log_path, "w") as lf:
        proc = subprocess.Popen([build["ecflow"], "run", ctx["pipeline"], "--profile", "bench"],
                                env=env, stdout=lf, stderr=subprocess.STDOUT)
    try:
        if not wait_until("the pipeline's /ready",
                          lambda: http_get(port, "/ready", timeout=2)[0] == 200, 60, proc):
            die(f"the pipeline did not get ready:\n{read(log_path)[-3000:]}")
        run_wrk(port, batch, conns, a.warmup, ctx["pool"])  # connections, PID, JIT
        perf = None
        if perf_to:
            perf = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "499", "-g",
                                     "-p", str(proc.pid), "-o", perf_to, "--", "sleep",
                                     str(max(1.0, a.duration - 1))],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with Window(proc.pid, ctx["kafka"].pid) as win:
            w = run_wrk(port, batch, conns, seconds or a.duration, ctx["pool"])
        if perf:
            perf.wait(60)
        r = http_result(build["kind"], batch, conns, w, win, proc.pid)
        time.sleep(0.2)  # reports served just before the last answers reach the counters
        status, text = http_get(mport, "/metrics", timeout=2)
        delivered = metric_sum(text, "ecflow_kafka_messages_delivered_total") or 0
        failed = metric_sum(text, "ecflow_kafka_messages_failed_total") or 0
        accepted = metric_sum(text, "ecflow_http_events_accepted_total") or 0
        r.update(delivered=delivered, failed=failed, accepted=accepted)
    finally:
        benchlib.terminate(proc, 60)
    r["exit"] = proc.returncode
    if proc.returncode != 0:
        die(f"ecflow exited {proc.returncode}:\n{read(log_path)[-3000:]}")
    # Honesty check: everything answered 200 was delivered (warm-up included).
    if delivered < accepted or failed:
        die(f"{build['kind']}: {accepted:.0f} events answered as durable but {delivered:.0f} "
            f"delivered, {failed:.0f} failed:\n{read(log_path)[-3000:]}")
    return r


def run_reference(a, ctx, kind, cmd, batch, conns, broker_pid=None):
    """wrk against one of the reference servers (cmd, with {port} to fill in); broker_pid,
    if it uses the broker, for the broker's CPU."""
    port = free_port()
    proc = subprocess.Popen([x.format(port=port) for x in cmd],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def listening():
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                return False
        if not wait_until(f"{kind} server to listen", listening, 10, proc):
            die(f"{cmd[0]} did not start")
        run_wrk(port, batch, conns, a.warmup, ctx["pool"])
        with Window(proc.pid, broker_pid) as win:
            w = run_wrk(port, batch, conns, a.duration, ctx["pool"])
        r = http_result(kind, batch, conns, w, win, proc.pid)
    finally:
        benchlib.terminate(proc, 40)
    return r


def run_discard(a, ctx, batch, conns):
    return run_reference(a, ctx, "discard", [ctx["tools"]["discard_server"], "{port}", "0"],
                         batch, conns)


def durable_kind(linger_ms):
    """Results of durable_server at the pipeline's linger are "durable"; others name theirs."""
    return "durable" if linger_ms is None else f"durable@{linger_ms:g}"


def run_durable(a, ctx, conns, linger_ms=None):
    """One-event requests answered once Kafka has them, by the least a server can do; with
    the pipeline's linger unless another is given."""
    topic = f"bench_ingest_durable_{conns}_{uuid.uuid4().hex[:8]}"
    linger = pipeline_linger_ms(ctx["pipeline"]) if linger_ms is None else linger_ms
    cmd = [ctx["tools"]["durable_server"], "{port}", ctx["kafka"].bootstrap, topic,
           f"{linger:g}", "0"]
    return run_reference(a, ctx, durable_kind(linger_ms), cmd, 1, conns, ctx["kafka"].pid)


def baseline_build(build_dir):
    """The --baseline build: its binaries and, for the report, the commit it was built from."""
    ecflow = os.path.join(build_dir, "ecflow")
    plugin_dir = os.path.join(build_dir, "plugins")
    if not os.path.exists(ecflow) or not os.path.exists(os.path.join(plugin_dir, "source-http.so")):
        die(f"--baseline {build_dir}: no ecflow and plugins/ there")
    src = benchlib.cmake_cache(build_dir).get("CMAKE_HOME_DIRECTORY", "")
    commit = cmd_out(["git", "-C", src, "rev-parse", "--short=12", "HEAD"]) if src else ""
    return {"kind": "baseline", "ecflow": ecflow, "plugin_dir": plugin_dir,
            "label": commit.strip() or build_dir}


def pipeline_linger_ms(path):
    """to_kafka's linger in ms as the ingest leg sets it (librdkafka's default, 5, if not)."""
    m = re.search(r"^\s*linger:\s*\"?([0-9.]+)\s*(ms|s)\b", read(path), re.M)
    if not m:
        return 5.0
    return float(m.group(1)) * (1000.0 if m.group(2) == "s" else 1.0)


def run_raw(a, ctx, seconds=None, warm=False, inflight=None):
    topic = f"bench_ingest_raw_{uuid.uuid4().hex[:8]}"
    secs = seconds or a.duration
    cmd = [ctx["tools"]["raw_producer"], ctx["kafka"].bootstrap, topic, ctx["pool"], str(secs)]
    if inflight:
        cmd += [str(inflight), f"{pipeline_linger_ms(ctx['pipeline']):g}"]
    broker = ctx["kafka"].pid
    b0, m0 = cpu_secs(broker), machine_ticks()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=secs + 120)
    b1, m1 = cpu_secs(broker), machine_ticks()
    v = benchlib.result_line(r.stdout)
    if r.returncode != 0 or v is None:
        die(f"raw_producer failed ({r.returncode}):\n{r.stdout}\n{r.stderr[-3000:]}")
    if warm:
        return None
    return {
        "kind": "rawloop" if inflight else "raw", "batch": 1 if inflight else None,
        "conns": inflight,
        "events_s": v["events_per_s"], "req_s": float("nan"), "ok_req_s": float("nan"),
        "s503_s": float("nan"), "other": v["failed"],
        "p50_ms": v["p50_us"] / 1000, "p99_ms": v["p99_us"] / 1000,
        "cpu_us_ev": v["cpu_s"] / v["delivered"] * 1e6,
        "broker_us_ev": (b1 - b0) / v["delivered"] * 1e6,
        "client_us_ev": float("nan"),
        "busy": benchlib.busy_pct(m0, m1),
        "rss_mb": v["maxrss_kb"] / 1024.0, "ok_events": v["delivered"], "samples": [],
    }


# ---------------------------------------------------------------- report

def machine_info(a, ctx):
    return {
        **benchlib.machine(),
        "commit": benchlib.git_commit(),
        "build_type": benchlib.cmake_cache(a.build_dir).get("CMAKE_BUILD_TYPE", "?"),
        "ecflow": benchlib.ecflow_version(ctx["ecflow"]),
        "mhd": benchlib.pkg_version("libmicrohttpd"),
        "rdkafka": benchlib.pkg_version("rdkafka"),
        "wrk": benchlib.deb_version("wrk"),
        "kafka": os.environ.get("KAFKA_VERSION", "3.9.1"),
        "java": benchlib.java_version(),
    }


def report(a, ctx, results, info, pool_info, argv):
    groups = {}
    for r in results:
        groups.setdefault((r["kind"], r["batch"], r["conns"]), []).append(r)
    c, wide = a.connections, a.wide
    durables = ["durable"] + [durable_kind(x) for x in a.durable_lingers]
    vk = [v["kind"] for v in ctx.get("variants", [])]

    def builds(b, n):
        return [("pipeline", b, n), ("baseline", b, n)] + [(k, b, n) for k in vk]
    rows = builds(1, c) + [("discard", 1, c)] + [(d, 1, c) for d in durables] + [("rawloop", 1, c)]
    if wide:
        rows += builds(1, wide) + [("discard", 1, wide)] + \
            [(d, 1, wide) for d in durables] + [("rawloop", 1, wide)]
    rows += builds(100, c)
    if wide:
        rows += builds(100, wide)
    rows += [("discard", 100, c), ("raw", None, None)]
    names = {
        "pipeline": "pipeline: source-http -> sink-kafka",
        "discard": "discard_server (HTTP ceiling)",
        "raw": "raw librdkafka producer (Kafka ceiling)",
        "rawloop": "raw producer, closed loop (Kafka's bound at batch 1)",
        "durable": "durable_server (the stack's bound for answers once durable)",
        "baseline": f"baseline build ({ctx['baseline']['label']})" if "baseline" in ctx else "",
        **{durable_kind(x): f"durable_server, linger {x:g} ms" for x in a.durable_lingers},
        **{v["kind"]: f"variant: build {v['label']}" for v in ctx.get("variants", [])},
    }
    L = []
    now = dt.datetime.now(dt.timezone.utc)
    L.append(f"# ecflow ingest benchmark, {now:%Y-%m-%d %H:%M} UTC\n")
    L.append(f"{'Smoke run: ' if a.smoke else ''}{a.repeats} interleaved run(s) of "
             f"{a.duration:g} s per scenario (after a {a.warmup:g} s warm-up each), medians; "
             f"wrk -t1, keep-alive; events from source-generate, {pool_info[0]:,} in the pool, "
             f"{pool_info[1]:.0f} bytes each on average; one local Kafka {info['kafka']} broker "
             f"(KRaft, 1 node) on the same machine.\n")
    L.append("| scenario | batch | conns | events/s | req/s answered 200 | 503/s | p50 ms | "
             "p99 ms | server CPU µs/event | broker CPU µs/event | wrk CPU µs/event | "
             "machine busy % | peak RSS MB |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for key in rows:
        runs = groups.get(key, [])
        if not runs:
            continue
        kind, batch, conns = key
        L.append(f"| {names[kind]} | {batch or '—'} | {conns or '—'} | "
                 f"{fmt(med(runs, 'events_s'))} | {fmt(med(runs, 'ok_req_s'))} | "
                 f"{fmt(med(runs, 's503_s'))} | {fmt(med(runs, 'p50_ms'), 2)} | "
                 f"{fmt(med(runs, 'p99_ms'), 2)} | {fmt(med(runs, 'cpu_us_ev'), 2)} | "
                 f"{fmt(med(runs, 'broker_us_ev'), 2)} | {fmt(med(runs, 'client_us_ev'), 2)} | "
                 f"{fmt(med(runs, 'busy'))} | {fmt(med(runs, 'rss_mb'), 1)} |")

    def ratio(num_key, num_field, den_key, den_field):
        n, d = med(groups.get(num_key, []), num_field), med(groups.get(den_key, []), den_field)
        return n / d if d and d == d and n == n else float("nan")

    r_http = ratio(("pipeline", 1, c), "ok_req_s", ("discard", 1, c), "ok_req_s")
    r_kafka = ratio(("pipeline", 100, c), "events_s", ("raw", None, None), "events_s")
    L.append("")
    L.append("## Ratios against the ceilings\n")
    L.append("| ratio | value | target |")
    L.append("|---|---:|---:|")
    L.append(f"| pipeline req/s ÷ discard req/s, batch 1, {c} connections | "
             f"{fmt(r_http, 2)} | ≥ {TARGET_HTTP} {'✔' if r_http >= TARGET_HTTP else '✘'} |")
    if wide:
        r_w = ratio(("pipeline", 1, wide), "ok_req_s", ("discard", 1, wide), "ok_req_s")
        L.append(f"| pipeline req/s ÷ discard req/s, batch 1, {wide} connections | "
                 f"{fmt(r_w, 2)} | ≥ {TARGET_HTTP} {'✔' if r_w >= TARGET_HTTP else '✘'} |")
    for n in (c, wide) if wide else (c,):
        r_l = ratio(("pipeline", 1, n), "ok_req_s", ("rawloop", 1, n), "events_s")
        L.append(f"| pipeline req/s ÷ raw producer with {n} records in flight, batch 1, {n} "
                 f"connections | {fmt(r_l, 2)} | (no target) |")
    for n in (c, wide) if wide else (c,):
        for d, linger in zip(durables, [None] + a.durable_lingers):
            r_d = ratio((d, 1, n), "ok_req_s", ("discard", 1, n), "ok_req_s")
            at = "" if linger is None else f", linger {linger:g} ms"
            L.append(f"| durable_server req/s ÷ discard req/s, batch 1, {n} connections{at} | "
                     f"{fmt(r_d, 2)} | (no target) |")
        r_p = ratio(("pipeline", 1, n), "ok_req_s", ("durable", 1, n), "ok_req_s")
        L.append(f"| pipeline req/s ÷ durable_server req/s, batch 1, {n} connections | "
                 f"{fmt(r_p, 2)} | (no target) |")
    L.append(f"| pipeline events/s ÷ raw producer events/s, batch 100, {c} connections | "
             f"{fmt(r_kafka, 2)} | ≥ {TARGET_KAFKA} {'✔' if r_kafka >= TARGET_KAFKA else '✘'} |")
    if wide:
        r_w = ratio(("pipeline", 100, wide), "events_s", ("raw", None, None), "events_s")
        L.append(f"| pipeline events/s ÷ raw producer events/s, batch 100, {wide} connections | "
                 f"{fmt(r_w, 2)} | ≥ {TARGET_KAFKA} {'✔' if r_w >= TARGET_KAFKA else '✘'} |")
    if "baseline" in ctx:
        for b, n in [(1, c), (1, wide), (100, c), (100, wide)]:
            if n:
                r_b = ratio(("pipeline", b, n), "events_s", ("baseline", b, n), "events_s")
                L.append(f"| pipeline events/s ÷ baseline build's, batch {b}, {n} connections | "
                         f"{fmt(r_b, 2)} | (before/after) |")
    for v in ctx.get("variants", []):
        for b, n in [(1, c), (1, wide), (100, c), (100, wide)]:
            if n:
                r_e = ratio(("pipeline", b, n), "events_s", (v["kind"], b, n), "events_s")
                r_c = ratio(("pipeline", b, n), "cpu_us_ev", (v["kind"], b, n), "cpu_us_ev")
                L.append(f"| pipeline ÷ {v['label']}: events/s, CPU µs/event; batch {b}, {n} "
                         f"connections | {fmt(r_e, 2)}, {fmt(r_c, 2)} | (before/after) |")
    L.append("")
    L.append("- **events/s** counts only events answered 200 (durable in Kafka for the "
             "pipeline); **req/s answered 200** likewise; **503/s** are answers wrk did not "
             "retry (it does not honour Retry-After). For the raw producer, events/s are "
             "delivery reports over the time from the first produce to the last report, and "
             "p50/p99 are librdkafka's produce-to-report latency (time in a full queue). The "
             "closed loop keeps as many records in flight as the load has connections, with "
             "the pipeline's linger: one-event requests answered once durable cannot come "
             "back faster than that, and the pipeline adds HTTP on the same cores. "
             "**durable_server** is that plus HTTP and nothing else: discard_server's "
             "libmicrohttpd producing each body as one record from the HTTP worker (sink-kafka's "
             "settings, the pipeline's linger, a topic of 3 partitions as the pipeline's) and "
             "answering on its delivery report; no parsing, no validation, no pipeline. Its "
             "ratio to the discard server is the most any server answering once durable "
             "reaches on this stack and machine (at the linger named, if any).")
    L.append("- **server CPU** is the server process (all threads: HTTP workers, stage threads, "
             "librdkafka) per event answered 200; **broker CPU** is the Kafka JVM per event; "
             "**wrk CPU** is the load generator's (it shares the machine); **machine busy** "
             "counts everything, other tenants too. 2xx answers other than 200, "
             "and socket errors: "
             f"{int(sum(r['other'] for r in results if r['kind'] != 'raw'))} in all runs.")
    L.append("- Honesty check after every pipeline run: events answered as durable "
             "(`http_events_accepted_total`, warm-up included) ≤ records the brokers "
             "confirmed (`kafka_messages_delivered_total`), none failed, exit 0 on SIGTERM.")
    L.append("")
    L.append("## Machine and build\n")
    L.append(f"- CPU: {info['cpu']}; nproc {info['nproc']}; memory {info['mem_gib']} GiB")
    L.append(f"- OS: {info['os']}, kernel {info['kernel']}; load average before the runs: "
             f"{' '.join(info['load'])} (shared machines skew numbers)")
    L.append(f"- {info['ecflow']}; build type {info['build_type']}; libmicrohttpd "
             f"{info['mhd']}; librdkafka {info['rdkafka']}; wrk {info['wrk']}; "
             f"Kafka {info['kafka']} on {info['java']} (`{ctx['kafka'].jvm_opts}`)")
    L.append(f"- git commit: {info['commit']}")
    L.append(f"- command: `{' '.join(['bench/ingest/run.sh'] + [shlex.quote(x) for x in argv])}`")
    L.append("- the pipeline run (`ecflow run ingest.yaml --profile bench`), made from "
             "pipelines/ecommerce.yaml at run time:\n")
    L.append("```yaml\n" + read(ctx["pipeline"]).rstrip() + "\n```")
    L.append("")
    L.append("## Every run\n")
    L.append("| run | scenario | batch | conns | events/s | req/s 200 | 503/s | p50 ms | p99 ms "
             "| CPU µs/event | broker µs/event | busy % | RSS MB |")
    L.append("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        L.append(f"| {r['rep']} | {r['kind']} | {r['batch'] or '—'} | {r['conns'] or '—'} | "
                 f"{fmt(r['events_s'])} | {fmt(r['ok_req_s'])} | {fmt(r['s503_s'])} | "
                 f"{fmt(r['p50_ms'], 2)} | {fmt(r['p99_ms'], 2)} | {fmt(r['cpu_us_ev'], 2)} | "
                 f"{fmt(r['broker_us_ev'], 2)} | {fmt(r['busy'])} | {fmt(r['rss_mb'], 1)} |")
    samples = sorted({s for r in results for s in r["samples"]})
    if samples:
        L.append("")
        L.append("Answers other than 200 (samples):\n")
        L += [f"    {s}" for s in samples[:10]]
    return "\n".join(L) + "\n", r_http, r_kafka


def perf_summary(path, top=25):
    """Where the ecflow process spends its CPU: by thread, then by function (self time)."""
    out = []
    for sort, limit, n in (("comm", "0.5", 10), ("dso,sym", "0.7", top)):
        r = subprocess.run(["perf", "report", "-i", path, "--no-children", "--sort", sort,
                            "--stdio", "-g", "none", "--percent-limit", limit],
                           capture_output=True, text=True)
        lines = [l for l in r.stdout.splitlines() if l.strip() and not l.startswith("#")]
        out += lines[:n] + [""]
    return "\n".join(out).rstrip()


# ---------------------------------------------------------------- main

def main(argv):
    a = parse_args(argv)
    a.build_dir = os.path.abspath(a.build_dir)
    ecflow = os.path.join(a.build_dir, "ecflow")
    plugin_dir = os.path.join(a.build_dir, "plugins")
    for f in (ecflow, os.path.join(plugin_dir, "source-http.so"),
              os.path.join(plugin_dir, "sink-kafka.so")):
        if not os.path.exists(f):
            die(f"{f} not found: build first (cmake -S . -B build -G Ninja && ninja -C build)")
    benchlib.need_tool("wrk", "wrk", log, die)
    benchlib.need_tool("gcc", "gcc", log, die)
    benchlib.need_tool("pkg-config", "pkg-config", log, die)
    if a.perf and not shutil.which("perf"):
        die("--perf needs perf (apt-get install linux-perf)")

    tmp = tempfile.mkdtemp(prefix="ecflow-bench-ingest-")
    ctx = {"ecflow": ecflow, "plugin_dir": plugin_dir, "tmp": tmp,
           "build": {"kind": "pipeline", "ecflow": ecflow, "plugin_dir": plugin_dir}}
    if a.baseline:
        ctx["baseline"] = baseline_build(os.path.abspath(a.baseline))
        ctx["baseline"]["env"] = dict(kv.split("=", 1) for kv in a.baseline_env)
        if a.baseline_env:
            ctx["baseline"]["label"] += " with " + " ".join(a.baseline_env)
    ctx["variants"] = []
    for i, spec in enumerate(a.variant):
        build_dir, *kvs = spec.split(",")
        v = baseline_build(os.path.abspath(build_dir))
        v.update(kind=f"v{i}", env=dict(kv.split("=", 1) for kv in kvs))
        v["label"] += "".join(" with " + kv if j == 0 else " " + kv for j, kv in enumerate(kvs))
        ctx["variants"].append(v)
    kafka = None
    try:
        ctx["tools"] = compile_tools(tmp)
        ctx["pipeline"] = ingest_leg(PIPELINE, os.path.join(tmp, "ingest.yaml"))
        r = subprocess.run([ecflow, "validate", ctx["pipeline"], "--profile", "bench"],
                           env=dict(os.environ, ECFLOW_PLUGIN_PATH=plugin_dir, METRICS_PORT="0"),
                           capture_output=True, text=True)
        if r.returncode != 0:
            die(f"the ingest leg of {PIPELINE} does not validate:\n{read(ctx['pipeline'])}\n"
                f"{r.stdout}{r.stderr}")
        ctx["pool"] = os.path.join(tmp, "events.ndjson")
        pool_info = make_pool(ecflow, plugin_dir, ctx["pool"], 2000 if a.smoke else 20000)
        info = machine_info(a, ctx)
        log("starting a Kafka broker")
        kafka = benchlib.Kafka(os.path.join(tmp, "kafka"), die, timeout=600)
        ctx["kafka"] = kafka
        # Until its JIT has compiled the paths both large and small produce requests take,
        # the broker costs the first runs up to 5x the CPU per record (seen with
        # --repeats 2: only the first pipeline run was slow, after a 30 s warm-up of the
        # open loop alone).
        log(f"broker at {kafka.bootstrap}; warming it up")
        run_raw(a, ctx, seconds=1 if a.smoke else 15, warm=True)
        run_raw(a, ctx, seconds=1 if a.smoke else 15, warm=True, inflight=a.connections)
        if not a.smoke:
            run_pipeline(a, ctx, 1, a.connections, seconds=15)

        def durable_steps(n):
            return [("durable", n, x) for x in [None] + a.durable_lingers]
        plan = [("pipeline", 1, a.connections), ("discard", 1, a.connections)] + \
            durable_steps(a.connections) + \
            [("rawloop", a.connections), ("pipeline", 100, a.connections),
             ("discard", 100, a.connections), ("raw",)]
        if a.wide:
            plan += [("pipeline", 1, a.wide), ("discard", 1, a.wide)] + \
                durable_steps(a.wide) + [("rawloop", a.wide), ("pipeline", 100, a.wide)]
        if a.baseline:
            plan = [x for step in plan
                    for x in ([step, ("baseline",) + step[1:]] if step[0] == "pipeline" else [step])]
        if ctx["variants"]:
            plan = [x for step in plan
                    for x in ([step] + [(v["kind"],) + step[1:] for v in ctx["variants"]]
                              if step[0] == "pipeline" else [step])]
        results, perf_files = [], []
        variants = {v["kind"]: v for v in ctx["variants"]}
        for rep in range(1, a.repeats + 1):
            for step in plan:
                log(f"run {rep}/{a.repeats}: {' '.join(str(x) for x in step if x is not None)}")
                if step[0] == "pipeline":
                    perf_to = None
                    if a.perf and rep == a.repeats:
                        perf_to = os.path.join(tmp, f"perf-b{step[1]}-c{step[2]}.data")
                        perf_files.append((step, perf_to))
                    r = run_pipeline(a, ctx, step[1], step[2], perf_to)
                elif step[0] == "baseline":
                    r = run_pipeline(a, ctx, step[1], step[2], build=ctx["baseline"])
                elif step[0] in variants:
                    r = run_pipeline(a, ctx, step[1], step[2], build=variants[step[0]])
                elif step[0] == "discard":
                    r = run_discard(a, ctx, step[1], step[2])
                elif step[0] == "durable":
                    r = run_durable(a, ctx, step[1], step[2])
                elif step[0] == "rawloop":
                    r = run_raw(a, ctx, inflight=step[1])
                else:
                    r = run_raw(a, ctx)
                r["rep"] = rep
                results.append(r)
                log(f"  {fmt(r['events_s'])} events/s, {fmt(r['ok_req_s'])} req/s (200), "
                    f"p99 {fmt(r['p99_ms'], 2)} ms, {fmt(r['cpu_us_ev'], 2)} µs CPU/event")

        text, r_http, r_kafka = report(a, ctx, results, info, pool_info, argv)
        for step, path in perf_files:
            text += (f"\n## perf: pipeline, batch {step[1]}, {step[2]} connections "
                     f"(cpu-clock samples of the ecflow process)\n\n```\n"
                     f"{perf_summary(path)}\n```\n")
        print(text, end="")
        out = a.out
        if not out and not a.smoke:
            out = os.path.join(REPO, "bench", "results",
                               f"ingest-{dt.date.today().isoformat()}.md")
        if out:
            os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
            with open(out, "w") as f:
                f.write(text)
            log(f"wrote {out}")
    finally:
        if kafka:
            kafka.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
