"""A small HTTP proxy that injects faults between ecflow and a real service (SeaweedFS's S3
or its Iceberg REST catalog), for the failures the real thing cannot be asked to produce:
5xx and 429 answers, stalls longer than the client's timeout, and answers lost after the
request was applied.

    with FaultProxy(upstream="http://127.0.0.1:8333") as p:
        p.rule = lambda req: "503" if req.n % 3 == 0 else None
        ... point the client at p.url ...
        p.counts  # {"503": 7, "pass": 40, ...}

`rule(req)` sees each request (req.n: its number from 1, req.method, req.path, req.body)
and returns None (forward it), "500"/"503"/"429" (answer that without forwarding),
"hang" (wait `hang_s` seconds, then drop the connection without an answer), or
"lose-502" (forward it, so it is applied upstream, then answer 502 instead). The Host
header is forwarded as the client sent it, so SigV4 signatures stay valid.
"""
import http.client
import http.server
import threading
import time
import urllib.parse

S3_ERRORS = {
    "500": (500, "InternalError", "We encountered an internal error. Please try again."),
    "503": (503, "SlowDown", "Please reduce your request rate."),
    "429": (429, "SlowDown", "Please reduce your request rate."),
}


class Request:
    def __init__(self, n, method, path, headers, body):
        self.n, self.method, self.path, self.headers, self.body = n, method, path, headers, body


class FaultProxy:
    def __init__(self, upstream, hang_s=3.0):
        u = urllib.parse.urlsplit(upstream)
        self.host, self.port = u.hostname, u.port
        self.hang_s = hang_s
        self.rule = lambda req: None
        self.counts = {}
        self.log = []  # (n, method, path, fault)
        self._lock = threading.Lock()
        self._n = 0
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # headers and body go out in two writes: without this every answer waits out
            # the client's delayed ACK (~40 ms)
            disable_nagle_algorithm = True

            def log_message(self, *a):
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with proxy._lock:
                    proxy._n += 1
                    req = Request(proxy._n, self.command, self.path, self.headers, body)
                fault = proxy.rule(req)
                with proxy._lock:
                    proxy.counts[fault or "pass"] = proxy.counts.get(fault or "pass", 0) + 1
                    proxy.log.append((req.n, req.method, req.path, fault))
                if fault == "hang":
                    time.sleep(proxy.hang_s)
                    self.close_connection = True
                    return
                if fault in S3_ERRORS:
                    code, s3code, msg = S3_ERRORS[fault]
                    data = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{s3code}</Code>"
                            f"<Message>{msg}</Message></Error>").encode()
                    self._answer(code, [("Content-Type", "application/xml")], data)
                    return
                status, headers, data = proxy._forward(req)
                if fault == "lose-502":
                    self._answer(502, [("Content-Type", "text/plain")], b"bad gateway (injected)\n")
                    return
                self._answer(status, headers, data, head=self.command == "HEAD")

            def _answer(self, status, headers, data, head=False):
                self.send_response(status)
                for k, v in headers:
                    if k.lower() not in ("transfer-encoding", "content-length", "connection"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if not head:
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _forward(self, req):
        c = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            c.putrequest(req.method, req.path, skip_host=True, skip_accept_encoding=True)
            for k, v in req.headers.items():
                if k.lower() not in ("content-length", "connection", "transfer-encoding"):
                    c.putheader(k, v)
            c.putheader("Content-Length", str(len(req.body)))
            c.endheaders(req.body)
            r = c.getresponse()
            data = r.read()
            return r.status, r.getheaders(), data
        finally:
            c.close()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()
