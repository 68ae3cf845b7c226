"""ecflow core benchmark (run it through bench/run.sh).

Runs the real `ecflow` binary on generated pipelines:

    generate           source-generate alone (its output goes nowhere)
    generate->null     source-generate -> sink-null
    generate->devnull  source-generate -> sink-file path=/dev/null
    generate->file     source-generate -> sink-file into a temporary file

Every scenario generates the same seeded stream, so they move the same
payload bytes; that size is measured from the sink-file output (file size
minus one newline per event). Runs are interleaved (scenario A, B, C, D,
then again) so slow drift on a shared machine hits all of them alike, and
each figure is the median over the repeats. Wall time is the whole process:
start, plugin loading, run, drain. CPU time and peak RSS come from
wait4(2) on that process alone.
"""

import argparse
import datetime as dt
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

import benchlib  # bench/benchlib.py, next to this script
from benchlib import read

REPO = benchlib.REPO
START_TIME = "2024-01-01T00:00:00Z"
SEED = 42


def die(msg):
    print(f"bench: {msg}", file=sys.stderr)
    sys.exit(1)


def parse_args(argv):
    p = argparse.ArgumentParser(prog="bench/run.sh", description=__doc__.split("\n\n")[0])
    p.add_argument("build_dir", nargs="?", default=os.path.join(REPO, "build"),
                   help="CMake build directory holding ecflow and plugins/ (default: %(default)s)")
    p.add_argument("--events", type=int, default=None, help="events per run (default 2000000)")
    p.add_argument("--repeats", type=int, default=None, help="runs per scenario (default 3)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="pipeline batch_size (default: the pipeline default, 1024)")
    p.add_argument("--smoke", action="store_true",
                   help="tiny load, one repeat, no results file unless --out: for CI")
    p.add_argument("--out", help="results file (default bench/results/core-DATE.md)")
    p.add_argument("--tmpdir", default=None,
                   help="where the sink-file output goes (default: $TMPDIR or /tmp)")
    a = p.parse_args(argv)
    if a.events is None:
        a.events = 20000 if a.smoke else 2_000_000
    if a.repeats is None:
        a.repeats = 1 if a.smoke else 3
    if a.events < 1 or a.repeats < 1:
        p.error("--events and --repeats must be positive")
    return a


# ---------------------------------------------------------------- machine

def machine_info(build_dir, ecflow, tmpdir):
    cache = benchlib.cmake_cache(build_dir)
    cc = cache.get("CMAKE_C_COMPILER", "cc")
    sanitizers = [k for k in ("ECF_SANITIZE", "ECF_TSAN") if cache.get(k, "OFF").upper() in ("ON", "1", "TRUE")]
    return {
        **benchlib.machine(unknown="unknown"),
        "commit": benchlib.git_commit(),
        "build_type": cache.get("CMAKE_BUILD_TYPE", "?"),
        "sanitizers": sanitizers,
        "compiler": (benchlib.cmd_out([cc, "--version"]).splitlines() or ["?"])[0],
        "ecflow": benchlib.ecflow_version(ecflow),
        "tmpfs": benchlib.cmd_out(["stat", "-f", "-c", "%T", tmpdir]) or "?",
    }


# ---------------------------------------------------------------- runs

def scenarios(tmpdir, plugin_dir):
    out_file = os.path.join(tmpdir, "ecflow-bench-out.ndjson")
    s = [("generate", "source-generate alone (output discarded by the core)", None),
         ("generate->null", "source-generate -> sink-null", "{plugin: sink-null, inputs: [gen]}"),
         ("generate->devnull", "source-generate -> sink-file /dev/null",
          "{plugin: sink-file, inputs: [gen], path: /dev/null}"),
         ("generate->file", f"source-generate -> sink-file ({os.path.basename(out_file)} in {tmpdir})",
          f'{{plugin: sink-file, inputs: [gen], path: "{out_file}", append: false}}')]
    if not os.path.exists(os.path.join(plugin_dir, "sink-null.so")):
        print("bench: no sink-null.so in this build; skipping generate->null", file=sys.stderr)
        s = [x for x in s if x[0] != "generate->null"]
    return s, out_file


def write_pipeline(path, events, batch_size, sink):
    settings = f"name: bench, batch_size: {batch_size}" if batch_size else "name: bench"
    text = (f"pipeline: {{{settings}}}\n"
            "stages:\n"
            f'  gen: {{plugin: source-generate, count: {events}, seed: {SEED}, start_time: "{START_TIME}"}}\n')
    if sink:
        text += f"  out: {sink}\n"
    with open(path, "w") as f:
        f.write(text)


GNU_TIME = "/usr/bin/time"


def run_once(ecflow, pipeline, log_path, stats_path):
    """One `ecflow run`. Peak RSS must come from a small parent: when Python
    forks and execs, the kernel carries the forked interpreter's RSS into
    the child's ru_maxrss (about 10 MB of it). GNU time forks from a ~2 MB
    image, so it is used when present; otherwise wait4() here, flagged."""
    env = {k: v for k, v in os.environ.items() if k not in ("ECFLOW_PLUGIN_PATH", "ECFLOW_PROFILE")}
    use_time = os.access(GNU_TIME, os.X_OK)
    argv = [ecflow, "run", pipeline]
    if use_time:
        argv = [GNU_TIME, "-f", "%x %M %U %S", "-o", stats_path] + argv
    with open(log_path, "w") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log, env=env)
        _, status, ru = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
    r = {"code": proc.returncode, "wall": wall, "user": ru.ru_utime, "sys": ru.ru_stime,
         "rss_mb": ru.ru_maxrss / 1024.0, "rss_exact": False}
    if use_time:
        last = read(stats_path).strip().splitlines()[-1:]
        f = last[0].split() if last else []
        if len(f) == 4:
            # CPU stays from wait4(): it counts time's reaped child in microseconds,
            # where time prints hundredths.
            r.update(code=int(f[0]), rss_mb=int(f[1]) / 1024.0, rss_exact=True)
    r["cpu"] = r["user"] + r["sys"]
    return r


