"""source-http end to end: the real `ecflow` binary, real HTTP, real files.

Each test starts `build/ecflow run` on a free port with one of two pipelines:
  pipelines/source_http.yaml          source-http -> sink-file (NDJSON file we read back)
  pipelines/source_http_verdict.yaml  source-http -> sink-test, the fixture sink of
                                      tests/fixtures, set to nack, hold tokens past
                                      ack_timeout, or stall into backpressure
and checks status codes, bodies and headers, and that the output file holds exactly the
events that were answered as accepted.

Status codes under test (plugins/source-http/request.c has the rules):
  200 all durable; 207 some durable; 422 none durable and nothing worth retrying;
  503 + Retry-After none durable and some failure transient; 400 not JSON (with the byte
  offset), empty, broken gzip; 401 404 405 413 415.

Environment: ECFLOW_BIN (default build/ecflow), ECFLOW_PLUGIN_PATH (default build/plugins
and build/tests/fixtures). Only the standard library and pytest.
"""

import gzip
import http.client
import io
import json
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conftest import ECFLOW, ROOT, free_port
from harness import HttpRequests, sigterm
from harness import wait_until as _wait_until

# Not conftest's PLUGIN_PATH: the default adds the sink-test fixture's directory.
PLUGIN_PATH = os.environ.get(
    "ECFLOW_PLUGIN_PATH",
    f"{ROOT / 'build' / 'plugins'}:{ROOT / 'build' / 'tests' / 'fixtures'}",
)
PIPELINES = Path(__file__).resolve().parent / "pipelines"

pytestmark = pytest.mark.skipif(not ECFLOW.exists(), reason=f"{ECFLOW} not built")


# ------------------------------------------------------------------ harness


def wait_until(what, cond, timeout, step=0.05):
    """harness.wait_until, polling every 50 ms."""
    _wait_until(what, cond, timeout, step)


class Server(HttpRequests):
    """One `ecflow run` process; stopped with SIGTERM, which must exit 0."""

    def __init__(self, tmp, pipeline="source_http", profile=None, tls=None, preexec_fn=None, **env):
        self.port = free_port()
        self.out = Path(tmp) / "out.ndjson"
        self.log_path = Path(tmp) / f"ecflow-{self.port}.log"
        self.tls = tls
        e = dict(os.environ)
        e.update({"HTTP_PORT": str(self.port), "OUT": str(self.out),
                  "ECFLOW_PLUGIN_PATH": PLUGIN_PATH})
        e.update({k: str(v) for k, v in env.items()})
        cmd = [str(ECFLOW), "run", str(PIPELINES / f"{pipeline}.yaml")]
        if profile:
            cmd += ["--profile", profile]
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=e,
                                     preexec_fn=preexec_fn)
        try:
            wait_until("GET /health", self._healthy, 15)
        except AssertionError:
            self.stop(check=False)
            raise AssertionError(f"ecflow did not come up:\n{self.log_text()}")

    def _healthy(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"ecflow exited {self.proc.returncode}:\n{self.log_text()}")
        try:
            return self.request("GET", "/health")[0] == 200
        except OSError:
            return False

    def connection(self, timeout=30):
        if self.tls:
            ctx = ssl.create_default_context(cafile=self.tls)
            return http.client.HTTPSConnection("localhost", self.port, timeout=timeout,
                                               context=ctx)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def post(self, body, content_type="application/json", headers=None, path="/events",
             conn=None):
        h = {"Content-Type": content_type} if content_type else {}
        h.update(headers or {})
        if isinstance(body, str):
            body = body.encode()
        status, hdrs, data = self.request("POST", path, body, h, conn)
        return status, hdrs, json.loads(data) if data else None

    def lines(self):
        if not self.out.exists():
            return []
        return [json.loads(l) for l in self.out.read_text().splitlines() if l]

    def log_text(self):
        self.log.flush()
        return self.log_path.read_text()

    def stop(self, check=True):
        if self.proc.poll() is None:
            sigterm(self.proc, 30)
        self.log.close()
        if check:
            text = self.log_path.read_text()
            assert self.proc.returncode == 0, f"exit {self.proc.returncode}:\n{text}"
            assert "ERROR: AddressSanitizer" not in text, text
            assert "runtime error:" not in text, text


