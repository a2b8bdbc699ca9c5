"""Shared pieces of the soak scripts: processes, a test PKI, the backend, the OCSP responder,
stapler's config, /proc readings and the admin endpoint. Standard library only.

Every process started here is stopped by its PID (Procs.stop_all); nothing listens beyond
loopback.
"""
import hashlib
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
NODE = shutil.which("node") or shutil.which("nodejs") or "/usr/bin/node"


def default_stapler():
    return os.environ.get("STAPLER_BIN", os.path.join(REPO, "build", "stapler"))


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


def raise_nofile():
    """Raises the soft open-file limit to the hard one (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port):
    out = subprocess.run(["ss", "-Hltn", "sport = :%d" % port], capture_output=True).stdout
    return bool(out.strip())


def wait_until(predicate, timeout=15.0, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise RuntimeError("timed out waiting for %s" % what)


def run(argv, timeout=60):
    p = subprocess.run(argv, capture_output=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(argv[:3]), p.returncode,
                                                   p.stderr.decode(errors="replace")))
    return p


# ---------------------------------------------------------------------------- processes

class Proc:
    """A child process in its own session, output to a log file, stopped by PID.

    With `drop`, output lines for which drop(line) is true are counted (self.dropped) instead
    of written: a soak's access log of millions of good requests need not fill the disk."""

    def __init__(self, argv, log_path, env=None, drop=None):
        self.argv = argv
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.dropped = 0
        self._reader = None
        out = subprocess.PIPE if drop else self._log
        self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        self.pid = self.proc.pid
        self.port = None
        if drop:
            self._reader = threading.Thread(target=self._filter, args=(drop,), daemon=True)
            self._reader.start()

    def _filter(self, drop):
        for line in self.proc.stdout:
            if drop(line):
                self.dropped += 1
            else:
                self._log.write(line)
                self._log.flush()

    def alive(self):
        return self.proc.poll() is None

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def send_signal(self, sig):
        if self.alive():
            os.kill(self.pid, sig)

    def stop(self, sig=signal.SIGTERM, timeout=20):
        """Stops the process (SIGKILL after `timeout`); returns its exit status."""
        if self.alive():
            os.kill(self.pid, sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait()
        if self._reader is not None:
            self._reader.join(10)
        if not self._log.closed:
            self._log.close()
        return self.proc.returncode


class Procs:
    def __init__(self, tmp):
        self.tmp = tmp
        self.all = []

    def start(self, argv, name, env=None, drop=None):
        p = Proc(argv, os.path.join(self.tmp, name + ".log"), env=env, drop=drop)
        self.all.append(p)
        return p

    def stop_all(self):
        for p in reversed(self.all):
            try:
                p.stop()
            except Exception:                     # keep stopping the others
                pass


# ---------------------------------------------------------------------------- PKI

class Pki:
    """root (RSA) -> intermediate (ECDSA P-256) -> an RSA-2048 and an ECDSA P-256 leaf for
    localhost, and a delegated OCSP responder certificate. The leaves name the OCSP responder
    http://127.0.0.1:<ocsp_port>/ in their authorityInfoAccess."""

    def __init__(self, directory, ocsp_port):
        self.dir = directory
        self.ocsp_port = ocsp_port
        self.serials = {}
        self._serial = 0x2000
        self.root = self._ca("root", "rsa", None, "soak test root")
        self.inter = self._ca("inter", "ec", self.root, "soak test intermediate")
        self._leaf("ocsp", "ec", "soak test OCSP responder", eku="OCSPSigning", aia=False)
        self.rsa = self._leaf("rsa", "rsa", "localhost-rsa")
        self.ecdsa = self._leaf("ecdsa", "ec", "localhost-ecdsa")
        self.index = self.path("index.txt")
        with open(self.index, "w") as f:
            for name in ("rsa", "ecdsa"):
                f.write("V\t351231235959Z\t\t%s\tunknown\t/CN=%s\n" % (self.serials[name], name))

    def path(self, name):
        return os.path.join(self.dir, name)

    def _key(self, name, kind):
        opts = ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"] if kind == "rsa" else \
            ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]
        run([OPENSSL, "genpkey"] + opts + ["-out", self.path(name + ".key")])

    def _next_serial(self, name):
        self._serial += 0x111
        self.serials[name] = "%X" % self._serial
        return "0x%X" % self._serial

    def _ca(self, name, kind, issuer, subject):
        self._key(name, kind)
        if issuer is None:
            run([OPENSSL, "req", "-x509", "-new", "-key", self.path(name + ".key"),
                 "-subj", "/CN=" + subject, "-days", "30", "-sha256",
                 "-set_serial", self._next_serial(name),
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                 "-out", self.path(name + ".pem")])
        else:
            self._sign(name, subject, issuer,
                       "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
                       "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
        return self.path(name)

    def _sign(self, name, subject, issuer, extensions):
        ext = self.path(name + ".ext")
        with open(ext, "w") as f:
            f.write("[x]\n" + extensions)
        csr = self.path(name + ".csr")
        run([OPENSSL, "req", "-new", "-key", self.path(name + ".key"), "-subj", "/CN=" + subject,
             "-out", csr])
        run([OPENSSL, "x509", "-req", "-in", csr, "-CA", issuer + ".pem", "-CAkey",
             issuer + ".key", "-set_serial", self._next_serial(name), "-days", "30", "-sha256",
             "-extfile", ext, "-extensions", "x", "-out", self.path(name + ".pem")])

    def _leaf(self, name, kind, subject, eku="serverAuth", aia=True):
        self._key(name, kind)
        ext = ("basicConstraints=critical,CA:FALSE\nextendedKeyUsage=%s\n"
               "authorityKeyIdentifier=keyid\n" % eku)
        if eku == "serverAuth":
            ext += "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
        if aia:
            ext += "authorityInfoAccess=OCSP;URI:http://127.0.0.1:%d/\n" % self.ocsp_port
        self._sign(name, subject, self.inter, ext)
        chain = self.path(name + ".chain.pem")
        with open(chain, "w") as out:
            for part in (self.path(name + ".pem"), self.inter + ".pem"):
                with open(part) as f:
                    out.write(f.read())
        return {"cert": chain, "key": self.path(name + ".key"), "leaf": self.path(name + ".pem"),
                "serial": self.serials[name], "subject": subject}


# ---------------------------------------------------------------------------- peers

def start_backend(procs, keepalive_ms=5000):
    """tests/soak/backend.js (Node): /small, /bytes, POST hashing, WebSocket echo."""
    port = free_port()
    env = dict(os.environ, KEEPALIVE_MS=str(keepalive_ms))
    p = procs.start([NODE, os.path.join(HERE, "backend.js"), str(port)], "backend", env)
    wait_until(lambda: "ready" in p.log() or not p.alive(), what="backend")
    if not p.alive():
        raise RuntimeError("backend did not start:\n" + p.log())
    p.port = port
    return p


def start_responder(procs, pki, nmin=None, name="responder"):
    """`openssl ocsp` as a real responder on the port the leaves name, signing with the
    delegated responder certificate; answers valid for `nmin` minutes (else one day)."""
    argv = [OPENSSL, "ocsp", "-index", pki.index, "-port", str(pki.ocsp_port),
            "-rsigner", pki.path("ocsp.pem"), "-rkey", pki.path("ocsp.key"),
            "-CA", pki.inter + ".pem", "-ignore_err"]
    argv += ["-nmin", str(nmin)] if nmin else ["-ndays", "1"]
    p = procs.start(argv, name)
    # Never probe it with a bare connect: openssl ocsp then spins and stops answering.
    wait_until(lambda: listening(pki.ocsp_port) or not p.alive(), what="openssl ocsp")
    if not p.alive():
        raise RuntimeError("openssl ocsp did not start:\n" + p.log())
    return p


def stapler_config(port, admin_port, backend_port, pki, cache_dir, *, workers="auto",
                   fetch=False, timeouts=None, limits=None, access_log=False, level="info"):
    t = {"handshake": "10s", "request_header": "30s", "idle": "300s", "shutdown": "10s"}
    t.update(timeouts or {})
    lim = {"max_connections": 20000}
    lim.update(limits or {})
    lines = ["listen:", "  - address: 127.0.0.1:%d" % port,
             "backend:", "  address: 127.0.0.1:%d" % backend_port,
             "certificates:"]
    for c in (pki.rsa, pki.ecdsa):
        lines += ["  - cert: %s" % c["cert"], "    key: %s" % c["key"]]
    lines += ["default_name: localhost",
              "ocsp:", "  fetch: %s" % ("true" if fetch else "false"),
              "  cache_dir: %s" % cache_dir, "  timeout: 5s",
              "workers: %s" % workers,
              "timeouts:"] + ["  %s: %s" % kv for kv in t.items()] + \
             ["limits:"] + ["  %s: %s" % kv for kv in lim.items()] + \
             ["admin:", "  address: 127.0.0.1:%d" % admin_port,
              "log:", "  level: %s" % level, "  access: %s" % ("true" if access_log else "false")]
    return "\n".join(lines) + "\n"


def good_access_line(line):
    """An access-log line of a 200 or a 101: counted, not kept, by long runs."""
    return b" access " in line and (b" status=200 " in line or b" status=101 " in line)


def start_stapler(procs, binary, tmp, pki, backend_port, name="stapler", drop=None, **options):
    """Writes a config and starts stapler on fresh ports; waits until it serves."""
    port, admin_port = free_port(), free_port()
    cache = os.path.join(tmp, name + "-cache")
    os.makedirs(cache, exist_ok=True)
    cfg = os.path.join(tmp, name + ".yaml")
    with open(cfg, "w") as f:
        f.write(stapler_config(port, admin_port, backend_port, pki, cache, **options))
    p = procs.start([binary, "-c", cfg], name, drop=drop)
    wait_until(lambda: "forwarding to" in p.log() or not p.alive(), timeout=20,
               what="stapler start")
    if not p.alive():
        raise RuntimeError("stapler did not start:\n" + p.log()[-3000:])
    wait_until(lambda: listening(port) and listening(admin_port), what="stapler listening")
    p.port, p.admin_port, p.config_path = port, admin_port, cfg
    return p


# ---------------------------------------------------------------------------- /proc

def rss_kib(pid):
    """VmRSS of the process (all its threads share it)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def fd_count(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return None


def cpu_seconds(pid):
    """User + system CPU seconds of the process (all threads)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return None


# ---------------------------------------------------------------------------- admin

def admin_get(admin_port, path, timeout=5):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (admin_port, path),
                                timeout=timeout) as r:
        return r.read().decode()


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)')


