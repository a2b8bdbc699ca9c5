"""Automatic OCSP stapling against a real responder (openssl ocsp): fetch, verify, staple per
certificate, persist, survive a dead responder and restarts, handle revocation; and a faulty
responder (ocsp_faults.py) for answers a real one does not give.

Time is moved with STAPLER_TEST_CLOCK_OFFSET rather than by waiting: the responder's answers
are valid for a day and refreshed half-way, within 5% of the day, so starting stapler "14 hours
later" makes a cached answer due for refresh and "25 hours later" makes it expired."""
import os
import re
import signal
import subprocess
import time

from harness import StaplerCase, HERE, STAPLER, free_port, wait_until, listening

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
                       extra="", env=None):
        return self.proxy(certs=certs, clock_offset=clock_offset, name=name, env=env,
                          extra="ocsp:\n  cache_dir: %s\n  policy: %s\n  timeout: 2s\n"
                                "log:\n  level: debug\n%s" % (self.cache, policy, extra))

    def staple_of(self, port, args=(), verify=True, servername="localhost"):
        """(served subject, stapled cert status or None, stapled serial or None)."""
        rc, out = self.s_client(port, list(args), status=True, verify=verify,
                                servername=servername)
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


    def test_fetch_tries_each_address_in_turn(self):
        """The responder's name has two addresses; nothing listens at the first."""
        shim = os.path.join(os.path.dirname(STAPLER), "tests", "libstapler_resolve_shim.so")
        self.assertTrue(os.path.exists(shim), "build the test shim first: %s" % shim)
        self.start_responder()
        dead = free_port()
        name = "ocsp.stapler.test"
        cert = dict(self.pki.ecdsa, ocsp_url="http://%s:%d/" % (name, self.pki.ocsp_port))
        env = {"LD_PRELOAD": shim,
               "STAPLER_TEST_RESOLVE": "%s=127.0.0.1:%d,127.0.0.1" % (name, dead)}
        p = self.stapling_proxy(certs=[cert], env=env)
        self.wait_log(p, "ecdsa.chain.pem: good from http://%s:" % name)
        self.assertEqual(self.staple_of(p.port)[1], "good")
        # Every address failing is one failure naming each of them (for a certificate without
        # a cached answer, which would put the first attempt off).
        cert = dict(self.pki.rsa, ocsp_url="http://%s:%d/" % (name, dead))
        q = self.stapling_proxy(certs=[cert], env=dict(env, STAPLER_TEST_RESOLVE="%s=127.0.0.1,"
                                                       "127.0.0.1:%d" % (name, free_port())),
                                name="dead")
        self.wait_log(q, "fetch from http://%s:%d/ failed (1 in a row)" % (name, dead))
        line = [l for l in q.log().splitlines() if "failed (1 in a row)" in l][0]
        self.assertEqual(line.count("connection refused"), 2, line)

    def test_address_that_never_answers_leaves_time_for_the_next(self):
        """Each address gets its share of ocsp.timeout (2 s here): one where connections hang
        (a listener whose queue is full drops further SYNs) does not use it all up."""
        shim = os.path.join(os.path.dirname(STAPLER), "tests", "libstapler_resolve_shim.so")
        self.start_responder()
        import socket
        with socket.socket() as full, socket.socket() as queued:
            full.bind(("127.0.0.1", 0))
            full.listen(0)
            queued.connect(full.getsockname())
            name = "ocsp.stapler.test"
            cert = dict(self.pki.ecdsa, ocsp_url="http://%s:%d/" % (name, self.pki.ocsp_port))
            env = {"LD_PRELOAD": shim, "STAPLER_TEST_RESOLVE": "%s=127.0.0.1:%d,127.0.0.1"
                   % (name, full.getsockname()[1])}
            p = self.stapling_proxy(certs=[cert], env=env)
            self.wait_log(p, "ecdsa.chain.pem: good from http://%s:" % name)
            self.assertNotIn("failed", p.log())

    def test_static_unknown_answer_is_not_stapled(self):
        """As with fetched answers: some browsers fail hard on a stapled "unknown"."""
        self.pki.write_index({}, missing=("ecdsa",))
        static = self.pki.staple(self.pki.ecdsa, os.path.join(self.tmp, "unknown.der"))
        cert = dict(self.pki.ecdsa, ocsp_response=static)
        p = self.proxy(certs=[self.pki.rsa, cert])
        self.wait_log(p, "OCSP response not stapled: the responder does not know this "
                         "certificate (status unknown)")
        self.assertEqual(self.staple_of(p.port)[1], None)
        rc, out, err = self.check_config(p.config_path)
        self.assertEqual(rc, 0, err)
        self.assertIn("status unknown", err)
        self.assertEqual(out.count("staple:      none"), 2, out)

    def test_https_only_ocsp_url_has_its_own_message(self):
        leaf = self.pki.leaf("https-ocsp", ocsp_url="https://127.0.0.1:%d/" % self.pki.ocsp_port)
        p = self.stapling_proxy(certs=[leaf])
        self.wait_log(p, "https-ocsp.chain.pem: the OCSP URL https://127.0.0.1:%d/ uses https"
                      % self.pki.ocsp_port)
        self.assertNotIn("no OCSP URL in the certificate", p.log())
        rc, out, err = self.check_config(p.config_path)
        self.assertIn("OCSP URL:    https://127.0.0.1:%d/ (not used: https;" % self.pki.ocsp_port,
                      out)


