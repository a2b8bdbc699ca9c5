"""Clients that misbehave: garbage, plaintext, stalls, slowloris, floods, abrupt exits. Each is
closed with a log line while other clients keep being served."""
import os
import socket
import ssl
import threading
import time

from harness import StaplerCase, free_port, read_http_response, HERE
from test_runtime import http_get

CLIENTHELLO = os.path.join(HERE, "..", "data", "clienthello", "openssl-default.bin")


class BadClientTest(StaplerCase):
    def setUp(self):
        super().setUp()
        self.p = self.proxy(extra="timeouts: { handshake: 1s, request_header: 1s, idle: 2s }\n")

    def still_serving(self):
        with self.tls_connect(self.p.port) as s:
            s.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
            status, _, _, _ = read_http_response(s)
            self.assertEqual(status, 200)

    def read_until_closed(self, sock, limit=30):
        sock.settimeout(limit)
        data = b""
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    return data
                data += chunk
        except ConnectionResetError:
            return data

    def test_garbage_instead_of_client_hello(self):
        with socket.create_connection(("127.0.0.1", self.p.port)) as s:
            s.sendall(os.urandom(2048))
            self.read_until_closed(s)
        self.still_serving()
        self.wait_log(self.p, "TLS handshake failed")

    def test_plain_http_on_tls_port(self):
        with socket.create_connection(("127.0.0.1", self.p.port)) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            data = self.read_until_closed(s)
            self.assertNotIn(b"HTTP/1.1", data)
        self.still_serving()

    def test_stalled_handshakes_time_out_without_blocking_others(self):
        with open(CLIENTHELLO, "rb") as f:
            hello = f.read()
        silent = socket.create_connection(("127.0.0.1", self.p.port))
        partial = socket.create_connection(("127.0.0.1", self.p.port))
        partial.sendall(hello[:60])
        t0 = time.monotonic()
        self.still_serving()
        for s in (silent, partial):
            self.assertEqual(self.read_until_closed(s), b"")
            s.close()
        self.assertLess(time.monotonic() - t0, 10)
        self.wait_log(self.p, "not completed within timeouts.handshake")

    def test_slowloris_gets_408(self):
        s = self.tls_connect(self.p.port)
        s.sendall(b"GET /echo HTTP/1.1\r\n")
        t0 = time.monotonic()
        got = b""
        s.settimeout(0.25)
        try:
            while time.monotonic() - t0 < 10:
                try:
                    s.sendall(b"X")
                except OSError:
                    break
                try:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    got += chunk
                except socket.timeout:
                    pass
        finally:
            s.close()
        self.assertTrue(got.startswith(b"HTTP/1.1 408"), got)
        self.still_serving()

    def test_idle_keep_alive_closed(self):
        with self.tls_connect(self.p.port) as s:
            s.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
            status, _, _, rest = read_http_response(s)
            self.assertEqual(status, 200)
            s.settimeout(10)
            self.assertEqual(s.recv(10), b"")  # close_notify, then EOF

    def test_client_vanishes_mid_download(self):
        for _ in range(5):
            s = self.tls_connect(self.p.port)
            s.sendall(b"GET /bytes?n=100000000 HTTP/1.1\r\nHost: x\r\n\r\n")
            s.recv(100000)
            s.close()
        with socket.create_connection(("127.0.0.1", self.p.port)) as raw:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        self.still_serving()

    def test_many_concurrent_clients(self):
        errors = []

        def one(i):
            try:
                with self.tls_connect(self.p.port) as s:
                    s.sendall(b"GET /echo?%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
                    status, _, body, _ = read_http_response(s)
                    if status != 200 or b"/echo?%d" % i not in body:
                        errors.append((i, status))
            except Exception as e:  # noqa: BLE001 - collected and reported below
                errors.append((i, repr(e)))

        threads = [threading.Thread(target=one, args=(i,)) for i in range(200)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])


class LimitsTest(StaplerCase):
    def test_max_connections_counts_every_worker(self):
        """The limit is on the process: each worker counts its own connections and the check
        sums them all, so two workers together hold exactly max_connections."""
        admin = free_port()
        p = self.proxy(extra="workers: 2\nlimits: { max_connections: 4 }\n"
                             "admin:\n  address: 127.0.0.1:%d\n" % admin)
        held, refused = [], 0
        for _ in range(10):  # SO_REUSEPORT spreads these over both workers
            try:
                s = self.tls_connect(p.port, timeout=5)
                s.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
                self.assertEqual(read_http_response(s)[0], 200)
                held.append(s)
            except (OSError, ssl.SSLError):
                refused += 1
        try:
            self.assertEqual((len(held), refused), (4, 6))
            metrics = http_get(admin, "/metrics")[1]
            self.assertIn("\nstapler_connections_open 4\n", metrics)
            self.assertIn("\nstapler_connections_rejected_total 6\n", metrics)
        finally:
            for s in held:
                s.close()

    def test_max_connections(self):
        p = self.proxy(extra="workers: 1\nlimits: { max_connections: 3 }\n")
        held = [self.tls_connect(p.port) for _ in range(3)]
        extra = socket.create_connection(("127.0.0.1", p.port))
        extra.settimeout(10)
        self.assertEqual(extra.recv(10), b"")  # refused at once
        extra.close()
        held[0].close()
        time.sleep(0.2)
        with self.tls_connect(p.port) as s:
            s.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertEqual(read_http_response(s)[0], 200)
        for s in held[1:]:
            s.close()
