#!/usr/bin/env python3
"""The lake leg on a Kafka backlog, beside its ceilings, in one run (issue 16).

    python3 bench/lake/bench_lake.py BUILD_DIR [--sizes 1000000,5000000] [--repeats 3]
                                     [--workers 1,2,auto] [--out FILE]

For each backlog size, fills a topic (3 partitions) with that many generated events, then
catches up on it with, interleaved and repeated (a fresh consumer group, and for the lake a
fresh table, each time):
  - bare librdkafka: kcat reading the topic to its end (the client library's ceiling);
  - Kafka -> sink-null through source-kafka (ecflow's consumer ceiling);
  - Kafka -> transform-validate -> sink-null, as one worker (parsing added);
  - the lake leg, Kafka -> transform-validate -> sink-iceberg with pipelines/ecommerce.yaml's
    settings (commit_interval 10s, dedupe on event_id, partitioned by event type and day) on
    a local warehouse, for each `workers:` count asked for: that many transform-validate
    instances and as many sink-iceberg writer_threads (auto: one per core);
  - the same with auto workers and roomier memory knobs (the defaults before 2026-12-07:
    ring_capacity 64, source-kafka prefetch_max_bytes 32MiB, sink-iceberg max_buffered_bytes
    32MiB), to show what more memory buys.
Reports medians of rows/s (from the first row the sink saw until it has taken every row),
CPU µs per row and cores busy (CPU seconds of the process over those wall seconds) and
peak RSS (VmHWM, the whole process from its start), and writes a markdown table.
"""
import argparse, datetime, os, re, shutil, statistics, subprocess, sys, tempfile, time
import urllib.request, uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # bench/, for benchlib
from benchlib import Kafka, cpu_secs, free_port, read, vm_hwm_mb  # noqa: E402

POLL = 0.05


