"""Shared helpers for the integration tests: processes, ports, a test PKI, real clients.

Every process a test starts is stopped by PID in tearDown. Nothing listens beyond loopback.
"""
import atexit
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
STAPLER = os.environ.get("STAPLER_BIN", os.path.join(HERE, "..", "..", "build", "stapler"))
SANITIZED = os.environ.get("STAPLER_SANITIZED") == "1"
OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
CURL = shutil.which("curl") or "/usr/bin/curl"
NODE = shutil.which("node") or shutil.which("nodejs") or "/usr/bin/node"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port):
    out = subprocess.run(["ss", "-Hltn", "sport = :%d" % port], capture_output=True).stdout
    return bool(out.strip())


def wait_until(predicate, timeout=10.0, interval=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    raise AssertionError("timed out waiting for %s" % what)


def run(argv, input=None, timeout=30, check=True):
    p = subprocess.run(argv, input=input, capture_output=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError("%s failed (%d): %s" % (argv[0], p.returncode,
                                                      p.stderr.decode(errors="replace")))
    return p


class Process:
    """A child process with its output in a log file."""

    def __init__(self, argv, log_path, env=None, cwd=None):
        self.argv = argv
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=env, cwd=cwd, start_new_session=True)
        self.pid = self.proc.pid

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def alive(self):
        return self.proc.poll() is None

    def send_signal(self, sig):
        if self.alive():
            os.kill(self.pid, sig)

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, sig=signal.SIGTERM, timeout=15):
        """Stops the process and returns its exit code (killing it if it will not stop)."""
        if self.alive():
            os.kill(self.pid, sig)
            if self.wait(timeout) is None:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def rss_kib(self):
        try:
            with open("/proc/%d/status" % self.pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            return 0
        return 0


class Pki:
    """A test CA made with the openssl CLI: root (RSA) -> intermediate (ECDSA P-256) -> leaves,
    plus a delegated OCSP responder certificate. Leaves carry an AIA OCSP URL on `ocsp_port`."""

    def __init__(self, directory, ocsp_port):
        self.dir = directory
        self.ocsp_port = ocsp_port
        self.ocsp_url = "http://127.0.0.1:%d/" % ocsp_port
        # Where leaves made with ca_issuers= find their issuer: a file server tests start.
        self.files_port = free_port()
        self.files_url = "http://127.0.0.1:%d/" % self.files_port
        self.serials = {}
        self._serial = 0x1000
        self._extra = {}
        self.root = self._ca("root", "rsa", None, "stapler test root")
        self.inter = self._ca("inter", "ec", self.root, "stapler test intermediate")
        self.responder = self._leaf("ocsp", "ec", "stapler test OCSP responder", [],
                                    eku="OCSPSigning", aia=False)
        names = ["localhost", "test.example", "IP:127.0.0.1"]
        self.rsa = self._leaf("rsa", "rsa", "localhost-rsa", names)
        self.ecdsa = self._leaf("ecdsa", "ec", "localhost-ecdsa", names)
        self.other_ecdsa = self._leaf("other", "ec", "other-ecdsa", ["other.example"])
        self.wild_rsa = self._leaf("wild", "rsa", "wild-rsa", ["*.wild.example"])
        self.must_staple = self._leaf("must", "ec", "must-staple-ecdsa", ["must.example"],
                                      must_staple=True)
        self.stranger = self._ca("stranger", "ec", None, "stranger CA")
        self.index = os.path.join(self.dir, "index.txt")
        self.write_index({})

    def path(self, name):
        return os.path.join(self.dir, name)

    def _key(self, name, kind):
        key = self.path(name + ".key")
        if kind == "rsa":
            run([OPENSSL, "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                 "-out", key])
        else:
            run([OPENSSL, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-out", key])
        return key

    def _next_serial(self, name):
        self._serial += 0x111
        self.serials[name] = "%X" % self._serial
        return "0x%X" % self._serial

    def _sign(self, name, subject, issuer, extensions):
        key = self.path(name + ".key")
        csr = self.path(name + ".csr")
        ext = self.path(name + ".ext")
        with open(ext, "w") as f:
            f.write("[x]\n" + extensions)
        run([OPENSSL, "req", "-new", "-key", key, "-subj", "/CN=" + subject, "-out", csr])
        cert = self.path(name + ".pem")
        run([OPENSSL, "x509", "-req", "-in", csr, "-CA", issuer + ".pem", "-CAkey",
             issuer + ".key", "-set_serial", self._next_serial(name), "-days", "30",
             "-sha256", "-extfile", ext, "-extensions", "x", "-out", cert])
        return cert

    def _ca(self, name, kind, issuer, subject):
        self._key(name, kind)
        ext = ("basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
               "subjectKeyIdentifier=hash\n")
        if issuer is None:
            cert = self.path(name + ".pem")
            run([OPENSSL, "req", "-x509", "-new", "-key", self.path(name + ".key"), "-subj",
                 "/CN=" + subject, "-days", "30", "-sha256", "-set_serial",
                 self._next_serial(name), "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", cert])
            return self.path(name)
        ext += "authorityKeyIdentifier=keyid\n"
        self._sign(name, subject, issuer, ext)
        return self.path(name)

    def _leaf(self, name, kind, subject, names, eku="serverAuth", aia=True, must_staple=False,
              ocsp_url=None, ca_issuers=None):
        self._key(name, kind)
        ext = "basicConstraints=critical,CA:FALSE\nextendedKeyUsage=%s\n" % eku
        ext += "authorityKeyIdentifier=keyid\n"
        if names:
            sans = [n if n.startswith("IP:") else "DNS:" + n for n in names]
            ext += "subjectAltName=" + ",".join(sans) + "\n"
        access = []
        if aia:
            access.append("OCSP;URI:%s" % (ocsp_url or self.ocsp_url))
        if ca_issuers:
            access.append("caIssuers;URI:%s%s" % (self.files_url, ca_issuers))
        if access:
            ext += "authorityInfoAccess=%s\n" % ",".join(access)
        if must_staple:
            ext += "tlsfeature=status_request\n"
        self._sign(name, subject, self.inter, ext)
        return self._files(name, subject)

    def _files(self, name, subject):
        chain = self.path(name + ".chain.pem")
        with open(chain, "w") as out:
            for part in (self.path(name + ".pem"), self.inter + ".pem"):
                with open(part) as f:
                    out.write(f.read())
        return {"cert": chain, "key": self.path(name + ".key"), "leaf": self.path(name + ".pem"),
                "serial": self.serials[name], "subject": subject}

    def leaf(self, name, kind="ec", subject=None, names=None, **options):
        """A further leaf of the intermediate, made once per run and known to the responder's
        index. Options as for _leaf (aia, ocsp_url, ca_issuers: a path on files_url)."""
        if name not in self._extra:
            names = names if names is not None else [name + ".example"]
            self._extra[name] = self._leaf(name, kind, subject or name, names, **options)
        return self._extra[name]

    def leaf_dated(self, name, kind, names, not_before, not_after):
        """A leaf with the given validity (Unix times), which openssl x509 cannot set; signed
        with python3-cryptography."""
        if name in self._extra:
            return self._extra[name]
        import datetime
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.x509.oid import NameOID
        key = serialization.load_pem_private_key(open(self._key(name, kind), "rb").read(), None)
        inter = x509.load_pem_x509_certificate(open(self.inter + ".pem", "rb").read())
        inter_key = serialization.load_pem_private_key(open(self.inter + ".key", "rb").read(),
                                                       None)
        stamp = datetime.datetime.utcfromtimestamp
        serial = int(self._next_serial(name), 16)
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                .issuer_name(inter.subject).public_key(key.public_key()).serial_number(serial)
                .not_valid_before(stamp(not_before)).not_valid_after(stamp(not_after))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                               False)
                .sign(inter_key, hashes.SHA256()))
        with open(self.path(name + ".pem"), "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        self._extra[name] = self._files(name, name)
        return self._extra[name]

    def responder_until(self, name, not_after):
        """A delegated OCSP responder certificate (OCSPSigning, issued by the intermediate)
        that expires at `not_after` (Unix time). Returns (certificate path, key path)."""
        import datetime
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
        key_path = self._key(name, "ec")
        key = serialization.load_pem_private_key(open(key_path, "rb").read(), None)
        inter = x509.load_pem_x509_certificate(open(self.inter + ".pem", "rb").read())
        inter_key = serialization.load_pem_private_key(open(self.inter + ".key", "rb").read(),
                                                       None)
        stamp = datetime.datetime.utcfromtimestamp
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                .issuer_name(inter.subject).public_key(key.public_key())
                .serial_number(int(self._next_serial(name), 16))
                .not_valid_before(stamp(time.time() - 3600)).not_valid_after(stamp(not_after))
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), False)
                .sign(inter_key, hashes.SHA256()))
        path = self.path(name + ".pem")
        with open(path, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        return path, key_path

    def der(self, pem_path):
        """The DER form of a PEM certificate, beside it (.crt)."""
        out = pem_path[:-4] + ".crt"
        run([OPENSSL, "x509", "-in", pem_path, "-outform", "DER", "-out", out])
        return out

    def pkcs7(self, pem_paths, out_name):
        """A certs-only PKCS#7 (DER, .p7c) holding the given certificates."""
        out = self.path(out_name)
        argv = [OPENSSL, "crl2pkcs7", "-nocrl", "-outform", "DER", "-out", out]
        for p in pem_paths:
            argv += ["-certfile", p]
        run(argv)
        return out

    def write_index(self, revoked, missing=()):
        """Writes openssl ocsp's index.txt; `revoked` maps leaf names to revocation times;
        leaves in `missing` are left out (the responder then answers "unknown")."""
        lines = []
        for name in ("rsa", "ecdsa", "other", "wild", "must") + tuple(self._extra):
            if name in missing:
                continue
            serial = self.serials[name]
            if name in revoked:
                lines.append("R\t351231235959Z\t%s\t%s\tunknown\t/CN=%s\n"
                             % (revoked[name], serial, name))
            else:
                lines.append("V\t351231235959Z\t\t%s\tunknown\t/CN=%s\n" % (serial, name))
        with open(self.index, "w") as f:
            f.writelines(lines)

    def staple(self, leaf, out, ndays=1, signer="responder"):
        """Writes a signed OCSP response for `leaf` (from self.rsa etc.) with `openssl ocsp`."""
        rsigner, rkey = {"responder": (self.path("ocsp.pem"), self.path("ocsp.key")),
                         "issuer": (self.inter + ".pem", self.inter + ".key"),
                         "stranger": (self.stranger + ".pem", self.stranger + ".key")}[signer]
        run([OPENSSL, "ocsp", "-index", self.index, "-rsigner", rsigner, "-rkey", rkey,
             "-CA", self.inter + ".pem", "-issuer", self.inter + ".pem", "-cert", leaf["leaf"],
             "-respout", out, "-no_nonce", "-ndays", str(ndays)])
        return out


def yaml_config(listen_port, backend, certs, extra="", backend_extra=""):
    lines = ["listen:", "  - address: 127.0.0.1:%d" % listen_port,
             "backend:", "  address: %s" % backend]
    lines += ["  " + l for l in backend_extra.splitlines()]
    lines.append("certificates:")
    for c in certs:
        lines.append("  - cert: %s" % c["cert"])
        lines.append("    key: %s" % c["key"])
        if c.get("ocsp_response"):
            lines.append("    ocsp_response: %s" % c["ocsp_response"])
        if c.get("ocsp_url"):
            lines.append("    ocsp_url: %s" % c["ocsp_url"])
    return "\n".join(lines) + "\n" + extra


_shared = {}


def shared_pki():
    """One PKI per test run (key generation is the slow part)."""
    if "pki" not in _shared:
        d = tempfile.mkdtemp(prefix="stapler-pki-")
        if not os.environ.get("STAPLER_KEEP_LOGS"):
            atexit.register(shutil.rmtree, d, ignore_errors=True)
        _shared["pki"] = Pki(d, free_port())
    return _shared["pki"]


class StaplerCase(unittest.TestCase):
    """Base class: a temp dir, process bookkeeping, and ways to start peers and clients."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="stapler-test-")
        self.procs = []
        self.pki = shared_pki()

    def tearDown(self):
        problems = []
        for p in reversed(self.procs):
            rc = p.stop()
            if p.argv[0] == STAPLER and rc != 0 and not getattr(p, "expect_fail", False):
                problems.append("stapler exited with %s:\n%s" % (rc, p.log()[-4000:]))
        if os.environ.get("STAPLER_KEEP_LOGS"):
            print("logs kept in", self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)
        if problems:
            raise AssertionError("\n".join(problems))

    def wait_log(self, proc, text, count=1, timeout=35):
        """Waits until `text` appears `count` times in the process's log (stapler writes its
        log lines in batches, up to 0.1 s late)."""
        wait_until(lambda: proc.log().count(text) >= count or not proc.alive(), timeout=timeout,
                   what="'%s' in the log" % text)
        self.assertGreaterEqual(proc.log().count(text), count, proc.log()[-3000:])

    # ---- peers ----------------------------------------------------------------------------

    def start(self, argv, name, env=None):
        p = Process(argv, os.path.join(self.tmp, name + ".log"), env=env)
        self.procs.append(p)
        return p

    def start_responder(self, ndays=1, signer=None, port=None):
        """A real OCSP responder (openssl ocsp) on the port the test certificates name (or
        `port`), signing with the delegated responder certificate (or `signer`, a pair of
        certificate and key paths)."""
        port = port or self.pki.ocsp_port
        cert, key = signer or (self.pki.path("ocsp.pem"), self.pki.path("ocsp.key"))
        p = self.start([OPENSSL, "ocsp", "-index", self.pki.index, "-port", str(port),
                        "-rsigner", cert, "-rkey", key,
                        "-CA", self.pki.inter + ".pem", "-ndays", str(ndays), "-ignore_err"],
                       "responder")
        # Never probe it with a bare connect: openssl ocsp then spins and stops answering.
        wait_until(lambda: listening(port) or not p.alive(), what="openssl ocsp")
        self.assertTrue(p.alive(), p.log())
        return p

    def start_backend(self, keepalive_ms=5000):
        port = free_port()
        env = dict(os.environ, KEEPALIVE_MS=str(keepalive_ms))
        p = self.start([NODE, os.path.join(HERE, "backend.js"), str(port)], "backend", env)
        wait_until(lambda: "ready" in p.log() or not p.alive(), what="backend")
        self.assertTrue(p.alive(), p.log())
        p.port = port
        return p

    def write(self, name, text):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def start_stapler(self, config_text, name="stapler", expect_ready=True, clock_offset=0,
                      env=None):
        cfg = self.write(name + ".yaml", config_text)
        # A small quarantine keeps RSS meaningful for the memory-bound tests.
        asan = "detect_leaks=1:abort_on_error=0:exitcode=23:quarantine_size_mb=16"
        if env and "LD_PRELOAD" in env:
            asan += ":verify_asan_link_order=0"  # the preloaded library comes before libasan
        env = dict(os.environ, ASAN_OPTIONS=asan,
                   UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1",
                   TSAN_OPTIONS="halt_on_error=1:exitcode=66:second_deadlock_stack=1:"
                                "suppressions=" + os.path.join(HERE, "..", "tsan.supp"),
                   STAPLER_TEST_CLOCK_OFFSET=str(clock_offset), **(env or {}))
        p = self.start([STAPLER, "-c", cfg], name, env)
        p.config_path = cfg
        if expect_ready:
            wait_until(lambda: "forwarding to" in p.log() or not p.alive(), timeout=20,
                       what="stapler start")
            self.assertTrue(p.alive(), p.log())
        return p

    def proxy(self, backend=None, certs=None, extra="", backend_extra="", expect_ready=True,
              clock_offset=0, name="stapler", env=None):
        """Starts stapler in front of `backend` (started if None) with the dual test pair."""
        if backend is None:
            backend = self.start_backend()
        port = free_port()
        if certs is None:
            certs = [self.pki.rsa, self.pki.ecdsa]
        if "workers:" not in extra:
            extra += "workers: 2\n"
        if "ocsp:" not in extra:  # tests without a responder do not fetch
            extra += "ocsp:\n  fetch: false\n"
        text = yaml_config(port, "127.0.0.1:%d" % backend.port, certs, extra, backend_extra)
        p = self.start_stapler(text, name=name, expect_ready=expect_ready,
                               clock_offset=clock_offset, env=env)
        p.port = port
        p.backend = backend
        p.extra = extra
        return p

    def rewrite_config(self, p, certs):
        """Rewrites the config of `p` (started by proxy()) with other certificates."""
        text = yaml_config(p.port, "127.0.0.1:%d" % p.backend.port, certs, p.extra)
        with open(p.config_path, "w") as f:
            f.write(text)

    def check_config(self, path, clock_offset=0):
        """Runs `stapler -t -c path`: (exit code, stdout, stderr)."""
        r = subprocess.run([STAPLER, "-t", "-c", path], capture_output=True, timeout=60,
                           env=dict(os.environ, STAPLER_TEST_CLOCK_OFFSET=str(clock_offset)))
        return r.returncode, r.stdout.decode(), r.stderr.decode()

    # ---- clients --------------------------------------------------------------------------

    def s_client(self, port, args=(), servername="localhost", status=False, input=b"Q\n",
                 timeout=20, verify=True):
        argv = [OPENSSL, "s_client", "-connect", "127.0.0.1:%d" % port]
        if verify:
            argv += ["-CAfile", self.pki.root + ".pem", "-verify_return_error"]
        if servername:
            argv += ["-servername", servername]
        else:
            argv += ["-noservername"]
        if status:
            argv.append("-status")
        argv += list(args)
        p = subprocess.run(argv, input=input, capture_output=True, timeout=timeout)
        out = p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")
        return p.returncode, out

    def served_subject(self, out):
        m = re.search(r"subject=CN\s*=\s*([^\n/]+)", out)
        return m.group(1).strip() if m else None

    def tls_context(self, alpn=("http/1.1",)):
        ctx = ssl.create_default_context(cafile=self.pki.root + ".pem")
        if alpn:
            ctx.set_alpn_protocols(list(alpn))
        return ctx

    def tls_connect(self, port, servername="localhost", ctx=None, timeout=20):
        ctx = ctx or self.tls_context()
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        return ctx.wrap_socket(raw, server_hostname=servername)

    def curl(self, url, args=(), timeout=60, check=False):
        """curl over HTTP/1.1 unless `args` ask for --http2 (test_h2.py tests that one)."""
        version = [] if "--http2" in args else ["--http1.1"]
        argv = [CURL, "-sS", "--cacert", self.pki.root + ".pem", "--resolve",
                "localhost:%s:127.0.0.1" % url.split(":")[2].split("/")[0]] + version + \
            list(args) + [url]
        p = subprocess.run(argv, capture_output=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError("curl failed %d: %s" % (p.returncode, p.stderr.decode()))
        return p


def read_http_response(sock, buffered=b""):
    """Reads one HTTP/1.1 response (Content-Length or chunked or until close) from `sock`.
    Returns (status, headers dict lowercased, body, rest)."""
    data = buffered
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before response headers: %r" % data)
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    if status in (204, 304) or 100 <= status < 200:
        return status, headers, b"", rest
    if "content-length" in headers:
        n = int(headers["content-length"])
        while len(rest) < n:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed in body")
            rest += chunk
        return status, headers, rest[:n], rest[n:]
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            while b"\r\n" not in rest:
                rest += sock.recv(65536)
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            while len(rest) < size + 2:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed in chunk")
                rest += chunk
            if size == 0:
                while not rest.startswith(b"\r\n") and b"\r\n\r\n" not in rest:
                    rest += sock.recv(65536)
                rest = rest[2:] if rest.startswith(b"\r\n") else rest.partition(b"\r\n\r\n")[2]
                return status, headers, body, rest
            body += rest[:size]
            rest = rest[size + 2:]
    body = rest
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body, b""


_BLOCK = None


def pattern_sha256(n):
    """SHA-256 of the n bytes backend.js /bytes sends (a 1 MiB pattern, repeated)."""
    global _BLOCK
    if _BLOCK is None:
        _BLOCK = bytes(bytearray((i * 31 + 7) & 0xff for i in range(1 << 20)))
    h = hashlib.sha256()
    while n > 0:
        k = min(n, len(_BLOCK))
        h.update(_BLOCK[:k])
        n -= k
    return h.hexdigest()