@pytest.fixture
def tmp():
    d = tempfile.mkdtemp(prefix="source-http-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def start(tmp):
    servers = []

    def _start(**kw):
        s = Server(tmp, **kw)
        servers.append(s)
        return s

    yield _start
    for s in servers:
        s.stop()


@pytest.fixture
def srv(start):
    return start()


def events(*ids, **extra):
    return [dict(session_id=i, event_type="page_view", **extra) for i in ids]


# ------------------------------------------------------------------ accepted bodies


def test_single_object_is_accepted_and_written(srv):
    status, _, body = srv.post(json.dumps(events("s1")[0]))
    assert (status, body) == (200, {"accepted": 1})
    assert srv.lines() == events("s1")


def test_array_of_objects_is_accepted(srv):
    status, _, body = srv.post(json.dumps(events("a", "b", "c")))
    assert (status, body) == (200, {"accepted": 3})
    assert srv.lines() == events("a", "b", "c")


def test_payload_bytes_travel_unchanged(srv):
    raw = '[ {"session_id" : "x",  "price": 1.50, "n": 1e400, "s": "caf\\u00e9 \u00e9"} ]'
    status, _, _ = srv.post(raw)
    assert status == 200
    assert srv.out.read_text() == raw[2:-2] + "\n"


def test_ndjson_is_accepted(srv):
    body = "\n".join(json.dumps(e) for e in events("n1", "n2")) + "\r\n\n"
    status, _, resp = srv.post(body, "application/x-ndjson")
    assert (status, resp) == (200, {"accepted": 2})
    assert srv.lines() == events("n1", "n2")


def test_content_type_parameters_are_understood(srv):
    status, _, _ = srv.post(json.dumps(events("c")[0]), "Application/JSON; charset=UTF-8")
    assert status == 200


def test_missing_content_type_is_taken_as_json(srv):
    status, _, _ = srv.post(json.dumps(events("m")[0]), content_type=None)
    assert status == 200


def test_empty_array_accepts_nothing(srv):
    assert srv.post("[]")[:3:2] == (200, {"accepted": 0})


def test_gzip_body_is_inflated(srv):
    data = gzip.compress(json.dumps(events("g1", "g2")).encode())
    status, _, body = srv.post(data, headers={"Content-Encoding": "gzip"})
    assert (status, body) == (200, {"accepted": 2})
    assert srv.lines() == events("g1", "g2")


def test_gzip_with_several_members_is_one_body(srv):
    lines = [json.dumps(e) + "\n" for e in events("m1", "m2")]
    data = b"".join(gzip.compress(l.encode()) for l in lines)
    status, _, body = srv.post(data, "application/x-ndjson", {"Content-Encoding": "gzip"})
    assert (status, body) == (200, {"accepted": 2})


def test_chunked_upload_is_accepted(srv):
    conn = srv.connection()
    payload = json.dumps(events(*[f"c{i}" for i in range(50)])).encode()
    conn.putrequest("POST", "/events")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    for i in range(0, len(payload), 100):
        part = payload[i:i + 100]
        conn.send(b"%x\r\n%s\r\n" % (len(part), part))
    conn.send(b"0\r\n\r\n")
    r = conn.getresponse()
    assert (r.status, json.loads(r.read())) == (200, {"accepted": 50})
    conn.close()


# ------------------------------------------------------------------ refused bodies


@pytest.mark.parametrize("body,offset", [
    ('{"session_id":"s",}', 18),
    ('{"session_id" "s"}', 14),
    ('[{"session_id":"a"},{"session_id":tru}]', 34),
    ('{"x":[1,2,,3],"session_id":"s"}', 10),
    ('{"session_id":"s"}}', 18),
    ('{"session_id":"\xff"}', 15),
])
def test_malformed_json_gets_400_naming_the_offset(srv, body, offset):
    data = body.encode("latin-1")
    status, _, resp = srv.post(data)
    assert status == 400
    assert resp["offset"] == offset
    assert f"at byte {offset}" in resp["error"]
    assert srv.lines() == []


def test_malformed_ndjson_line_refuses_the_whole_body(srv):
    body = '{"session_id":"a"}\n{"session_id":}\n'
    status, _, resp = srv.post(body, "application/x-ndjson")
    assert (status, resp["offset"]) == (400, 33)
    assert srv.lines() == []


@pytest.mark.parametrize("body", ["", "   \n\t  "])
def test_empty_body_gets_400(srv, body):
    status, _, resp = srv.post(body)
    assert status == 400 and "empty" in resp["error"]


def test_body_over_max_body_bytes_gets_413(start):
    s = start(MAX_BODY_BYTES="1KiB")
    status, _, resp = s.post(json.dumps(events("x", pad="y" * 2000)[0]))
    assert status == 413 and "max_body_bytes" in resp["error"]
    assert s.post(json.dumps(events("ok")[0]))[0] == 200  # a fresh connection is fine


def test_chunked_body_over_max_body_bytes_gets_413(start):
    s = start(MAX_BODY_BYTES="1KiB")
    conn = s.connection()
    conn.putrequest("POST", "/events")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    for _ in range(8):
        conn.send(b"200\r\n" + b" " * 512 + b"\r\n")
    conn.send(b"0\r\n\r\n")
    r = conn.getresponse()
    assert r.status == 413
    conn.close()
    assert s.lines() == []


def test_gzip_bomb_gets_413_without_growing_memory(start):
    s = start(MAX_BODY_BYTES="1MiB")
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=9) as z:
        for _ in range(256):
            z.write(b" " * (1 << 20))  # 256 MiB of spaces in ~250 KiB
    bomb = buf.getvalue()
    status, _, resp = s.post(bomb, headers={"Content-Encoding": "gzip"})
    assert status == 413 and "after decompression" in resp["error"]
    hwm_kib = int(next(l for l in Path(f"/proc/{s.proc.pid}/status").read_text().splitlines()
                       if l.startswith("VmHWM:")).split()[1])
    assert hwm_kib < 100 * 1024, f"peak RSS {hwm_kib} KiB"