LOG_TIME = r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z\s+\w+\s+pipeline '[^']*' "


def check_run(name, r, log_path, events, has_sink):
    """Checks the run delivered every event; sets r["run"], the time from the
    core's "running" to its "drained and stopped" log line (ms resolution),
    or the wall time when those lines are not found."""
    log = read(log_path)
    if r["code"] != 0:
        die(f"{name}: ecflow exited {r['code']}:\n{log}")
    want = (f"generated {events} events: {events} durable, 0 failed, 0 taken by no sink" if has_sink
            else f"generated {events} events: 0 durable, 0 failed, {events} taken by no sink")
    if want not in log:
        die(f"{name}: expected '{want}' in the log:\n{log}")
    start = re.search(LOG_TIME + "running", log, re.M)
    end = re.search(LOG_TIME + "drained and stopped", log, re.M)
    r["run"], r["run_from_log"] = r["wall"], False
    if start and end:
        t0, t1 = (dt.datetime.fromisoformat(m.group(1)) for m in (start, end))
        r["run"], r["run_from_log"] = max((t1 - t0).total_seconds(), 1e-3), True


def count_file(path):
    lines, size = 0, 0
    with open(path, "rb") as f:
        while True:
            chunk = f.read(1 << 22)
            if not chunk:
                break
            lines += chunk.count(b"\n")
            size += len(chunk)
    return lines, size


# ---------------------------------------------------------------- report

def fmt_int(x):
    return f"{x:,.0f}"


