"""Production runtime: zero-downtime reload, session resumption, the PROXY protocol both ways,
the admin endpoint, access logs and logging that never blocks."""
import json
import os
import re
import signal
import socket
import ssl
import struct
import subprocess
import threading
import time
import urllib.request

from harness import (StaplerCase, HERE, OPENSSL, STAPLER, SANITIZED, free_port,
                     read_http_response, wait_until, yaml_config)


def http_get(port, path):
    """GET over plain HTTP (the admin endpoint). Returns (status, body)."""
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


class RuntimeCase(StaplerCase):
    def config(self, port, certs=None, extra="", backend=None, listen_extra=""):
        backend = backend or self.backend
        text = yaml_config(port, "127.0.0.1:%d" % backend.port,
                           certs or [self.pki.rsa, self.pki.ecdsa],
                           extra + "ocsp:\n  fetch: false\n")
        return text.replace("  - address: 127.0.0.1:%d\n" % port,
                            "  - address: 127.0.0.1:%d\n%s" % (port, listen_extra), 1)

    def request(self, port, path=b"/echo", servername="localhost"):
        with self.tls_connect(port, servername) as s:
            s.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            return read_http_response(s)

    def reload(self, p, generation):
        p.send_signal(signal.SIGHUP)
        start = getattr(p, "mark", 0)
        wait_until(lambda: "generation %d" % generation in p.log() or "reload refused"
                   in p.log()[start:] or not p.alive(), what="reload")

    def mark(self, p):
        p.mark = len(p.log())