def test_broken_gzip_gets_400(srv):
    status, _, resp = srv.post(b"this is not gzip", headers={"Content-Encoding": "gzip"})
    assert status == 400 and "gzip" in resp["error"]
    truncated = gzip.compress(json.dumps(events("t")).encode())[:-6]
    status, _, resp = srv.post(truncated, headers={"Content-Encoding": "gzip"})
    assert status == 400 and "gzip" in resp["error"]


def test_too_many_events_gets_413(start):
    s = start(MAX_EVENTS=5)
    status, _, resp = s.post(json.dumps(events(*"abcdef")))
    assert status == 413 and "max_events" in resp["error"]
    assert s.lines() == []


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded",
                                   "application/json; charset=latin-1"])
def test_wrong_content_type_gets_415(srv, ctype):
    assert srv.post(json.dumps(events("x")[0]), ctype)[0] == 415


def test_unknown_content_encoding_gets_415(srv):
    assert srv.post(json.dumps(events("x")[0]), headers={"Content-Encoding": "br"})[0] == 415


def test_unknown_path_gets_404(srv):
    assert srv.request("GET", "/nope")[0] == 404
    assert srv.post(json.dumps(events("x")[0]), path="/event")[0] == 404


@pytest.mark.parametrize("method,path,allow", [
    ("GET", "/events", "POST"), ("PUT", "/events", "POST"), ("DELETE", "/events", "POST"),
    ("POST", "/health", "GET, HEAD"), ("POST", "/ready", "GET, HEAD"),
])
def test_wrong_method_gets_405_with_allow(srv, method, path, allow):
    status, headers, _ = srv.request(method, path, b"{}" if method != "GET" else None)
    assert status == 405 and headers["allow"] == allow


# ------------------------------------------------------------------ door checks, per event


def test_missing_key_field_gets_422(srv):
    status, headers, resp = srv.post('{"user_id":"u"}')
    assert status == 422 and "retry-after" not in headers
    assert resp == {"accepted": 0, "rejected": [
        {"index": 0, "reason": "missing key field 'session_id'", "retryable": False}]}


def test_array_with_bad_events_gets_207_and_only_good_ones_are_written(srv):
    body = [events("ok1")[0], {"user_id": "u"}, 5, {"session_id": 7}, {"session_id": ""},
            events("ok2")[0]]
    status, _, resp = srv.post(json.dumps(body))
    assert status == 207
    assert resp["accepted"] == 2
    assert [(r["index"], r["retryable"]) for r in resp["rejected"]] == [
        (1, False), (2, False), (3, False), (4, False)]
    assert "not a JSON object" in resp["rejected"][1]["reason"]
    assert "not a string" in resp["rejected"][2]["reason"]
    assert "empty" in resp["rejected"][3]["reason"]
    assert srv.lines() == events("ok1", "ok2")


def test_key_field_is_configurable(start):
    s = start(KEY_FIELD="user_id")
    assert s.post('{"user_id":"u1"}')[0] == 200
    assert s.post('{"session_id":"s"}')[0] == 422


# ------------------------------------------------------------------ health, auth, TLS


