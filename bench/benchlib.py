"""Small tools shared by the benchmark drivers (bench/bench.py, bench/ingest/bench_ingest.py,
bench/e2e/bench_e2e.py, bench/lake/bench_lake.py).

Not a benchmark itself and not part of ecflow: files and commands, free ports, CPU and memory
of a process from /proc, the machine and build a run is on, a private Kafka broker
(tests/services/kafka.sh), the event pool source-generate makes, wrk runs with the bench Lua
scripts, and the number formatting of the reports. Only the standard library.

The drivers run as scripts from their own directories; each puts this directory on sys.path
once before `import benchlib`. Helpers that can fail take the driver's `die` (and `log`), so
every message keeps the driver's prefix and its way of failing.
"""

import http.client
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KAFKA_SH = os.path.join(REPO, "tests", "services", "kafka.sh")
DEMO = os.path.join(REPO, "pipelines", "demo.yaml")
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- files and commands

def read(path, default=""):
    """The text of a file, or `default` when it cannot be read."""
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return default


def cmd_out(args, cwd=None):
    """A command's stdout, stripped; "" when it cannot run or fails."""
    try:
        return subprocess.run(args, cwd=cwd, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port, path, timeout=5):
    """GET http://127.0.0.1:PORT/PATH: (status, body), or (None, "") when nothing answers."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read().decode()
    except OSError:
        return None, ""
    finally:
        c.close()


def need_tool(tool, package, log, die):
    """Makes sure `tool` is on PATH: apt-get installs `package` when it is missing and this runs
    as root; otherwise die()."""
    if shutil.which(tool):
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        log(f"installing {package} with apt-get")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        if subprocess.run(["apt-get", "install", "-y", "-q", package], env=env,
                          capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
            subprocess.run(["apt-get", "install", "-y", "-q", package], env=env,
                           capture_output=True)
    if not shutil.which(tool):
        die(f"{tool} is needed: apt-get install {package}")


def terminate(proc, timeout):
    """SIGTERM to a running child, then waits `timeout` s for it; kills it if it is still
    there. Returns its exit code, or None when it had to be killed."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None


# ---------------------------------------------------------------- CPU and memory

def cpu_secs(pid):
    """utime + stime of a process, all its threads, in seconds (nan once it is gone)."""
    f = read(f"/proc/{pid}/stat").rsplit(")", 1)[-1].split()
    return (int(f[11]) + int(f[12])) / CLK_TCK if len(f) > 12 else float("nan")


def machine_ticks():
    """(all, idle + iowait) clock ticks of the whole machine so far (/proc/stat)."""
    v = [int(x) for x in read("/proc/stat").splitlines()[0].split()[1:]]
    return sum(v[:8]), v[3] + v[4]


def busy_pct(m0, m1):
    """Percent of the machine's time that was not idle between two machine_ticks()."""
    total, idle = m1[0] - m0[0], m1[1] - m0[1]
    return 100.0 * (total - idle) / total if total else float("nan")


def vm_hwm_mb(pid):
    """Peak resident memory of a live process (VmHWM), in MB; nan once it is gone."""
    m = re.search(r"^VmHWM:\s+(\d+) kB", read(f"/proc/{pid}/status"), re.M)
    return int(m.group(1)) / 1024.0 if m else float("nan")


def children_cpu():
    """user + system seconds of this process's reaped children so far."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


# ---------------------------------------------------------------- machine and build

def machine(unknown="?"):
    """CPU model, cores, memory, OS, kernel and load average of this machine."""
    cpu = re.search(r"^model name\s*:\s*(.+)$", read("/proc/cpuinfo"), re.M)
    mem = re.search(r"^MemTotal:\s*(\d+) kB", read("/proc/meminfo"), re.M)
    return {
        "cpu": cpu.group(1).strip() if cpu else platform.processor() or unknown,
        "nproc": os.cpu_count(),
        "usable": len(os.sched_getaffinity(0)),
        "mem_gib": f"{int(mem.group(1)) / 1048576:.1f}" if mem else "?",
        "os": (re.search(r'^PRETTY_NAME="?([^"\n]+)', read("/etc/os-release"), re.M)
               or [None, "?"])[1],
        "kernel": platform.release(),
        "load": read("/proc/loadavg").split()[:3],
    }


def git_commit(list_changes=False):
    """The repository's commit, "(with uncommitted changes)" after it when tracked files
    differ from it; with list_changes, the first few of those files are named."""
    commit = cmd_out(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO) or "unknown"
    if list_changes:
        changed = cmd_out(["git", "diff", "--name-only", "HEAD"], cwd=REPO).splitlines()
        return commit + (f" (with uncommitted changes to {', '.join(changed[:6])}"
                         f"{' …' if len(changed) > 6 else ''})" if changed else "")
    dirty = cmd_out(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO)
    return commit + (" (with uncommitted changes)" if dirty else "")


def cmake_cache(build_dir):
    """The entries of BUILD_DIR/CMakeCache.txt, name -> value."""
    cache = {}
    for line in read(os.path.join(build_dir, "CMakeCache.txt")).splitlines():
        m = re.match(r"^([A-Za-z_0-9]+):[A-Z]+=(.*)$", line)
        if m:
            cache[m.group(1)] = m.group(2)
    return cache


def ecflow_version(ecflow):
    """`ecflow version` on one line, or "?"."""
    return " / ".join(cmd_out([ecflow, "version"]).splitlines()) or "?"


def java_version():
    """The first line of `java -version`, or "?"."""
    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr \
        if shutil.which("java") else ""
    return (java.splitlines() or ["?"])[0]


def pkg_version(lib):
    """pkg-config's version of a library, or "?"."""
    return cmd_out(["pkg-config", "--modversion", lib]) or "?"


