"""HTTP/2 toward clients in http mode: curl and nghttp through stapler to the real Node backend
(many streams with bodies both ways, downloads in parallel, resets, trailers), a WebSocket over
extended CONNECT, hostile frame sequences from python3-h2/hyperframe, timeouts, and GOAWAY on
reload and stop with the streams in flight finished."""
import base64
import hashlib
import json
import os
import signal
import socket
import ssl
import struct
import subprocess
import threading
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from hyperframe.frame import (ContinuationFrame, DataFrame, HeadersFrame, PingFrame,
                              PriorityFrame, RstStreamFrame, SettingsFrame, WindowUpdateFrame)

from harness import StaplerCase, HERE, SANITIZED, free_port, pattern_sha256, wait_until
from scripted_backend import ScriptedBackend

NGHTTP = "/usr/bin/nghttp"


class H2Client:
    """A TLS connection speaking HTTP/2 with python3-h2; raw frames may be sent too."""

    def __init__(self, case, port, validate=True):
        ctx = case.tls_context(alpn=("h2",))
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock = ctx.wrap_socket(raw, server_hostname="localhost")
        assert self.sock.selected_alpn_protocol() == "h2"
        cfg = h2.config.H2Configuration(client_side=True, header_encoding="utf-8",
                                        validate_outbound_headers=validate,
                                        normalize_outbound_headers=validate,
                                        validate_inbound_headers=False)
        self.conn = h2.connection.H2Connection(config=cfg)
        self.conn.initiate_connection()
        self.flush()
        self.responses = {}  # stream id -> {"headers", "data", "ended", "reset", "trailers"}
        self.goaway = None
        self.closed = False

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def raw(self, data):
        self.sock.sendall(data)

    def request(self, path, method="GET", body=None, headers=(), end=True):
        sid = self.conn.get_next_available_stream_id()
        hdrs = [(":method", method), (":scheme", "https"), (":authority", "localhost"),
                (":path", path)] + list(headers)
        self.conn.send_headers(sid, hdrs, end_stream=end and body is None)
        if body is not None:
            self.send_body(sid, body, end)
        self.flush()
        return sid

    def send_body(self, sid, body, end=True):
        if not body and end:
            self.conn.send_data(sid, b"", end_stream=True)
        view = memoryview(body)
        while view:
            window = min(self.conn.local_flow_control_window(sid),
                         self.conn.max_outbound_frame_size)
            if window <= 0:
                self.pump(0.5)
                continue
            chunk, view = view[:window], view[window:]
            self.conn.send_data(sid, bytes(chunk), end_stream=end and not view)
            self.flush()
        self.flush()

    def pump(self, timeout=5.0):
        """Reads once (up to `timeout`); returns False when the connection closed."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return True
        except (ssl.SSLError, OSError):
            data = b""
        if not data:
            self.closed = True
            return False
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            self.closed = True
            return False
        for ev in events:
            r = self.responses.setdefault(getattr(ev, "stream_id", 0),
                                          {"headers": None, "data": b"", "ended": False,
                                           "reset": None, "trailers": None, "interim": []})
            if isinstance(ev, h2.events.ResponseReceived):
                r["headers"] = dict(ev.headers)
            elif isinstance(ev, h2.events.InformationalResponseReceived):
                r["interim"].append(dict(ev.headers))
            elif isinstance(ev, h2.events.TrailersReceived):
                r["trailers"] = dict(ev.headers)
            elif isinstance(ev, h2.events.DataReceived):
                r["data"] += ev.data
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                r["ended"] = True
            elif isinstance(ev, h2.events.StreamReset):
                r["reset"] = ev.error_code
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.goaway = (ev.error_code, ev.last_stream_id)
        self.flush()
        return True

    def wait(self, predicate, timeout=15.0):
        deadline = time.monotonic() + timeout
        while not predicate() and time.monotonic() < deadline:
            if not self.pump(0.3):
                break
        return predicate()

    def done(self, sid):
        r = self.responses.get(sid)
        return r is not None and (r["ended"] or r["reset"] is not None)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class H2Case(StaplerCase):
    def setUp(self):
        super().setUp()
        self.clients = []

    def tearDown(self):
        for c in self.clients:  # before stapler stops: open streams would hold the drain
            c.close()
        super().tearDown()

    def h2(self, port=None, validate=True):
        c = H2Client(self, port or self.p.port, validate)
        self.clients.append(c)
        return c

    def nghttp(self, args, timeout=120):
        return subprocess.run([NGHTTP] + args, capture_output=True, timeout=timeout)


class H2ForwardingTest(H2Case):
    def setUp(self):
        super().setUp()
        self.p = self.proxy()
        self.url = "https://localhost:%d" % self.p.port

    def test_curl_gets_h2_by_default(self):
        r = self.curl(self.url + "/echo?x=1", ["--http2", "-w", "\\n%{http_version}", "-H",
                                                "X-Forwarded-For: 6.6.6.6", "-H", "Cookie: a=1",
                                                "-H", "Cookie: b=2"], check=True)
        body, _, version = r.stdout.rpartition(b"\n")
        self.assertEqual(version, b"2")
        doc = json.loads(body)
        h = {}
        for k, v in zip(doc["headers"][0::2], doc["headers"][1::2]):
            h.setdefault(k.lower(), []).append(v)
        self.assertEqual(doc["httpVersion"], "1.1")
        self.assertEqual(h["x-forwarded-for"], ["127.0.0.1"])
        self.assertEqual(h["x-forwarded-proto"], ["https"])
        self.assertEqual(h["host"], ["localhost:%d" % self.p.port])
        self.assertEqual(h["cookie"], ["a=1; b=2"])  # crumbs joined for HTTP/1.1
        self.wait_log(self.p, 'proto=h2 method=GET path="/echo?x=1" status=200')

    def test_many_streams_with_bodies_both_ways(self):
        c = self.h2()
        bodies = {}
        for i in range(60):
            body = os.urandom(1000 * (i + 1))
            headers = [("content-length", str(len(body)))] if i % 2 else []  # chunked or not
            sid = c.request("/echo?i=%d" % i, "POST", body, headers)
            bodies[sid] = body
        self.assertTrue(c.wait(lambda: all(c.done(s) for s in bodies), 60))
        for sid, body in bodies.items():
            r = c.responses[sid]
            self.assertEqual(r["headers"][":status"], "200")
            doc = json.loads(r["data"])
            self.assertEqual(doc["bodyLength"], len(body))
            self.assertEqual(doc["bodySha256"], hashlib.sha256(body).hexdigest())

    def test_parallel_large_downloads(self):
        n = (8 if SANITIZED else 40) * 1024 * 1024
        # nghttp: four downloads on one connection at once, checked by length.
        r = self.nghttp(["-s", "-n", "https://127.0.0.1:%d/bytes?n=%d" % (self.p.port, n),
                         "https://127.0.0.1:%d/bytes?n=%d&chunked=1" % (self.p.port, n),
                         "https://127.0.0.1:%d/bytes?n=%d&x=3" % (self.p.port, n),
                         "https://127.0.0.1:%d/bytes?n=%d&x=4" % (self.p.port, n)], 300)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.count(b"/bytes?n="), 4)  # the statistics list each one
        c = self.h2()
        sids = [c.request("/bytes?n=%d&s=%d" % (n // 4, i)) for i in range(4)]
        self.assertTrue(c.wait(lambda: all(c.done(s) for s in sids), 120))
        for sid in sids:
            self.assertEqual(hashlib.sha256(c.responses[sid]["data"]).hexdigest(),
                             pattern_sha256(n // 4))

    def test_slow_stream_does_not_stall_others(self):
        c = self.h2()
        big = c.request("/bytes?n=%d" % (64 * 1024 * 1024))  # never read beyond its window
        time.sleep(0.5)
        small = [c.request("/echo?i=%d" % i) for i in range(5)]
        self.assertTrue(c.wait(lambda: all(c.done(s) for s in small), 20))
        for s in small:
            self.assertEqual(c.responses[s]["headers"][":status"], "200")
        self.assertFalse(c.done(big))
        rss = self.p.rss_kib()
        self.assertLess(rss, (400 if SANITIZED else 60) * 1024)

    def test_reset_mid_body_then_go_on(self):
        c = self.h2()
        sid = c.request("/bytes?n=%d" % (200 * 1024 * 1024))
        c.wait(lambda: len(c.responses.get(sid, {}).get("data", b"")) > 100000, 10)
        c.conn.reset_stream(sid, error_code=8)  # CANCEL
        c.flush()
        again = c.request("/echo?after=reset")
        self.assertTrue(c.wait(lambda: c.done(again), 10))
        self.assertEqual(c.responses[again]["headers"][":status"], "200")
        self.wait_log(self.p, 'path="/bytes?n=%d" status=200' % (200 * 1024 * 1024))

    def test_head_and_no_body_statuses(self):
        c = self.h2()
        sids = {c.request("/bytes?n=100", "HEAD"): "200", c.request("/status/204"): "204",
                c.request("/status/304"): "304", c.request("/status/404"): "404"}
        self.assertTrue(c.wait(lambda: all(c.done(s) for s in sids), 10))
        for sid, status in sids.items():
            self.assertEqual(c.responses[sid]["headers"][":status"], status)
            self.assertEqual(c.responses[sid]["data"], b"" if status != "404" else b"ok")

    def test_backend_errors(self):
        c = self.h2()
        sids = [c.request("/close-early"), c.request("/garbage")]
        self.assertTrue(c.wait(lambda: all(c.done(s) for s in sids), 10))
        for sid in sids:
            self.assertEqual(c.responses[sid]["headers"][":status"], "502")
        broken = c.request("/reset")
        self.assertTrue(c.wait(lambda: c.done(broken), 10))
        self.assertIsNotNone(c.responses[broken]["reset"])  # broken off: the stream is reset
        ok = c.request("/echo")
        self.assertTrue(c.wait(lambda: c.done(ok), 10))
        self.assertEqual(c.responses[ok]["headers"][":status"], "200")


class H2TrailersAndInterimTest(H2Case):
    def test_response_trailers_and_interim(self):
        def backend(conn):
            while True:
                req = conn.read_head()
                conn.read_body(req)
                conn.send(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
                          b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: x-hop\r\n"
                          b"X-Hop: 1\r\nKeep-Alive: 5\r\n\r\n"
                          b"5\r\nhello\r\n0\r\nX-Checksum: abc\r\n\r\n")
        b = ScriptedBackend(backend)
        self.addCleanup(b.stop)
        self.p = self.proxy(backend=b)
        c = self.h2()
        sid = c.request("/t")
        self.assertTrue(c.wait(lambda: c.done(sid), 10))
        r = c.responses[sid]
        self.assertEqual(r["data"], b"hello")
        self.assertEqual(r["trailers"], {"x-checksum": "abc"})
        self.assertEqual(r["interim"][0][":status"], "103")
        for hop in ("connection", "x-hop", "keep-alive", "transfer-encoding"):
            self.assertNotIn(hop, r["headers"])


class H2WebSocketTest(H2Case):
    def test_websocket_over_extended_connect(self):
        port = free_port()
        ws = self.start(["/usr/bin/python3", os.path.join(HERE, "ws_echo.py"), str(port)],
                        "ws_echo")
        wait_until(lambda: "ready" in ws.log(), what="ws backend")
        ws.port = port
        self.p = self.proxy(backend=ws)
        c = self.h2()
        c.wait(lambda: c.conn.remote_settings.get(h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL)
               == 1, 5)
        sid = c.request("/socket/websocket", "CONNECT", end=False,
                        headers=[(":protocol", "websocket"), ("sec-websocket-version", "13")])
        self.assertTrue(c.wait(lambda: c.responses.get(sid, {}).get("headers"), 10))
        self.assertEqual(c.responses[sid]["headers"][":status"], "200")
        # A masked text frame, as a browser sends it.
        payload = b"hello over h2"
        mask = os.urandom(4)
        frame = bytes([0x81, 0x80 | len(payload)]) + mask + bytes(
            b ^ mask[i % 4] for i, b in enumerate(payload))
        c.conn.send_data(sid, frame)
        c.flush()
        self.assertTrue(c.wait(lambda: len(c.responses[sid]["data"]) >= 2 + len(payload), 10))
        echo = c.responses[sid]["data"]
        self.assertEqual(echo[0], 0x81)
        self.assertEqual(echo[2:2 + len(payload)], payload)
        # Plain HTTP keeps working on the same connection.
        other = c.request("/echo")
        self.assertTrue(c.wait(lambda: c.done(other), 10))


class H2HostileFramesTest(H2Case):
    def setUp(self):
        super().setUp()
        self.p = self.proxy(extra="limits: { max_header_bytes: 8192 }\n"
                                  "timeouts: { request_header: 2s, idle: 4s }\n")

    def frame(self, f):
        return f.serialize()

    def test_too_many_concurrent_streams_refused(self):
        c = self.h2()
        sids = [c.request("/echo?delay=1500&i=%d" % i) for i in range(130)]
        self.assertTrue(c.wait(lambda: all(c.done(s) for s in sids), 30))
        refused = [s for s in sids if c.responses[s]["reset"] == 7]  # REFUSED_STREAM
        ok = [s for s in sids if c.responses[s]["headers"]]
        self.assertGreaterEqual(len(refused), 30)
        self.assertEqual(len(ok) + len(refused), 130)

    def test_header_list_too_large_is_431(self):
        c = self.h2()
        sid = c.request("/echo", headers=[("x-big-%d" % i, "v" * 200) for i in range(60)])
        self.assertTrue(c.wait(lambda: c.done(sid), 10))
        self.assertEqual(c.responses[sid]["headers"][":status"], "431")

    def test_hpack_bomb(self):
        """A big value put into the dynamic table once, then referenced by one byte each time:
        the decoded list is what counts."""
        c = self.h2(validate=False)
        value = "b" * 4000
        first = c.request("/echo", headers=[("x-bomb", value)])
        self.assertTrue(c.wait(lambda: c.done(first), 10))
        sid = c.request("/echo", headers=[("x-bomb", value)] * 200)  # indexed, ~1 byte each
        self.assertTrue(c.wait(lambda: c.done(sid), 10))
        self.assertEqual(c.responses[sid]["headers"][":status"], "431")

    def test_rapid_reset(self):
        backend_before = self.backend_connections()
        c = self.h2()
        for i in range(3000):  # CVE-2023-44487: open and cancel as fast as possible
            sid = c.conn.get_next_available_stream_id()
            c.conn.send_headers(sid, [(":method", "GET"), (":scheme", "https"),
                                      (":authority", "localhost"), (":path", "/echo?delay=500")])
            c.conn.reset_stream(sid, 8)
            if i % 100 == 0:
                try:
                    c.flush()
                except OSError:
                    break
        try:
            c.flush()
        except OSError:
            pass
        c.wait(lambda: c.closed or c.goaway, 10)
        self.assertTrue(c.closed or c.goaway)
        if c.goaway:  # nghttp2's own limit says INTERNAL_ERROR, stapler's ENHANCE_YOUR_CALM
            self.assertIn(c.goaway[0], (2, 11))
        self.assertLess(self.backend_connections() - backend_before, 400)
        self.assertTrue(self.served())

    def test_continuation_flood(self):
        c = self.h2(validate=False)
        block = c.conn.encoder.encode([(":method", "GET"), (":scheme", "https"),
                                       (":authority", "localhost"), (":path", "/echo")])
        c.raw(HeadersFrame(1, data=block[:5]).serialize())
        try:
            for _ in range(2000):
                c.raw(ContinuationFrame(1, data=b"").serialize())
        except OSError:
            pass
        self.assertTrue(c.wait(lambda: c.closed or c.goaway, 10))
        self.assertTrue(self.served())

    def flood(self, make, count=20000):
        c = self.h2()
        sid = c.request("/echo?delay=3000", end=False)
        try:
            for i in range(count):
                c.raw(make(sid, i))
        except OSError:
            pass
        self.assertTrue(c.wait(lambda: c.closed or c.goaway, 15))
        if c.goaway:
            self.assertIn(c.goaway[0], (11, 1))  # ENHANCE_YOUR_CALM or PROTOCOL_ERROR
        self.assertTrue(self.served())
        self.wait_log(self.p, "closing" if c.goaway and c.goaway[0] == 11 else "HTTP/2")

    def test_settings_flood(self):
        self.flood(lambda sid, i: SettingsFrame(0, settings={4: 65535 + i % 2}).serialize())

    def test_ping_flood(self):
        self.flood(lambda sid, i: PingFrame(0, opaque_data=struct.pack(">Q", i)).serialize())

    def test_empty_data_flood(self):
        self.flood(lambda sid, i: DataFrame(sid, data=b"").serialize())

    def test_priority_flood(self):
        self.flood(lambda sid, i: PriorityFrame(sid, depends_on=0, stream_weight=16).serialize())

    def test_window_update_overflow(self):
        c = self.h2()
        c.raw(WindowUpdateFrame(0, window_increment=2 ** 31 - 1).serialize())
        c.raw(WindowUpdateFrame(0, window_increment=2 ** 31 - 1).serialize())
        self.assertTrue(c.wait(lambda: c.closed or c.goaway, 10))
        self.assertTrue(c.goaway is None or c.goaway[0] == 3)  # FLOW_CONTROL_ERROR

    def test_connection_specific_request_headers_refused(self):
        c = self.h2(validate=False)
        bad = [[("connection", "keep-alive")], [("transfer-encoding", "chunked")],
               [("upgrade", "h2c")], [("te", "gzip")], [("keep-alive", "5")],
               [("X-Upper", "1")], [("content-length", "5")]]
        sids = []
        for headers in bad:
            sids.append(c.request("/echo", headers=headers, end=True))
        self.assertTrue(c.wait(lambda: all(c.done(s) for s in sids), 10))
        for sid in sids:
            r = c.responses[sid]
            self.assertTrue(r["reset"] is not None or r["headers"][":status"] == "400", r)
        self.assertTrue(self.served())

    def test_first_request_and_header_timeouts(self):
        c = self.h2()
        t0 = time.monotonic()
        self.assertTrue(c.wait(lambda: c.closed or c.goaway, 10))
        self.assertLess(time.monotonic() - t0, 8)
        c2 = self.h2(validate=False)
        c2.request("/warmup")
        c2.wait(lambda: c2.done(1), 5)
        block = c2.conn.encoder.encode([(":method", "GET"), (":scheme", "https"),
                                        (":authority", "localhost"), (":path", "/echo")])
        c2.raw(HeadersFrame(3, data=block[:5]).serialize())  # END_HEADERS never comes
        t0 = time.monotonic()
        self.assertTrue(c2.wait(lambda: c2.closed or c2.goaway, 10))
        self.assertLess(time.monotonic() - t0, 8)

    def backend_connections(self):
        c = self.h2()
        sid = c.request("/stats")
        c.wait(lambda: c.done(sid), 10)
        c.close()
        return json.loads(c.responses[sid]["data"])["connections"]

    def served(self):
        c = self.h2()
        sid = c.request("/echo")
        ok = c.wait(lambda: c.done(sid), 10) and c.responses[sid]["headers"][":status"] == "200"
        c.close()
        return ok


class H2GoawayTest(H2Case):
    """nghttp as the client: it keeps processing a stream a graceful GOAWAY left running
    (python3-h2 stops reading frames after any GOAWAY)."""

    def slow_request_with(self, sig):
        proc = subprocess.Popen([NGHTTP, "-v", "https://127.0.0.1:%d/echo?delay=1500"
                                 % self.p.port], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(0.5)
        self.p.send_signal(sig)
        out, err = proc.communicate(timeout=20)
        out = out.decode(errors="replace")
        self.assertEqual(proc.returncode, 0, out[-2000:] + err.decode(errors="replace"))
        goaway = out.find("recv GOAWAY frame")
        self.assertGreaterEqual(goaway, 0, out[-2000:])
        self.assertIn("last_stream_id=13, error_code=NO_ERROR", out[goaway:goaway + 200])
        end = out.find("END_STREAM", out.find("recv DATA frame", goaway))
        self.assertGreater(end, goaway, "the stream in flight did not finish after GOAWAY")
        self.assertIn('"url":"/echo?delay=1500"', out)

    def test_reload_sends_goaway_and_finishes_streams(self):
        self.p = self.proxy()
        self.slow_request_with(signal.SIGHUP)
        self.wait_log(self.p, "reloaded: generation 2")

    def test_stop_sends_goaway_and_finishes_streams(self):
        self.p = self.proxy()
        self.slow_request_with(signal.SIGTERM)
        self.assertEqual(self.p.wait(15), 0)


class H2DesyncTest(H2Case):
    """The forwarding invariant for HTTP/2 streams: the backend receives exactly the requests
    stapler logged as forwarded, each with stapler's X-Forwarded-For and the body the client
    sent, judged by h11 on the backend's bytes; hostile streams included."""

    BODY = os.urandom(3000)

    def cases(self):
        body = self.BODY
        cl = [("content-length", "3000")]
        return [
            ("get", [], None, True),
            ("post-length", cl, body, True),
            ("post-chunked", [], body, True),
            ("post-empty", [], b"", True),
            ("length-short", [("content-length", "5000")], body, False),  # nghttp2 resets
            ("length-long", [("content-length", "10")], body, False),
            ("connection", [("connection", "close")], None, False),
            ("transfer-encoding", [("transfer-encoding", "chunked")], body, False),
            ("te-trailers", [("te", "trailers")], None, True),
            ("te-gzip", [("te", "gzip")], None, False),
            ("upgrade", [("upgrade", "h2c")], None, False),
            ("crlf-value", [("x-a", "a\r\nTransfer-Encoding: chunked")], None, False),
            ("nul-value", [("x-a", "a\x00b")], None, False),
            ("uppercase", [("X-Upper", "1")], None, False),
            ("xff-spoof", [("x-forwarded-for", "6.6.6.6"), ("forwarded", "for=6.6.6.6"),
                           ("x-forwarded-host", "evil")], None, True),
            ("cookies", [("cookie", "a=1"), ("cookie", "b=2")], None, True),
            ("host-conflict", [("host", "evil.example")], None, True),
            ("many-headers", [("x-h%d" % i, "v" * 20) for i in range(100)], None, True),
        ]

    def test_streams_forwarded_exactly(self):
        def backend(conn):
            while True:
                req = conn.read_head(timeout=10)
                got = conn.read_body(req)
                conn.respond(req, body=hashlib.sha256(got).hexdigest().encode())
        b = ScriptedBackend(backend)
        self.addCleanup(b.stop)
        self.p = self.proxy(backend=b)
        c = self.h2(validate=False)
        sent = {}
        for name, headers, body, _ in self.cases():
            path = "/r/%s/0" % name
            try:
                sid = c.request(path, "POST" if body is not None else "GET", body, headers)
            except h2.exceptions.ProtocolError:
                continue
            sent[sid] = (path, body)
        c.wait(lambda: all(c.done(s) for s in sent), 20)
        c.close()
        time.sleep(0.3)
        b.wait_idle(2)
        from test_desync import backend_requests, access_lines
        received, problems = [], []
        for conn in b.conns:
            reqs, err = backend_requests(bytes(conn.received))
            if err:
                problems.append("backend connection %d: %s" % (conn.index, err))
            received += reqs
        logged = {l["path"]: l for l in access_lines(self.p.log())}
        for method, target, headers in received:
            l = logged.get(target)
            if not l or not l["forwarded"]:
                problems.append("the backend got %s, not logged as forwarded" % target)
            xffs = [v for k, v in headers if k == "x-forwarded-for"]
            if xffs != ["127.0.0.1"] or any(k in ("forwarded", "x-forwarded-host")
                                             for k, _ in headers):
                problems.append("%s reached the backend with forwarding fields %r" % (target, headers))
            if target == "/r/cookies/0":
                self.assertIn(("cookie", "a=1; b=2"), headers)
            if target == "/r/host-conflict/0":
                self.assertEqual([v for k, v in headers if k == "host"], ["localhost"])
        got = [t for _, t, _ in received]
        for name, headers, body, expect_forwarded in self.cases():
            path = "/r/%s/0" % name
            l = logged.get(path)
            if expect_forwarded:
                self.assertIn(path, got, name)
                sid = [s for s, v in sent.items() if v[0] == path][0]
                r = c.responses[sid]
                self.assertEqual(r["headers"][":status"], "200", name)
                self.assertEqual((name, r["data"].decode()),
                                 (name, hashlib.sha256(body or b"").hexdigest()))
            elif l and not l["forwarded"]:
                self.assertNotIn(path, got, name)
        self.assertEqual(problems, [], "\n".join(problems))