class ReloadStaplingTest(StaplingCase):
    def test_issuer_added_by_reload_starts_stapling(self):
        self.start_responder()
        leaf_only = {"cert": self.pki.ecdsa["leaf"], "key": self.pki.ecdsa["key"]}
        p = self.stapling_proxy(certs=[leaf_only])
        self.wait_log(p, "has no issuer certificate")
        self.rewrite_config(p, [self.pki.ecdsa])
        p.send_signal(signal.SIGHUP)
        self.wait_log(p, "reloaded: generation 2")
        self.wait_log(p, "ecdsa.chain.pem: good from")
        self.assertEqual(self.staple_of(p.port)[1], "good")


class SignerExpiryTest(StaplingCase):
    """A delegated responder certificate valid for a minute signs answers valid for a day: the
    answers are good only as long as their signer, since a client checks both."""

    def setUp(self):
        super().setUp()
        self.signer_expiry = int(time.time()) + 60
        name = "short-lived-responder-%s" % self.id().split(".")[-1]
        self.signer = self.pki.responder_until(name, self.signer_expiry)

    def offset_leaving(self, seconds):
        """A clock offset at which the signer has `seconds` left now."""
        return self.signer_expiry - seconds - int(time.time())

    def test_staple_not_sent_once_its_signer_expired(self):
        self.start_responder(signer=self.signer)
        p = self.stapling_proxy(certs=[self.pki.ecdsa], clock_offset=self.offset_leaving(10))
        self.wait_log(p, "ecdsa.chain.pem: good from")
        until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.signer_expiry))
        self.assertIn("valid until %s" % until, p.log())
        self.assertEqual(self.staple_of(p.port)[1], "good")
        self.wait_log(p, "the staple expired at %s" % until, timeout=40)
        self.assertEqual(self.staple_of(p.port)[1], None)
        rc, out = self.s_client(p.port, status=True)
        self.assertIn("no response sent", out)

    def test_cached_answer_of_an_expired_signer_is_not_served_after_a_restart(self):
        responder = self.start_responder(signer=self.signer)
        p = self.stapling_proxy(certs=[self.pki.ecdsa], clock_offset=self.offset_leaving(40))
        self.wait_log(p, "ecdsa.chain.pem: good from")
        p.stop()
        responder.stop()  # from here on only the cache can provide a staple
        # Restarted while the signer is still valid: the cached answer is stapled at once.
        p = self.stapling_proxy(certs=[self.pki.ecdsa], clock_offset=self.offset_leaving(30),
                                name="stapler-2")
        self.assertEqual(self.staple_of(p.port)[1], "good")
        p.stop()
        # Restarted after the signer expired: the same cached answer (its nextUpdate a day
        # away) is not stapled, since a client checking the signer would refuse it.
        p = self.stapling_proxy(certs=[self.pki.ecdsa], clock_offset=self.offset_leaving(-60),
                                name="stapler-3")
        self.assertEqual(self.staple_of(p.port)[1], None)

    def test_static_answer_of_an_expired_signer_is_a_warning(self):
        static = os.path.join(self.tmp, "short.der")
        from harness import OPENSSL, run
        run([OPENSSL, "ocsp", "-index", self.pki.index, "-rsigner", self.signer[0], "-rkey",
             self.signer[1], "-CA", self.pki.inter + ".pem", "-issuer", self.pki.inter + ".pem",
             "-cert", self.pki.ecdsa["leaf"], "-respout", static, "-no_nonce", "-ndays", "1"])
        cert = dict(self.pki.ecdsa, ocsp_response=static)
        p = self.proxy(certs=[cert], clock_offset=self.offset_leaving(-120))
        self.wait_log(p, "OCSP response not stapled")
        self.assertEqual(self.staple_of(p.port)[1], None)
        rc, out, err = self.check_config(p.config_path, clock_offset=self.offset_leaving(30))
        until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.signer_expiry))
        self.assertIn("staple:      good, valid until %s" % until, out)