class ReloadTest(RuntimeCase):
    def setUp(self):
        super().setUp()
        self.backend = self.start_backend()
        self.port = free_port()

    def test_reload_new_certificate_keeps_open_connections(self):
        p = self.start_stapler(self.config(self.port, [self.pki.ecdsa]))
        self.mark(p)
        old = self.tls_connect(self.port)
        old.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, _, rest = read_http_response(old)
        self.assertEqual(status, 200)
        self.write("stapler.yaml", self.config(self.port, [self.pki.ecdsa, self.pki.other_ecdsa]))
        self.reload(p, 2)
        self.wait_log(p, "reloaded: generation 2, 2 certificate(s)")
        rc, out = self.s_client(self.port, servername="other.example")
        self.assertEqual(self.served_subject(out), "other-ecdsa", out)
        old.sendall(b"GET /echo?after HTTP/1.1\r\nHost: x\r\n\r\n")  # the old connection lives on
        status, _, body, _ = read_http_response(old, rest)
        self.assertEqual(status, 200)
        self.assertIn(b"after", body)
        old.close()

    def test_broken_reload_changes_nothing(self):
        p = self.start_stapler(self.config(self.port, [self.pki.ecdsa]))
        good = open(p.config_path).read()
        for broken in ("listen: [\n", good.replace(self.pki.ecdsa["key"], "/nonexistent.key"),
                       good + "tls:\n  ticket_key_file: %s\n" % self.write("bad.keys", "xyz\n")):
            self.mark(p)
            self.write("stapler.yaml", broken)
            p.send_signal(signal.SIGHUP)
            wait_until(lambda: "stays in use" in p.log()[p.mark:], what="refusal")
            self.assertEqual(self.request(self.port)[0], 200)
        self.assertNotIn("generation 2", p.log())

    def test_reload_refuses_files_that_would_stall_it(self):
        p = self.start_stapler(self.config(self.port, [self.pki.ecdsa]))
        good = open(p.config_path).read()
        fifo = os.path.join(self.tmp, "fifo")
        os.mkfifo(fifo)
        # A FIFO renamed over the config file, then a certificate that is one.
        for name, text in (("stapler.yaml", None),
                           ("with-fifo-cert.yaml", good.replace(self.pki.ecdsa["cert"], fifo))):
            self.mark(p)
            if text is None:
                os.rename(fifo, p.config_path)
            else:
                os.replace(self.write(name, text), p.config_path)
            p.send_signal(signal.SIGHUP)
            wait_until(lambda: "stays in use" in p.log()[p.mark:], timeout=5, what="refusal")
            self.assertIn("it is a FIFO, not a regular file", p.log()[p.mark:])
            self.assertEqual(self.request(self.port)[0], 200)
            if text is None:
                os.rename(p.config_path, fifo)
        self.mark(p)
        self.write("stapler.yaml", good)
        self.reload(p, 2)
        self.assertIn("reloaded: generation 2", p.log())

    def test_listeners_added_and_removed(self):
        p = self.start_stapler(self.config(self.port))
        second = free_port()
        text = self.config(self.port).replace(
            "listen:\n", "listen:\n  - address: 127.0.0.1:%d\n" % second, 1)
        self.write("stapler.yaml", text)
        self.reload(p, 2)
        self.assertEqual(self.request(second)[0], 200)
        self.assertEqual(self.request(self.port)[0], 200)
        self.write("stapler.yaml", self.config(second))
        self.reload(p, 3)
        self.assertEqual(self.request(second)[0], 200)
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", self.port), timeout=2).close()

    def test_reload_under_load_loses_nothing(self):
        reloads = 50
        p = self.start_stapler(self.config(self.port, extra="workers: 2\n"))
        stop = threading.Event()
        results = {"ok": 0, "failed": []}
        lock = threading.Lock()

        def keep_alive_client():
            while not stop.is_set():
                try:
                    with self.tls_connect(self.port) as s:
                        rest = b""
                        for i in range(20):
                            s.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
                            status, _, _, rest = read_http_response(s, rest)
                            with lock:
                                results["ok" if status == 200 else "failed"] += (
                                    1 if status == 200 else [status])
                except Exception as e:  # noqa: BLE001 - every failure is reported
                    with lock:
                        results["failed"].append(repr(e))

        def new_connection_client():
            while not stop.is_set():
                try:
                    status = self.request(self.port)[0]
                    with lock:
                        if status == 200:
                            results["ok"] += 1
                        else:
                            results["failed"].append(status)
                except Exception as e:  # noqa: BLE001
                    with lock:
                        results["failed"].append(repr(e))

        threads = [threading.Thread(target=keep_alive_client),
                   threading.Thread(target=new_connection_client),
                   threading.Thread(target=new_connection_client)]
        for t in threads:
            t.start()
        try:
            for i in range(reloads):
                p.send_signal(signal.SIGHUP)
                wait_until(lambda: "generation %d," % (i + 2) in p.log(), timeout=30,
                           what="reload %d" % (i + 1))
                time.sleep(0.05)
        finally:
            stop.set()
            for t in threads:
                t.join()
        print("\n    reload under load: %d reloads, %d requests ok, %d failed"
              % (reloads, results["ok"], len(results["failed"])))
        self.assertEqual(results["failed"], [])
        self.assertGreater(results["ok"], 100)


class BackendNameTest(RuntimeCase):
    """A backend given by name is looked up again after a failed connect (a container that
    restarted may have a new address). stapler runs in its own mount namespace with a private
    /etc/hosts, which the test rewrites."""

    def test_backend_name_resolved_again(self):
        if subprocess.run(["unshare", "--mount", "true"], capture_output=True).returncode != 0:
            self.skipTest("needs unshare --mount (root)")
        self.backend = self.start_backend()
        hosts = self.write("hosts", "127.0.0.1 localhost\n127.0.0.3 app.test\n")
        port = free_port()
        # One worker: each worker looks the name up again after its own first failure.
        text = self.config(port, extra="workers: 1\n").replace(
            "address: 127.0.0.1:%d\n" % self.backend.port,
                                         "address: app.test:%d\n" % self.backend.port)
        cfg = self.write("named.yaml", text)
        p = self.start(["unshare", "--mount", "sh", "-c",
                        "mount --bind %s /etc/hosts && exec %s -c %s" % (hosts, STAPLER, cfg)],
                       "named")
        wait_until(lambda: "forwarding to" in p.log() or not p.alive(), what="stapler")
        self.assertEqual(self.request(port)[0], 502)  # nothing listens on 127.0.0.3
        with open(hosts, "w") as f:  # the same file (inode) the namespace sees
            f.write("127.0.0.1 localhost\n127.0.0.1 app.test\n")
        time.sleep(1.2)
        # The request that finds the old address dead still gets 502; the next ones go through.
        statuses = [self.request(port)[0] for _ in range(4)]
        self.wait_log(p, "now resolves to 127.0.0.1")
        self.assertEqual(statuses[1:], [200] * 3, statuses)


