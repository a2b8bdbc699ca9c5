"""TLS termination with real clients: certificate choice per client, SNI, versions, ALPN, and
static OCSP staples sent only when asked and only with their own certificate."""
import os
import re
import socket
import struct
import subprocess

from harness import StaplerCase, run, OPENSSL, STAPLER


def client_hello(server_name):
    """One TLS record with a TLS 1.3 ClientHello whose server_name is `server_name` (bytes, any),
    for names no real client would send."""
    def vec8(b):
        return struct.pack("!B", len(b)) + b

    def vec16(b):
        return struct.pack("!H", len(b)) + b

    def ext(kind, body):
        return struct.pack("!H", kind) + vec16(body)

    exts = (ext(0, vec16(b"\x00" + vec16(server_name))) +
            ext(10, vec16(struct.pack("!HH", 29, 23))) +               # X25519, P-256
            ext(13, vec16(struct.pack("!HHH", 0x0403, 0x0804, 0x0401))) +
            ext(43, vec8(struct.pack("!HH", 0x0304, 0x0303))) +         # TLS 1.3, 1.2
            ext(51, vec16(struct.pack("!HH", 29, 32) + os.urandom(32))))  # key_share
    body = (b"\x03\x03" + os.urandom(32) + vec8(os.urandom(32)) +
            vec16(struct.pack("!HHH", 0x1301, 0x1302, 0xc02b)) + vec8(b"\x00") + vec16(exts))
    message = b"\x01" + struct.pack("!I", len(body))[1:] + body
    return b"\x16\x03\x01" + vec16(message)


class DualCertificateTest(StaplerCase):
    def setUp(self):
        super().setUp()
        self.rsa = dict(self.pki.rsa, ocsp_response=self.pki.staple(
            self.pki.rsa, os.path.join(self.tmp, "rsa.der")))
        self.ecdsa = dict(self.pki.ecdsa, ocsp_response=self.pki.staple(
            self.pki.ecdsa, os.path.join(self.tmp, "ecdsa.der"), signer="issuer"))
        self.p = self.proxy(certs=[self.rsa, self.ecdsa])

    def assert_served(self, out, leaf, stapled=True):
        self.assertIn("Verify return code: 0 (ok)", out)
        self.assertEqual(self.served_subject(out), leaf["subject"], out)
        if stapled:
            self.assertIn("OCSP Response Status: successful", out)
            self.assertIn("Cert Status: good", out)
            answer = out[out.index("Responses:"):out.index("Cert Status")]
            serials = re.findall(r"Serial Number: ([0-9A-F]+)", answer)
            self.assertEqual(serials, [leaf["serial"]], "staple must be the served cert's own")

    def test_tls13_default_client_gets_ecdsa_with_its_staple(self):
        rc, out = self.s_client(self.p.port, status=True)
        self.assertEqual(rc, 0, out)
        self.assertIn("TLSv1.3", out)
        self.assert_served(out, self.pki.ecdsa)

    def test_tls13_rsa_only_client_gets_rsa_with_its_staple(self):
        rc, out = self.s_client(self.p.port, ["-sigalgs", "RSA-PSS+SHA256"], status=True)
        self.assertEqual(rc, 0, out)
        self.assert_served(out, self.pki.rsa)

    def test_tls12_ecdhe_rsa_suite_gets_rsa(self):
        rc, out = self.s_client(self.p.port, ["-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"],
                                status=True)
        self.assertEqual(rc, 0, out)
        self.assertIn("TLSv1.2", out)
        self.assert_served(out, self.pki.rsa)

    def test_tls12_ecdhe_ecdsa_suite_gets_ecdsa(self):
        rc, out = self.s_client(self.p.port,
                                ["-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384"],
                                status=True)
        self.assertEqual(rc, 0, out)
        self.assert_served(out, self.pki.ecdsa)

    def test_tls12_without_the_curve_in_groups_gets_rsa(self):
        # P-256 missing from supported_groups: RFC 8422 forbids the P-256 certificate.
        rc, out = self.s_client(self.p.port, ["-tls1_2", "-groups", "X25519"], status=True)
        self.assertEqual(rc, 0, out)
        self.assert_served(out, self.pki.rsa)

    def test_tls12_client_that_can_use_neither_fails_cleanly(self):
        rc, out = self.s_client(self.p.port, ["-tls1_2", "-groups", "X25519", "-cipher",
                                              "ECDHE-ECDSA-AES128-GCM-SHA256"])
        self.assertNotEqual(rc, 0)
        self.assertIn("handshake failure", out)
        rc, out = self.s_client(self.p.port)
        self.assertEqual(rc, 0, out)
        self.wait_log(self.p, "client cannot verify any certificate")

    def test_no_staple_requested_still_serves(self):
        rc, out = self.s_client(self.p.port)
        self.assertEqual(rc, 0, out)
        self.assertNotIn("OCSP Response Status", out)

    def test_curl_cert_status_both_certificates(self):
        url = "https://localhost:%d/echo" % self.p.port
        p = self.curl(url, ["--cert-status"])
        self.assertEqual(p.returncode, 0, p.stderr)
        p = self.curl(url, ["--cert-status", "--tlsv1.2", "--tls-max", "1.2", "--ciphers",
                            "ECDHE-RSA-AES128-GCM-SHA256", "-v"])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(b"localhost-rsa", p.stderr)


