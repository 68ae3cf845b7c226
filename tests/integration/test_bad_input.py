"""The catalogue of hostile inputs (issue 18): each case is one input a client, a table
file or a pipeline file can hand ecflow, and the answer ecflow must give. New cases
for hostile input go here; the unit and fuzz tests cover the parsers below this.

  item 2  a lying Content-Length does not reserve the in-flight budget up front
  item 2  a body that stops arriving is cut off at request_timeout, not only when idle
  item 7  headers that trickle in (slowloris) are cut off at header_timeout
  item 6  /metrics still answers with more than 1024 descriptors open (no select())
  item 6/7 /metrics still answers while 70 clients trickle header lines (a request deadline
          frees the 64 connection slots they hold)
  item 12 API keys from the environment are wiped from it once read; keys on a non-loopback
          address without TLS get a warning
  item 3  a YAML alias bomb in a pipeline file is refused with FILE:LINE, exit 2
  item 5  more connections than file descriptors: the soft limit is raised to the hard one
          and the connection cap kept below it, so connections wait in the accept queue
          and the pipeline keeps its descriptors

  item 1  a plugin name that escapes the plugin path: refused with FILE:LINE, exit 2
  and the HTTP bodies below (malformed JSON and NDJSON, broken and bomb gzip, too large,
  too many events, wrong types and encodings, missing key) with their status codes.

Covered below the HTTP and CLI level, each with a test that failed before its fix:
  item 3  YAML alias bomb              tests/unit/test_pipeline.c (alias-bomb)
  item 4  long partition values        plugins/sink-iceberg/tests/test_encoders.c (partition/long-value)
  item 4  a row the table cannot take  tests/integration/test_lake_reject.py (real broker: a null in
                                       a required column goes to sink-iceberg's 'rejected' port, or is
                                       nacked alone; the rest of its batch is written; SIGKILL/restart)
  item 6  label values escaped         tests/unit/test_status.c (metrics/label-values)
  item 8  fsync before commit          plugins/sink-iceberg/tests/test_file_io.c
  item 9  version hint never backwards plugins/sink-iceberg/tests/test_file_io.c
  item 10 hostile Avro counts/sizes    plugins/sink-iceberg/tests/test_encoders.c (avro/hostile)
  plugin paths                         tests/unit/test_loader.c
  corrupt Parquet files                plugins/sink-iceberg/tests/test_parquet_reader.c
  and every parser under tests/fuzz (scripts/fuzz.sh).

Environment as in test_source_http.py (ECFLOW_BIN, ECFLOW_PLUGIN_PATH).
"""
import gzip
import http.client
import json
import os
import resource
import socket
import subprocess
import threading
import time
import urllib.request

import pytest

from conftest import ECFLOW, free_port
from harness import metric_sum, scrape_metrics, wait_until
from test_source_http import Server, events, tmp  # noqa: F401  (tmp is a fixture)


@pytest.fixture
def start(tmp):  # noqa: F811
    servers = []

    def _start(**kw):
        kw.setdefault("METRICS_PORT", free_port())
        s = Server(tmp, **kw)
        s.metrics_port = kw["METRICS_PORT"]
        servers.append(s)
        return s

    yield _start
    for s in servers:
        s.stop()


def raw(s, data):
    c = socket.create_connection(("127.0.0.1", s.port), timeout=30)
    c.sendall(data)
    return c


def closed_by_server(c):
    """True once the server has closed `c` (EOF or reset), without blocking."""
    c.setblocking(False)
    try:
        return c.recv(4096) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        c.setblocking(True)


def inflight(s):
    return metric_sum(scrape_metrics(s.metrics_port), "http_inflight_body_bytes") or 0


# ------------------------------------------------------------------ source-http


