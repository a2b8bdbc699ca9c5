"""HTTP/1.1 forwarding to a real backend (Node's http server): forwarding headers, bodies in
both framings, keep-alive, pipelining, large transfers with bounded memory, and every error the
proxy itself answers."""
import hashlib
import json
import os
import socket
import subprocess
import threading
import time

from harness import StaplerCase, read_http_response, pattern_sha256, SANITIZED, free_port


class HttpCase(StaplerCase):
    def exchange(self, sock, request, buffered=b""):
        sock.sendall(request)
        return read_http_response(sock, buffered)

    def raw(self, request, port=None):
        """Sends raw bytes over a fresh TLS connection; returns (status, headers, body)."""
        with self.tls_connect(port or self.p.port) as s:
            status, headers, body, _ = self.exchange(s, request)
            return status, headers, body

    def backend_requests(self):
        with self.tls_connect(self.p.port) as s:
            _, _, body, _ = self.exchange(s, b"GET /stats HTTP/1.1\r\nHost: x\r\n\r\n")
        return json.loads(body)["requests"]

    def echo(self, body):
        doc = json.loads(body)
        pairs = doc["headers"]
        doc["h"] = {}
        for k, v in zip(pairs[0::2], pairs[1::2]):
            doc["h"].setdefault(k.lower(), []).append(v)
        return doc


