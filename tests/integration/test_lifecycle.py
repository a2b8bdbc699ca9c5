"""Process lifecycle and the command line: graceful stop, drain, start-up errors, -t, the
embedded default."""
import os
import signal
import socket
import subprocess
import threading
import time

from harness import StaplerCase, STAPLER, read_http_response, free_port, wait_until


class StopTest(StaplerCase):
    def test_sigterm_idle_exits_zero(self):
        p = self.proxy()
        with self.tls_connect(p.port) as s:  # an idle keep-alive connection is closed at once
            s.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
            read_http_response(s)
            p.send_signal(signal.SIGTERM)
            self.assertEqual(p.wait(10), 0, p.log())
        self.wait_log(p, "stopped")

    def test_sigterm_lets_inflight_request_finish(self):
        p = self.proxy()
        s = self.tls_connect(p.port)
        s.sendall(b"GET /echo?delay=1500 HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.3)
        p.send_signal(signal.SIGTERM)
        status, _, body, _ = read_http_response(s)
        self.assertEqual(status, 200)
        self.assertIn(b"delay=1500", body)
        s.close()
        self.assertEqual(p.wait(10), 0, p.log())
        # and it no longer accepts
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", p.port), timeout=2)

    def test_sigint_and_shutdown_timeout(self):
        p = self.proxy(extra="timeouts: { shutdown: 1s }\n")
        s = self.tls_connect(p.port)
        s.sendall(b"GET /echo?delay=20000 HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.3)
        t0 = time.monotonic()
        p.send_signal(signal.SIGINT)
        self.assertEqual(p.wait(10), 0, p.log())
        self.assertLess(time.monotonic() - t0, 8)
        self.wait_log(p, "timeouts.shutdown reached")
        self.assertIn('path="/echo?delay=20000" status=499', p.log())  # cut short, logged
        s.close()


class CommandLineTest(StaplerCase):
    def run_stapler(self, *args, timeout=30):
        p = subprocess.run([STAPLER] + list(args), capture_output=True, timeout=timeout)
        return p.returncode, p.stdout.decode() + p.stderr.decode()

    def test_version_and_help(self):
        rc, out = self.run_stapler("--version")
        self.assertEqual(rc, 0)
        self.assertTrue(out.startswith("stapler "))
        rc, out = self.run_stapler("--help")
        self.assertEqual(rc, 0)
        self.assertIn("-t -c FILE", out)
        rc, out = self.run_stapler("-t")
        self.assertEqual(rc, 2)
        rc, out = self.run_stapler("--bogus")
        self.assertEqual(rc, 2)

    def test_bad_config_refused_with_position(self):
        cfg = self.write("bad.yaml", "listen:\n  - address: 127.0.0.1:8443\n"
                         "backend:\n  address: 127.0.0.1:4000\n  mode: htpp\n")
        rc, out = self.run_stapler("-t", "-c", cfg)
        self.assertEqual(rc, 1)
        self.assertIn("bad.yaml:5:9: backend.mode: expected one of http | tcp, got 'htpp'", out)
        rc, out = self.run_stapler("-c", cfg)
        self.assertEqual(rc, 1)
        self.assertIn("not started", out)
        rc, out = self.run_stapler("-c", self.tmp + "/missing.yaml")
        self.assertEqual(rc, 1)
        self.assertIn("cannot read the config file", out)

    def test_check_refuses_what_would_stall_it(self):
        # Deep nesting, many aliases and files that are not files: refused at once.
        deep = self.write("deep.yaml", "listen: " + "[" * 80000 + "\n")
        aliases = self.write("aliases.yaml", "x: &x {k: 1}\nlisten: [" + "*x, " * 2000 + "*x]\n")
        fifo = os.path.join(self.tmp, "fifo.yaml")
        os.mkfifo(fifo)
        for path, want in ((deep, "deep.yaml:1:72: nesting deeper than 64 levels"),
                           (aliases, "aliases.yaml:2:1034: more than 256 aliases"),
                           (fifo, "fifo.yaml: cannot read the config file: it is a FIFO"),
                           (self.tmp, "cannot read the config file: it is a directory")):
            t0 = time.monotonic()
            rc, out = self.run_stapler("-t", "-c", path, timeout=20)
            self.assertEqual(rc, 1, out)
            self.assertIn(want, out)
            self.assertLess(time.monotonic() - t0, 5)

    def test_workers_auto_follows_cpu_affinity(self):
        if len(os.sched_getaffinity(0)) < 2:
            self.skipTest("needs two usable CPUs to tell the difference")
        from harness import yaml_config
        port = free_port()
        cfg = self.write("auto.yaml", yaml_config(port, "127.0.0.1:1", [self.pki.ecdsa],
                                                  "workers: auto\nocsp:\n  fetch: false\n"))
        p = self.start(["taskset", "-c", "0", STAPLER, "-c", cfg], "stapler")
        wait_until(lambda: "forwarding to" in p.log() or not p.alive(), what="stapler start")
        self.assertIn(", 1 worker(s),", p.log())
        self.assertEqual(p.stop(), 0, p.log())

    def test_port_in_use(self):
        blocker = socket.socket()
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        port = blocker.getsockname()[1]
        from harness import yaml_config
        cfg = self.write("s.yaml", yaml_config(port, "127.0.0.1:1", [self.pki.ecdsa]))
        rc, out = self.run_stapler("-c", cfg)
        blocker.close()
        self.assertEqual(rc, 1)
        self.assertIn("cannot listen on 127.0.0.1:%d" % port, out)

    def test_embedded_default(self):
        probe = socket.socket()
        try:
            probe.bind(("127.0.0.1", 8443))
        except OSError:
            self.skipTest("port 8443 is in use on this machine")
        finally:
            probe.close()
        p = self.start([STAPLER], "default")
        wait_until(lambda: "forwarding to" in p.log() or not p.alive(), timeout=30,
                   what="default start")
        self.wait_log(p, "self-signed")
        rc, out = self.s_client(8443, verify=False)
        self.assertIn("Server public key is 256 bit", out)
        rc, out = self.s_client(8443, ["-sigalgs", "RSA-PSS+SHA256"], verify=False)
        self.assertIn("Server public key is 2048 bit", out)
        r = subprocess.run(["curl", "-sk", "https://localhost:8443/", "-o", "/dev/null", "-w",
                            "%{http_code}"], capture_output=True, timeout=30)
        self.assertIn(r.stdout, (b"502", b"200", b"404"))
        self.assertEqual(p.stop(), 0, p.log())
