#!/usr/bin/python3
"""Side-by-side cost benchmark: stapler against hitch, HAProxy and nginx on loopback.

Every proxy runs single-worker pinned to CPU 0; every load generator runs on CPU 1.
What is compared is the proxy's own CPU time (utime+stime of its whole process tree, from
/proc) per unit of work, and its resident memory per idle TLS connection -- not rates, which
are bound by the client on this machine. See README.md beside this file.

Standard library only; run with /usr/bin/python3 (normally through run.sh).
"""

import argparse
import json
import os
import re
import resource
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

PROXY_CPU = "0"          # taskset CPU list for the proxy under test
LOAD_CPU = "1"           # ... for load generators, the backend and this script
CLK_TCK = os.sysconf("SC_CLK_TCK")
SMALL_BODY = (b"stapler-bench small body " * 8)[:99] + b"\n"   # 100 bytes
ONE_MIB = 1 << 20
GIB = 1 << 30

# Metric keys, their column titles, and whether "lower is better" (all are costs).
METRICS = [
    ("hs_ecdsa_cpu_ms_per_1k", "CPU ms / 1k full ECDSA HS", 0),
    ("hs_rsa_cpu_ms_per_1k", "CPU ms / 1k full RSA-2048 HS", 0),
    ("ka_cpu_ms_per_1k", "CPU ms / 1k keep-alive req", 1),
    ("big_cpu_s_per_gib", "CPU s / GiB (1 MiB GETs)", 2),
    ("idle_kib_per_conn", "idle KiB / TLS conn", 1),
]
PHASES = ["hs_ecdsa", "hs_rsa", "keepalive", "big", "idle"]

ALL_PROXIES = ["stapler", "nginx", "haproxy", "hitch"]
NOFILE = 20000           # file descriptors per process; set from the hard limit in main()

# Every process this script starts, so that finally: can stop what is still running.
_STARTED = []


class BenchError(Exception):
    pass


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- processes

def spawn(argv, *, cpu, stdout=None, stderr=None, env=None):
    """Start argv pinned with taskset; remember it for cleanup."""
    full = ["taskset", "-c", cpu] + list(argv)
    p = subprocess.Popen(full, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL,
                         env=env if env is not None else clean_env())
    _STARTED.append(p)
    return p


def clean_env(extra=None):
    env = dict(os.environ)
    env.pop("OPENSSL_CONF", None)
    env.pop("SSLKEYLOGFILE", None)
    if extra:
        env.update(extra)
    return env


def proc_children_map():
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
        except OSError:
            continue
        rest = st[st.rindex(")") + 2:].split()
        kids.setdefault(int(rest[1]), []).append(int(d))
    return kids


def tree_pids(root):
    kids = proc_children_map()
    out, pending = [], [root]
    while pending and len(out) < 10000:
        pid = pending.pop()
        out.append(pid)
        pending.extend(kids.get(pid, []))
    return out


def tree_cpu_seconds(root):
    """utime+stime (all threads) summed over root and its descendants."""
    ticks = 0
    for pid in tree_pids(root):
        try:
            with open(f"/proc/{pid}/stat") as f:
                st = f.read()
        except OSError:
            continue
        rest = st[st.rindex(")") + 2:].split()
        ticks += int(rest[11]) + int(rest[12])
    return ticks / CLK_TCK


def tree_rss_kib(root):
    total = 0
    for pid in tree_pids(root):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
    return total


