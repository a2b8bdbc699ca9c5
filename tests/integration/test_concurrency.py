"""Workers and the control thread sharing objects: full and resumed TLS handshakes, each asking
for a staple, on two workers while the control thread replaces every staple and the ticket key
set every few milliseconds (STAPLER_TEST_CHURN_MS), so each handshake races with reclamation.
Run under ThreadSanitizer and AddressSanitizer too, where any race or use after free ends the
process with an error (and fails the test)."""
import os
import socket
import ssl
import subprocess
import threading
import time

from harness import StaplerCase, OPENSSL, SANITIZED, free_port, yaml_config


class ReclamationStressTest(StaplerCase):
    SECONDS = 8

    def test_handshakes_race_staple_and_ticket_replacement(self):
        certs = []
        for name in ("rsa", "ecdsa"):
            leaf = dict(getattr(self.pki, name))
            leaf["ocsp_response"] = self.pki.staple(leaf, os.path.join(self.tmp, name + ".der"))
            certs.append(leaf)
        backend = self.start_backend()
        port = free_port()
        text = yaml_config(port, "127.0.0.1:%d" % backend.port, certs,
                           "workers: 2\nocsp:\n  fetch: false\n")
        p = self.start_churning(text, {"STAPLER_TEST_CHURN_MS": "2"})
        deadline = time.monotonic() + self.SECONDS
        results = {"full": 0, "reused": 0, "stapled": 0, "failed": 0}
        lock = threading.Lock()

        def count(**kw):
            with lock:
                for k, v in kw.items():
                    results[k] += v

        def s_client(args):
            """Full handshakes asking for a staple (with -reconnect: five TLS 1.2 resumptions)."""
            while time.monotonic() < deadline:
                r = subprocess.run([OPENSSL, "s_client", "-connect", "127.0.0.1:%d" % port,
                                    "-servername", "localhost", "-status"] + args,
                                   input=b"", capture_output=True, timeout=30)
                out = r.stdout.decode(errors="replace")
                count(full=out.count("New, TLS"), reused=out.count("Reused, TLS"),
                      stapled=out.count("OCSP Response Status: successful"),
                      failed=int(r.returncode != 0))

        def tls13_resumer():
            """TLS 1.3: a full handshake, then five resumed with its ticket."""
            while time.monotonic() < deadline:
                ctx = self.tls_context()
                session = None
                for i in range(6):
                    try:
                        s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port),
                                                                     timeout=10),
                                            server_hostname="localhost", session=session)
                        s.settimeout(0.2)
                        try:
                            s.recv(1)  # takes the tickets in
                        except (socket.timeout, ssl.SSLError):
                            pass
                        count(reused=int(s.session_reused), full=int(not s.session_reused))
                        session = s.session
                        s.close()
                    except OSError:
                        count(failed=1)
        threads = [threading.Thread(target=s_client, args=(a,)) for a in
                   ([], ["-sigalgs", "RSA-PSS+SHA256"], ["-tls1_2", "-reconnect"])]
        threads.append(threading.Thread(target=tls13_resumer))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print(results, end=" ")
        self.assertEqual(results["failed"], 0)
        self.assertGreater(results["full"], 10 if SANITIZED else 40)
        self.assertGreater(results["reused"], 10 if SANITIZED else 40)
        self.assertGreater(results["stapled"], 10 if SANITIZED else 40)
        self.assertTrue(p.alive(), p.log()[-3000:])
        self.assertIn("replacing staples and ticket keys continuously", p.log())

    def start_churning(self, text, env_extra):
        os.environ.update(env_extra)
        try:
            return self.start_stapler(text)
        finally:
            for k in env_extra:
                del os.environ[k]
