"""Automatic OCSP stapling against a real responder (openssl ocsp): fetch, verify, staple per
certificate, persist, survive a dead responder and restarts, handle revocation; and a faulty
responder (ocsp_faults.py) for answers a real one does not give.

Time is moved with STAPLER_TEST_CLOCK_OFFSET rather than by waiting: the responder's answers
are valid for a day and refreshed half-way, within 5% of the day, so starting stapler "14 hours
later" makes a cached answer due for refresh and "25 hours later" makes it expired."""
import os
import re
import subprocess
import time

from harness import StaplerCase, HERE, free_port, wait_until, listening

HOUR = 3600
DUE = 14 * HOUR      # past the refresh point of a one-day answer, before its end
EXPIRED = 25 * HOUR


class StaplingCase(StaplerCase):
    def setUp(self):
        super().setUp()
        self.pki.write_index({})
        self.cache = os.path.join(self.tmp, "cache")

    def tearDown(self):
        self.pki.write_index({})  # the PKI is shared with later tests
        super().tearDown()

    def stapling_proxy(self, certs=None, policy="lenient", clock_offset=0, name="stapler",
                       extra=""):
        return self.proxy(certs=certs, clock_offset=clock_offset, name=name,
                          extra="ocsp:\n  cache_dir: %s\n  policy: %s\n  timeout: 2s\n"
                                "log:\n  level: debug\n%s" % (self.cache, policy, extra))

    def staple_of(self, port, args=()):
        """(served subject, stapled cert status or None, stapled serial or None)."""
        rc, out = self.s_client(port, list(args), status=True)
        self.assertEqual(rc, 0, out)
        status = re.search(r"Cert Status: (\w+)", out)
        serial = None
        if status:
            answer = out[out.index("Responses:"):out.index("Cert Status")]
            serial = re.findall(r"Serial Number: ([0-9A-F]+)", answer)[0]
        else:
            self.assertIn("no response sent", out)
        return self.served_subject(out), status.group(1) if status else None, serial

    def both_stapled(self, port, status="good"):
        self.assertEqual(self.staple_of(port),
                         ("localhost-ecdsa", status, self.pki.ecdsa["serial"]))
        self.assertEqual(self.staple_of(port, ["-sigalgs", "RSA-PSS+SHA256"]),
                         ("localhost-rsa", "good", self.pki.rsa["serial"]))


class FetchTest(StaplingCase):
    def test_fetched_verified_stapled_per_certificate_and_cached(self):
        self.start_responder()
        p = self.stapling_proxy()
        self.wait_log(p, ": good from http://127.0.0.1:%d/" % self.pki.ocsp_port, count=2)
        self.both_stapled(p.port)
        r = self.curl("https://localhost:%d/echo" % p.port, ["--cert-status"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len([f for f in os.listdir(self.cache) if f.endswith(".ocsp")]), 2)
        self.wait_log(p, "next refresh in")

    def test_unknown_certificate_is_not_stapled(self):
        self.pki.write_index({}, missing=("ecdsa",))
        self.start_responder()
        p = self.stapling_proxy()
        self.wait_log(p, "does not know this certificate")
        self.wait_log(p, "rsa.chain.pem: good from")
        self.assertEqual(self.staple_of(p.port)[1], None)

    def test_certificate_without_ocsp_url_is_normal(self):
        p = self.proxy(certs=[self.pki.ecdsa], extra="ocsp:\n  cache_dir: %s\n" % self.cache)
        # The test leaves carry an AIA URL; a self-made one without is checked by -t below.
        self.assertTrue(p.alive())
        cert = self.write("plain.pem", "")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", cert + ".key", "-subj",
                        "/CN=plain.example", "-addext", "subjectAltName=DNS:plain.example",
                        "-days", "5", "-out", cert], check=True, capture_output=True)
        q = self.proxy(certs=[{"cert": cert, "key": cert + ".key"}], name="plain",
                       extra="ocsp:\n  cache_dir: %s\n" % self.cache)
        self.wait_log(q, "no OCSP URL in the certificate: served without a staple")
        self.assertNotIn("error", q.log())
        rc, out = self.s_client(q.port, servername="plain.example", status=True, verify=False)
        self.assertIn("no response sent", out)


class ResilienceTest(StaplingCase):
    def fetch_once(self):
        """Runs a responder and a stapler until both staples are cached, then stops both."""
        responder = self.start_responder()
        p = self.stapling_proxy(name="first")
        self.wait_log(p, ": good from", count=2)
        self.assertEqual(p.stop(), 0)
        responder.stop()
        time.sleep(1.1)  # answers fetched from now on are strictly newer than the cached ones

    def test_cache_staples_first_handshake_after_restart_with_responder_down(self):
        self.fetch_once()
        p = self.stapling_proxy(name="second")
        self.wait_log(p, "using the cached answer")
        self.both_stapled(p.port)

    def test_responder_down_keeps_last_staple(self):
        self.fetch_once()
        # Fourteen hours on, the cached answers are due for refresh and the responder is gone.
        p = self.stapling_proxy(name="later", clock_offset=DUE)
        self.wait_log(p, "keeping the staple valid until", count=2)
        self.wait_log(p, "connection refused")
        self.both_stapled(p.port)

    def test_expired_staple_is_never_served(self):
        self.fetch_once()
        p = self.stapling_proxy(name="expired", clock_offset=EXPIRED)
        self.wait_log(p, "cached answer not used: nextUpdate has passed")
        self.assertEqual(self.staple_of(p.port)[1], None)
        q = self.stapling_proxy(name="strict", clock_offset=EXPIRED, policy="must-staple")
        rc, out = self.s_client(q.port, status=True)
        self.assertNotEqual(rc, 0, out)  # must-staple: no valid staple, no certificate
        rc, out = self.s_client(q.port)
        self.assertEqual(rc, 0, out)     # a client that does not ask is served

    def test_revocation_is_stapled_and_loud(self):
        self.fetch_once()
        self.pki.write_index({"ecdsa": "261120000000Z,keyCompromise"})
        self.start_responder()  # openssl ocsp reads the index when it starts
        p = self.stapling_proxy(name="revoked", clock_offset=DUE)
        self.wait_log(p, "the certificate is REVOKED")
        self.wait_log(p, "rsa.chain.pem: good from")
        self.both_stapled(p.port, status="revoked")