def stop_process(p, sig=signal.SIGTERM, grace=10.0):
    """Stop one process we started, by its PID, then any descendants it left behind."""
    if p.poll() is not None:
        return
    leftovers = [pid for pid in tree_pids(p.pid) if pid != p.pid]
    try:
        os.kill(p.pid, sig)
    except ProcessLookupError:
        pass
    try:
        p.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        try:
            os.kill(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait(timeout=5)
    for pid in leftovers:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def stop_all_started():
    for p in reversed(_STARTED):
        try:
            stop_process(p)
        except Exception as e:  # keep stopping the others
            log(f"warning: could not stop pid {p.pid}: {e}")


def run_capture(argv, *, cpu, timeout, env=None):
    """Run a load tool to completion (bounded), return (rc, stdout, stderr)."""
    p = spawn(argv, cpu=cpu, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_process(p, signal.SIGKILL)
        out, err = p.communicate()
        raise BenchError(f"{argv[0]} did not finish within {timeout:.0f}s")
    finally:
        if p in _STARTED:
            _STARTED.remove(p)
    return p.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def free_ports(n):
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def wait_port(port, proc, name, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{name} exited with status {proc.returncode} during start-up")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise BenchError(f"{name} is not accepting on 127.0.0.1:{port} after {timeout:.0f}s")


def tool_version(argv):
    try:
        r = subprocess.run(argv, capture_output=True, timeout=10)
        text = (r.stdout + r.stderr).decode(errors="replace").strip().splitlines()
        return text[0] if text else "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"


# --------------------------------------------------------------------------- certificates

def sh(argv, cwd):
    r = subprocess.run(argv, cwd=cwd, capture_output=True, timeout=60)
    if r.returncode != 0:
        raise BenchError(f"{' '.join(argv)} failed: {r.stderr.decode(errors='replace')}")


def make_certs(d):
    """Test CA (P-256) plus RSA-2048 and ECDSA P-256 leaves for localhost."""
    sh(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=stapler bench CA",
        "-days", "30", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign"], d)
    with open(os.path.join(d, "leaf.ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                "basicConstraints=critical,CA:FALSE\n"
                "keyUsage=critical,digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\n")
    newkey = {"rsa": ["-newkey", "rsa:2048"],
              "ecdsa": ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]}
    for kind, nk in newkey.items():
        sh(["openssl", "req", "-new"] + nk + ["-nodes", "-keyout", f"{kind}.key",
            "-out", f"{kind}.csr", "-subj", "/CN=localhost"], d)
        sh(["openssl", "x509", "-req", "-in", f"{kind}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "30", "-extfile", "leaf.ext", "-out", f"{kind}.pem"], d)
        with open(os.path.join(d, f"{kind}.full.pem"), "w") as out:   # cert + key, one file
            for part in (f"{kind}.pem", f"{kind}.key"):
                with open(os.path.join(d, part)) as f:
                    out.write(f.read())
    for kind, algs in (("ecdsa", "ECDSA+SHA256"), ("rsa", "RSA-PSS+SHA256:RSA+SHA256")):
        with open(os.path.join(d, f"client-{kind}.cnf"), "w") as f:
            f.write("openssl_conf = openssl_init\n[openssl_init]\nssl_conf = ssl_sect\n"
                    "[ssl_sect]\nsystem_default = system_default_sect\n"
                    f"[system_default_sect]\nSignatureAlgorithms = {algs}\n")
    return {k: os.path.join(d, f"{k}.pem") for k in ("rsa", "ecdsa")}


def pem_to_der(path):
    with open(path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


# --------------------------------------------------------------------------- configs

def backend_conf(d, port, www):
    t = os.path.join(d, "tmp")
    return f"""# plain-HTTP origin for the benchmark (not under test)
worker_processes 1;
daemon off;
master_process on;
user root;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
worker_rlimit_nofile {NOFILE};
events {{ worker_connections {NOFILE // 2}; }}
http {{
    access_log off;
    client_body_temp_path {t}/body;
    proxy_temp_path {t}/proxy;
    fastcgi_temp_path {t}/fastcgi;
    uwsgi_temp_path {t}/uwsgi;
    scgi_temp_path {t}/scgi;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    client_header_timeout 300s;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {www};
        default_type text/plain;
        location / {{ }}
    }}
}}
"""


def nginx_conf(d, port, bport, certs):
    t = os.path.join(d, "tmp")
    return f"""# nginx under test: one worker, defaults except what the comparison needs
worker_processes 1;
daemon off;
master_process on;
user root;
pid {d}/nginx.pid;
error_log {d}/error.log error;
worker_rlimit_nofile {NOFILE};
events {{ worker_connections {NOFILE // 2}; }}
http {{
    access_log off;
    client_body_temp_path {t}/body;
    proxy_temp_path {t}/proxy;
    fastcgi_temp_path {t}/fastcgi;
    uwsgi_temp_path {t}/uwsgi;
    scgi_temp_path {t}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    upstream app {{
        server 127.0.0.1:{bport};
        keepalive 64;
        keepalive_requests 1000000;
        keepalive_timeout 300s;
    }}
    server {{
        listen 127.0.0.1:{port} ssl backlog=4096;
        server_name localhost;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_certificate {certs['rsa']};
        ssl_certificate_key {certs['rsa'][:-4]}.key;
        ssl_certificate {certs['ecdsa']};
        ssl_certificate_key {certs['ecdsa'][:-4]}.key;
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto https;
        }}
    }}
}}
"""


def haproxy_conf(d, port, bport, certs):
    return f"""# HAProxy under test: one thread, no log target (nothing logged)
global
    nbthread 1
    maxconn {(NOFILE - 200) // 2}
    ssl-default-bind-options ssl-min-ver TLSv1.2
defaults
    mode http
    option http-keep-alive
    option forwardfor
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    timeout http-request 30s
    timeout http-keep-alive 300s
frontend fe
    bind 127.0.0.1:{port} ssl crt {certs['rsa'][:-4]}.full.pem crt {certs['ecdsa'][:-4]}.full.pem alpn http/1.1
    http-request set-header X-Forwarded-Proto https
    default_backend app
backend app
    http-reuse safe
    server app1 127.0.0.1:{bport}
"""


def stapler_conf(d, port, bport, certs, log_level):
    return f"""# stapler under test
listen:
  - address: 127.0.0.1:{port}
backend:
  address: 127.0.0.1:{bport}
  mode: http
certificates:
  - cert: {certs['rsa']}
    key: {certs['rsa'][:-4]}.key
  - cert: {certs['ecdsa']}
    key: {certs['ecdsa'][:-4]}.key
default_name: localhost
ocsp:
  fetch: false
workers: 1
timeouts:
  idle: 300s
  shutdown: 5s
log:
  level: {log_level}
"""


class Proxy:
    def __init__(self, name, port, argv, logfile, ecdsa=True, note=""):
        self.name, self.port, self.argv, self.logfile = name, port, argv, logfile
        self.proc = None
        self.supports_ecdsa = ecdsa   # False: configured RSA only, ECDSA phase reported "–"
        self.note = note
        self.dead = None              # reason, once it has died or failed its check
        self.info = {}

    def start(self):
        self._log = open(self.logfile, "ab")
        self.proc = spawn(self.argv, cpu=PROXY_CPU, stdout=self._log, stderr=subprocess.STDOUT)
        wait_port(self.port, self.proc, self.name)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log_lines(self):
        try:
            with open(self.logfile, "rb") as f:
                return f.read().count(b"\n")
        except OSError:
            return 0

    def log_tail(self, n=15):
        try:
            with open(self.logfile, "rb") as f:
                return b"\n".join(f.read().splitlines()[-n:]).decode(errors="replace")
        except OSError:
            return ""


def build_proxies(names, tmp, ports, bport, certs, args):
    proxies = []
    for name in names:
        d = os.path.join(tmp, name)
        os.makedirs(os.path.join(d, "tmp"), exist_ok=True)
        port = ports.pop()
        logf = os.path.join(d, "stderr.log")
        if name == "stapler":
            cfg = os.path.join(d, "stapler.yaml")
            with open(cfg, "w") as f:
                f.write(stapler_conf(d, port, bport, certs, args.stapler_log_level))
            check = subprocess.run([args.stapler, "-t", "-c", cfg], capture_output=True,
                                   timeout=30)
            if check.returncode != 0:
                raise BenchError("stapler -t rejected the bench config:\n"
                                 + (check.stdout + check.stderr).decode(errors="replace"))
            p = Proxy(name, port, [args.stapler, "-c", cfg], logf)
        elif name == "nginx":
            cfg = os.path.join(d, "nginx.conf")
            with open(cfg, "w") as f:
                f.write(nginx_conf(d, port, bport, certs))
            p = Proxy(name, port, ["nginx", "-p", d + "/", "-e", os.path.join(d, "error.log"),
                                   "-c", cfg], os.path.join(d, "error.log"))
        elif name == "haproxy":
            cfg = os.path.join(d, "haproxy.cfg")
            with open(cfg, "w") as f:
                f.write(haproxy_conf(d, port, bport, certs))
            check = subprocess.run(["haproxy", "-c", "-f", cfg], capture_output=True, timeout=30)
            if check.returncode != 0:
                raise BenchError("haproxy -c rejected the bench config:\n"
                                 + (check.stdout + check.stderr).decode(errors="replace"))
            p = Proxy(name, port, ["haproxy", "-db", "-f", cfg], logf)
        elif name == "hitch":
            # hitch picks a certificate by SNI name only, never by key type: with two
            # certificates for one name it would serve one of them to everybody. It gets the
            # RSA certificate alone and its ECDSA column is "–" (as in the notes' table).
            p = Proxy(name, port,
                      ["hitch", "--daemon=off", "--workers=1", "--backlog=4096",
                       f"--frontend=[127.0.0.1]:{port}", f"--backend=[127.0.0.1]:{bport}",
                       "--tls-protos=TLSv1.2 TLSv1.3", "--ocsp-dir=" + os.path.join(d, "ocsp"),
                       "--log-level=1", "--user=" + args.hitch_user,
                       certs["rsa"][:-4] + ".full.pem"],
                      logf, ecdsa=False, note="RSA certificate only (no per-key-type choice)")
            os.makedirs(os.path.join(d, "ocsp"), exist_ok=True)
            os.chmod(os.path.join(d, "ocsp"), 0o777)
        else:
            raise BenchError(f"unknown proxy {name}")
        proxies.append(p)
    return proxies


# --------------------------------------------------------------------------- checks

def curl_check(port, path, want_size):
    r = subprocess.run(["curl", "-k", "-s", "-o", "/dev/null", "--max-time", "10",
                        "-w", "%{http_code} %{size_download}",
                        f"https://127.0.0.1:{port}{path}"],
                       capture_output=True, timeout=20, env=clean_env())
    out = r.stdout.decode().strip()
    if r.returncode != 0 or out != f"200 {want_size}":
        raise BenchError(f"curl -k https://127.0.0.1:{port}{path}: rc {r.returncode}, "
                         f"got '{out}', want '200 {want_size}' {r.stderr.decode().strip()}")


def s_client_served(port, conf, certs, sni):
    """Which of our certificates does a client restricted by conf get? (kind, proto, cipher)."""
    argv = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}"]
    argv += ["-servername", sni] if sni else ["-noservername"]
    env = clean_env({"OPENSSL_CONF": conf} if conf else None)
    r = subprocess.run(argv, input=b"", capture_output=True, timeout=20, env=env)
    out = r.stdout.decode(errors="replace")
    m = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", out, re.S)
    if not m:
        err = (r.stderr.decode(errors="replace").strip().splitlines() or ["no certificate"])[-1]
        alert = re.search(r"alert [a-z ]+", err)
        return None, None, None, alert.group(0).strip() if alert else err
    der = ssl.PEM_cert_to_DER_cert(m.group(0))
    kind = next((k for k, p in certs.items() if pem_to_der(p) == der), "unknown")
    proto = re.search(r"Protocol\s*:\s*(\S+)", out) or re.search(r"New, (\S+),", out)
    cipher = re.search(r"Cipher is (\S+)", out)
    return kind, proto.group(1) if proto else "?", cipher.group(1) if cipher else "?", ""


def check_proxy(p, certs, tmp, args):
    curl_check(p.port, "/small", len(SMALL_BODY))
    curl_check(p.port, "/1m", ONE_MIB)
    sni = None if args.hs_client == "s_time" else "localhost"
    kind, proto, cipher, err = s_client_served(p.port, None, certs, "localhost")
    p.info["default_client"] = {"cert": kind, "protocol": proto, "cipher": cipher}
    for want in ("ecdsa", "rsa"):
        conf = os.path.join(tmp, f"client-{want}.cnf")
        kind, proto, cipher, err = s_client_served(p.port, conf, certs, sni)
        p.info[f"forced_{want}"] = {"cert": kind, "protocol": proto, "cipher": cipher,
                                    "error": err, "sni": sni}
        if want == "ecdsa" and not p.supports_ecdsa:
            continue
        if kind != want:
            p.info[f"hs_{want}_unavailable"] = (
                f"a client allowing only {want.upper()} signatures got "
                f"{kind or 'no certificate'} ({err or 'wrong certificate'}), SNI {sni or 'none'}")


# --------------------------------------------------------------------------- load phases

def hs_worker_main(argv):
    """Child mode: sequential fresh TLS connections, no resumption; prints JSON counts."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--sni", default="localhost")
    ap.add_argument("--duration", type=float, required=True)
    ap.add_argument("--expect", required=True)
    ap.add_argument("--max", type=int, default=1000000)
    a = ap.parse_args(argv)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    expect = pem_to_der(a.expect)
    ok = errors = mismatch = reused = 0
    last_err = ""
    deadline = time.monotonic() + a.duration
    while time.monotonic() < deadline and ok + errors < a.max:
        s = None
        try:
            s = socket.create_connection(("127.0.0.1", a.port), timeout=10)
            s = ctx.wrap_socket(s, server_hostname=a.sni)   # full handshake happens here
            if s.getpeercert(binary_form=True) != expect:
                mismatch += 1
            if s.session_reused:
                reused += 1
            ok += 1
        except (OSError, ssl.SSLError) as e:
            errors += 1
            last_err = str(e)
            if errors > 50 and errors > ok:
                break
        finally:
            if s is not None:
                s.close()
    print(json.dumps({"ok": ok, "errors": errors, "mismatch": mismatch, "reused": reused,
                      "last_error": last_err}))
    return 0


def phase_handshakes(p, kind, tmp, certs, args):
    conf = os.path.join(tmp, f"client-{kind}.cnf")
    env = clean_env({"OPENSSL_CONF": conf})
    procs = []
    c0 = tree_cpu_seconds(p.proc.pid)
    t0 = time.monotonic()
    try:
        for _ in range(args.hs_procs):
            if args.hs_client == "s_time":
                argv = ["openssl", "s_time", "-connect", f"127.0.0.1:{p.port}", "-new",
                        "-time", str(args.duration)]
            else:
                argv = ["/usr/bin/python3", os.path.abspath(__file__), "--hs-worker",
                        "--port", str(p.port), "--duration", str(args.duration),
                        "--expect", certs[kind]]
            procs.append(spawn(argv, cpu=LOAD_CPU, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=env))
        outs = []
        for q in procs:
            try:
                o, e = q.communicate(timeout=args.duration + 60)
            except subprocess.TimeoutExpired:
                stop_process(q, signal.SIGKILL)
                raise BenchError(f"handshake client against {p.name} did not finish")
            outs.append((q.returncode, o.decode(errors="replace"), e.decode(errors="replace")))
    finally:
        for q in procs:
            stop_process(q, signal.SIGKILL)
            if q in _STARTED:
                _STARTED.remove(q)
    t1 = time.monotonic()
    c1 = tree_cpu_seconds(p.proc.pid)
    n = errors = 0
    notes = []
    for rc, o, e in outs:
        if args.hs_client == "s_time":
            m = re.search(r"(\d+) connections in [\d.]+ real seconds", o) or \
                re.search(r"(\d+) connections in [\d.]+s", o)
            if not m:
                raise BenchError(f"s_time against {p.name} printed no count (rc {rc}): "
                                 f"{(o + e).strip()[-300:]}")
            n += int(m.group(1))
            if rc != 0:
                notes.append(f"s_time rc {rc}: {e.strip()[-200:]}")
        else:
            try:
                r = json.loads(o.strip().splitlines()[-1])
            except (ValueError, IndexError):
                raise BenchError(f"handshake client against {p.name} failed (rc {rc}): "
                                 f"{(o + e).strip()[-300:]}")
            if r["mismatch"] or r["reused"]:
                raise BenchError(f"{p.name}: {r['mismatch']} handshakes served the wrong "
                                 f"certificate, {r['reused']} were resumed (want 0 and 0)")
            n += r["ok"]
            errors += r["errors"]
            if r["errors"]:
                notes.append(f"{r['errors']} failed: {r['last_error']}")
    cpu = c1 - c0
    return {"units": n, "errors": errors, "cpu_s": cpu, "wall_s": t1 - t0,
            "rate_per_s": n / (t1 - t0), "value": cpu * 1000.0 / n * 1000.0 if n else None,
            "notes": notes}


WRK_REQ = re.compile(r"(\d+) requests in ([\d.]+)(\w+),")


def phase_wrk(p, path, conns, args):
    url = f"https://127.0.0.1:{p.port}{path}"
    argv = ["wrk", "-t", "1", "-c", str(conns), "-d", f"{args.duration}s", "--timeout", "10s",
            url]
    c0 = tree_cpu_seconds(p.proc.pid)
    t0 = time.monotonic()
    rc, out, err = run_capture(argv, cpu=LOAD_CPU, timeout=args.duration + 60)
    t1 = time.monotonic()
    c1 = tree_cpu_seconds(p.proc.pid)
    m = WRK_REQ.search(out)
    if rc != 0 or not m:
        raise BenchError(f"wrk {url} failed (rc {rc}): {(out + err).strip()[-400:]}")
    n = int(m.group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    notes = []
    errors = 0
    if bad:
        errors += int(bad.group(1))
        notes.append(f"{bad.group(1)} non-2xx/3xx responses")
    if sock:
        se = sum(int(x) for x in sock.groups())
        if se:
            errors += se
            notes.append(sock.group(0))
    return {"units": n - (int(bad.group(1)) if bad else 0), "errors": errors, "cpu_s": c1 - c0,
            "wall_s": t1 - t0, "rate_per_s": n / (t1 - t0), "notes": notes}


def phase_keepalive(p, args):
    r = phase_wrk(p, "/small", 50, args)
    r["value"] = r["cpu_s"] * 1000.0 / r["units"] * 1000.0 if r["units"] else None
    return r


def phase_big(p, args):
    r = phase_wrk(p, "/1m", 8, args)
    gib = r["units"] * ONE_MIB / GIB
    r["gib"] = gib
    r["value"] = r["cpu_s"] / gib if r["units"] else None
    return r


def phase_idle(p, args):
    """Idle memory: RSS delta / N over N TLS connections (handshake done, nothing sent).

    First `idle_warmup` connections are opened and held without being counted: they use up
    the heap the proxy freed but kept after the load phases (otherwise the first few hundred
    connections look free). Then RSS is read, N more are opened, and RSS is read again.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    conns, errors, last_err = [], 0, ""
    total = args.idle_warmup + args.idle_conns
    step = max(1, args.idle_conns // 4)
    ramp = [(0, tree_rss_kib(p.proc.pid))]
    rss0 = None
    deadline = time.monotonic() + max(60.0, total / 20.0)
    try:
        while len(conns) < total and time.monotonic() < deadline:
            if rss0 is None and len(conns) == args.idle_warmup:
                time.sleep(0.5)
                rss0 = tree_rss_kib(p.proc.pid)
                ramp.append((len(conns), rss0))
            s = None
            try:
                s = socket.create_connection(("127.0.0.1", p.port), timeout=10)
                s = ctx.wrap_socket(s, server_hostname="localhost")
                conns.append(s)
                s = None
                if len(conns) > args.idle_warmup and \
                        (len(conns) - args.idle_warmup) % step == 0 and len(conns) < total:
                    ramp.append((len(conns), tree_rss_kib(p.proc.pid)))
            except (OSError, ssl.SSLError) as e:
                errors += 1
                last_err = str(e)
                if errors > 20:
                    break
            finally:
                if s is not None:
                    s.close()
        time.sleep(1.0)   # let the proxy finish whatever it does after the handshake
        rss1 = tree_rss_kib(p.proc.pid)
        ramp.append((len(conns), rss1))
        alive_after = p.alive()
    finally:
        for s in conns:
            try:
                s.close()
            except OSError:
                pass
    n = len(conns) - args.idle_warmup
    time.sleep(1.0)
    rss2 = tree_rss_kib(p.proc.pid)
    notes = [f"{errors} connections failed: {last_err}"] if errors else []
    if not alive_after:
        notes.append("proxy died while holding idle connections")
    if n < args.idle_conns:
        notes.append(f"only {max(n, 0)} of {args.idle_conns} measured connections opened")
    ok = rss0 is not None and n == args.idle_conns and alive_after
    return {"units": n if ok else 0, "errors": errors, "warmup_conns": args.idle_warmup,
            "rss_before_kib": rss0, "rss_with_conns_kib": rss1, "rss_after_close_kib": rss2,
            "rss_ramp_kib": ramp, "value": (rss1 - rss0) / n if ok else None, "notes": notes}


# --------------------------------------------------------------------------- reporting

def fmt(v, digits):
    if v is None:
        return "–"
    return f"{v:.{digits}f}"


def medians(results, proxies):
    med = {}
    for p in proxies:
        med[p.name] = {}
        for key, _, _ in METRICS:
            vals = [r[p.name][key]["value"] for r in results
                    if key in r.get(p.name, {}) and r[p.name][key].get("value") is not None]
            med[p.name][key] = statistics.median(vals) if vals else None
    return med


def tables(med, proxies):
    head = "| proxy | " + " | ".join(t for _, t, _ in METRICS) + " |"
    sep = "|---|" + "---|" * len(METRICS)
    lines = ["## Cost per unit of work (median over rounds; lower is cheaper)", "", head, sep]
    for p in proxies:
        cells = []
        for key, _, dig in METRICS:
            v = med[p.name][key]
            cells.append(fmt(v, dig))
        lines.append(f"| {p.name} | " + " | ".join(cells) + " |")
    lines += ["", "## Ratios peer / stapler (>1: stapler is cheaper, <1: the peer is cheaper)",
              "", head, sep]
    base = med.get("stapler", {})
    for p in proxies:
        cells = []
        for key, _, _ in METRICS:
            v, b = med[p.name][key], base.get(key)
            cells.append("–" if v is None or not b else f"{v / b:.2f}")
        lines.append(f"| {p.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main

def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--hs-worker":
        return hs_worker_main(sys.argv[2:])

    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="1 round, 3 s phases, 200 idle connections (a smoke run)")
    ap.add_argument("--rounds", type=int, help="interleaved rounds (default 3, quick 1)")
    ap.add_argument("--duration", type=int, help="seconds per load phase (default 6, quick 3)")
    ap.add_argument("--idle-conns", type=int, help="idle TLS connections (default 1000, quick 200)")
    ap.add_argument("--idle-warmup", type=int, default=250,
                    help="idle connections opened (and held) before the RSS baseline")
    ap.add_argument("--hs-client", choices=["python", "s_time"], default="python",
                    help="full-handshake client: 'python' (fresh ssl connection each time, "
                         "SNI localhost; default) or 's_time' (openssl s_time -new: no SNI)")
    ap.add_argument("--hs-procs", type=int, default=2,
                    help="concurrent handshake client processes, all on the load CPU")
    ap.add_argument("--proxies", default=",".join(ALL_PROXIES),
                    help="comma-separated subset of " + ",".join(ALL_PROXIES))
    ap.add_argument("--stapler", default=os.path.join(REPO, "build", "stapler"))
    ap.add_argument("--stapler-log-level", default="info",
                    help="stapler log.level (default info, its production default)")
    ap.add_argument("--hitch-user", default="nobody",
                    help="hitch refuses to run its workers as root: the user they switch to")
    ap.add_argument("--out", default="/tmp/stapler-bench.json", help="raw results as JSON")
    ap.add_argument("--keep-tmp", action="store_true", help="keep configs, certs and logs")
    args = ap.parse_args()
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.duration = args.duration or (3 if args.quick else 6)
    args.idle_conns = args.idle_conns or (200 if args.quick else 1000)
    names = [n.strip() for n in args.proxies.split(",") if n.strip()]
    if "stapler" not in names:
        names.insert(0, "stapler")
    for n in names:
        if n not in ALL_PROXIES:
            ap.error(f"unknown proxy {n}")
    if args.rounds < 1 or args.rounds > 20 or args.duration < 1 or args.duration > 120:
        ap.error("rounds must be 1..20 and duration 1..120 s")
    if not os.access(args.stapler, os.X_OK):
        ap.error(f"{args.stapler} is not executable: run 'make build' first")
    for tool in ("taskset", "openssl", "wrk", "curl") + tuple(n for n in names if n != "stapler"):
        if not shutil.which(tool):
            ap.error(f"{tool} not found: run tests/bench/run.sh (installs it as root)")

    global LOAD_CPU
    if (os.cpu_count() or 1) < 2:
        LOAD_CPU = PROXY_CPU
    # This script and the tools it starts run on the load CPU unless pinned otherwise.
    try:
        os.sched_setaffinity(0, {int(LOAD_CPU)})
    except OSError as e:
        log(f"warning: could not pin the harness to CPU {LOAD_CPU}: {e}")
    global NOFILE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    NOFILE = min(hard, 65536) if hard != resource.RLIM_INFINITY else 65536
    if soft < NOFILE:
        resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, hard))
    if NOFILE < 4 * (args.idle_conns + args.idle_warmup) + 1000:
        ap.error(f"file descriptor limit {NOFILE} is too low for {args.idle_conns} idle "
                 "connections")
    if LOAD_CPU == PROXY_CPU:
        log("warning: fewer than 2 CPUs: proxy and load share a core")

    def on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)   # even if started with it ignored

    tmp = tempfile.mkdtemp(prefix="stapler-bench-")
    failed = []
    results = []
    proxies = []
    ok_exit = False
    try:
        log(f"work dir {tmp}")
        certs = make_certs(tmp)
        www = os.path.join(tmp, "www")
        os.makedirs(www)
        with open(os.path.join(www, "small"), "wb") as f:
            f.write(SMALL_BODY)
        with open(os.path.join(www, "1m"), "wb") as f:
            f.write(os.urandom(ONE_MIB))
        os.chmod(tmp, 0o755)

        ports = free_ports(len(names) + 1)
        bport = ports.pop()
        bdir = os.path.join(tmp, "backend")
        os.makedirs(os.path.join(bdir, "tmp"))
        with open(os.path.join(bdir, "nginx.conf"), "w") as f:
            f.write(backend_conf(bdir, bport, www))
        backend = spawn(["nginx", "-p", bdir + "/", "-e", os.path.join(bdir, "error.log"),
                         "-c", os.path.join(bdir, "nginx.conf")], cpu=LOAD_CPU,
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(bport, backend, "backend nginx")

        proxies = build_proxies(names, tmp, ports, bport, certs, args)
        for p in proxies:
            p.start()
            log(f"started {p.name} pid {p.proc.pid} on 127.0.0.1:{p.port}")
        unavailable = set()
        for p in proxies:
            check_proxy(p, certs, tmp, args)
            for kind in ("ecdsa", "rsa"):
                why = p.info.get(f"hs_{kind}_unavailable")
                if kind == "ecdsa" and not p.supports_ecdsa:
                    why = p.note
                if why:
                    unavailable.add((p.name, f"hs_{kind}_cpu_ms_per_1k"))
                    p.info[f"hs_{kind}_skipped"] = why
                    msg = f"{p.name}: {kind.upper()} handshake phase skipped: {why}"
                    log(("ERROR: " if p.name == "stapler" else "note: ") + msg)
                    if p.name == "stapler":
                        failed.append(msg)
            d = p.info["default_client"]
            log(f"{p.name}: /small and /1m return 200 through it; a default client gets "
                f"{d['cert']} {d['protocol']} {d['cipher']}")

        metric_of = {"hs_ecdsa": "hs_ecdsa_cpu_ms_per_1k", "hs_rsa": "hs_rsa_cpu_ms_per_1k",
                     "keepalive": "ka_cpu_ms_per_1k", "big": "big_cpu_s_per_gib",
                     "idle": "idle_kib_per_conn"}
        for rnd in range(args.rounds):
            order = proxies[rnd % len(proxies):] + proxies[:rnd % len(proxies)]
            res = {p.name: {} for p in proxies}
            for phase in PHASES:
                for p in order:
                    key = metric_of[phase]
                    if p.dead:
                        continue
                    if (p.name, key) in unavailable:
                        continue
                    if not p.alive():
                        p.dead = f"exited with status {p.proc.returncode}"
                        failed.append(f"{p.name} {p.dead} before round {rnd + 1} {phase}")
                        log("ERROR: " + failed[-1] + "\n" + p.log_tail())
                        continue
                    lines0 = p.log_lines()
                    try:
                        if phase == "hs_ecdsa":
                            r = phase_handshakes(p, "ecdsa", tmp, certs, args)
                        elif phase == "hs_rsa":
                            r = phase_handshakes(p, "rsa", tmp, certs, args)
                        elif phase == "keepalive":
                            r = phase_keepalive(p, args)
                        elif phase == "big":
                            r = phase_big(p, args)
                        else:
                            r = phase_idle(p, args)
                    except BenchError as e:
                        r = {"units": 0, "value": None, "notes": [str(e)]}
                    r["log_lines"] = p.log_lines() - lines0
                    if not p.alive():
                        p.dead = f"exited with status {p.proc.returncode} during {phase}"
                        r["notes"].append(p.dead)
                    if not r.get("units") or r.get("value") is None:
                        r["value"] = None
                        failed.append(f"round {rnd + 1} {phase} {p.name}: no work done: "
                                      + "; ".join(r["notes"]))
                        log("ERROR: " + failed[-1])
                        if p.dead:
                            log(p.log_tail())
                    res[p.name][key] = r
                    log(f"round {rnd + 1}/{args.rounds} {phase:9s} {p.name:8s} "
                        + (f"{r['value']:10.2f}" if r["value"] is not None else "      fail")
                        + f"  ({r.get('units', 0)} units"
                        + (f", {r['rate_per_s']:.0f}/s" if "rate_per_s" in r else "")
                        + (f", cpu {r['cpu_s']:.2f}s" if "cpu_s" in r else "")
                        + (f", {r['log_lines']} log lines" if r["log_lines"] else "")
                        + (", " + "; ".join(r["notes"]) if r["notes"] else "") + ")")
            results.append(res)

        med = medians(results, proxies)
        report = tables(med, proxies)
        print()
        print(report)
        print()
        for p in proxies:
            for kind in ("ecdsa", "rsa"):
                why = p.info.get(f"hs_{kind}_skipped")
                if why:
                    print(f"- {p.name}, {kind.upper()} handshakes: – ({why})")
        print(f"- handshake client: {args.hs_client} x{args.hs_procs}; phases {args.duration} s; "
              f"{args.rounds} round(s); {args.idle_conns} idle connections measured after "
              f"{args.idle_warmup} warm-up ones; stapler log.level "
              f"{args.stapler_log_level}")
        for p in proxies:
            d = p.info.get("default_client", {})
            print(f"- {p.name}: default client negotiates {d.get('protocol')} {d.get('cipher')} "
                  f"with the {d.get('cert')} certificate"
                  + (f"; DIED: {p.dead}" if p.dead else ""))
        if failed:
            print("\nFAILURES:")
            for f in failed:
                print("- " + f)

        meta = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "args": {k: v for k, v in vars(args).items()},
            "cpus": os.cpu_count(), "clk_tck": CLK_TCK,
            "versions": {
                "stapler": tool_version([args.stapler, "--version"]),
                "stapler_git": tool_version(["git", "-C", REPO, "rev-parse", "--short", "HEAD"]),
                "nginx": tool_version(["nginx", "-v"]),
                "haproxy": tool_version(["haproxy", "-v"]),
                "hitch": tool_version(["hitch", "--version"]),
                "wrk": tool_version(["wrk", "--version"]),
                "openssl": tool_version(["openssl", "version"]),
                "kernel": os.uname().release,
            },
            "proxies": {p.name: {"port": p.port, "argv": p.argv, "info": p.info,
                                 "dead": p.dead} for p in proxies},
        }
        with open(args.out, "w") as f:
            json.dump({"meta": meta, "median": med, "rounds": results, "failures": failed,
                       "table": report}, f, indent=2, default=str)
        print(f"\nraw results: {args.out}")
        ok_exit = not failed
    except KeyboardInterrupt:
        log("interrupted")
    except BenchError as e:
        log(f"ERROR: {e}")
        for p in proxies:
            if p.proc is not None and not p.alive():
                log(f"{p.name} exited with {p.proc.returncode}; last log lines:\n{p.log_tail()}")
    finally:
        stop_all_started()
        for p in proxies:
            if getattr(p, "_log", None):
                p._log.close()
        if args.keep_tmp or not ok_exit:
            log(f"kept work dir {tmp} (configs, certificates, proxy logs)")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok_exit else 1


if __name__ == "__main__":
    sys.exit(main())