def test_health_and_ready(srv):
    assert srv.request("GET", "/health")[:1] == (200,)
    status, _, body = srv.request("GET", "/ready")
    assert (status, json.loads(body)) == (200, {"ready": True})
    assert srv.request("HEAD", "/health")[0] == 200


def test_keep_alive_connection_serves_many_requests(srv):
    conn = srv.connection()
    for i in range(20):
        assert srv.post(json.dumps(events(f"k{i}")[0]), conn=conn)[0] == 200
        assert srv.request("GET", "/health", conn=conn)[0] == 200
    conn.close()
    assert len(srv.lines()) == 20


@pytest.fixture
def keyed(start, tmp):
    keys = Path(tmp) / "keys.txt"
    keys.write_text("# one per line\nfile-key-1\n\n  file-key-2  \n")
    return start(profile="auth", API_KEYS_FILE=keys, API_KEYS="env-key-1,env-key-2")


@pytest.mark.parametrize("headers,status", [
    ({"Authorization": "Bearer file-key-1"}, 200),
    ({"Authorization": "bearer file-key-2"}, 200),
    ({"X-API-Key": "env-key-2"}, 200),
    ({"Authorization": "Bearer wrong"}, 401),
    ({"X-API-Key": "file-key-"}, 401),
    ({"X-API-Key": "file-key-10"}, 401),
    ({"Authorization": "Basic ZmlsZS1rZXktMQ=="}, 401),
    ({}, 401),
])
def test_api_keys(keyed, headers, status):
    got, hdrs, body = keyed.post(json.dumps(events("a")[0]), headers=headers)
    assert got == status
    if status == 401:
        assert body == {"error": "unauthorized"}
        assert hdrs.get("www-authenticate") == "Bearer"
        assert keyed.lines() == []
    assert keyed.request("GET", "/health")[0] == 200  # health needs no key


def test_api_keys_never_reach_the_log(keyed):
    keyed.post("{}", headers={"Authorization": "Bearer file-key-1"})
    keyed.post("{}", headers={"Authorization": "Bearer guessed-key"})
    log = keyed.log_text()
    for k in ("file-key", "env-key", "guessed-key"):
        assert k not in log


def test_api_keys_file_that_cannot_be_read_is_a_config_error(tmp):
    e = dict(os.environ, HTTP_PORT=str(free_port()), OUT=f"{tmp}/o", API_KEYS="k",
             API_KEYS_FILE=f"{tmp}/missing", ECFLOW_PLUGIN_PATH=PLUGIN_PATH)
    r = subprocess.run([str(ECFLOW), "run", str(PIPELINES / "source_http.yaml"), "--profile",
                        "auth"], env=e, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2, r.stderr
    assert "api_keys_file" in r.stderr and "missing" in r.stderr


@pytest.mark.skipif(not shutil.which("openssl"), reason="openssl not installed")
def test_tls(start, tmp):
    cert, key = f"{tmp}/cert.pem", f"{tmp}/key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost"],
                   check=True, capture_output=True)
    s = start(profile="tls", tls=cert, TLS_CERT=cert, TLS_KEY=key)
    assert s.post(json.dumps(events("tls")[0]))[:3:2] == (200, {"accepted": 1})
    assert s.lines() == events("tls")


# ------------------------------------------------------------------ many clients


def test_many_keep_alive_connections_at_once(srv):
    clients, per_client = 200, 5
    results, lock = [], threading.Lock()

    retries = []

    def client(c):
        # A well-behaved client: a 503 under load carries Retry-After and
        # means "not taken, send it again" — never a lost or duplicated event.
        conn = srv.connection(timeout=60)
        got = []
        for i in range(per_client):
            for attempt in range(100):
                status, hdrs, _ = srv.post(json.dumps(events(f"c{c}-{i}")), conn=conn)
                if status != 503:
                    break
                assert "retry-after" in hdrs
                with lock:
                    retries.append(1)
                time.sleep(0.05)
                if "close" in hdrs.get("connection", "").lower():
                    conn.close()
                    conn = srv.connection(timeout=60)
            got.append(status)
        conn.close()
        with lock:
            results.extend(got)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(200) == clients * per_client, sorted(set(results))
    written = sorted(e["session_id"] for e in srv.lines())
    assert written == sorted(f"c{c}-{i}" for c in range(clients) for i in range(per_client))


# ------------------------------------------------------------------ downstream trouble


