#!/usr/bin/env python3
"""Kafka -> validate -> null vs Kafka -> null, in one run, against a local broker.

    python3 bench/lake/bench_lake.py BUILD_DIR [--events N] [--repeats R]

Fills a topic with N generated events, then consumes it with each pipeline
(a fresh consumer group each time) and reports events/s, MB/s and CPU per event
(all threads of the ecflow process) as medians; the difference between the two
rows is what parsing and validation cost.
"""
import argparse, os, re, statistics, subprocess, sys, tempfile, time, urllib.request, uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # bench/, for benchlib
from benchlib import Kafka, cpu_secs, free_port  # noqa: E402


def metric(port, name, stage):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    m = re.search(rf'^{name}{{pipeline="bench-lake",stage="{stage}"}} (\S+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


def consume(ecflow, env, profile, n):
    port = free_port()
    e = dict(env, METRICS_PORT=str(port), GROUP=f"bench-{uuid.uuid4().hex[:8]}")
    log = tempfile.TemporaryFile("w+")
    p = subprocess.Popen([ecflow, "run", str(HERE / "lake.yaml"), "--profile", profile], env=e,
                         stderr=log)
    try:
        while True:  # wait for the endpoint and the first record
            if p.poll() is not None:
                log.seek(0)
                sys.exit(f"{profile}: ecflow exited {p.returncode}:\n{log.read()[-3000:]}")
            try:
                if metric(port, "ecflow_events_in_total", "out") > 0:
                    break
            except OSError:
                pass
            time.sleep(0.01)
        t0, c0 = time.monotonic(), cpu_secs(p.pid)
        base = metric(port, "ecflow_events_in_total", "out")
        while metric(port, "ecflow_events_in_total", "out") < n:
            if p.poll() is not None:
                log.seek(0)
                sys.exit(f"{profile}: ecflow exited {p.returncode}:\n{log.read()[-3000:]}")
            time.sleep(0.01)
        t1, c1 = time.monotonic(), cpu_secs(p.pid)
    except OSError:
        log.seek(0)
        sys.exit(f"{profile}: metrics endpoint gone (exit {p.poll()}):\n{log.read()[-3000:]}")
    finally:
        p.terminate()
        p.wait(60)
    done = n - base
    return done / (t1 - t0), (c1 - c0) / done * 1e6


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    ecflow = str(Path(a.build) / "ecflow")
    kafka = Kafka(tempfile.mkdtemp(prefix="bench-lake-kafka-"), sys.exit)
    try:
        env = dict(os.environ, KAFKA_BOOTSTRAP=kafka.bootstrap, TOPIC="bench-events",
                   COUNT=str(a.events), ECFLOW_PLUGIN_PATH=str(Path(a.build) / "plugins"),
                   METRICS_PORT=str(free_port()))
        subprocess.run([ecflow, "run", str(HERE / "lake.yaml"), "--profile", "produce"], env=env,
                       check=True, stderr=subprocess.DEVNULL)
        size = a.events * 250  # source-generate events average ~250 bytes
        rows = {"raw": [], "consume": []}
        for _ in range(a.repeats):
            for profile in rows:
                rows[profile].append(consume(ecflow, env, profile, a.events))
        print(f"{a.events} events, medians of {a.repeats} interleaved runs\n")
        print("| pipeline | events/s | MB/s | CPU µs/event |\n|---|---:|---:|---:|")
        names = {"raw": "Kafka -> sink-null", "consume": "Kafka -> transform-validate -> sink-null"}
        for profile, runs in rows.items():
            eps = statistics.median(r[0] for r in runs)
            cpu = statistics.median(r[1] for r in runs)
            print(f"| {names[profile]} | {eps:,.0f} | {eps * 250 / 1e6:,.1f} | {cpu:.2f} |")
    finally:
        kafka.stop()


if __name__ == "__main__":
    main()