class ResumptionTest(RuntimeCase):
    def setUp(self):
        super().setUp()
        self.backend = self.start_backend()

    def new_session(self, port, args=()):
        """A full handshake whose session (TLS 1.3: the ticket that follows it) is saved."""
        path = os.path.join(self.tmp, "s%d.pem" % free_port())
        argv = list(args) + ["-sess_out", path, "-ign_eof"]  # read on until the server closes
        rc, out = self.s_client(port, argv, input=b"GET /echo HTTP/1.1\r\nHost: x\r\n"
                                                  b"Connection: close\r\n\r\n")
        self.assertEqual(rc, 0, out)
        self.assertTrue(os.path.exists(path), out)
        return path

    def try_resume(self, port, session, args=()):
        rc, out = self.s_client(port, list(args) + ["-sess_in", session])
        return "Reused, TLSv1." in out

    def test_tls13_and_tls12_tickets(self):
        port = free_port()
        self.start_stapler(self.config(port))
        for args in ([], ["-tls1_2"]):
            session = self.new_session(port, args)
            self.assertTrue(self.try_resume(port, session, args), args)
            # The resumed handshake is the cheap one: the server sends no certificate and
            # signs nothing (a full one does both).
            full = self.s_client(port, list(args) + ["-msg"])[1]
            resumed = self.s_client(port, list(args) + ["-msg", "-sess_in", session])[1]
            self.assertIn("Reused, TLSv1.", resumed)
            self.assertRegex(full, r"<<< .*Handshake \[length [0-9a-f]+\], Certificate\b")
            self.assertNotRegex(resumed, r"<<< .*Handshake \[length [0-9a-f]+\], Certificate")
            self.assertNotRegex(resumed, r"<<< .*ServerKeyExchange")

    def test_resumption_across_workers_and_reloads(self):
        port = free_port()
        admin = free_port()
        p = self.start_stapler(self.config(port, extra="workers: 2\nadmin:\n  address: "
                                           "127.0.0.1:%d\n" % admin))
        session = self.new_session(port)
        resumed = sum(self.try_resume(port, session) for _ in range(12))
        self.assertEqual(resumed, 12)  # whichever worker the kernel picked
        self.mark(p)
        self.reload(p, 2)
        self.assertTrue(self.try_resume(port, session))
        status, metrics = http_get(admin, "/metrics")
        m = re.search(r"^stapler_tls_resumed_total (\d+)$", metrics, re.M)
        self.assertGreaterEqual(int(m.group(1)), 13)

    def test_ticket_key_file_shared_by_two_instances(self):
        keys = self.write("tickets.keys", "# shared\n%s\n" % os.urandom(80).hex())
        a, b = free_port(), free_port()
        shared = "tls:\n  ticket_key_file: %s\n" % keys
        self.start_stapler(self.config(a, extra=shared), name="a")
        self.start_stapler(self.config(b, extra=shared), name="b")
        self.start_stapler(self.config(free_port(), extra=""), name="c")
        session = self.new_session(a)
        self.assertTrue(self.try_resume(b, session))
        session12 = self.new_session(a, ["-tls1_2"])
        self.assertTrue(self.try_resume(b, session12, ["-tls1_2"]))

    def test_instances_without_shared_keys_do_not_resume(self):
        a, b = free_port(), free_port()
        self.start_stapler(self.config(a), name="a")
        self.start_stapler(self.config(b), name="b")
        session = self.new_session(a)
        self.assertFalse(self.try_resume(b, session))
        self.assertTrue(self.try_resume(a, session))