class SniTest(StaplerCase):
    def setUp(self):
        super().setUp()
        certs = [self.pki.rsa, self.pki.ecdsa, self.pki.other_ecdsa, self.pki.wild_rsa]
        self.p = self.proxy(certs=certs, extra="default_name: localhost\n")

    def subject_for(self, servername, args=()):
        rc, out = self.s_client(self.p.port, list(args), servername=servername)
        return self.served_subject(out) if rc == 0 else None

    def test_exact_name(self):
        self.assertEqual(self.subject_for("other.example"), "other-ecdsa")
        self.assertEqual(self.subject_for("OTHER.Example"), "other-ecdsa")

    def test_wildcard_one_label(self):
        rc, out = self.s_client(self.p.port, servername="a.wild.example",
                                args=["-verify_hostname", "a.wild.example"])
        self.assertEqual(rc, 0, out)
        self.assertEqual(self.served_subject(out), "wild-rsa")
        # A wildcard covers one label only: a.b.wild.example gets the default certificate.
        self.assertEqual(self.subject_for("a.b.wild.example"), "localhost-ecdsa")

    def test_unknown_or_absent_name_gets_default(self):
        rc, out = self.s_client(self.p.port, servername="unknown.example")
        self.assertEqual(self.served_subject(out), "localhost-ecdsa", out)
        rc, out = self.s_client(self.p.port, servername=None)
        self.assertEqual(self.served_subject(out), "localhost-ecdsa", out)

    def test_malformed_sni_refused_with_its_reason(self):
        cases = [(b"evil\n2026", "control byte"), (b"a b.example", "space"),
                 (b"a\x00b", "NUL byte"), (b"a..example", "empty label"),
                 (b".example", "empty label"), (b"x" * 300, "longer than 255 bytes"),
                 (b"", "empty"), (b"\xc3\xa9.example", "byte other than"),
                 (b"a" * 64 + b".example", "label longer than 63 bytes")]
        for name, reason in cases:
            with socket.create_connection(("127.0.0.1", self.p.port), timeout=10) as s:
                s.sendall(client_hello(name))
                reply = s.recv(5)
                self.assertEqual(reply[:1], b"\x15", "%r: an alert, not %r" % (name, reply))
        for name, reason in cases:
            self.wait_log(self.p, "is not a host name (%s" % reason)
        log = self.p.log()
        self.assertIn('TLS handshake failed: SNI "evil\\x0a2026" is not a host name', log)
        self.assertIn('SNI "a\\x00b" is not a host name (NUL byte)', log)
        self.assertIn('SNI "\\xc3\\xa9.example" is not a host name', log)
        self.assertNotIn("no details", log)
        # Host names as they are sent: any case, an underscore, the root's final dot.
        self.assertEqual(self.subject_for("other.example."), "other-ecdsa")
        self.assertEqual(self.subject_for("Other.Example"), "other-ecdsa")
        self.assertEqual(self.subject_for("my_host.wild.example"), "wild-rsa")

    def test_single_certificate_name_refuses_client_that_cannot_use_it(self):
        rc, out = self.s_client(self.p.port, ["-sigalgs", "RSA-PSS+SHA256"],
                                servername="other.example")
        self.assertNotEqual(rc, 0)
        self.assertEqual(self.subject_for("other.example"), "other-ecdsa")


class VersionAndAlpnTest(StaplerCase):
    def test_min_version_13_refuses_tls12(self):
        p = self.proxy(extra='tls:\n  min_version: "1.3"\n')
        rc, out = self.s_client(p.port, ["-tls1_2"])
        self.assertNotEqual(rc, 0, out)
        rc, out = self.s_client(p.port, ["-tls1_3"])
        self.assertEqual(rc, 0, out)

    def test_alpn(self):
        p = self.proxy()  # http mode: h2 first, then http/1.1
        rc, out = self.s_client(p.port, ["-alpn", "http/1.1,h2"])
        self.assertEqual(rc, 0, out)
        self.assertIn("ALPN protocol: h2", out)
        rc, out = self.s_client(p.port, ["-alpn", "http/1.1"])
        self.assertIn("ALPN protocol: http/1.1", out)
        rc, out = self.s_client(p.port, ["-alpn", "spdy/3"])
        self.assertNotEqual(rc, 0, out)
        self.assertIn("no application protocol", out)
        q = self.proxy(extra="tls:\n  alpn: [http/1.1]\n", name="h1only")
        rc, out = self.s_client(q.port, ["-alpn", "h2,http/1.1"])
        self.assertIn("ALPN protocol: http/1.1", out)