def verdict(start, MODE="ack", DELAY="2s", **env):
    """source-http -> sink-test with a verdict mode: ack at once; nack every message; hold
    the tokens and ack DELAY later; block: sleep DELAY per batch, then ack. A payload
    marked "fail":true is nacked in every mode."""
    knobs = {"ack": {}, "nack": {"FAIL_ALL": "true"}, "hold": {"HOLD": DELAY},
             "block": {"DELAY": DELAY}}[MODE]
    return start(pipeline="source_http_verdict", **knobs, **env)


def test_downstream_failure_gets_503_with_retry_after(start):
    s = verdict(start, MODE="nack")
    status, headers, resp = s.post(json.dumps(events("a", "b")))
    assert status == 503 and headers["retry-after"] == "1"
    assert resp["accepted"] == 0
    assert [r["retryable"] for r in resp["rejected"]] == [True, True]
    assert resp["rejected"][0]["reason"] == "broker unreachable"


def test_some_downstream_failures_get_207_listing_them(start):
    s = verdict(start, MODE="ack")
    body = events("a") + events("b", fail=True) + events("c")
    status, headers, resp = s.post(json.dumps(body, separators=(",", ":")))
    assert status == 207 and headers["retry-after"] == "1"
    assert resp == {"accepted": 2, "rejected": [
        {"index": 1, "reason": "broker unreachable", "retryable": True}]}


def test_permanent_downstream_failure_gets_422(start):
    s = verdict(start, MODE="nack", NACK_STATUS="invalid")
    status, headers, resp = s.post(json.dumps(events("a")))
    assert status == 422 and "retry-after" not in headers
    assert resp["rejected"][0]["retryable"] is False


def test_acks_later_than_ack_timeout_get_503_and_settle_safely(start):
    s = verdict(start, MODE="hold", DELAY="1500ms", ACK_TIMEOUT="300ms")
    t0 = time.monotonic()
    status, headers, resp = s.post(json.dumps(events(*[f"h{i}" for i in range(50)])))
    took = time.monotonic() - t0
    assert status == 503 and headers["retry-after"] == "1"
    assert 0.25 < took < 1.4
    assert all("ack_timeout" in r["reason"] for r in resp["rejected"])
    time.sleep(1.6)  # the held tokens settle now, after the answer went out
    assert s.request("GET", "/health")[0] == 200
    assert s.proc.poll() is None


def test_acks_within_ack_timeout_get_200_after_they_settle(start):
    s = verdict(start, MODE="hold", DELAY="400ms", ACK_TIMEOUT="5s")
    t0 = time.monotonic()
    assert s.post(json.dumps(events("a", "b")))[:3:2] == (200, {"accepted": 2})
    assert time.monotonic() - t0 >= 0.35  # the answer waited for durability


def post_one_event_each(s, n, prefix):
    """n concurrent one-event POSTs; their (status, Retry-After, body) answers."""
    answers, lock = [], threading.Lock()

    def one(i):
        st, hdrs, resp = s.post(json.dumps(events(f"{prefix}{i}")))
        with lock:
            answers.append((st, hdrs.get("retry-after"), resp))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


def test_small_requests_share_batches_through_a_narrow_ring(start):
    # One batch per request would fill this 2-batch ring behind a slow sink and
    # answer most of these 503; the outbox coalesces them, so all are durable.
    s = verdict(start, MODE="block", DELAY="100ms", RING_CAPACITY=2, THREADS=4)
    answers = post_one_event_each(s, 40, "s")
    assert [x for x in answers if x[0] != 200] == []
    assert sum(x[2]["accepted"] for x in answers) == 40


def test_full_pipeline_gets_503_backpressure(start):
    # The sink holds its batch for 3 s, past the 1 s a shared batch waits for
    # room in the ring (a quarter of ack_timeout, at most 1 s).
    s = verdict(start, MODE="block", DELAY="3s", RING_CAPACITY=2, THREADS=4)
    answers = post_one_event_each(s, 10, "b")
    refused = [x for x in answers if x[0] == 503]
    assert refused, answers
    assert all(r[1] == "1" and "backpressure" in r[2]["rejected"][0]["reason"] for r in refused)
    assert all(x[0] in (200, 503) for x in answers)


def test_shutdown_answers_the_request_it_is_waiting_for(start):
    s = verdict(start, MODE="hold", DELAY="800ms", ACK_TIMEOUT="10s")
    answer = {}

    def post():
        answer["r"] = s.post(json.dumps(events("last")))

    t = threading.Thread(target=post)
    t.start()
    time.sleep(0.3)
    s.proc.send_signal(signal.SIGTERM)
    t.join(20)
    assert answer["r"][0] == 200
    assert s.proc.wait(30) == 0
