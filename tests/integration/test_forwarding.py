"""The forwarding rules an attacker tests, each with the attack that once broke it: hostile
clients and hostile (scripted, real-HTTP) backends against stapler, judged from outside: what
the backend's sockets received, and what the client's socket received."""
import json
import os
import socket
import ssl
import struct
import subprocess
import threading
import time

from harness import (StaplerCase, OPENSSL, free_port, read_http_response, wait_until,
                     yaml_config)
from scripted_backend import ScriptedBackend, Closed, serve_keepalive


def recv_all(sock, timeout=10.0):
    """Reads until the peer closes (or `timeout` passes without data)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return data
            data += chunk
    except (socket.timeout, ConnectionResetError, ssl.SSLError):
        return data


def recv_for(sock, seconds):
    """Reads whatever arrives within `seconds` (stops early at EOF)."""
    end = time.monotonic() + seconds
    data = b""
    while time.monotonic() < end:
        sock.settimeout(max(0.01, end - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except (socket.timeout, ssl.SSLWantReadError):
            continue
        except (ConnectionResetError, ssl.SSLError):
            break
        if not chunk:
            break
        data += chunk
    return data


class ScriptedCase(StaplerCase):
    def scripted(self, behaviour, extra="", backend_extra=""):
        b = ScriptedBackend(behaviour)
        self.addCleanup(b.stop)
        self.p = self.proxy(backend=b, extra=extra, backend_extra=backend_extra)
        return b

    def all_received(self, backend):
        backend.wait_idle(3)
        return b"".join(backend.received())

    def assertNoScriptErrors(self, backend):
        self.assertEqual(backend.errors, [])


class LeftoverBodyTest(ScriptedCase):
    """A backend answering before the request body and closing (Cowboy does, for a body it does
    not read) must not turn the rest of the body into a request on a new connection."""

    SMUGGLED = (b"GET /smuggled HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 6.6.6.6\r\n"
                b"Content-Length: 0\r\n\r\n")

    def answer_early_and_close(self, conn):
        req = conn.read_head()
        if req.target.startswith("/upload"):
            # Cowboy: a 413/401/404 for a body it will not read, then it closes.
            headers = () if "noclose" in req.target else ("connection: close",)
            conn.send(b"HTTP/1.1 413 Payload Too Large\r\nX-Answer: %s\r\ncontent-length: 0\r\n"
                      % req.target.encode() + "".join(h + "\r\n" for h in headers).encode()
                      + b"\r\n")
            conn.close()
            return
        conn.read_body(req)
        conn.respond(req)
        serve_keepalive(conn)

    def run_upload(self, target, chunked):
        b = self.scripted(self.answer_early_and_close)
        body = self.SMUGGLED * 40
        with self.tls_connect(self.p.port) as s:
            if chunked:
                s.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                          % target)
            else:
                s.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                          % (target, len(body)))
            time.sleep(0.3)  # the backend has answered and closed by now
            try:
                for i in range(0, len(body), 700):
                    piece = body[i:i + 700]
                    s.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                if chunked:
                    s.sendall(b"0\r\n\r\n")
                s.sendall(b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                pass
            got = recv_all(s, timeout=5)
        self.assertTrue(got.startswith(b"HTTP/1.1 413"), got[:200])
        received = self.all_received(b)
        self.assertNotIn(b"/smuggled", received)
        self.assertNotIn(b"6.6.6.6", received)
        self.assertNoScriptErrors(b)
        return got, received

    def test_content_length_body_with_close(self):
        self.run_upload(b"/upload", chunked=False)

    def test_content_length_body_without_close_header(self):
        self.run_upload(b"/upload-noclose", chunked=False)

    def test_chunked_body(self):
        self.run_upload(b"/upload", chunked=True)

    def test_chunked_body_without_close_header(self):
        self.run_upload(b"/upload-noclose", chunked=True)

    def test_small_remaining_body_is_drained_and_connection_kept(self):
        """As nginx does: a few remaining Content-Length bytes are read and dropped, and the
        client's next request is served."""
        b = self.scripted(self.answer_early_and_close)
        with self.tls_connect(self.p.port) as s:
            s.sendall(b"POST /upload-noclose HTTP/1.1\r\nHost: x\r\nContent-Length: 200\r\n\r\n")
            status, headers, _, rest = read_http_response(s)
            self.assertEqual(status, 413)
            s.sendall(self.SMUGGLED + b"x" * (200 - len(self.SMUGGLED)))
            s.sendall(b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
            status, headers, _, _ = read_http_response(s, rest)
            self.assertEqual(status, 200)
            self.assertEqual(headers.get("x-answer"), "/next")
        self.assertNotIn(b"/smuggled", self.all_received(b))


class UpgradeTest(ScriptedCase):
    """Only the upgrades in backend.upgrades become tunnels."""

    def accept_any_upgrade(self, conn):
        while True:
            req = conn.read_head()
            conn.read_body(req)
            up = req.header("upgrade")
            if up:
                conn.send(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                          b"Upgrade: %s\r\n\r\n" % up.split(",")[0].strip().encode())
                conn.drain(timeout=3)  # everything after is the new protocol: recorded
                return
            conn.respond(req, body=json.dumps(req.headers).encode())

    def test_h2c_upgrade_is_stripped(self):
        b = self.scripted(self.accept_any_upgrade)
        with self.tls_connect(self.p.port) as s:
            s.sendall(b"GET /h2c HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                      b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n")
            status, _, body, rest = read_http_response(s)
            self.assertEqual(status, 200)
            seen = dict(json.loads(body))
            self.assertNotIn("upgrade", seen)
            self.assertNotIn("http2-settings", seen)
            # The connection is still HTTP/1.1, parsed and logged by stapler.
            s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            got = recv_all(s, timeout=5)
            self.assertNotIn(b"HTTP/1.1 101", got)
        self.assertNotIn(b"PRI * HTTP/2.0", self.all_received(b))

    def test_unknown_upgrade_token_is_stripped(self):
        self.scripted(self.accept_any_upgrade)
        with self.tls_connect(self.p.port) as s:
            s.sendall(b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: foo/2\r\n\r\n")
            status, _, body, _ = read_http_response(s)
            self.assertEqual(status, 200)
            self.assertNotIn("upgrade", dict(json.loads(body)))

    def test_websocket_upgrade_still_tunnels(self):
        b = self.scripted(self.accept_any_upgrade)
        with self.tls_connect(self.p.port) as s:
            s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                      b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
            head = b""
            while b"\r\n\r\n" not in head:
                head += s.recv(4096)
            self.assertTrue(head.startswith(b"HTTP/1.1 101"), head)
            s.sendall(b"raw websocket bytes")
            time.sleep(0.5)
        self.assertIn(b"raw websocket bytes", self.all_received(b))

    def test_101_for_another_protocol_is_502(self):
        def wrong_101(conn):
            conn.read_head()
            conn.send(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
            conn.drain(timeout=3)
        b = self.scripted(wrong_101)
        with self.tls_connect(self.p.port) as s:
            s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                      b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
            got = recv_all(s, timeout=5)
            self.assertTrue(got.startswith(b"HTTP/1.1 502"), got[:100])
        self.wait_log(self.p, "502")

    def test_connection_named_fields_are_stripped(self):
        self.scripted(self.accept_any_upgrade)
        with self.tls_connect(self.p.port) as s:
            s.sendall(b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, X-Secret, te\r\n"
                      b"X-Secret: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n"
                      b"Proxy-Connection: keep-alive\r\n\r\n")
            status, _, body, _ = read_http_response(s)
            seen = dict(json.loads(body))
            for name in ("x-secret", "keep-alive", "connection", "te", "proxy-connection"):
                self.assertNotIn(name, seen)


class BodilessResponseTest(ScriptedCase):
    """Responses to HEAD, and 1xx/204/304, end at the blank line whatever they announce."""

    def lying_backend(self, conn):
        while True:
            req = conn.read_head()
            conn.read_body(req)
            t = req.target.encode()
            if req.target == "/304":  # Cowboy sends a content-length with its 304s
                conn.send(b"HTTP/1.1 304 Not Modified\r\nX-Answer: %s\r\ncontent-length: 1234\r\n\r\n" % t)
            elif req.target == "/204":  # a body after a 204 must not become a response
                conn.send(b"HTTP/1.1 204 No Content\r\nX-Answer: %s\r\nContent-Length: 43\r\n\r\n" % t
                          + b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\ninjected")
            elif req.target == "/head" and req.method == "HEAD":
                conn.send(b"HTTP/1.1 200 OK\r\nX-Answer: %s\r\nTransfer-Encoding: chunked\r\n\r\n" % t)
            elif req.target == "/interim":
                conn.send(b"HTTP/1.1 100 Continue\r\n\r\n")
                conn.send(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n")
                conn.respond(req)
            else:
                conn.respond(req)

    def exchange(self, s, method, target, rest):
        s.sendall(b"%s %s HTTP/1.1\r\nHost: x\r\n\r\n" % (method, target))
        if method == b"HEAD":
            while b"\r\n\r\n" not in rest:
                rest += s.recv(4096)
            head, _, rest = rest.partition(b"\r\n\r\n")
            return head, rest
        status, headers, body, rest = read_http_response(s, rest)
        return (status, headers, body), rest

    def test_304_with_content_length_then_next_request(self):
        self.scripted(self.lying_backend)
        with self.tls_connect(self.p.port, timeout=5) as s:
            (status, _, _), rest = self.exchange(s, b"GET", b"/304", b"")
            self.assertEqual(status, 304)
            t0 = time.monotonic()
            (status, headers, _), rest = self.exchange(s, b"GET", b"/after", rest)
            self.assertEqual((status, headers.get("x-answer")), (200, "/after"))
            self.assertLess(time.monotonic() - t0, 3)

    def test_204_body_never_becomes_a_response(self):
        self.scripted(self.lying_backend)
        with self.tls_connect(self.p.port, timeout=5) as s:
            (status, _, _), rest = self.exchange(s, b"GET", b"/204", b"")
            self.assertEqual(status, 204)
            (status, headers, body), rest = self.exchange(s, b"GET", b"/after", rest)
            self.assertEqual((status, headers.get("x-answer"), body), (200, "/after", b"ok"))

    def test_head_response_with_chunked_header(self):
        self.scripted(self.lying_backend)
        with self.tls_connect(self.p.port, timeout=5) as s:
            head, rest = self.exchange(s, b"HEAD", b"/head", b"")
            self.assertIn(b"200", head.split(b"\r\n")[0])
            (status, headers, _), rest = self.exchange(s, b"GET", b"/after", rest)
            self.assertEqual((status, headers.get("x-answer")), (200, "/after"))

    def test_interim_responses_relayed_before_final(self):
        self.scripted(self.lying_backend)
        with self.tls_connect(self.p.port, timeout=5) as s:
            s.sendall(b"GET /interim HTTP/1.1\r\nHost: x\r\n\r\n")
            got = b""
            while got.count(b"\r\n\r\n") < 3 or not got.endswith(b"ok"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
            self.assertTrue(got.startswith(b"HTTP/1.1 100 Continue\r\n"), got)
            self.assertIn(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n", got)
            self.assertIn(b"HTTP/1.1 200 ", got)
            self.assertTrue(got.endswith(b"ok"))


class ExtraBytesTest(ScriptedCase):
    def test_junk_on_an_idle_connection_closes_it(self):
        def late(conn):
            req = conn.read_head()
            conn.respond(req)
            time.sleep(0.3)  # idle in the pool by now
            conn.send(b"HTTP/1.1 200 OK\r\nX-Answer: forged\r\nContent-Length: 0\r\n\r\n")
            serve_keepalive(conn)
        b = self.scripted(late)
        with self.tls_connect(self.p.port, timeout=5) as s:
            s.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
            _, h1, _, rest = read_http_response(s)
            time.sleep(0.8)
            s.sendall(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
            _, h2, _, _ = read_http_response(s, rest)
        self.assertEqual((h1.get("x-answer"), h2.get("x-answer")), ("/a", "/b"))
        self.assertEqual(len(b.received()), 2)

    def test_complete_response_delivered_despite_trailing_bytes(self):
        def extra(conn):
            req = conn.read_head()
            conn.send(b"HTTP/1.1 200 OK\r\nX-Answer: %s\r\nContent-Length: 2\r\n\r\nokEXTRA BYTES"
                      % req.target.encode())
            serve_keepalive(conn)
        b = self.scripted(extra)
        with self.tls_connect(self.p.port, timeout=5) as s:
            s.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
            status, headers, body, rest = read_http_response(s)
            self.assertEqual((status, body), (200, b"ok"))
            s.sendall(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
            status, headers, body, _ = read_http_response(s, rest)
            self.assertEqual((status, headers.get("x-answer")), (200, "/b"))
        self.assertGreaterEqual(len(b.received()), 2)  # a new backend connection for /b

    def test_two_responses_for_one_request(self):
        def two(conn):
            req = conn.read_head()
            conn.send(b"HTTP/1.1 200 OK\r\nX-Answer: %s\r\nContent-Length: 2\r\n\r\nok"
                      b"HTTP/1.1 200 OK\r\nX-Answer: forged\r\nContent-Length: 6\r\n\r\nforged"
                      % req.target.encode())
            serve_keepalive(conn)
        self.scripted(two)
        with self.tls_connect(self.p.port, timeout=5) as s:
            s.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
            _, h1, _, rest = read_http_response(s)
            _, h2, _, _ = read_http_response(s, rest)
            self.assertEqual((h1.get("x-answer"), h2.get("x-answer")), ("/a", "/b"))


class RequestStrictnessTest(ScriptedCase):
    def echo_backend(self, conn):
        while True:
            req = conn.read_head()
            body = conn.read_body(req)
            conn.respond(req, body=json.dumps({"target": req.target, "headers": req.headers,
                                               "body": body.decode("latin-1")}).encode())

    def refused(self, request, status=400):
        with self.tls_connect(self.p.port, timeout=5) as s:
            s.sendall(request)
            got = recv_all(s, timeout=5)
        self.assertTrue(got.startswith(b"HTTP/1.1 %d" % status), (request, got[:200]))

    def test_refusals(self):
        b = self.scripted(self.echo_backend)
        self.refused(b"POST /x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        self.refused(b"GET /x HTTP/2.0\r\nHost: x\r\n\r\n", 505)
        self.refused(b"GET /x HTTP/1.2\r\nHost: x\r\n\r\n", 505)
        self.refused(b"GET /a\x7fb HTTP/1.1\r\nHost: x\r\n\r\n")
        self.refused(b"GET /a\x01b HTTP/1.1\r\nHost: x\r\n\r\n")
        for host in (b"a b", b"a/b", b"user@x", b"x:99999", b"x:1:2", b"[::1", b"", b"x,y"):
            self.refused(b"GET /x HTTP/1.1\r\nHost: %s\r\n\r\n" % host)
        self.assertEqual(self.all_received(b), b"")

    def test_absolute_form_replaces_host(self):
        self.scripted(self.echo_backend)
        with self.tls_connect(self.p.port, timeout=5) as s:
            s.sendall(b"GET http://app.example:8080/p?q=1 HTTP/1.1\r\nHost: other.example\r\n\r\n")
            status, _, body, _ = read_http_response(s)
        self.assertEqual(status, 200)
        doc = json.loads(body)
        self.assertEqual(doc["target"], "/p?q=1")
        hosts = [v for k, v in doc["headers"] if k == "host"]
        self.assertEqual(hosts, ["app.example:8080"])

    def test_trailers_carry_no_framing_or_forwarding_fields(self):
        b = self.scripted(self.echo_backend)
        with self.tls_connect(self.p.port, timeout=5) as s:
            s.sendall(b"POST /t HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"2\r\nhi\r\n0\r\nX-Check: 1\r\nHost: evil\r\nContent-Length: 5\r\n"
                      b"Connection: close\r\nX-Forwarded-For: 6.6.6.6\r\n"
                      b"Forwarded: for=6.6.6.6\r\n\r\n")
            status, _, _, _ = read_http_response(s)
            self.assertEqual(status, 200)
        received = self.all_received(b)
        trailer = received.split(b"\r\n0\r\n", 1)[1]
        self.assertIn(b"X-Check: 1", trailer)
        for bad in (b"evil", b"Content-Length", b"Connection", b"6.6.6.6"):
            self.assertNotIn(bad, trailer)

    def test_transfer_encoding_in_trailers_refused(self):
        b = self.scripted(self.echo_backend)
        with self.tls_connect(self.p.port, timeout=5) as s:
            s.sendall(b"POST /t HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"2\r\nhi\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
            got = recv_all(s, timeout=5)
        self.assertTrue(got.startswith(b"HTTP/1.1 400"), got[:100])
        received = self.all_received(b)
        self.assertNotIn(b"\r\n0\r\n", received)  # the request never ended at the backend
        self.assertNotIn(b"/smuggled", received)


class FirstRequestTimeoutTest(StaplerCase):
    def test_idle_after_handshake_counts_as_header_time(self):
        p = self.proxy(extra="timeouts: { handshake: 2s, request_header: 1s, idle: 60s }\n")
        with self.tls_connect(p.port) as s:
            t0 = time.monotonic()
            got = recv_all(s, timeout=20)
            self.assertLess(time.monotonic() - t0, 10)
            self.assertTrue(got == b"" or got.startswith(b"HTTP/1.1 408"), got)


def pp2(src, sport, dst, dport, family=0x11, body=None):
    sig = b"\r\n\r\n\x00\r\nQUIT\n"
    if body is None:
        body = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    return sig + b"\x21" + bytes([family]) + struct.pack("!H", len(body)) + body


class ProxyProtocolRulesTest(StaplerCase):
    def setUp(self):
        super().setUp()
        backend = self.start_backend()
        self.port = free_port()
        text = yaml_config(self.port, "127.0.0.1:%d" % backend.port, [self.pki.rsa, self.pki.ecdsa],
                           "workers: 1\nocsp:\n  fetch: false\n")
        text = text.replace("  - address: 127.0.0.1:%d\n" % self.port,
                            "  - address: 127.0.0.1:%d\n    proxy_protocol: true\n" % self.port)
        self.p = self.start_stapler(text)

    def through(self, header):
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        raw.sendall(header)
        s = self.tls_context().wrap_socket(raw, server_hostname="localhost")
        s.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, body, _ = read_http_response(s)
        s.close()
        self.assertEqual(status, 200)
        doc = json.loads(body)
        return dict(zip([k.lower() for k in doc["headers"][0::2]], doc["headers"][1::2]))

    def test_forwarded_port_is_the_balancers(self):
        h = self.through(b"PROXY TCP4 203.0.113.9 192.0.2.1 40000 443\r\n")
        self.assertEqual((h["x-forwarded-for"], h["x-forwarded-port"]), ("203.0.113.9", "443"))
        h = self.through(pp2("198.51.100.20", 40001, "192.0.2.1", 8443))
        self.assertEqual((h["x-forwarded-for"], h["x-forwarded-port"]), ("198.51.100.20", "8443"))

    def test_v1_with_nul_refused(self):
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
            s.sendall(b"PROXY TCP4 203.0.113.9 192.0.2.1 40000 443\x00junk\r\n")
            self.assertEqual(recv_all(s, 5), b"")
        self.wait_log(self.p, "PROXY v1")

    def test_v2_unix_accepted_with_unknown_addresses(self):
        body = b"/tmp/src".ljust(108, b"\x00") + b"/tmp/dst".ljust(108, b"\x00")
        h = self.through(pp2(None, 0, None, 0, family=0x31, body=body))
        self.assertEqual(h["x-forwarded-for"], "127.0.0.1")  # the socket's own peer


class TcpHalfCloseTest(StaplerCase):
    def test_backend_fin_leaves_client_to_backend_open(self):
        def half(conn):
            conn.send(b"hello from backend")
            conn.shutdown_write()  # the backend is done talking, not listening
            deadline = time.monotonic() + 5
            while b"bye" not in conn.received and time.monotonic() < deadline:
                conn._recv(0.5)
        b = ScriptedBackend(half)
        self.addCleanup(b.stop)
        p = self.proxy(backend=b, backend_extra="mode: tcp\n")
        with self.tls_connect(p.port) as s:
            got = b""
            while b"hello from backend" not in got:
                got += s.recv(100)
            try:
                rest = s.recv(100)  # close_notify from stapler: the backend's write side ended
            except ssl.SSLError:
                rest = b""
            self.assertEqual(rest, b"")
            s.sendall(b"client still talking, bye")
            time.sleep(0.5)
        b.wait_idle(5)
        self.assertIn(b"client still talking, bye", b"".join(b.received()))


class TicketTimingTest(StaplerCase):
    def test_ticket_sent_right_after_handshake(self):
        p = self.proxy()
        sess = os.path.join(self.tmp, "sess.pem")
        # No request at all: the ticket must arrive anyway.
        proc = subprocess.Popen([OPENSSL, "s_client", "-connect", "127.0.0.1:%d" % p.port,
                                 "-servername", "localhost", "-sess_out", sess, "-quiet"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        wait_until(lambda: os.path.exists(sess) and os.path.getsize(sess) > 0, timeout=5,
                   what="a session with a ticket")
        proc.kill()
        proc.wait()
        out = subprocess.run([OPENSSL, "sess_id", "-in", sess, "-text", "-noout"],
                             capture_output=True).stdout
        self.assertIn(b"TLS session ticket", out)


class AdminHeadTest(StaplerCase):
    def test_head_has_no_body(self):
        admin = free_port()
        p = self.proxy(extra="admin:\n  address: 127.0.0.1:%d\n" % admin)
        wait_until(lambda: "admin endpoint" in p.log(), what="admin")
        with socket.create_connection(("127.0.0.1", admin), timeout=5) as s:
            s.sendall(b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            got = recv_for(s, 1.5)
        head, _, body = got.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200"), got)
        self.assertEqual(body, b"")


class KeepAliveRaceTest(ScriptedCase):
    """The backend closes an idle kept-alive connection just as the next request arrives."""

    def close_on_second(self, conn):
        req = conn.read_head()
        conn.read_body(req)
        conn.respond(req)
        conn.read_head()  # the second request on this connection: close instead of answering
        conn.close()

    def test_idempotent_request_retried(self):
        b = self.scripted(self.close_on_second)
        with self.tls_connect(self.p.port, timeout=10) as s:
            s.sendall(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n")
            status, _, _, rest = read_http_response(s)
            s.sendall(b"GET /two HTTP/1.1\r\nHost: x\r\n\r\n")
            status, headers, _, _ = read_http_response(s, rest)
            self.assertEqual((status, headers.get("x-answer")), (200, "/two"))
        self.wait_log(self.p, "path=/two status=200")

    def test_post_not_retried(self):
        b = self.scripted(self.close_on_second)
        with self.tls_connect(self.p.port, timeout=10) as s:
            s.sendall(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n")
            status, _, _, rest = read_http_response(s)
            s.sendall(b"POST /two HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
            status, headers, _, _ = read_http_response(s, rest)
            self.assertEqual(status, 502)
        received = self.all_received(b)
        self.assertEqual(received.count(b"POST /two"), 1)


class SlowConnectTest(StaplerCase):
    """A request body bigger than what stapler queues for a backend connection (256 KiB),
    arriving while that connection is still being set up: the backend's accept queue is full,
    so the connect completes only after a SYN retry (about a second). Everything queued goes
    out at once when it completes, and reading the client must resume then."""

    def test_large_body_while_the_backend_is_still_connecting(self):
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(0)
        bport = lsock.getsockname()[1]
        filler = socket.create_connection(("127.0.0.1", bport), timeout=2)  # the queue is full
        port = free_port()
        self.start_stapler(yaml_config(port, "127.0.0.1:%d" % bport, [self.pki.ecdsa],
                                       "workers: 1\nocsp:\n  fetch: false\n"))
        got = {}

        def backend():
            time.sleep(0.5)  # stapler's SYN has been dropped by now
            lsock.accept()[0].close()
            c, _ = lsock.accept()
            c.settimeout(15)
            data = b""
            with c:
                while True:
                    d = c.recv(1 << 20)
                    if not d:
                        return
                    data += d
                    head, _, body = data.partition(b"\r\n\r\n")
                    got["body"] = len(body)
                    if len(body) >= size:
                        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                        return

        size = 1 << 20
        t = threading.Thread(target=backend, daemon=True)
        t.start()
        try:
            with self.tls_connect(port) as s:
                s.settimeout(20)
                s.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
                s.sendall(os.urandom(size))
                status, _, body, _ = read_http_response(s)
            self.assertEqual((status, body), (200, b"ok"), got)
            self.assertEqual(got.get("body"), size)
        finally:
            filler.close()
            lsock.close()
            t.join(5)