def parse_metrics(text):
    """Prometheus text -> {name: [(labels dict, value), ...]}."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        try:
            value = float(m.group(4))
        except ValueError:
            continue
        out.setdefault(m.group(1), []).append((labels, value))
    return out


def metric(metrics, name, **labels):
    """Sum of the samples of `name` whose labels include `labels`; None when absent."""
    if name not in metrics:
        return None
    return sum(v for l, v in metrics[name] if all(l.get(k) == w for k, w in labels.items()))


def metrics(admin_port):
    return parse_metrics(admin_get(admin_port, "/metrics"))


# ---------------------------------------------------------------------------- bodies

_BLOCK = bytes(bytearray((i * 31 + 7) & 0xff for i in range(1 << 20)))
_PATTERN_SHA = {}


def pattern_sha256(n):
    """SHA-256 of the n bytes backend.js /bytes sends (a 1 MiB pattern, repeated)."""
    if n not in _PATTERN_SHA:
        h = hashlib.sha256()
        left = n
        while left > 0:
            k = min(left, len(_BLOCK))
            h.update(_BLOCK[:k])
            left -= k
        _PATTERN_SHA[n] = h.hexdigest()
    return _PATTERN_SHA[n]


def small_body(rid):
    """What backend.js answers to GET /small?id=RID."""
    return ("small %s\n" % rid).encode()


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")
