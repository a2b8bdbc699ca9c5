#!/usr/bin/python3
"""Builds the image from docker/Dockerfile as a user would (podman stands in for the Docker
engine, on the host network) and checks the running container: both certificates to the right
clients, a fetched staple, an HTTP request and a WebSocket forwarded, /healthz and the image's
HEALTHCHECK, SIGHUP reload, SIGTERM exit 0 within the shutdown timeout, a non-root process.

Exit status 77 (reported as skipped) only when podman cannot be installed or run here.
usage: test_image.py [--keep]"""
import asyncio
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

from harness import OPENSSL, Process, shared_pki, free_port, wait_until, listening  # noqa: E402

SKIP = 77
IMAGE = "localhost/stapler:test"
BASE = "docker.io/library/debian:bookworm-slim"
CONTAINER = "stapler-image-test"
VOLUME = "stapler-image-test-cache"
PACKAGES = ["podman", "buildah", "debootstrap", "runc", "uidmap"]
# Everything stays on the host network: podman must never create its bridge network.
CONTAINERS_CONF = """[containers]
default_ulimits = ["nofile=8192:8192", "nproc=8192:8192"]
netns = "host"
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
"""


def sh(argv, timeout=600, check=True, **kw):
    p = subprocess.run(argv, capture_output=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise AssertionError("%s failed (%d):\n%s%s" % (" ".join(argv), p.returncode,
                                                       p.stdout.decode(errors="replace")[-3000:],
                                                       p.stderr.decode(errors="replace")[-3000:]))
    return p


def skip(reason):
    print("SKIPPED: the Docker image test needs podman: %s" % reason)
    sys.exit(SKIP)


def ensure_podman():
    if shutil.which("podman") and shutil.which("debootstrap"):
        return
    if os.geteuid() != 0:
        skip("podman is not installed and this is not root")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    p = subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends"] + PACKAGES,
                       capture_output=True, env=env)
    if p.returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, env=env)
        p = subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends"] +
                           PACKAGES, capture_output=True, env=env)
    if p.returncode != 0 or not shutil.which("podman"):
        skip("apt-get could not install %s" % " ".join(PACKAGES))


def debian_mirror():
    """The Debian mirror apt already uses (deb822 "URIs:" or one-line "deb" entries)."""
    paths = ["/etc/apt/sources.list"] + [os.path.join("/etc/apt/sources.list.d", f)
                                         for f in sorted(os.listdir("/etc/apt/sources.list.d"))
                                         if f.endswith((".list", ".sources"))]
    for path in paths:
        try:
            with open(path) as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        for line in lines:
            words = line.split("#", 1)[0].split()
            urls = words[1:] if words[:1] == ["URIs:"] else words[1:2] if words[:1] == ["deb"] \
                else []
            for url in urls:
                if re.match(r"https?://\S+/debian/?$", url):
                    return url.rstrip("/")
    return "http://deb.debian.org/debian"


def ensure_base_image(env):
    """No registry is reachable: make debian:bookworm-slim locally, as small as the real one."""
    if sh(["podman", "image", "exists", BASE], check=False, env=env).returncode == 0:
        return
    rootfs = tempfile.mkdtemp(prefix="stapler-rootfs-", dir="/var/tmp")
    try:
        sh(["debootstrap", "--variant=minbase", "bookworm", rootfs, debian_mirror()],
           timeout=900)
        # What the official slim image leaves out: caches, docs, translations.
        for pattern in ("var/cache/apt/archives/*.deb", "var/lib/apt/lists/*", "usr/share/doc/*",
                        "usr/share/man/*", "usr/share/info/*"):
            sh(["sh", "-c", "rm -rf %s/%s" % (rootfs, pattern)])
        sh(["sh", "-c", "find %s/usr/share/locale -mindepth 1 -maxdepth 1 ! -name locale.alias "
                        "-exec rm -rf {} +" % rootfs])
        sh(["sh", "-c", "tar -C %s -c . | podman import - localhost/debian:bookworm-slim" % rootfs],
           env=env)
        sh(["podman", "tag", "localhost/debian:bookworm-slim", BASE], env=env)
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)


class ImageTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        ensure_podman()
        cls.tmp = tempfile.mkdtemp(prefix="stapler-image-")
        os.chmod(cls.tmp, 0o755)
        conf = os.path.join(cls.tmp, "containers.conf")
        with open(conf, "w") as f:
            f.write(CONTAINERS_CONF)
        cls.env = dict(os.environ, CONTAINERS_CONF=conf)
        if sh(["podman", "info"], check=False, env=cls.env).returncode != 0:
            skip("podman does not run here")
        cls.procs = []
        t0 = time.monotonic()
        ensure_base_image(cls.env)
        t1 = time.monotonic()
        sh(["podman", "build", "--pull=never", "--isolation", "chroot", "--network", "host",
            "--format", "docker", "-t", IMAGE, "-f", "docker/Dockerfile", "."],
           timeout=1200, cwd=REPO, env=cls.env)
        t2 = time.monotonic()
        size = sh(["podman", "image", "inspect", IMAGE, "--format", "{{.Size}}"],
                  env=cls.env).stdout.decode().strip()
        print("\n    base image %.0f s, stapler image build %.0f s, image size %.1f MB"
              % (t1 - t0, t2 - t1, int(size) / 1e6))
        cls.start_peers()
        cls.start_container()

    @classmethod
    def start_peers(cls):
        cls.pki = shared_pki()
        cls.pki.write_index({})
        cls.ws_port = free_port()
        ws = Process(["/usr/bin/python3", os.path.join(REPO, "tests", "integration", "ws_echo.py"),
                      str(cls.ws_port)], os.path.join(cls.tmp, "ws.log"))
        cls.procs.append(ws)
        port = cls.pki.ocsp_port
        responder = Process([OPENSSL, "ocsp", "-index", cls.pki.index, "-port", str(port),
                             "-rsigner", cls.pki.path("ocsp.pem"), "-rkey",
                             cls.pki.path("ocsp.key"), "-CA", cls.pki.inter + ".pem", "-ndays",
                             "1", "-ignore_err"], os.path.join(cls.tmp, "responder.log"))
        cls.procs.append(responder)
        wait_until(lambda: "ready" in ws.log(), what="websocket backend")
        wait_until(lambda: listening(port), what="openssl ocsp")

    @classmethod
    def start_container(cls):
        certs = os.path.join(cls.tmp, "certs")
        os.mkdir(certs)
        for kind, leaf in (("rsa", cls.pki.rsa), ("ecdsa", cls.pki.ecdsa)):
            shutil.copy(leaf["cert"], os.path.join(certs, "server.%s.pem" % kind))
            shutil.copy(leaf["key"], os.path.join(certs, "server.%s.key" % kind))
        for f in os.listdir(certs):
            os.chmod(os.path.join(certs, f), 0o644)  # readable by the container's user
        # The image's own config, pointed at this host's backend; 443 when it is free.
        cls.port = 443 if not listening(443) else free_port()
        if listening(9443):
            skip("port 9443 (the image's admin endpoint) is taken on this machine")
        with open(os.path.join(REPO, "docker", "stapler.yaml")) as f:
            text = f.read()
        text = text.replace("app:4000", "127.0.0.1:%d" % cls.ws_port)
        text = text.replace("0.0.0.0:443", "0.0.0.0:%d" % cls.port)
        text = text.replace("  shutdown: 20s", "  shutdown: 5s")
        cls.config = os.path.join(cls.tmp, "stapler.yaml")
        with open(cls.config, "w") as f:
            f.write(text)
        os.chmod(cls.config, 0o644)
        sh(["podman", "rm", "-f", CONTAINER], check=False, env=cls.env)
        sh(["podman", "volume", "rm", "-f", VOLUME], check=False, env=cls.env)
        sh(["podman", "run", "-d", "--name", CONTAINER, "--network", "host",
            "-v", "%s:/etc/stapler/stapler.yaml:ro" % cls.config,
            "-v", "%s:/etc/stapler/certs:ro" % certs,
            "-v", "%s:/var/cache/stapler" % VOLUME, IMAGE], env=cls.env)
        wait_until(lambda: '"msg":"forwarding to' in cls.logs() or cls.exited(), timeout=60,
                   what="stapler in the container")
        assert not cls.exited(), cls.logs()

    @classmethod
    def logs(cls):
        p = sh(["podman", "logs", CONTAINER], check=False, env=cls.env)
        return p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")

    @classmethod
    def exited(cls):
        p = sh(["podman", "inspect", CONTAINER, "--format", "{{.State.Running}}"], check=False,
               env=cls.env)
        return p.stdout.strip() != b"true"

    @classmethod
    def tearDownClass(cls):
        if "--keep" not in sys.argv:
            sh(["podman", "rm", "-f", CONTAINER], check=False, env=cls.env)
            sh(["podman", "volume", "rm", "-f", VOLUME], check=False, env=cls.env)
        for p in cls.procs:
            p.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def s_client(self, args=(), status=False):
        argv = [OPENSSL, "s_client", "-connect", "127.0.0.1:%d" % self.port, "-servername",
                "localhost", "-CAfile", self.pki.root + ".pem", "-verify_return_error"]
        argv += (["-status"] if status else []) + list(args)
        p = subprocess.run(argv, input=b"Q\n", capture_output=True, timeout=30)
        return p.returncode, p.stdout.decode(errors="replace")

    def test_1_runs_as_non_root(self):
        out = sh(["podman", "top", CONTAINER, "user", "huser", "args"], env=self.env).stdout
        line = [l for l in out.decode().splitlines() if "stapler -c" in l][0]
        self.assertEqual(line.split()[:2], ["stapler", "10001"], line)

    def test_1_fast_boringssl(self):
        """The image runs on Debian's BoringSSL rebuilt without OPENSSL_SMALL."""
        out = sh(["podman", "run", "--rm", "--network", "host", IMAGE, "--version"],
                 env=self.env).stdout.decode()
        self.assertIn("/usr/local/lib/stapler/libssl.so.0", out)
        self.assertIn("rebuilt without OPENSSL_SMALL", out)
        self.assertIn("TLS library: BoringSSL /usr/local/lib/stapler/", self.logs())

    def test_2_both_certificates_and_staple(self):
        wait_until(lambda: self.logs().count("good from") >= 2, timeout=30, what="OCSP fetches")
        rc, out = self.s_client(status=True)
        self.assertEqual(rc, 0, out)
        self.assertIn("subject=CN = localhost-ecdsa", out)
        self.assertIn("Cert Status: good", out)
        rc, out = self.s_client(["-sigalgs", "RSA-PSS+SHA256"], status=True)
        self.assertEqual(rc, 0, out)
        self.assertIn("subject=CN = localhost-rsa", out)
        self.assertIn("Cert Status: good", out)

    def test_3_request_and_websocket_forwarded(self):
        ctx = ssl.create_default_context(cafile=self.pki.root + ".pem")
        with socket.create_connection(("127.0.0.1", self.port), timeout=20) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                s.sendall(b"GET /hello HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                data = b""
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
        self.assertTrue(data.startswith(b"HTTP/1.1 200"), data)
        self.assertIn(b"hello 127.0.0.1", data)
        import websockets

        async def echo():
            uri = "wss://localhost:%d/socket" % self.port
            async with websockets.connect(uri, ssl=ctx) as ws:
                await ws.send("ping through the container")
                return await ws.recv()

        self.assertEqual(asyncio.run(echo()), "ping through the container")

    def test_4_healthz_and_healthcheck(self):
        import urllib.request
        with urllib.request.urlopen("http://127.0.0.1:9443/healthz", timeout=10) as r:
            self.assertEqual((r.status, r.read()), (200, b"ok\n"))
        p = sh(["podman", "healthcheck", "run", CONTAINER], check=False, env=self.env)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    def test_5_sighup_reloads(self):
        sh(["podman", "kill", "--signal", "HUP", CONTAINER], env=self.env)
        wait_until(lambda: "reloaded: generation 2" in self.logs(), timeout=30, what="reload")
        rc, out = self.s_client()
        self.assertEqual(rc, 0, out)

    def test_6_sigterm_exits_zero_in_time(self):
        t0 = time.monotonic()
        sh(["podman", "stop", "-t", "30", CONTAINER], env=self.env)
        took = time.monotonic() - t0
        code = sh(["podman", "inspect", CONTAINER, "--format", "{{.State.ExitCode}}"],
                  env=self.env).stdout.strip()
        self.assertEqual(code, b"0", self.logs())
        self.assertLess(took, 5 + 5)  # timeouts.shutdown is 5 s here
        self.assertIn("stopped", self.logs())
        # The verified staples stayed in the volume.
        out = sh(["podman", "run", "--rm", "--network", "host", "--entrypoint", "/bin/ls", "-v",
                  "%s:/var/cache/stapler" % VOLUME, IMAGE, "/var/cache/stapler"],
                 env=self.env).stdout.decode()
        self.assertEqual(len([l for l in out.split() if l.endswith(".ocsp")]), 2, out)


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v"], exit=True)
