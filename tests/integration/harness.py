"""Functions and classes the integration tests share (the paths, free_port(), ecflow_env() and
the session `kafka` fixture are in conftest.py).

A plain module, imported as `import harness` / `from harness import ...`: pytest puts this
folder on sys.path for the test files in it (no __init__.py, the default "prepend" import
mode), the same way `from conftest import ...` works, also when ctest runs
`python -m pytest <absolute path to a file>` from the build folder.
"""
import glob
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from conftest import ECFLOW, KAFKA_SH, PLUGIN_PATH

# The sink-test fixture (tests/fixtures/sink_test.c) is built into <build>/tests/fixtures,
# not among the shipped plugins.
FIXTURES_DIR = ECFLOW.parent / "tests" / "fixtures"


def plugin_path_with_fixtures(plugin_path=PLUGIN_PATH):
    """`plugin_path` plus the test fixtures' directory when no directory in it has
    sink-test.so."""
    if not any((Path(d) / "sink-test.so").exists() for d in plugin_path.split(":") if d):
        plugin_path = f"{plugin_path}:{FIXTURES_DIR}"
    return plugin_path


# ------------------------------------------------------------------ waiting


def wait_until(what, cond, timeout, step=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


# ------------------------------------------------------------------ processes


def sigterm(proc, timeout):
    """SIGTERM, and SIGKILL when it has not exited within `timeout` seconds; waits for it."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def scrape_metrics(port):
    """The text of /metrics on `port` (OSError when nothing answers)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def metric_sum(text, name):
    """Sum of the series of ecflow_<name> in a /metrics text (None when absent)."""
    vals = [float(m.group(1)) for m in
            re.finditer(rf"^ecflow_{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)]
    return sum(vals) if vals else None


class HttpRequests:
    """request() on the connections a subclass's connection() opens."""

    def request(self, method, path, body=None, headers=None, conn=None):
        """(status, {lower-case header: value}, body bytes); on `conn` when given (it stays
        open), else on a connection of its own."""
        own = conn is None
        conn = conn or self.connection()
        try:
            try:
                conn.request(method, path, body=body, headers=headers or {})
            except (BrokenPipeError, ConnectionResetError):
                # the server answered before the whole body was sent (a 413 on the declared
                # length) and closed: its answer is still there to read
                pass
            r = conn.getresponse()
            data = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            if own:
                conn.close()


def check_sanitizers(text):
    """No sanitizer report in a log."""
    for bad in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
        assert bad not in text, text[-8000:]


def started(factory):
    """The body of a fixture that starts processes: yields a function that calls
    factory(*args, **kwargs) and keeps what it returns (anything with .proc and .log); after
    the test, kills what still runs and closes the logs."""
    procs = []

    def start(*args, **kwargs):
        p = factory(*args, **kwargs)
        procs.append(p)
        return p

    yield start
    for p in procs:  # always stop what we started
        if p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait()
        if not p.log.closed:
            p.log.close()


def unique_names(request, prefix):
    """(topic, group, tag) unique to the test: its name and a random tag."""
    tag = uuid.uuid4().hex[:8]
    base = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40]
    return f"{prefix}-{base}-{tag}", f"g-{base}-{tag}", tag


# ------------------------------------------------------------------ the broker


def kafka_sh(*args, timeout=300):
    return subprocess.run(["bash", str(KAFKA_SH), *args], capture_output=True, text=True,
                          timeout=timeout)


def start_broker(state_dir, tries=3):
    """kafka.sh start in `state_dir`; its bootstrap address. More than one try: kafka.sh now
    and then draws a cluster id starting with "-", which kafka-storage format takes for an
    option (reported; the script is not ours)."""
    for _ in range(tries):
        r = kafka_sh("start", str(state_dir))
        if r.returncode == 0:
            return r.stdout.strip()
    raise RuntimeError(f"kafka.sh start failed:\n{r.stderr[-3000:]}")


def session_broker(prefix):
    """The body of a session fixture: KAFKA_BOOTSTRAP when set, else a broker kafka.sh starts
    in a private state dir (named with `prefix`), always stopped."""
    given = os.environ.get("KAFKA_BOOTSTRAP")
    if given:
        yield given
        return
    state = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield start_broker(state)
    finally:
        kafka_sh("stop", str(state), timeout=120)
        shutil.rmtree(state, ignore_errors=True)


def ensure_kcat(why="to read topics back"):
    if shutil.which("kcat"):
        return
    if os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "-q", "kcat"], capture_output=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"), timeout=600)
    if not shutil.which("kcat"):
        pytest.fail(f"kcat is needed {why}: apt-get install -y kcat")


# ------------------------------------------------------------------ Kafka


def recv_exactly(c, n):
    """n bytes from socket c."""
    b = b""
    while len(b) < n:
        x = c.recv(n - len(b))
        if not x:
            raise EOFError("broker closed the connection")
        b += x
    return b


def create_topic(bootstrap, topic, partitions, visible):
    """CreateTopics (API 19, v2) on the wire: kcat cannot choose a partition count. Then
    waits until visible() says the topic has its partitions."""
    host, port = bootstrap.split(",")[0].rsplit(":", 1)
    cid = b"ecflow-test"
    name = topic.encode()
    body = struct.pack(">hhih", 19, 2, 1, len(cid)) + cid
    body += struct.pack(">ih", 1, len(name)) + name
    body += struct.pack(">ihii", partitions, 1, 0, 0)  # no assignments, no configs
    body += struct.pack(">ib", 30000, 0)               # timeout_ms, validate_only
    with socket.create_connection((host, int(port)), timeout=30) as c:
        c.sendall(struct.pack(">i", len(body)) + body)
        size = struct.unpack(">i", recv_exactly(c, 4))[0]
        r = recv_exactly(c, size)
    o = 4 + 4 + 4  # correlation id, throttle time, topic count
    nl = struct.unpack_from(">h", r, o)[0]
    o += 2 + nl
    err = struct.unpack_from(">h", r, o)[0]
    assert err in (0, 36), f"CreateTopics {topic}: error {err}"  # 36: already exists
    wait_until(f"topic {topic} to have {partitions} partitions", visible, 30, 0.2)


def end_offsets(bootstrap, topic, partitions):
    """{partition: high watermark} (kcat -Q with timestamp -1 = the end), as kcat says it:
    a partition it could not look up has a negative offset."""
    cmd = ["kcat", "-b", bootstrap, "-Q"] + [a for p in range(partitions)
                                             for a in ("-t", f"{topic}:{p}:-1")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    return {int(m.group(1)): int(m.group(2))
            for m in re.finditer(r"^\S+ \[(\d+)\] offset (-?\d+)$", r.stdout, re.M)}


def read_topic(bootstrap, topic):
    """Every record of `topic` from the beginning, as kcat -J's dicts."""
    r = subprocess.run(["kcat", "-b", bootstrap, "-C", "-t", topic, "-o", "beginning", "-e",
                        "-q", "-J"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


# ------------------------------------------------------------------ Iceberg tables


def metadata_versions(t):
    """The version numbers of table folder t's metadata files, oldest first."""
    return sorted(int(Path(p).name[1:].split(".")[0])
                  for p in glob.glob(str(t / "metadata" / "v*.metadata.json")))


def duck():
    """A DuckDB connection with the avro and iceberg extensions loaded from their wheels."""
    import duckdb
    import duckdb_extension_avro
    import duckdb_extension_iceberg
    con = duckdb.connect()
    for mod in (duckdb_extension_avro, duckdb_extension_iceberg):
        ext = glob.glob(os.path.join(os.path.dirname(mod.__file__), "extensions", "*",
                                     "*.duckdb_extension"))
        con.execute(f"LOAD '{ext[0]}'")
    return con