def pp2(src, sport, dst, dport, local=False):
    sig = b"\r\n\r\n\x00\r\nQUIT\n"
    if local:
        return sig + b"\x20\x00\x00\x00"
    body = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    return sig + b"\x21\x11" + struct.pack("!H", len(body)) + body


class ProxyProtocolTest(RuntimeCase):
    def setUp(self):
        super().setUp()
        self.backend = self.start_backend()

    def through_header(self, port, header):
        """Sends `header`, then TLS and a request; returns the backend's view of it."""
        raw = socket.create_connection(("127.0.0.1", port), timeout=20)
        raw.sendall(header)
        s = self.tls_context().wrap_socket(raw, server_hostname="localhost")
        s.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, body, _ = read_http_response(s)
        s.close()
        self.assertEqual(status, 200)
        doc = json.loads(body)
        h = dict(zip([k.lower() for k in doc["headers"][0::2]], doc["headers"][1::2]))
        return h

    def test_listener_accepts_v1_and_v2(self):
        port = free_port()
        p = self.start_stapler(self.config(port, listen_extra="    proxy_protocol: true\n"))
        h = self.through_header(port, b"PROXY TCP4 203.0.113.9 127.0.0.1 40000 %d\r\n" % port)
        self.assertEqual(h["x-forwarded-for"], "203.0.113.9")
        h = self.through_header(port, pp2("198.51.100.20", 40001, "127.0.0.1", port))
        self.assertEqual(h["x-forwarded-for"], "198.51.100.20")
        h = self.through_header(port, pp2("0.0.0.0", 0, "0.0.0.0", 0, local=True))
        self.assertEqual(h["x-forwarded-for"], "127.0.0.1")  # LOCAL: the socket's own address
        self.wait_log(p, "client=203.0.113.9:40000")

    def test_listener_refuses_missing_or_malformed_headers(self):
        port, admin = free_port(), free_port()
        p = self.start_stapler(self.config(port, listen_extra="    proxy_protocol: true\n",
                                           extra="admin:\n  address: 127.0.0.1:%d\n" % admin))
        for junk in (b"PROXY GARBAGE\r\n", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
                     b"\r\n\r\n\x00\r\nQUIT\n\x22\x11\x00\x0c" + b"\x00" * 12):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(junk)
                self.assertEqual(s.recv(100), b"")
        with self.assertRaises((ssl.SSLError, ConnectionError, OSError)):
            self.request(port)  # a TLS ClientHello is not a PROXY header
        status, metrics = http_get(admin, "/metrics")
        self.assertIn("stapler_proxy_protocol_failures_total 4", metrics)
        self.wait_log(p, "no PROXY protocol header")

    def start_pp_backend(self):
        port = free_port()
        b = self.start(["/usr/bin/python3", os.path.join(HERE, "pp_backend.py"), str(port)],
                       "pp_backend")
        wait_until(lambda: "ready" in b.log(), what="pp backend")
        b.port = port
        return b

    def header_seen(self, port, alpn=("http/1.1",)):
        s = self.tls_connect(port, ctx=self.tls_context(alpn=alpn))
        client_port = s.getsockname()[1]
        line = b""
        while not line.endswith(b"\n"):
            line += s.recv(1)
        s.sendall(b"ping")
        self.assertEqual(s.recv(4), b"ping")
        s.close()
        return bytes.fromhex(line.split()[1].decode()), client_port

    def test_backend_gets_v1(self):
        backend = self.start_pp_backend()
        port = free_port()
        self.start_stapler(self.config(port, backend=backend).replace(
            "  address: 127.0.0.1:%d\n" % backend.port,
            "  address: 127.0.0.1:%d\n  mode: tcp\n  proxy_protocol: v1\n" % backend.port))
        header, client_port = self.header_seen(port)
        self.assertEqual(header, b"PROXY TCP4 127.0.0.1 127.0.0.1 %d %d\r\n" % (client_port, port))

    def test_backend_gets_v2_with_alpn_and_sni(self):
        backend = self.start_pp_backend()
        port = free_port()
        self.start_stapler(self.config(port, backend=backend).replace(
            "  address: 127.0.0.1:%d\n" % backend.port,
            "  address: 127.0.0.1:%d\n  mode: tcp\n  proxy_protocol: v2\n" % backend.port))
        header, client_port = self.header_seen(port)
        want = pp2("127.0.0.1", client_port, "127.0.0.1", port)
        tlvs = b"\x01\x00\x08http/1.1" + b"\x02\x00\x09localhost"
        want = want[:14] + struct.pack("!H", 12 + len(tlvs)) + want[16:] + tlvs
        self.assertEqual(header, want)

    def test_load_balancer_address_reaches_backend(self):
        backend = self.start_pp_backend()
        port = free_port()
        self.start_stapler(self.config(port, backend=backend,
                                       listen_extra="    proxy_protocol: true\n").replace(
            "  address: 127.0.0.1:%d\n" % backend.port,
            "  address: 127.0.0.1:%d\n  mode: tcp\n  proxy_protocol: v1\n" % backend.port))
        raw = socket.create_connection(("127.0.0.1", port), timeout=20)
        raw.sendall(pp2("192.0.2.44", 55555, "192.0.2.1", 443))
        s = self.tls_context().wrap_socket(raw, server_hostname="localhost")
        line = b""
        while not line.endswith(b"\n"):
            line += s.recv(1)
        s.close()
        self.assertEqual(bytes.fromhex(line.split()[1].decode()),
                         b"PROXY TCP4 192.0.2.44 192.0.2.1 55555 443\r\n")