class FaultyResponderTest(StaplingCase):
    def setUp(self):
        super().setUp()
        port = free_port()
        self.static = self.pki.staple(self.pki.ecdsa, os.path.join(self.tmp, "static.der"))
        time.sleep(1.1)  # so that "good" is strictly newer than the static staple
        files = {"good": self.pki.staple(self.pki.ecdsa, os.path.join(self.tmp, "good.der")),
                 "other": self.pki.staple(self.pki.rsa, os.path.join(self.tmp, "other.der")),
                 "stranger": self.pki.staple(self.pki.ecdsa, os.path.join(self.tmp, "s.der"),
                                             signer="stranger")}
        self.faults = self.start(["/usr/bin/python3", os.path.join(HERE, "ocsp_faults.py"),
                                  str(port)] + ["%s=%s" % kv for kv in files.items()], "faults")
        wait_until(lambda: "ready" in self.faults.log() or not self.faults.alive(),
                   what="fault responder")
        self.faults.port = port

    def against(self, mode, expect):
        """A static good staple, due for refresh; the responder then misbehaves in `mode`."""
        cert = dict(self.pki.ecdsa, ocsp_response=self.static,
                    ocsp_url="http://127.0.0.1:%d/%s/" % (self.faults.port, mode))
        p = self.stapling_proxy(certs=[self.pki.rsa, cert], name=mode, clock_offset=DUE)
        self.wait_log(p, "ecdsa.chain.pem: fetch from")
        log = p.log()
        self.assertIn(expect, log)
        self.assertIn("keeping the staple valid until", log)
        self.assertEqual(self.staple_of(p.port)[1:], ("good", self.pki.ecdsa["serial"]))
        self.wait_log(self.faults, "/%s/" % mode)
        self.assertEqual(p.stop(), 0, p.log())

    def test_http_500(self):
        self.against("500", "responder answered HTTP 500")

    def test_redirect(self):
        self.against("redirect", "redirect (302)")

    def test_garbage(self):
        self.against("garbage", "did not speak HTTP")

    def test_not_ocsp(self):
        self.against("notocsp", "answer refused (malformed)")

    def test_slow_body(self):
        self.against("slow", "no complete answer within ocsp.timeout")

    def test_oversized_body(self):
        self.against("huge", "answer larger than")

    def test_answer_for_another_certificate(self):
        self.against("other", "answer refused (wrong-certificate)")

    def test_answer_signed_by_a_stranger(self):
        self.against("stranger", "answer refused (unauthorized-signer)")

    def test_long_responder_url_uses_post(self):
        path = "good/" + "x" * 150  # the GET URL would pass 255 bytes (RFC 5019 2.1.1)
        cert = dict(self.pki.ecdsa, ocsp_response=self.static,
                    ocsp_url="http://127.0.0.1:%d/%s" % (self.faults.port, path))
        p = self.stapling_proxy(certs=[cert], clock_offset=DUE)
        self.wait_log(p, "ecdsa.chain.pem: good from")
        self.wait_log(self.faults, "POST /%s" % path)
        self.assertNotIn("GET /good", self.faults.log())

    def test_good_answer_replaces_static_staple(self):
        cert = dict(self.pki.ecdsa, ocsp_response=self.static,
                    ocsp_url="http://127.0.0.1:%d/good/" % self.faults.port)
        p = self.stapling_proxy(certs=[cert], clock_offset=DUE)
        self.wait_log(p, "ecdsa.chain.pem: good from")
        self.assertEqual(self.staple_of(p.port)[1], "good")


class CommandTest(StaplingCase):
    def test_stapler_ocsp_command(self):
        from harness import STAPLER
        self.start_responder()
        out_path = os.path.join(self.tmp, "out.der")
        r = subprocess.run([STAPLER, "ocsp", self.pki.ecdsa["cert"], "-o", out_path],
                           capture_output=True, timeout=30)
        out = r.stdout.decode()
        self.assertEqual(r.returncode, 0, out + r.stderr.decode())
        for word in ("status:      good", "producedAt:", "thisUpdate:", "nextUpdate:",
                     "responder:   http://127.0.0.1:%d/" % self.pki.ocsp_port,
                     "delegated responder"):
            self.assertIn(word, out)
        self.assertTrue(os.path.getsize(out_path) > 100)
        r = subprocess.run([STAPLER, "ocsp", self.pki.rsa["leaf"], "--issuer",
                            self.pki.inter + ".pem", "--url",
                            "http://127.0.0.1:%d/" % free_port()], capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"connection refused", r.stdout)

    def test_check_shows_cached_state(self):
        from harness import STAPLER
        self.start_responder()
        p = self.stapling_proxy()
        self.wait_log(p, ": good from", count=2)
        r = subprocess.run([STAPLER, "-t", "-c", p.config_path], capture_output=True, timeout=30)
        out = r.stdout.decode()
        self.assertEqual(r.returncode, 0, out)
        self.assertEqual(out.count("cached:      good, valid until"), 2, out)
