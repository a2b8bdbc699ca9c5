"""Certificates at load time and at selection: an expired one loads with a warning and loses to
a valid one, names come from the subjectAltName alone, a wildcard serves the clients an exact
name's certificates cannot, and a chain file in the wrong order is reported as such."""
import re
import signal
import time
import urllib.request

from harness import StaplerCase, free_port

DAY = 86400


def http_get(port, path):
    """GET over plain HTTP (the admin endpoint). Returns (status, body)."""
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


class ExpiredCertificateTest(StaplerCase):
    def setUp(self):
        super().setUp()
        now = int(time.time())
        # Made once per run: "expired" and "valid" hold for any test started within the day.
        self.expired = self.pki.leaf_dated("expired-ecdsa", "ec", ["expiry.example"],
                                           now - 40 * DAY, now - DAY)
        self.valid_rsa = self.pki.leaf_dated("valid-rsa", "rsa", ["expiry.example"],
                                             now - DAY, now + 30 * DAY)
        self.future = self.pki.leaf_dated("future-ecdsa", "ec", ["future.example"],
                                          now + 10 * DAY, now + 40 * DAY)

    def served(self, port, servername, args=()):
        rc, out = self.s_client(port, list(args), servername=servername, verify=False)
        return self.served_subject(out)

    def test_expired_certificate_loads_and_a_valid_one_is_preferred(self):
        admin = free_port()
        p = self.proxy(certs=[self.pki.ecdsa, self.expired, self.valid_rsa],
                       extra="admin:\n  address: 127.0.0.1:%d\n" % admin)
        self.wait_log(p, "expired-ecdsa.chain.pem: the certificate expired at")
        # A client that could take either gets the valid certificate, though ECDSA comes first
        # otherwise; one that verifies only ECDSA still gets the expired one.
        self.assertEqual(self.served(p.port, "expiry.example"), "valid-rsa")
        self.assertEqual(self.served(p.port, "expiry.example", ["-sigalgs", "ECDSA+SHA256"]),
                         "expired-ecdsa")
        metrics = http_get(admin, "/metrics")[1]
        seconds = dict(re.findall(r'stapler_certificate_expiry_seconds\{certificate="[^"]*/'
                                  r'([a-z-]+)\.chain\.pem",key="[a-z]+"\} (-?\d+)', metrics))
        self.assertLess(int(seconds["expired-ecdsa"]), -DAY + 120, metrics)
        self.assertGreater(int(seconds["valid-rsa"]), 29 * DAY, metrics)
        status, body = http_get(admin, "/healthz")
        self.assertEqual(status, 503)
        self.assertRegex(body, r"expired-ecdsa\.chain\.pem expired at \d{4}-\d\d-\d\dT")

    def test_reload_with_an_expired_certificate_is_not_refused(self):
        p = self.proxy(certs=[self.pki.ecdsa])
        self.rewrite_config(p, [self.pki.ecdsa, self.expired, self.future])
        p.send_signal(signal.SIGHUP)
        self.wait_log(p, "reloaded: generation 2")
        self.assertNotIn("reload refused", p.log())
        self.assertIn("future-ecdsa.chain.pem: the certificate is not valid before", p.log())
        self.assertEqual(self.served(p.port, "expiry.example"), "expired-ecdsa")
        self.assertEqual(self.served(p.port, "future.example"), "future-ecdsa")

    def test_check_warns_and_passes(self):
        p = self.proxy(certs=[self.pki.ecdsa, self.expired, self.future])
        rc, out, err = self.check_config(p.config_path)
        self.assertEqual(rc, 0, err)
        self.assertIn("expired-ecdsa.chain.pem: the certificate expired at", err)
        self.assertIn("future-ecdsa.chain.pem: the certificate is not valid before", err)


class NameTest(StaplerCase):
    def test_cn_is_no_name_beside_a_subject_alt_name(self):
        """RFC 6125 6.4.4: a certificate with a subjectAltName is not valid for its CN."""
        leaf = self.pki.leaf("cn-and-ip", subject="cn-and-ip.example", names=["IP:127.0.0.1"])
        p = self.proxy(certs=[self.pki.ecdsa])
        self.rewrite_config(p, [self.pki.ecdsa, leaf])
        rc, out, err = self.check_config(p.config_path)
        self.assertEqual(rc, 1, out)
        self.assertIn("cn-and-ip.chain.pem: the subjectAltName names no DNS host", err)
        self.assertIn("IP address", err)

    def test_wildcard_serves_what_the_exact_name_cannot(self):
        exact = self.pki.leaf("exact-rsa", kind="rsa", names=["a.shadow.example"])
        wildcard = self.pki.leaf("wild-ecdsa", names=["*.shadow.example"])
        p = self.proxy(certs=[self.pki.ecdsa, exact, wildcard])
        rc, out = self.s_client(p.port, servername="a.shadow.example")
        self.assertEqual(rc, 0, out)
        self.assertEqual(self.served_subject(out), "exact-rsa")  # the exact name first
        rc, out = self.s_client(p.port, ["-sigalgs", "ECDSA+SHA256"],
                                servername="a.shadow.example")
        self.assertEqual(rc, 0, out)
        self.assertEqual(self.served_subject(out), "wild-ecdsa")
        rc, out = self.s_client(p.port, ["-sigalgs", "ECDSA+SHA256"],
                                servername="b.shadow.example")
        self.assertEqual(self.served_subject(out), "wild-ecdsa")

    def test_chain_in_the_wrong_order_is_reported(self):
        reversed_chain = self.write("reversed.pem", open(self.pki.inter + ".pem").read() +
                                    open(self.pki.ecdsa["leaf"]).read())
        p = self.proxy(certs=[self.pki.rsa])
        self.rewrite_config(p, [self.pki.rsa, {"cert": reversed_chain,
                                               "key": self.pki.ecdsa["key"]}])
        rc, out, err = self.check_config(p.config_path)
        self.assertEqual(rc, 1, out)
        self.assertIn("reversed.pem: the chain is in the wrong order: certificate 1 issued "
                      "certificate 2", err)
        self.assertNotIn("names no DNS host", err)