class ForwardingTest(HttpCase):
    def setUp(self):
        super().setUp()
        self.p = self.proxy()
        self.url = "https://localhost:%d" % self.p.port

    def test_forwarded_headers_replace_client_values(self):
        p = self.curl(self.url + "/echo?x=1", ["-H", "X-Forwarded-For: 6.6.6.6", "-H",
                                               "X-Forwarded-Proto: http", "-H",
                                               "Forwarded: for=6.6.6.6"], check=True)
        doc = self.echo(p.stdout)
        self.assertEqual(doc["url"], "/echo?x=1")
        self.assertEqual(doc["h"]["x-forwarded-for"], ["127.0.0.1"])
        self.assertEqual(doc["h"]["x-forwarded-proto"], ["https"])
        self.assertEqual(doc["h"]["x-forwarded-port"], [str(self.p.port)])
        self.assertNotIn("forwarded", doc["h"])
        self.assertEqual(doc["h"]["host"], ["localhost:%d" % self.p.port])

    def test_content_length_body(self):
        data = os.urandom(3 * 1024 * 1024 + 17)
        path = os.path.join(self.tmp, "body")
        with open(path, "wb") as f:
            f.write(data)
        p = self.curl(self.url + "/echo", ["--data-binary", "@" + path], check=True)
        doc = self.echo(p.stdout)
        self.assertEqual(doc["bodyLength"], len(data))
        self.assertEqual(doc["bodySha256"], hashlib.sha256(data).hexdigest())

    def test_chunked_upload_with_trailers(self):
        body = (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                b"Trailer: X-Check\r\n\r\n"
                b"5;name=val\r\nhello\r\n6\r\n world\r\n0\r\nX-Check: 42\r\n\r\n")
        status, _, out = self.raw(body)
        self.assertEqual(status, 200)
        doc = self.echo(out)
        self.assertEqual(doc["bodyLength"], 11)
        self.assertEqual(doc["bodySha256"], hashlib.sha256(b"hello world").hexdigest())
        self.assertEqual(doc["trailers"], ["X-Check", "42"])

    def test_chunked_and_length_downloads(self):
        for chunked in (0, 1):
            n = 5 * 1024 * 1024 + 3
            p = self.curl(self.url + "/bytes?n=%d&chunked=%d" % (n, chunked), ["-D", "-"],
                          check=True)
            head, _, body = p.stdout.partition(b"\r\n\r\n")
            self.assertEqual(len(body), n)
            self.assertEqual(hashlib.sha256(body).hexdigest(), pattern_sha256(n))
            self.assertIn(b"transfer-encoding: chunked" if chunked else b"content-length",
                          head.lower())

    def test_keep_alive_uses_one_backend_connection(self):
        with self.tls_connect(self.p.port) as s:
            ports, counts = set(), []
            rest = b""
            for i in range(5):
                s.sendall(b"GET /echo?i=%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
                status, _, body, rest = read_http_response(s, rest)
                self.assertEqual(status, 200)
                doc = self.echo(body)
                ports.add(doc["remotePort"])
                counts.append(doc["connectionRequests"])
            self.assertEqual(len(ports), 1)
            self.assertEqual(counts, [1, 2, 3, 4, 5])

    def test_pipelined_requests_answered_in_order(self):
        with self.tls_connect(self.p.port) as s:
            s.sendall(b"GET /echo?i=1 HTTP/1.1\r\nHost: x\r\n\r\n"
                      b"GET /bytes?n=10 HTTP/1.1\r\nHost: x\r\n\r\n"
                      b"POST /echo?i=3 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
                      b"HEAD /bytes?n=99 HTTP/1.1\r\nHost: x\r\n\r\n"
                      b"GET /echo?i=5 HTTP/1.1\r\nHost: x\r\n\r\n")
            rest = b""
            status, _, body, rest = read_http_response(s, rest)
            self.assertEqual(self.echo(body)["url"], "/echo?i=1")
            status, _, body, rest = read_http_response(s, rest)
            self.assertEqual(len(body), 10)
            status, _, body, rest = read_http_response(s, rest)
            self.assertEqual(self.echo(body)["bodyLength"], 3)
            s.settimeout(10)
            # HEAD: headers only, whatever Content-Length says.
            while b"\r\n\r\n" not in rest:
                rest += s.recv(65536)
            head, _, rest = rest.partition(b"\r\n\r\n")
            self.assertIn(b"200", head.split(b"\r\n")[0])
            status, _, body, rest = read_http_response(s, rest)
            self.assertEqual(self.echo(body)["url"], "/echo?i=5")

    def test_no_body_statuses_keep_the_connection_usable(self):
        with self.tls_connect(self.p.port) as s:
            rest = b""
            for path, want in ((b"/status/204", 204), (b"/status/304", 304),
                               (b"/status/404", 404), (b"/echo", 200)):
                s.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
                status, _, _, rest = read_http_response(s, rest)
                self.assertEqual(status, want)

    def test_expect_100_continue(self):
        data = os.urandom(2 * 1024 * 1024)
        path = os.path.join(self.tmp, "body")
        with open(path, "wb") as f:
            f.write(data)
        p = self.curl(self.url + "/echo", ["-H", "Expect: 100-continue", "--data-binary",
                                           "@" + path, "-v"], check=True)
        self.assertIn(b"100 Continue", p.stderr)
        self.assertEqual(self.echo(p.stdout)["bodyLength"], len(data))

    def test_http10_client(self):
        status, headers, body = self.raw(b"GET /echo HTTP/1.0\r\n\r\n")
        self.assertEqual(status, 200)
        self.assertEqual(self.echo(body)["httpVersion"], "1.0")


class BackendKeepAliveTest(HttpCase):
    def test_backend_closing_idle_connection_is_transparent(self):
        backend = self.start_backend(keepalive_ms=200)  # like Cowboy's short idle timeout
        self.p = self.proxy(backend=backend)
        with self.tls_connect(self.p.port) as s:
            rest = b""
            for i in range(3):
                s.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
                status, _, _, rest = read_http_response(s, rest)
                self.assertEqual(status, 200)
                time.sleep(0.6)


class LargeTransferTest(HttpCase):
    SIZE = (256 if SANITIZED else 1024) * 1024 * 1024
    # Release build: 64 MiB. Under ASan its allocator caches and quarantine add their own.
    RSS_LIMIT_KIB = (160 if SANITIZED else 64) * 1024

    def setUp(self):
        super().setUp()
        self.p = self.proxy()
        self.url = "https://localhost:%d" % self.p.port

    def sample_rss(self, stop, peak):
        while not stop.is_set():
            peak[0] = max(peak[0], self.p.rss_kib())
            time.sleep(0.05)

    def with_rss(self, fn):
        base = self.p.rss_kib()
        stop, peak = threading.Event(), [0]
        t = threading.Thread(target=self.sample_rss, args=(stop, peak))
        t.start()
        try:
            result = fn()
        finally:
            stop.set()
            t.join()
        growth = peak[0] - base
        self.assertLess(growth, self.RSS_LIMIT_KIB, "proxy RSS grew by %d KiB" % growth)
        return result

    def test_download(self):
        p = self.with_rss(lambda: self.curl(self.url + "/bytes?n=%d" % self.SIZE,
                                            ["-o", "/dev/null", "-w", "%{size_download}"],
                                            timeout=600))
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(int(p.stdout), self.SIZE)

    def test_upload(self):
        path = os.path.join(self.tmp, "zeros")
        with open(path, "wb") as f:
            f.truncate(self.SIZE)
        p = self.with_rss(lambda: self.curl(self.url + "/echo", ["-X", "POST", "-T", path],
                                            timeout=600))
        self.assertEqual(p.returncode, 0, p.stderr)
        doc = self.echo(p.stdout)
        self.assertEqual(doc["bodyLength"], self.SIZE)
        h = hashlib.sha256()
        zeros = bytes(1 << 20)
        for _ in range(self.SIZE >> 20):
            h.update(zeros)
        self.assertEqual(doc["bodySha256"], h.hexdigest())


class ErrorTest(HttpCase):
    def setUp(self):
        super().setUp()
        self.p = self.proxy()

    def assert_refused(self, request, status):
        before = self.backend_requests()
        got, headers, body = self.raw(request)
        self.assertEqual(got, status, body)
        self.assertEqual(headers.get("connection"), "close")
        self.assertEqual(self.backend_requests(), before + 1, "the backend saw the bad request")

    def test_malformed_requests_get_400(self):
        self.assert_refused(b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400)
        self.assert_refused(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400)
        self.assert_refused(b"GET / HTTP/1.1\r\nX: a\x01b\r\nHost: x\r\n\r\n", 400)
        self.assert_refused(b"\x00\x01\x02 garbage\r\n\r\n", 400)
        self.assert_refused(b"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n", 405)

    def test_smuggling_attempts_get_400(self):
        self.assert_refused(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /x HTTP/1.1\r\n\r\n", 400)
        self.assert_refused(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                            b"Content-Length: 6\r\n\r\nhello!", 400)
        self.assert_refused(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, "
                            b"identity\r\n\r\n0\r\n\r\n", 400)
        self.assert_refused(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\x0bchunked"
                            b"\r\n\r\n0\r\n\r\n", 400)

    def test_bad_chunk_framing_never_reaches_backend(self):
        with self.tls_connect(self.p.port) as s:
            s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"5\nhello\r\n0\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        self.assertTrue(data == b"" or data.startswith(b"HTTP/1.1 400"), data)

    def test_oversize_headers_get_431(self):
        big = b"X-Big: " + b"a" * 40000 + b"\r\n"
        self.assert_refused(b"GET /echo HTTP/1.1\r\nHost: x\r\n" + big + b"\r\n", 431)
        self.wait_log(self.p, "431")


class BackendFailureTest(HttpCase):
    def test_backend_down_gives_502(self):
        dead = type("Dead", (), {"port": free_port()})
        self.p = self.proxy(backend=dead)
        status, headers, body = self.raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(status, 502)
        self.wait_log(self.p, "cannot connect to backend")

    def test_backend_connect_timeout_gives_504(self):
        # A listener that never accepts, with its queue full: SYNs go unanswered. (A real
        # server would not do this; it stands for a host that drops packets.)
        blackhole = socket.socket()
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen(0)
        fillers = []
        for _ in range(3):
            f = socket.socket()
            f.setblocking(False)
            f.connect_ex(blackhole.getsockname())
            fillers.append(f)
        try:
            hole = type("Hole", (), {"port": blackhole.getsockname()[1]})
            self.p = self.proxy(backend=hole, backend_extra="connect_timeout: 500ms\n")
            status, _, _ = self.raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertEqual(status, 504)
            self.wait_log(self.p, "connect_timeout")
        finally:
            for f in fillers:
                f.close()
            blackhole.close()

    def test_backend_failures_mid_exchange(self):
        self.p = self.proxy()
        status, _, _ = self.raw(b"GET /close-early HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(status, 502)
        status, _, _ = self.raw(b"GET /garbage HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(status, 502)
        p = self.curl("https://localhost:%d/reset" % self.p.port, ["-o", "/dev/null"])
        self.assertNotEqual(p.returncode, 0)  # the client sees the break, not a made-up ending
        status, _, _ = self.raw(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(status, 200)