def metric(port, name, stage):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    m = re.search(rf'^{name}{{pipeline="bench-lake",stage="{stage}"}} (\S+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


ROOMY = {"RING_CAPACITY": "64", "PREFETCH": "32MiB", "MAX_BUFFERED": "32MiB"}


def ecflow_run(ecflow, env, profile, n, workers="1"):
    """One catch-up of `n` rows: (rows/s, CPU µs per row, cores busy, peak RSS MB, commits)."""
    port = free_port()
    wh = tempfile.mkdtemp(prefix="bench-lake-wh-")
    e = dict(env, METRICS_PORT=str(port), GROUP=f"bench-{uuid.uuid4().hex[:8]}", WORKERS=workers,
             WRITER_THREADS="0" if workers == "auto" else workers, WAREHOUSE=wh)
    log = tempfile.TemporaryFile("w+")
    p = subprocess.Popen([ecflow, "run", str(HERE / "lake.yaml"), "--profile", profile], env=e,
                         stderr=log)

    def died(why):
        log.seek(0)
        sys.exit(f"{profile} (workers {workers}): {why}:\n{log.read()[-3000:]}")

    try:
        while True:  # wait for the endpoint and the first row at the sink
            if p.poll() is not None:
                died(f"ecflow exited {p.returncode}")
            try:
                if metric(port, "ecflow_events_in_total", "out") > 0:
                    break
            except OSError:
                pass
            time.sleep(0.005)
        t0, c0 = time.monotonic(), cpu_secs(p.pid)
        base = metric(port, "ecflow_events_in_total", "out")
        while metric(port, "ecflow_events_in_total", "out") < n:
            if p.poll() is not None:
                died(f"ecflow exited {p.returncode}")
            time.sleep(POLL)
        t1, c1 = time.monotonic(), cpu_secs(p.pid)
        rss = vm_hwm_mb(p.pid)
        commits = metric(port, "ecflow_iceberg_commits_total", "out")
    except OSError as err:
        died(f"metrics endpoint gone ({err}; exit {p.poll()})")
    finally:
        p.terminate()
        try:
            p.wait(120)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        shutil.rmtree(wh, ignore_errors=True)
    done, wall = n - base, t1 - t0
    return done / wall, (c1 - c0) / done * 1e6, (c1 - c0) / wall, rss, commits


def bare_run(bootstrap, topic, n):
    """kcat (librdkafka's simple consumer) reading the topic from the start to its end."""
    t0 = time.monotonic()
    p = subprocess.Popen(["kcat", "-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q",
                          "-f", "%o\n"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        sys.exit(f"kcat exited {p.returncode}: {p.stderr.read().decode()[-2000:]}")
    cpu = ru.ru_utime + ru.ru_stime
    return n / wall, cpu / n * 1e6, cpu / wall, ru.ru_maxrss / 1024.0, 0.0


def uptime():
    return read("/proc/loadavg").strip()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--sizes", default="1000000,5000000")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", default="1,2,auto")
    ap.add_argument("--out", help="also write the table to this markdown file")
    a = ap.parse_args()
    if not shutil.which("kcat"):
        sys.exit("bench_lake: kcat is needed for the bare librdkafka row (apt-get install kcat)")
    ecflow = str(Path(a.build).resolve() / "ecflow")
    sizes = [int(s) for s in a.sizes.split(",")]
    workers = a.workers.split(",")
    configs = [("bare", None), ("raw", "1"), ("consume", "1")] + [("lake", w) for w in workers] + \
        [("roomy", "auto")]
    names = {"bare": "bare librdkafka consumer (kcat -C, to the end)",
             "raw": "Kafka -> sink-null (source-kafka: the consumer ceiling)",
             "consume": "Kafka -> transform-validate -> sink-null",
             "roomy": "the lake leg, ring_capacity 64, prefetch_max_bytes 32MiB, max_buffered_bytes 32MiB"}
    load = [f"before: load average {uptime()}"]
    kafka = Kafka(tempfile.mkdtemp(prefix="bench-lake-kafka-"), sys.exit)
    results = {}
    try:
        env = dict(os.environ, KAFKA_BOOTSTRAP=kafka.bootstrap,
                   ECFLOW_PLUGIN_PATH=str(Path(a.build).resolve() / "plugins"),
                   METRICS_PORT=str(free_port()))
        for n in sizes:
            topic = f"bench-lake-{n}"
            subprocess.run([ecflow, "run", str(HERE / "lake.yaml"), "--profile", "produce"],
                           env=dict(env, TOPIC=topic, COUNT=str(n)), check=True,
                           stderr=subprocess.DEVNULL)
            for r in range(a.repeats):
                for profile, w in configs:
                    if profile == "bare":
                        res = bare_run(kafka.bootstrap, topic, n)
                    elif profile == "roomy":
                        res = ecflow_run(ecflow, dict(env, TOPIC=topic, **ROOMY), "lake", n, w)
                    else:
                        res = ecflow_run(ecflow, dict(env, TOPIC=topic), profile, n, w)
                    results.setdefault((n, profile, w), []).append(res)
                    print(f"{n} {profile} workers={w} run {r + 1}: {res[0]:,.0f} rows/s, "
                          f"{res[1]:.2f} µs/row, {res[2]:.2f} cores, {res[3]:.0f} MB, "
                          f"{res[4]:.0f} commits", file=sys.stderr, flush=True)
        load.append(f"after: load average {uptime()}")
    finally:
        kafka.stop()

    lines = [f"{len(sizes)} backlog sizes, medians of {a.repeats} interleaved runs; "
             f"machine load ({', '.join(load)})", "",
             "| backlog | pipeline | workers | rows/s | × lake w1 | × ceiling | CPU µs/row "
             "| cores busy | peak RSS MB | commits |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for n in sizes:
        med = {k[1:]: [statistics.median(r[i] for r in v) for i in range(5)]
               for k, v in results.items() if k[0] == n}
        base = med.get(("lake", workers[0]), [float("nan")])[0]
        ceiling = med[("raw", "1")][0]
        for profile, w in configs:
            rps, cpu, cores, rss, commits = med[(profile, w)]
            name = names.get(profile, "Kafka -> transform-validate -> sink-iceberg (the lake leg)")
            lines.append(f"| {n:,} | {name} | {w or '-'} | {rps:,.0f} | {rps / base:.2f} "
                         f"| {rps / ceiling:.2f} | {cpu:.2f} | {cores:.2f} | {rss:.0f} "
                         f"| {commits:.0f} |")
    table = "\n".join(lines)
    print(table)
    if a.out:
        Path(a.out).write_text(table + "\n")


if __name__ == "__main__":
    main()