class StapleValidationTest(StaplerCase):
    def check(self, certs):
        cfg = self.write("check.yaml", "listen:\n  - address: 127.0.0.1:1\nbackend:\n"
                         "  address: 127.0.0.1:2\ncertificates:\n" + "".join(
                             "  - cert: %s\n    key: %s\n%s" % (
                                 c["cert"], c["key"],
                                 "    ocsp_response: %s\n" % c["ocsp_response"]
                                 if c.get("ocsp_response") else "") for c in certs))
        p = subprocess.run([STAPLER, "-t", "-c", cfg], capture_output=True, timeout=30)
        return p.returncode, p.stdout.decode() + p.stderr.decode()

    def test_staple_for_another_certificate_is_refused(self):
        wrong = self.pki.staple(self.pki.rsa, os.path.join(self.tmp, "rsa.der"))
        rc, out = self.check([dict(self.pki.ecdsa, ocsp_response=wrong)])
        self.assertEqual(rc, 1, out)
        self.assertIn("CertID mismatch", out)

    def test_garbage_staple_is_refused(self):
        junk = self.write("junk.der", "this is not DER")
        rc, out = self.check([dict(self.pki.ecdsa, ocsp_response=junk)])
        self.assertEqual(rc, 1, out)
        self.assertIn("not a DER OCSPResponse", out)

    def test_staple_without_next_update_is_refused(self):
        path = os.path.join(self.tmp, "nonext.der")
        run([OPENSSL, "ocsp", "-index", self.pki.index, "-rsigner", self.pki.path("ocsp.pem"),
             "-rkey", self.pki.path("ocsp.key"), "-CA", self.pki.inter + ".pem", "-issuer",
             self.pki.inter + ".pem", "-cert", self.pki.ecdsa["leaf"], "-respout", path,
             "-no_nonce"])
        rc, out = self.check([dict(self.pki.ecdsa, ocsp_response=path)])
        self.assertEqual(rc, 1, out)
        self.assertIn("no nextUpdate", out)

    def test_check_reports_certificates(self):
        good = self.pki.staple(self.pki.ecdsa, os.path.join(self.tmp, "e.der"))
        rc, out = self.check([self.pki.rsa, dict(self.pki.ecdsa, ocsp_response=good),
                              self.pki.must_staple])
        self.assertEqual(rc, 0, out)
        self.assertIn("RSA-2048", out)
        self.assertIn("ECDSA P-256", out)
        self.assertIn("OCSP URL:    %s" % self.pki.ocsp_url, out)
        self.assertIn("must-staple: yes", out)
        self.assertIn("staple:      good", out)
        self.assertIn("configuration OK", out)

    def test_key_mismatch_and_chain_order(self):
        rc, out = self.check([dict(self.pki.rsa, key=self.pki.ecdsa["key"])])
        self.assertEqual(rc, 1, out)
        self.assertIn("private key does not match", out)
        reversed_chain = self.write("rev.pem", open(self.pki.inter + ".pem").read() +
                                    open(self.pki.rsa["leaf"]).read())
        rc, out = self.check([dict(self.pki.rsa, cert=reversed_chain)])
        self.assertEqual(rc, 1, out)


class MustStapleTest(StaplerCase):
    def test_must_staple_certificate(self):
        staple = self.pki.staple(self.pki.must_staple, os.path.join(self.tmp, "m.der"))
        with_staple = dict(self.pki.must_staple, ocsp_response=staple)
        p = self.proxy(certs=[self.pki.ecdsa, with_staple])
        rc, out = self.s_client(p.port, servername="must.example", status=True,
                                args=["-verify_hostname", "must.example"])
        self.assertEqual(rc, 0, out)
        self.assertIn("Cert Status: good", out)

    def test_must_staple_without_staple_refuses_clients_that_ask(self):
        p = self.proxy(certs=[self.pki.ecdsa, self.pki.must_staple])
        rc, out = self.s_client(p.port, servername="must.example", status=True)
        self.assertNotEqual(rc, 0, out)
        self.wait_log(p, "requires a valid staple")
        rc, out = self.s_client(p.port, servername="must.example",
                                args=["-verify_hostname", "must.example"])
        self.assertEqual(rc, 0, out)