def test_lying_content_length_does_not_hold_the_inflight_budget(start):
    """Three requests declaring 1 MiB each and sending one byte, with a 2 MiB budget: before,
    two of them held the whole budget and every honest POST got 503."""
    s = start(MAX_BODY_BYTES="1MiB", MAX_INFLIGHT_BYTES="2MiB")
    head = (b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1048576\r\n\r\n{")
    liars = [raw(s, head) for _ in range(3)]
    wait_until("the liars' bytes are charged", lambda: inflight(s) > 0, 15)
    time.sleep(0.3)  # let the third liar's byte land too (it cannot make the test pass wrongly)
    status, _, body = s.post(json.dumps(events("honest")[0]))
    assert (status, body) == (200, {"accepted": 1})
    for c in liars:
        c.close()


def test_body_that_stops_arriving_is_cut_off_at_request_timeout(start):
    """connection_timeout (idle) stays at its 30 s default: only the request deadline can end
    this body early."""
    s = start(REQUEST_TIMEOUT="1s")
    c = raw(s, b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: 100\r\n\r\n{")
    wait_until("the server closes the connection", lambda: closed_by_server(c), 20, step=0.2)
    c.close()
    assert s.post(json.dumps(events("after")[0]))[0] == 200


def test_slowloris_headers_are_cut_off_at_header_timeout(start):
    """Headers arriving one line every 200 ms never leave the connection idle."""
    s = start(HEADER_TIMEOUT="1s")
    c = raw(s, b"POST /events HTTP/1.1\r\nHost: x\r\n")
    deadline = time.monotonic() + 20
    closed = False
    i = 0
    while time.monotonic() < deadline and not closed:
        try:
            c.sendall(b"X-Slow-%d: y\r\n" % i)
        except OSError:
            closed = True
            break
        i += 1
        time.sleep(0.2)
        closed = closed_by_server(c)
    c.close()
    assert closed, "the server kept a connection whose headers never ended"
    assert s.post(json.dumps(events("after")[0]))[0] == 200


def test_more_connections_than_descriptors(start):
    """soft 256 / hard 512 file descriptors; 600 clients connect. ecflow raises its soft
    limit to 512, caps connections below it, and a request on an early connection and the
    sink's writes still work."""
    def limits():
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 512))

    s = start(preexec_fn=limits)
    soft = next(l for l in open(f"/proc/{s.proc.pid}/limits") if l.startswith("Max open files"))
    assert soft.split()[3] == "512", soft
    first = s.connection()
    first.connect()
    others = []
    for _ in range(600):
        try:
            others.append(socket.create_connection(("127.0.0.1", s.port), timeout=5))
        except OSError:
            break
    status, _, body = s.post(json.dumps(events("early")[0]), conn=first)
    assert (status, body) == (200, {"accepted": 1})
    for c in others:
        c.close()
    first.close()
    assert "Too many open files" not in s.log_text()
    assert "connection" in s.log_text() and "file descriptors" in s.log_text()


def test_metrics_answer_with_descriptors_past_fd_setsize(start):
    """1100 open HTTP clients push the metrics server's next socket past FD_SETSIZE (1024),
    which select() cannot watch."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # this process opens 1100 too
    if hard != resource.RLIM_INFINITY and hard < 2048:
        pytest.skip(f"the hard descriptor limit ({hard}) is too low to open 1100 connections")
    if soft < 2048:
        resource.setrlimit(resource.RLIMIT_NOFILE, (2048, hard))

    def limits():
        resource.setrlimit(resource.RLIMIT_NOFILE, (2048, 2048))
    s = start(preexec_fn=limits)
    clients = [socket.create_connection(("127.0.0.1", s.port), timeout=5) for _ in range(1100)]
    try:
        wait_until("1100 connections accepted",
                   lambda: len(os.listdir(f"/proc/{s.proc.pid}/fd")) > 1100, 30)
        text = scrape_metrics(s.metrics_port)
        assert "ecflow_http_inflight_body_bytes" in text
        with urllib.request.urlopen(f"http://127.0.0.1:{s.metrics_port}/status.json", timeout=5) as r:
            assert json.loads(r.read())
    finally:
        for c in clients:
            c.close()


def test_metrics_answer_while_65_clients_trickle_headers(start):
    """70 clients each send a header line every second: never idle for the 10 s timeout, so
    before the request deadline they held all 64 connection slots for as long as they kept
    trickling and no scrape got in. The deadline (5 s) cuts them; a scrape then answers."""
    s = start()
    tricklers = []
    for _ in range(70):
        try:
            c = socket.create_connection(("127.0.0.1", s.metrics_port), timeout=5)
            c.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            tricklers.append(c)
        except OSError:
            break
    stop = threading.Event()

    def trickle():
        i = 0
        while not stop.wait(1.0):
            for c in tricklers:
                try:
                    c.sendall(b"X-Slow-%d: y\r\n" % i)
                except OSError:
                    pass
            i += 1

    t = threading.Thread(target=trickle, daemon=True)
    t.start()

    def scrape():
        try:
            return "ecflow_" in scrape_metrics(s.metrics_port)
        except (OSError, http.client.HTTPException):
            return False

    try:
        # generous: the deadline is 5 s; the tricklers never stop on their own
        wait_until("a scrape answers while 70 clients trickle", scrape, 30, step=0.5)
    finally:
        stop.set()
        t.join()
        for c in tricklers:
            c.close()


def test_api_keys_are_wiped_from_the_environment(start, tmp):  # noqa: F811
    keys = os.path.join(tmp, "keys.txt")
    with open(keys, "w") as f:
        f.write("file-key-1\n")
    s = start(profile="auth", API_KEYS_FILE=keys, API_KEYS="env-secret-1,env-secret-2")
    environ = open(f"/proc/{s.proc.pid}/environ", "rb").read()
    assert b"env-secret" not in environ
    ok = s.post(json.dumps(events("k")[0]), headers={"X-API-Key": "env-secret-2"})
    assert ok[0] == 200
    assert "without TLS" not in s.log_text()  # loopback: no warning


def test_api_keys_without_tls_on_the_network_are_warned_about(start, tmp):  # noqa: F811
    keys = os.path.join(tmp, "keys.txt")
    with open(keys, "w") as f:
        f.write("file-key-1\n")
    s = start(profile="auth", API_KEYS_FILE=keys, API_KEYS="k", LISTEN="0.0.0.0")
    assert "without TLS" in s.log_text()


def _gzip_bomb():
    return gzip.compress(b" " * (4 << 20), compresslevel=9)


# (what, request body, headers, expected status, text the error must hold)
HOSTILE_BODIES = [
    ("malformed JSON", b'{"session_id": "a",}', {}, 400, "offset"),
    ("malformed NDJSON line", b'{"session_id":"a"}\n{oops}\n',
     {"Content-Type": "application/x-ndjson"}, 400, ""),
    ("empty body", b"", {}, 400, "empty"),
    ("not gzip", b"not gzip", {"Content-Encoding": "gzip"}, 400, "gzip"),
    ("truncated gzip", gzip.compress(b'{"session_id":"a"}')[:-6], {"Content-Encoding": "gzip"}, 400, "gzip"),
    ("gzip bomb", None, {"Content-Encoding": "gzip"}, 413, "after decompression"),
    ("body too large", b'{"session_id":"a","p":"' + b"x" * (1 << 20) + b'"}', {}, 413, "max_body_bytes"),
    ("unknown encoding", b"{}", {"Content-Encoding": "br"}, 415, ""),
    ("wrong content type", b"{}", {"Content-Type": "text/plain"}, 415, ""),
    ("charset not UTF-8", b"{}", {"Content-Type": "application/json; charset=latin1"}, 415, ""),
    ("key missing", b'{"x":1}', {}, 422, "session_id"),
    ("key not a string", b'{"session_id":7}', {}, 422, "session_id"),
    ("nesting too deep", b'{"session_id":"a","x":' + b"[" * 200 + b"]" * 200 + b"}", {}, 400, ""),
]


@pytest.mark.parametrize("what,body,headers,status,needle", HOSTILE_BODIES, ids=[c[0] for c in HOSTILE_BODIES])
def test_hostile_bodies_get_their_status(start, what, body, headers, status, needle):
    s = start(MAX_BODY_BYTES="1MiB")
    h = {"Content-Type": "application/json"}
    h.update(headers)
    got, _, resp = s.post(_gzip_bomb() if body is None else body, content_type=None, headers=h)
    assert got == status, (what, got, resp)
    if needle:
        assert needle in json.dumps(resp), (what, resp)
    assert s.lines() == []
    assert s.post(json.dumps(events("after")[0]))[0] == 200  # and the server carries on


def test_plugin_name_that_escapes_the_plugin_path_is_refused(tmp_path):
    f = tmp_path / "evil.yaml"
    f.write_text("pipeline: {name: evil}\nstages:\n  src: {plugin: ../../tmp/evil}\n"
                 "  out: {plugin: sink-null, inputs: [src]}\n")
    r = subprocess.run([str(ECFLOW), "validate", str(f)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and f"{f}:3:" in r.stderr and "plain name" in r.stderr, r.stderr


# ------------------------------------------------------------------ pipeline files


def test_yaml_alias_bomb_is_refused_with_the_line(tmp_path):
    y = ("pipeline: {name: bomb}\nstages:\n  src: {plugin: source-generate}\n"
         "  out: {plugin: sink-null, inputs: [src]}\nx:\n  a0: &a0 [x, x]\n")
    y += "".join(f"  a{i}: &a{i} [*a{i - 1}, *a{i - 1}]\n" for i in range(1, 40))
    f = tmp_path / "bomb.yaml"
    f.write_text(y)
    r = subprocess.run([str(ECFLOW), "validate", str(f)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert f"{f}:" in r.stderr and "aliases" in r.stderr