class AdminTest(RuntimeCase):
    def setUp(self):
        super().setUp()
        self.backend = self.start_backend()
        self.port, self.admin = free_port(), free_port()

    def start_with_admin(self, certs=None, extra=""):
        return self.start_stapler(self.config(self.port, certs, extra +
                                              "admin:\n  address: 127.0.0.1:%d\n" % self.admin))

    def parse_metrics(self, text):
        """Checks the Prometheus text format line by line: each family once, its HELP and TYPE
        first, then all its samples together, no series twice. Returns {series: value}."""
        typed, samples, current = {}, {}, None
        for line in text.splitlines():
            if line.startswith("# HELP "):
                m = re.match(r"^# HELP (stapler_[a-z0-9_]+) \S", line)
                self.assertTrue(m, line)
                self.assertNotIn(m.group(1), typed, "family given twice: %r" % line)
                current = m.group(1)
            elif line.startswith("# TYPE "):
                m = re.match(r"^# TYPE (stapler_[a-z0-9_]+) (counter|gauge)$", line)
                self.assertTrue(m, line)
                self.assertEqual(m.group(1), current, "TYPE away from its HELP: %r" % line)
                self.assertNotIn(m.group(1), typed, "second TYPE: %r" % line)
                typed[m.group(1)] = m.group(2)
            else:
                m = re.match(r'^(stapler_[a-z0-9_]+)(\{[a-z_]+="(?:[^"\\]|\\.)*"'
                             r'(?:,[a-z_]+="(?:[^"\\]|\\.)*")*\})? (-?[0-9]+)$', line)
                self.assertTrue(m, "not a Prometheus sample: %r" % line)
                self.assertEqual(m.group(1), current, "sample outside its family's group: %r"
                                 % line)
                self.assertIn(m.group(1), typed, "sample before its TYPE: %r" % line)
                if typed[m.group(1)] == "counter":
                    self.assertTrue(m.group(1).endswith("_total"), line)
                series = m.group(1) + (m.group(2) or "")
                self.assertNotIn(series, samples, "series given twice: %r" % line)
                samples[series] = int(m.group(3))
        return samples

    def test_metrics_are_valid_and_move(self):
        self.start_with_admin()
        before = self.parse_metrics(http_get(self.admin, "/metrics")[1])
        for _ in range(5):
            self.assertEqual(self.request(self.port)[0], 200)
        self.request(self.port, b"/status/404")
        rc, out = self.s_client(self.port, ["-sigalgs", "RSA-PSS+SHA256"])
        after = self.parse_metrics(http_get(self.admin, "/metrics")[1])
        key = 'stapler_http_requests_total{protocol="http/1.1"}'
        self.assertEqual(after[key] - before[key], 6)
        self.assertEqual(after['stapler_http_responses_total{class="2xx"}'] -
                         before['stapler_http_responses_total{class="2xx"}'], 5)
        self.assertEqual(after['stapler_http_responses_total{class="4xx"}'] -
                         before['stapler_http_responses_total{class="4xx"}'], 1)
        self.assertGreaterEqual(after['stapler_tls_handshakes_total{certificate="ecdsa"}'], 6)
        self.assertGreaterEqual(after['stapler_tls_handshakes_total{certificate="rsa"}'], 1)
        self.assertGreaterEqual(after["stapler_connections_accepted_total"], 7)
        self.assertEqual(after["stapler_healthy"], 1)
        self.assertGreater(after["stapler_client_bytes_sent_total"], 0)
        expiry = [k for k in after if k.startswith("stapler_certificate_expiry_timestamp_seconds")]
        self.assertEqual(len(expiry), 2)

    def test_metrics_with_a_long_certificate_path(self):
        # A path of 900+ characters, with a quote and a backslash to escape on the way.
        d = self.tmp
        for i in range(5):
            d = os.path.join(d, "%d-" % i + "x" * 180 + ('"\\' if i == 2 else ""))
        os.makedirs(d)
        long_cert = dict(self.pki.ecdsa, cert=os.path.join(d, "ecdsa.chain.pem"))
        with open(self.pki.ecdsa["cert"]) as src, open(long_cert["cert"], "w") as dst:
            dst.write(src.read())
        self.assertGreater(len(long_cert["cert"]), 900)
        self.start_with_admin(certs=[self.pki.rsa, long_cert])
        m = self.parse_metrics(http_get(self.admin, "/metrics")[1])  # every line parses
        label = long_cert["cert"].replace("\\", "\\\\").replace('"', '\\"')
        self.assertIn('stapler_certificate_expiry_timestamp_seconds{certificate="%s",key="ecdsa"}'
                      % label, m)
        self.assertIn('stapler_ocsp_staple_info{certificate="%s",key="ecdsa",state="none"}'
                      % label, m)

    def test_backend_error_kinds_counted_once(self):
        self.start_with_admin()
        self.assertEqual(self.request(self.port, b"/close-early")[0], 502)
        m = self.parse_metrics(http_get(self.admin, "/metrics")[1])
        self.assertEqual(m['stapler_backend_errors_total{kind="broken"}'], 1)
        self.assertEqual(m['stapler_backend_errors_total{kind="connect_failed"}'], 0)
        dead_port, dead_admin = free_port(), free_port()
        dead = type("Dead", (), {"port": free_port()})
        self.start_stapler(self.config(dead_port, backend=dead, extra="admin:\n  address: "
                                       "127.0.0.1:%d\n" % dead_admin), name="dead")
        self.assertEqual(self.request(dead_port)[0], 502)
        m = self.parse_metrics(http_get(dead_admin, "/metrics")[1])
        self.assertEqual(m['stapler_backend_errors_total{kind="connect_failed"}'], 1)
        self.assertEqual(m['stapler_backend_errors_total{kind="broken"}'], 0)
        self.assertEqual(m['stapler_http_errors_generated_total'], 1)

    def test_healthz_and_status(self):
        self.start_with_admin()
        self.assertEqual(http_get(self.admin, "/healthz"), (200, "ok\n"))
        status, body = http_get(self.admin, "/status")
        self.assertEqual(status, 200)
        doc = json.loads(body)
        self.assertEqual(doc["generation"], 1)
        self.assertTrue(doc["healthy"])
        self.assertEqual(sorted(c["key"] for c in doc["certificates"]), ["ecdsa", "rsa"])
        self.assertEqual(doc["certificates"][0]["names"], ["localhost", "test.example"])
        self.assertEqual(http_get(self.admin, "/nope")[0], 404)
        req = urllib.request.Request("http://127.0.0.1:%d/metrics" % self.admin, data=b"x")
        with self.assertRaises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=10)
        self.assertEqual(e.exception.code, 405)
        with socket.create_connection(("127.0.0.1", self.admin), timeout=10) as s:
            s.sendall(b"\x00\x01garbage\r\n\r\n")
            self.assertTrue(s.recv(100).startswith(b"HTTP/1.1 400"))

    def test_healthz_degraded_without_must_staple_staple(self):
        self.start_with_admin(certs=[self.pki.ecdsa, self.pki.must_staple])
        status, body = http_get(self.admin, "/healthz")
        self.assertEqual(status, 503)
        self.assertIn("no valid staple (must-staple)", body)
        self.assertFalse(json.loads(http_get(self.admin, "/status")[1])["healthy"])

    def test_healthz_degraded_when_revoked(self):
        revoked = self.pki.staple(self.pki.ecdsa, os.path.join(self.tmp, "r.der"))
        self.pki.write_index({"ecdsa": "261120000000Z,keyCompromise"})
        try:
            self.pki.staple(self.pki.ecdsa, revoked)
        finally:
            self.pki.write_index({})
        self.start_with_admin(certs=[self.pki.rsa, dict(self.pki.ecdsa, ocsp_response=revoked)])
        status, body = http_get(self.admin, "/healthz")
        self.assertEqual(status, 503)
        self.assertIn("is revoked", body)
        metrics = http_get(self.admin, "/metrics")[1]
        self.assertIn('state="revoked"} 1', metrics)