def render(args, info, rows, runs, payload_per_event, command, stamp, floor):
    n = args.events
    out = []
    out.append(f"# ecflow core benchmark, {stamp}\n")
    out.append(f"{fmt_int(n)} events per run, medians of {args.repeats} interleaved run"
               f"{'s' if args.repeats > 1 else ''}; batch_size {args.batch_size or 'default (1024)'}; "
               f"payload {payload_per_event:.1f} bytes/event (seeded source-generate stream, "
               f"the same in every row).\n")
    out.append("| pipeline | events/s | MB/s | run s | wall s | CPU s | events/CPU-s | peak RSS MB |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, desc, med in rows:
        mbs = n * payload_per_event / med["run"] / 1e6
        out.append(f"| {desc} | {fmt_int(n / med['run'])} | {mbs:,.1f} | {med['run']:.3f} | "
                   f"{med['wall']:.3f} | {med['cpu']:.2f} | "
                   f"{fmt_int(n / med['cpu']) if med['cpu'] > 0 else '-'} | {med['rss_mb']:.1f} |")
    out.append("")
    from_log = all(r["run_from_log"] for _, _, r in runs)
    out.append("- **events/s, MB/s** are over **run s**: "
               + ("from the core's `pipeline ... running` log line to its `drained and stopped` line "
                  "(every event generated, delivered and acked; millisecond timestamps)."
                  if from_log else "the wall time (the core's log lines were not found)."))
    out.append("- MB/s counts payload bytes without the NDJSON newline, 10^6 bytes per MB.")
    out.append("- **wall s** is the whole `ecflow run` process, start to exit. A 1-event pipeline "
               f"takes {floor['wall']:.3f} s wall ({floor['rss_mb']:.1f} MB peak RSS): that fixed cost "
               "(start, plugin loading, and the exit) is in every wall time.")
    out.append("- **CPU s** = user + system time of the process, all threads; events/CPU-s is "
               "throughput per core actually used.\n")
    if not all(r["rss_exact"] for _, _, r in runs):
        out.append("Peak RSS was read with wait4() from Python because /usr/bin/time is missing "
                   "(apt-get install time): it includes ~10 MB of the forked interpreter.\n")
    out.append("## Machine and build\n")
    out.append(f"- CPU: {info['cpu']}; nproc {info['nproc']} ({info['usable']} usable); "
               f"memory {info['mem_gib']} GiB")
    out.append(f"- OS: {info['os']}, kernel {info['kernel']}; output file system: {info['tmpfs']}")
    out.append(f"- load average before the runs: {' '.join(info['load'])} (shared machines skew numbers)")
    out.append(f"- {info['ecflow']}; build type {info['build_type']}"
               f"{'; SANITIZERS ' + '+'.join(info['sanitizers']) + ' (numbers not meaningful)' if info['sanitizers'] else ''}")
    out.append(f"- compiler: {info['compiler']}")
    out.append(f"- git commit: {info['commit']}")
    out.append(f"- command: `{command}`\n")
    out.append("## Every run\n")
    out.append("| pipeline | run | exit | run s | wall s | user s | sys s | peak RSS MB |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, i, r in runs:
        out.append(f"| {name} | {i} | {r['code']} | {r['run']:.3f} | {r['wall']:.3f} | {r['user']:.2f} | "
                   f"{r['sys']:.2f} | {r['rss_mb']:.1f} |")
    return "\n".join(out) + "\n"


def results_path(args):
    if args.out:
        return args.out
    d = os.path.join(REPO, "bench", "results")
    os.makedirs(d, exist_ok=True)
    base = os.path.join(d, f"core-{dt.date.today().isoformat()}")
    path, k = base + ".md", 2
    while os.path.exists(path):
        path, k = f"{base}-{k}.md", k + 1
    return path


def main(argv):
    args = parse_args(argv)
    build = os.path.abspath(args.build_dir)
    ecflow = os.path.join(build, "ecflow")
    plugin_dir = os.path.join(build, "plugins")
    if not os.access(ecflow, os.X_OK):
        die(f"{ecflow} not found: build first (cmake -S . -B build -G Ninja && ninja -C build)")
    for p in ("source-generate", "sink-file"):
        if not os.path.exists(os.path.join(plugin_dir, p + ".so")):
            die(f"{plugin_dir}/{p}.so not found")
    tmpdir = os.path.abspath(args.tmpdir or tempfile.gettempdir())
    command = "bench/run.sh " + " ".join(shlex.quote(a) for a in argv)
    info = machine_info(build, ecflow, tmpdir)
    if info["sanitizers"] or info["build_type"] == "Debug":
        print(f"bench: warning: build type {info['build_type']} {'+'.join(info['sanitizers'])}: "
              "numbers will not mean much", file=sys.stderr)

    scen, out_file = scenarios(tmpdir, plugin_dir)
    work = tempfile.mkdtemp(prefix="ecflow-bench.")
    results = {name: [] for name, _, _ in scen}
    runs = []
    floor = []
    payload = None
    try:
        for name, _, sink in scen:
            write_pipeline(os.path.join(work, name + ".yaml"), args.events, args.batch_size, sink)
        # The fixed cost of one `ecflow run` (start, load, drain, exit), for reading the table.
        floor_sink = next(sink for name, _, sink in scen if name in ("generate->null", "generate->devnull"))
        write_pipeline(os.path.join(work, "floor.yaml"), 1, None, floor_sink)
        for rep in range(1, args.repeats + 1):
            r = run_once(ecflow, os.path.join(work, "floor.yaml"), os.path.join(work, "floor.log"),
                         os.path.join(work, "time.txt"))
            check_run("floor", r, os.path.join(work, "floor.log"), 1, True)
            floor.append(r)
        for rep in range(1, args.repeats + 1):
            for name, _, sink in scen:
                log = os.path.join(work, f"{name}.{rep}.log")
                print(f"bench: run {rep}/{args.repeats}: {name} ({args.events} events)", file=sys.stderr)
                r = run_once(ecflow, os.path.join(work, name + ".yaml"), log,
                             os.path.join(work, "time.txt"))
                check_run(name, r, log, args.events, sink is not None)
                if name == "generate->file":
                    lines, size = count_file(out_file)
                    if lines != args.events:
                        die(f"{name}: {out_file} has {lines} lines, expected {args.events}")
                    p = (size - lines) / lines
                    if payload is not None and abs(p - payload) > 1e-9:
                        die(f"{name}: payload size changed between runs ({payload} vs {p} bytes/event)")
                    payload = p
                    os.unlink(out_file)
                results[name].append(r)
                runs.append((name, rep, r))
    finally:
        if os.path.exists(out_file):
            os.unlink(out_file)
        for f in os.listdir(work):
            os.unlink(os.path.join(work, f))
        os.rmdir(work)

    rows = []
    for name, desc, _ in scen:
        rs = results[name]
        med = {k: statistics.median(r[k] for r in rs) for k in ("wall", "run", "cpu", "rss_mb")}
        rows.append((name, desc, med))
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    floor_med = {k: statistics.median(r[k] for r in floor) for k in ("wall", "rss_mb")}
    report = render(args, info, rows, runs, payload, command, stamp, floor_med)
    sys.stdout.write(report)
    if not args.smoke or args.out:
        path = results_path(args)
        with open(path, "w") as f:
            f.write(report)
        print(f"bench: wrote {os.path.relpath(path, os.getcwd())}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