class IssuerDiscoveryTest(StaplingCase):
    """A chain file with the leaf alone: the issuer comes from the leaf's caIssuers URL."""

    def setUp(self):
        super().setUp()
        inter = self.pki.inter + ".pem"
        files = {"inter": self.pki.der(inter),
                 "bundle": self.pki.pkcs7([self.pki.stranger + ".pem", inter], "inter.p7c"),
                 "stranger": self.pki.der(self.pki.stranger + ".pem")}
        self.files = self.start(["/usr/bin/python3", os.path.join(HERE, "ocsp_faults.py"),
                                 str(self.pki.files_port)] +
                                ["%s=%s" % kv for kv in files.items()], "files")
        wait_until(lambda: "ready" in self.files.log() or not self.files.alive(),
                   what="file server")

    def leaf_only(self, name, ca_issuers):
        leaf = self.pki.leaf(name, ca_issuers=ca_issuers)
        self.pki.write_index({})  # so that the responder knows the new leaf
        return {"cert": leaf["leaf"], "key": leaf["key"], "leaf": leaf["leaf"],
                "serial": leaf["serial"]}

    def test_issuer_fetched_cached_and_stapled_from_the_first_start(self):
        cert = self.leaf_only("issuer-der", "inter/inter.crt")
        self.start_responder()
        p = self.stapling_proxy(certs=[cert], name="first")
        self.wait_log(p, "issuer-der.pem: issuer /CN=stapler test intermediate fetched from "
                         "%sinter/inter.crt (DER)" % self.pki.files_url)
        self.wait_log(p, "issuer-der.pem: good from")
        self.assertEqual(self.staple_of(p.port, verify=False, servername="issuer-der.example"),
                         ("issuer-der", "good", cert["serial"]))
        self.assertEqual(len([f for f in os.listdir(self.cache) if f.endswith(".issuer")]), 1)
        rc, out, err = self.check_config(p.config_path)
        self.assertEqual(rc, 0, err)
        self.assertIn("issuer:      /CN=stapler test intermediate, cached in %s, fetched from "
                      "%sinter/inter.crt" % (self.cache, self.pki.files_url), out)
        self.assertEqual(p.stop(), 0, p.log())
        # Later starts need neither the file server nor the responder.
        self.files.stop()
        q = self.stapling_proxy(certs=[cert], name="second")
        self.wait_log(q, "issuer-der.pem: using the cached issuer /CN=stapler test intermediate")
        self.wait_log(q, "using the cached answer")
        self.assertEqual(self.staple_of(q.port, verify=False,
                                        servername="issuer-der.example")[1], "good")

    def test_issuer_from_a_pkcs7_bundle(self):
        cert = self.leaf_only("issuer-p7", "bundle/inter.p7c")
        self.start_responder()
        p = self.stapling_proxy(certs=[cert])
        self.wait_log(p, "issuer-p7.pem: issuer /CN=stapler test intermediate fetched from "
                         "%sbundle/inter.p7c (PKCS#7)" % self.pki.files_url)
        self.wait_log(p, "issuer-p7.pem: good from")
        self.assertEqual(self.staple_of(p.port, verify=False,
                                        servername="issuer-p7.example")[1], "good")

    def test_certificate_that_did_not_sign_the_leaf_is_refused(self):
        cert = self.leaf_only("issuer-wrong", "stranger/stranger.crt")
        p = self.stapling_proxy(certs=[cert])
        self.wait_log(p, "issuer-wrong.pem: issuer fetch from %sstranger/stranger.crt failed (1 "
                         "in a row): /CN=stranger CA did not sign this certificate"
                      % self.pki.files_url)
        self.assertEqual(self.staple_of(p.port, verify=False,
                                        servername="issuer-wrong.example")[1], None)
        self.assertEqual([f for f in os.listdir(self.cache) if f.endswith(".issuer")], [])


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
                                             signer="stranger"),
                 "same": self.static}
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

    def test_interim_responses_are_skipped(self):
        cert = dict(self.pki.ecdsa, ocsp_response=self.static,
                    ocsp_url="http://127.0.0.1:%d/interim/" % self.faults.port)
        p = self.stapling_proxy(certs=[cert], clock_offset=DUE)
        self.wait_log(p, "ecdsa.chain.pem: good from")

    def test_other_content_type_is_logged_and_accepted(self):
        cert = dict(self.pki.ecdsa, ocsp_response=self.static,
                    ocsp_url="http://127.0.0.1:%d/octet/" % self.faults.port)
        p = self.stapling_proxy(certs=[cert], clock_offset=DUE)
        self.wait_log(p, "ecdsa.chain.pem: good from")
        self.assertIn("answered with Content-Type 'application/octet-stream', not "
                      "application/ocsp-response", p.log())

    def test_the_staple_in_use_again_is_not_a_failure(self):
        """A cache in front of the responder (RFC 5019) hands out the same answer until it is
        stale: wait for its nextUpdate to come nearer instead of retrying at once."""
        cert = dict(self.pki.ecdsa, ocsp_response=self.static,
                    ocsp_url="http://127.0.0.1:%d/same/" % self.faults.port)
        p = self.stapling_proxy(certs=[cert], clock_offset=DUE)
        self.wait_log(p, "ecdsa.chain.pem: the responder sent the staple already in use")
        log = p.log()
        self.assertNotIn("failed", log)
        # Ten hours are left of the answer: half of that, give or take 5 % of the ten hours.
        m = re.search(r"staple already in use .*next refresh in (\d+)h(\d+)m", log)
        self.assertTrue(m, log)
        self.assertTrue(4 * 60 + 29 <= int(m.group(1)) * 60 + int(m.group(2)) <= 5 * 60 + 30, log)
        self.assertEqual(self.staple_of(p.port)[1], "good")

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