def deb_version(package):
    """The installed version of a Debian package, or "?"."""
    return cmd_out(["dpkg-query", "-W", "-f", "${Version}", package]) or "?"


# ---------------------------------------------------------------- Kafka, events, wrk

# The broker's JVM as Kafka's own kafka-run-class.sh starts it in production (G1, full
# tiered JIT). kafka.sh defaults to C1 only and the serial GC, which start tests fast but
# made the broker use ~1.7x the CPU per record once warm: on a shared 2-core machine that
# CPU is taken from the pipeline being measured.
BROKER_JVM_OPTS = ("-XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 "
                   "-XX:+ExplicitGCInvokesConcurrent -Xshare:auto")


class Kafka:
    """A private broker: tests/services/kafka.sh start/stop on a state dir of its own, with
    production JVM options (KAFKA_JVM_OPTS overrides them)."""

    def __init__(self, state, die, timeout=900):
        self.state = state
        self.jvm_opts = os.environ.get("KAFKA_JVM_OPTS", BROKER_JVM_OPTS)
        r = subprocess.run(["bash", KAFKA_SH, "start", state], capture_output=True, text=True,
                           timeout=timeout, env=dict(os.environ, KAFKA_JVM_OPTS=self.jvm_opts))
        if r.returncode != 0:
            self.stop()
            die(f"kafka.sh start failed:\n{r.stderr[-3000:]}")
        self.bootstrap = r.stdout.strip()
        self.pid = int(read(os.path.join(state, "kafka.pid")).strip() or 0) or None

    def stop(self):
        subprocess.run(["bash", KAFKA_SH, "stop", self.state], capture_output=True, timeout=300)


def generate_pool(ecflow, plugin_dir, path, count, die):
    """Writes `count` realistic events to `path` as NDJSON: source-generate's shopper sessions
    (pipelines/demo.yaml)."""
    env = dict(os.environ, COUNT=str(count), OUT=path, METRICS_PORT=str(free_port()),
               ECFLOW_PLUGIN_PATH=plugin_dir)
    env.pop("ECFLOW_PROFILE", None)
    r = subprocess.run([ecflow, "run", DEMO], env=env, capture_output=True, text=True,
                       timeout=300)
    if r.returncode != 0 or not os.path.exists(path):
        die(f"making the event pool failed:\n{r.stderr[-3000:]}")


def result_line(text):
    """The fields of the `RESULT k=v ...` line a bench tool prints, as floats; None without."""
    m = re.search(r"^RESULT (.*)$", text, re.M)
    return {k: float(v) for k, v in (kv.split("=") for kv in m.group(1).split())} if m else None


def run_wrk(lua, port, conns, seconds, script_args, die):
    """wrk -t1 with a bench Lua script POSTing to /events for `seconds` (whole seconds, at
    least 1): the script's RESULT fields, wrk's CPU seconds as "cpu" and the answers other
    than 200 it printed as "samples"."""
    seconds = max(1, int(round(seconds)))
    cmd = ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--timeout", "30s", "-s", lua,
           f"http://127.0.0.1:{port}/events", "--"] + [str(x) for x in script_args]
    c0 = children_cpu()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120)
    res = result_line(r.stdout)
    if r.returncode != 0 or res is None:
        die(f"wrk failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    res["cpu"] = children_cpu() - c0
    res["samples"] = [l for l in r.stderr.splitlines() if l.startswith("wrk: HTTP")]
    return res


# ---------------------------------------------------------------- reports

def med(runs, key):
    """Median of a numeric field over runs, nan left out; nan when there is none."""
    vals = [r[key] for r in runs if isinstance(r.get(key), (int, float)) and r[key] == r[key]]
    return statistics.median(vals) if vals else float("nan")


def fmt(v, nd=0):
    """A number with thousands separators and `nd` decimals; "—" for None and nan."""
    if v is None or (isinstance(v, float) and v != v):
        return "—"
    return f"{v:,.{nd}f}"