class LoggingTest(RuntimeCase):
    def setUp(self):
        super().setUp()
        self.backend = self.start_backend()

    def test_access_log_text(self):
        port = free_port()
        p = self.start_stapler(self.config(port))
        self.request(port, b"/echo?q=1%20two")
        wait_until(lambda: "access client=127.0.0.1:" in p.log(), what="access line")
        line = [l for l in p.log().splitlines() if " access " in l][0]
        for part in ("sni=localhost", "cert=ecdsa", "tls=TLSv1.3", "method=GET",
                     "path=\"/echo?q=1%20two\"", "status=200", "bytes_in=", "bytes_out=", "ms="):
            self.assertIn(part, line)

    def test_access_log_json(self):
        port = free_port()
        p = self.start_stapler(self.config(port, extra="log:\n  format: json\n"))
        self.request(port, b"/echo")
        wait_until(lambda: '"msg":"access"' in p.log(), what="access line")
        for line in p.log().splitlines():
            doc = json.loads(line)  # every line is JSON
            if doc["msg"] == "access":
                self.assertEqual(doc["status"], 200)
                self.assertEqual(doc["path"], "/echo")
                self.assertEqual(doc["method"], "GET")

    def test_client_bytes_cannot_forge_log_lines(self):
        forged = "2026-12-04T00:00:00.000Z error FORGED"
        for fmt in ("text", "json"):
            port = free_port()
            p = self.start_stapler(self.config(port, extra="log:\n  format: %s\n" % fmt),
                                   name="stapler-" + fmt)
            self.s_client(port, ["-alpn", "h3"], servername="evil\n" + forged)
            self.s_client(port, ["-alpn", "h3\x1b[2J,x\"y"])
            for path in (b"/\xff\xfe\xe2\x80\xa8", b'/a"b\\c'):
                self.request(port, path)
            self.wait_log(p, "TLS handshake failed", count=2)
            self.wait_log(p, "access", count=2)
            with open(p.log_path, "rb") as f:
                text = f.read().decode("utf-8")  # strict: every line is UTF-8
            shown = []
            for line in text.splitlines():
                self.assertFalse(line.startswith(forged), text)
                if fmt == "json":
                    doc = json.loads(line)
                    shown.append(doc["msg"] + " " + str(doc.get("path")))
                else:
                    self.assertRegex(line, r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z "
                                           r"(error|warn |info |debug) \S")
                    shown.append(line)
            shown = "\n".join(shown)
            # The same escaped text in both formats: what a client sent, visibly.
            self.assertIn('"evil\\x0a' + forged + '"', shown)
            self.assertIn('"h3\\x1b[2J", "x\\"y"', shown)
            self.assertIn('/\\xff\\xfe\\xe2\\x80\\xa8', shown)
            self.assertIn('/a\\"b\\\\c', shown)

    def test_access_log_when_client_leaves_before_the_response(self):
        port = free_port()
        p = self.start_stapler(self.config(port))
        with self.tls_connect(port) as s:
            s.sendall(b"GET /echo?delay=3000 HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(0.3)  # the request reaches the backend, which is still thinking
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        wait_until(lambda: "status=499" in p.log(), what="access line for the abandoned request")
        lines = [l for l in p.log().splitlines() if " access " in l]
        self.assertEqual(len(lines), 1, p.log())
        self.assertIn('path="/echo?delay=3000"', lines[0])
        self.assertIn("method=GET", lines[0])

    def test_access_log_once_when_backend_breaks_off(self):
        port = free_port()
        p = self.start_stapler(self.config(port))
        with self.tls_connect(port) as s:
            s.sendall(b"GET /reset HTTP/1.1\r\nHost: x\r\n\r\n")
            got = b""
            while True:  # part of the body, then the close
                try:
                    data = s.recv(65536)
                except (ConnectionError, ssl.SSLError):
                    break
                if not data:
                    break
                got += data
        self.assertTrue(got.startswith(b"HTTP/1.1 200"))
        wait_until(lambda: " access " in p.log(), what="access line")
        time.sleep(0.2)
        lines = [l for l in p.log().splitlines() if " access " in l]
        self.assertEqual(len(lines), 1, p.log())
        self.assertIn("status=200", lines[0])

    def test_blocked_stderr_does_not_stall_workers(self):
        port = free_port()
        cfg = self.write("quiet.yaml", self.config(port, extra="workers: 1\n"))
        proc = subprocess.Popen([STAPLER, "-c", cfg], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)  # never read: the pipe fills up
        try:
            wait_until(lambda: listening_port(port), what="stapler")
            done = 0
            with self.tls_connect(port) as s:
                rest = b""
                for i in range(3000):  # far more access lines than a pipe holds
                    s.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
                    status, _, _, rest = read_http_response(s, rest)
                    done += status == 200
            self.assertEqual(done, 3000)
        finally:
            proc.kill()
            proc.wait()

    def test_blocked_stderr_does_not_delay_exit(self):
        port = free_port()
        cfg = self.write("stuck.yaml", self.config(port, extra="workers: 1\n"
                                                   "timeouts:\n  shutdown: 2s\n"))
        proc = subprocess.Popen([STAPLER, "-c", cfg], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)  # never read: the pipe fills up
        try:
            wait_until(lambda: listening_port(port), what="stapler")
            with self.tls_connect(port) as s:
                rest = b""
                for i in range(1500):  # far more access lines than a pipe holds
                    s.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
                    status, _, _, rest = read_http_response(s, rest)
                    self.assertEqual(status, 200)
            t0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            try:
                rc = proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                rc = None
            # timeouts.shutdown from the signal, and a little for the exit itself.
            self.assertEqual(rc, 0, "no exit %.1f s after SIGTERM" % (time.monotonic() - t0))
            self.assertLess(time.monotonic() - t0, 2 + (4 if SANITIZED else 1.5))
        finally:
            proc.kill()
            proc.wait()


def listening_port(port):
    out = subprocess.run(["ss", "-Hltn", "sport = :%d" % port], capture_output=True).stdout
    return bool(out.strip())
