"""Operating under pressure: the process out of file descriptors, a second instance on the
same port, and what `stapler -t` says about a machine a configuration cannot start on."""
import os
import resource
import signal
import socket
import subprocess
import time

from harness import (SANITIZED, STAPLER, StaplerCase, free_port, read_http_response, wait_until,
                     yaml_config)
from test_runtime import http_get


def cpu_seconds(pid):
    """utime + stime of a process, in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class FdExhaustionTest(StaplerCase):
    CLIENTS = 3000

    def test_out_of_descriptors_pauses_and_recovers(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, self.CLIENTS + 500)), hard))
        backend = self.start_backend()
        port, admin = free_port(), free_port()
        cfg = self.write("stapler.yaml", yaml_config(
            port, "127.0.0.1:%d" % backend.port, [self.pki.rsa, self.pki.ecdsa],
            "workers: 2\nocsp:\n  fetch: false\nadmin:\n  address: 127.0.0.1:%d\n"
            "timeouts: { handshake: 60s, shutdown: 5s }\n" % admin))
        p = self.start(["prlimit", "--nofile=256:256", "--", STAPLER, "-c", cfg], "stapler")
        wait_until(lambda: "forwarding to" in p.log() or not p.alive(), what="start")
        self.assertIn("needs about", p.log())  # the limit cannot hold max_connections: said
        early = self.tls_connect(port)  # established before the descriptors run out
        idle = []
        try:
            for _ in range(self.CLIENTS):  # idle TCP connections, no TLS: they hold descriptors
                s = socket.socket()
                s.setblocking(False)
                s.connect_ex(("127.0.0.1", port))
                idle.append(s)
            time.sleep(1.0)
            before = cpu_seconds(p.pid)
            time.sleep(2.0)
            busy = cpu_seconds(p.pid) - before
            print("%.2f CPU seconds in 2 s out of descriptors" % busy, end="; ")
            # Spinning on EMFILE burns both cores; paused accepting burns next to nothing.
            self.assertLess(busy, 0.5, "stapler used %.2f CPU seconds in 2 s while out of "
                                       "descriptors" % busy)
            # A request now needs a backend connection and there is no descriptor for it:
            # a 502 that says why, counted apart from the backend's failures.
            early.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertEqual(read_http_response(early)[0], 502)
        finally:
            early.close()
            for s in idle:
                s.close()
        t0 = time.monotonic()

        def served():
            try:
                with self.tls_connect(port, timeout=2) as s:
                    s.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
                    return read_http_response(s)[0] == 200
            except OSError:
                return False
        wait_until(served, timeout=15, interval=0.1, what="HTTPS after the clients left")
        back = time.monotonic() - t0
        self.assertEqual(http_get(admin, "/healthz")[0], 200)
        print("service back %.2f s after the clients left" % back)
        # Accepting resumes within the 500 ms pause; what the clients left in the accept
        # queue (3000 closed connections) is drained before the next one is served: under a
        # second on a quiet machine, more when the machine is busy.
        self.assertLess(back, 5.0)
        log = p.log()
        self.assertIn("accepting again in 500 ms", log)
        self.assertLess(log.count("\n"), 400, "the log was flooded")
        status, metrics = http_get(admin, "/metrics")
        self.assertRegex(metrics, r"stapler_accept_pauses_total [1-9]")
        self.assertRegex(metrics, r"stapler_backend_no_fd_total [1-9]")
        self.assertRegex(metrics, r'stapler_backend_errors_total\{kind="connect_failed"\} 0')
        self.assertIn("cannot open a backend connection: no file descriptor left", log)
        # Out of descriptors again, and SIGTERM while the clients still hold them: the
        # shutdown deadline (5 s) holds.
        idle = []
        try:
            for _ in range(self.CLIENTS):
                s = socket.socket()
                s.setblocking(False)
                s.connect_ex(("127.0.0.1", port))
                idle.append(s)
            time.sleep(1.0)
            t0 = time.monotonic()
            p.send_signal(signal.SIGTERM)
            self.assertEqual(p.wait(15), 0)
            self.assertLess(time.monotonic() - t0, 5 + 2)
        finally:
            for s in idle:
                s.close()


class PortOwnershipTest(StaplerCase):
    def test_second_instance_refused(self):
        first = self.proxy()
        port = first.port
        text = yaml_config(port, "127.0.0.1:%d" % first.backend.port,
                           [self.pki.rsa, self.pki.ecdsa], "workers: 2\nocsp:\n  fetch: false\n")
        second = self.start_stapler(text, name="second", expect_ready=False)
        second.expect_fail = True
        self.assertEqual(second.wait(20), 1)
        self.assertIn("address already in use by another process", second.log())
        self.assertNotIn("listening on", second.log())
        # The first keeps every connection.
        for _ in range(20):
            with self.tls_connect(port) as s:
                s.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
                self.assertEqual(read_http_response(s)[0], 200)

    def test_sharing_on_purpose(self):
        backend = self.start_backend()
        port = free_port()
        text = yaml_config(port, "127.0.0.1:%d" % backend.port, [self.pki.rsa, self.pki.ecdsa],
                           "workers: 1\nocsp:\n  fetch: false\n").replace(
            "  - address: 127.0.0.1:%d\n" % port,
            "  - address: 127.0.0.1:%d\n    reuse_port: true\n" % port)
        self.start_stapler(text, name="a")
        self.start_stapler(text, name="b")  # starts: sharing was asked for

    def test_reload_refused_when_new_address_taken(self):
        p = self.proxy()
        # The holder allows sharing, as another stapler would: only the probe can tell.
        taken = socket.socket()
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        self.addCleanup(taken.close)
        with open(p.config_path) as f:
            text = f.read()
        text = text.replace("listen:\n", "listen:\n  - address: 127.0.0.1:%d\n"
                            % taken.getsockname()[1])
        with open(p.config_path, "w") as f:
            f.write(text)
        p.send_signal(signal.SIGHUP)
        self.wait_log(p, "reload refused")
        self.assertIn("already in use", p.log())


class CheckTest(StaplerCase):
    def check(self, text):
        cfg = self.write("check.yaml", text)
        out = subprocess.run([STAPLER, "-t", "-c", cfg], capture_output=True, timeout=30)
        return out.returncode, (out.stdout + out.stderr).decode()

    def base(self, port, extra=""):
        return yaml_config(port, "127.0.0.1:4000", [self.pki.rsa, self.pki.ecdsa],
                           "ocsp:\n  fetch: false\n" + extra)

    def test_address_in_use(self):
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        self.addCleanup(taken.close)
        rc, out = self.check(self.base(taken.getsockname()[1]))
        self.assertEqual(rc, 1, out)
        self.assertIn("already in use by python3", out)
        rc, out = self.check(self.base(free_port(), "admin:\n  address: 127.0.0.1:%d\n"
                                       % taken.getsockname()[1]))
        self.assertEqual(rc, 1, out)
        self.assertIn("admin.address", out)

    def test_running_instance_is_fine_for_a_reload(self):
        p = self.proxy()
        with open(p.config_path) as f:
            rc, out = self.check(f.read())
        self.assertEqual(rc, 0, out)
        self.assertIn("held by stapler (pid %d)" % p.pid, out)

    def as_nobody(self):
        """argv prefix running a command as an unprivileged user who can read the test files."""
        if os.geteuid() != 0:
            return []
        os.chmod(self.tmp, 0o755)
        os.chmod(self.pki.dir, 0o755)
        for f in os.listdir(self.pki.dir):
            os.chmod(os.path.join(self.pki.dir, f), 0o644)
        return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"]

    def test_privileged_port_without_capability(self):
        if os.geteuid() != 0:
            self.skipTest("runs as root to drop to an unprivileged user")
        cfg = self.write("priv.yaml", self.base(443))
        out = subprocess.run(self.as_nobody() + [STAPLER, "-t", "-c", cfg], capture_output=True,
                             timeout=30)
        text = (out.stdout + out.stderr).decode()
        self.assertEqual(out.returncode, 1, text)
        self.assertIn("CAP_NET_BIND_SERVICE", text)

    def test_unwritable_cache_and_low_fd_limit(self):
        ro = os.path.join(self.tmp, "ro")
        os.mkdir(ro, 0o555)
        text = self.base(free_port()).replace("ocsp:\n  fetch: false\n",
                                              "ocsp:\n  cache_dir: %s/cache\n" % ro)
        cfg = self.write("cache.yaml", text + "limits: { max_connections: 5000 }\n")
        argv = self.as_nobody() + ["prlimit", "--nofile=1024:1024", STAPLER, "-t", "-c", cfg]
        out = subprocess.run(argv, capture_output=True, timeout=30)
        text = (out.stdout + out.stderr).decode()
        self.assertEqual(out.returncode, 1, text)
        self.assertIn("not writable", text)
        self.assertIn("max_connections 5000 needs about", text)


class MemoryAfterPeakTest(StaplerCase):
    """Buffers taken at a peak of traffic go back to the system once it is over: memory
    follows the load instead of staying at its highest point."""
    CLIENTS = 48

    def pool_bytes(self, admin):
        status, text = http_get(admin, "/metrics")
        self.assertEqual(status, 200)
        found = {}
        for line in text.splitlines():
            if line.startswith("stapler_buffer_pool_bytes{"):
                state = line.split('state="', 1)[1].split('"', 1)[0]
                found[state] = int(line.rsplit(" ", 1)[1])
        self.assertEqual(set(found), {"in_use", "free"}, text)
        return found

    def test_buffers_return_after_a_peak(self):
        backend = self.start_backend()
        port, admin = free_port(), free_port()
        p = self.start_stapler(yaml_config(
            port, "127.0.0.1:%d" % backend.port, [self.pki.ecdsa],
            "workers: 1\nocsp:\n  fetch: false\nadmin:\n  address: 127.0.0.1:%d\n" % admin))
        rss_idle = p.rss_kib()
        # The peak: clients ask for big downloads and read nothing for a while, so stapler
        # holds what the backend sends until each connection's buffer limit.
        clients = []
        for _ in range(self.CLIENTS):
            s = self.tls_connect(port)
            s.sendall(b"GET /bytes?n=8000000 HTTP/1.1\r\nHost: x\r\n\r\n")
            clients.append(s)
        wait_until(lambda: self.pool_bytes(admin)["in_use"] >= self.CLIENTS * 2 * 32768,
                   what="buffers in use")
        rss_peak = p.rss_kib()
        for s in clients:
            s.close()
        wait_until(lambda: self.pool_bytes(admin)["in_use"] == 0, what="buffers returned")
        peak_free = self.pool_bytes(admin)["free"]
        self.assertGreater(peak_free, 16 * 32768)
        # Unused through one whole trim period (10 s), then freed: at most 16 are kept.
        wait_until(lambda: self.pool_bytes(admin)["free"] <= 16 * 32768, timeout=25,
                   interval=0.5, what="free buffers trimmed")
        rss_after = p.rss_kib()
        print("RSS idle %d KiB, peak %d KiB, after %d KiB; pool free at the peak's end %d KiB"
              % (rss_idle, rss_peak, rss_after, peak_free // 1024), end="; ")
        if not SANITIZED:  # the sanitizers' allocators keep freed memory on purpose
            # Most of what the peak took is gone (freed blocks' pages given back).
            self.assertLess(rss_after - rss_idle, (rss_peak - rss_idle) / 2)
