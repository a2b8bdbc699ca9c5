#!/usr/bin/python3
"""Side-by-side cost benchmark: stapler against nginx, HAProxy, hitch and h2o on loopback.

Every proxy runs single-worker pinned to CPU 0; every load generator runs on CPU 1.
What is compared is the proxy's own CPU time (utime+stime of its whole process tree, from
/proc) per unit of work -- full and resumed handshakes, keep-alive requests, 1 MiB GETs,
WebSocket messages, HTTP/2 requests -- and its resident memory per idle TLS connection; not
rates, which are bound by the client on this machine. Syscalls per handshake and per request
are counted with strace for stapler and nginx. See README.md beside this file.

Standard library only; run with /usr/bin/python3 (normally through run.sh).
"""

import argparse
import json
import os
import re
import resource
import select
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
WS_ECHO = os.path.join(HERE, "ws_echo.py")

PROXY_CPU = "0"          # taskset CPU list for the proxy under test
LOAD_CPU = "1"           # ... for load generators, the backend and this script
CLK_TCK = os.sysconf("SC_CLK_TCK")
SMALL_BODY = (b"stapler-bench small body " * 8)[:99] + b"\n"   # 100 bytes
ONE_MIB = 1 << 20
GIB = 1 << 30

# Metrics: key, column title, digits, table, kind. Kinds: "cost" (lower is cheaper; gets a
# peer / stapler ratio), "rate" (higher is faster; no ratio), "derived" (computed from other
# medians). {fresh_n} in a title is replaced by the number of connections held.
METRICS = [
    ("hs_ecdsa_cpu_ms_per_1k", "CPU ms / 1k full ECDSA HS", 0, "main", "cost"),
    ("hs_rsa_cpu_ms_per_1k", "CPU ms / 1k full RSA-2048 HS", 0, "main", "cost"),
    ("ka_cpu_ms_per_1k", "CPU ms / 1k keep-alive req", 1, "main", "cost"),
    ("big_cpu_s_per_gib", "CPU s / GiB (1 MiB GETs)", 2, "main", "cost"),
    ("idle_kib_per_conn", "idle KiB / TLS conn", 1, "main", "cost"),
    ("fresh_idle_kib_per_conn", "idle KiB / TLS conn, fresh process, {fresh_n} conns", 1,
     "main", "cost"),
    ("res13_cpu_ms_per_1k", "CPU ms / 1k resumed TLS 1.3 HS", 0, "resume", "cost"),
    ("res13_over_full", "resumed 1.3 / full", 2, "resume", "derived"),
    ("res12_cpu_ms_per_1k", "CPU ms / 1k resumed TLS 1.2 HS", 0, "resume", "cost"),
    ("res12_over_full", "resumed 1.2 / full", 2, "resume", "derived"),
    ("ws_cpu_ms_per_1k", "CPU ms / 1k WebSocket msgs", 1, "ws_h2", "cost"),
    ("h2_m1_cpu_ms_per_1k", "h2 x1: CPU ms / 1k req", 1, "ws_h2", "cost"),
    ("h2_m1_rps", "h2 x1: req/s", 0, "ws_h2", "rate"),
    ("h2_m10_cpu_ms_per_1k", "h2 x10: CPU ms / 1k req", 1, "ws_h2", "cost"),
    ("h2_m10_rps", "h2 x10: req/s", 0, "ws_h2", "rate"),
    ("h2_m100_cpu_ms_per_1k", "h2 x100: CPU ms / 1k req", 1, "ws_h2", "cost"),
    ("h2_m100_rps", "h2 x100: req/s", 0, "ws_h2", "rate"),
]
TABLES = [
    ("main", "Cost per unit of work (median over rounds; lower is cheaper)"),
    ("resume", "Resumed handshakes (tickets; median over rounds). resumed / full: against the "
               "full TLS 1.3 handshake with the certificate the session was made with"),
    ("ws_h2", "WebSocket echo and HTTP/2 (median over rounds; xN = concurrent streams per "
              "connection)"),
]
# Phases run every round, in this order, each for every proxy; the metric each one yields.
PHASES = [
    ("hs_ecdsa", "hs_ecdsa_cpu_ms_per_1k"),
    ("hs_rsa", "hs_rsa_cpu_ms_per_1k"),
    ("res13", "res13_cpu_ms_per_1k"),
    ("res12", "res12_cpu_ms_per_1k"),
    ("keepalive", "ka_cpu_ms_per_1k"),
    ("big", "big_cpu_s_per_gib"),
    ("ws", "ws_cpu_ms_per_1k"),
    ("h2_m1", "h2_m1_cpu_ms_per_1k"),
    ("h2_m10", "h2_m10_cpu_ms_per_1k"),
    ("h2_m100", "h2_m100_cpu_ms_per_1k"),
    ("idle", "idle_kib_per_conn"),
]
H2_STREAMS = (1, 10, 100)

ALL_PROXIES = ["stapler", "nginx", "haproxy", "hitch", "h2o"]
STAPLER_KINDS = ("stapler", "stapler-fast")
NOFILE = 20000           # file descriptors per process; set from the hard limit in main()

# Every process this script starts, so that finally: can stop what is still running.
_STARTED = []


class BenchError(Exception):
    pass


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- processes

def spawn(argv, *, cpu, stdout=None, stderr=None, env=None, stdin=subprocess.DEVNULL):
    """Start argv pinned with taskset; remember it for cleanup."""
    full = ["taskset", "-c", cpu] + list(argv)
    p = subprocess.Popen(full, stdout=stdout, stderr=stderr, stdin=stdin,
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

def backend_conf(d, port, www, ws_port):
    t = os.path.join(d, "tmp")
    return f"""# plain-HTTP origin for the benchmark (not under test); /ws goes on to the WebSocket echo
worker_processes 1;
daemon off;
master_process on;
user root;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
worker_rlimit_nofile {NOFILE};
events {{ worker_connections {NOFILE - 100}; }}
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
        location = /ws {{
            proxy_pass http://127.0.0.1:{ws_port};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_read_timeout 300s;
            proxy_send_timeout 300s;
        }}
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
events {{ worker_connections {NOFILE - 100}; }}
http {{
    access_log off;
    client_body_temp_path {t}/body;
    proxy_temp_path {t}/proxy;
    fastcgi_temp_path {t}/fastcgi;
    uwsgi_temp_path {t}/uwsgi;
    scgi_temp_path {t}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    client_header_timeout 300s;
    # WebSocket as nginx documents it: Upgrade passed on, Connection "upgrade" only for
    # upgrade requests, so that other requests keep the upstream connection alive.
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        '' '';
    }}
    upstream app {{
        server 127.0.0.1:{bport};
        keepalive 64;
        keepalive_requests 1000000;
        keepalive_timeout 300s;
    }}
    server {{
        listen 127.0.0.1:{port} ssl http2 backlog=4096;
        server_name localhost;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_certificate {certs['rsa']};
        ssl_certificate_key {certs['rsa'][:-4]}.key;
        ssl_certificate {certs['ecdsa']};
        ssl_certificate_key {certs['ecdsa'][:-4]}.key;
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto https;
            proxy_read_timeout 300s;
            proxy_send_timeout 300s;
        }}
    }}
}}
"""


def haproxy_conf(d, port, bport, certs, maxconn):
    # maxconn is sized for the idle-connection phases; above half the descriptor limit
    # HAProxy refuses to start unless strict-limits is off (it then warns at start-up).
    strict = "    no strict-limits\n" if 2 * maxconn + 200 > NOFILE else ""
    return f"""# HAProxy under test: one thread, no log target (nothing logged)
global
    nbthread 1
    maxconn {maxconn}
{strict}    ssl-default-bind-options ssl-min-ver TLSv1.2
defaults
    mode http
    option http-keep-alive
    option forwardfor
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    timeout tunnel 300s
    timeout http-request 300s
    timeout http-keep-alive 300s
frontend fe
    bind 127.0.0.1:{port} ssl crt {certs['rsa'][:-4]}.full.pem crt {certs['ecdsa'][:-4]}.full.pem alpn h2,http/1.1
    http-request set-header X-Forwarded-Proto https
    default_backend app
backend app
    http-reuse safe
    server app1 127.0.0.1:{bport}
"""


def h2o_conf(d, port, bport, certs, user):
    return f"""# h2o under test: one thread, no access log, errors to a file
num-threads: 1
max-connections: {NOFILE - 100}
user: {user}
error-log: {d}/error.log
http1-request-timeout: 300
http2-idle-timeout: 300
listen:
  host: 127.0.0.1
  port: {port}
  ssl:
    # h2o 2.2 takes one certificate per listener: the ECDSA one (no RSA fallback).
    certificate-file: {certs['ecdsa']}
    key-file: {certs['ecdsa'][:-4]}.key
    minimum-version: TLSv1.2
    ocsp-update-interval: 0
hosts:
  default:
    paths:
      /:
        proxy.reverse.url: http://127.0.0.1:{bport}/
        proxy.preserve-host: ON
        proxy.websocket: ON
        proxy.websocket.timeout: 300000
        proxy.timeout.io: 300000
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
  access: false   # like the peers here: none of them writes an access log
"""


class Proxy:
    def __init__(self, name, port, argv, logfile, certs=("ecdsa", "rsa"), h2=True, note="",
                 fds_per_idle_conn=1):
        self.name, self.port, self.argv, self.logfile = name, port, argv, logfile
        self.proc = None
        self.certs = certs            # certificate kinds configured; the others are "–"
        self.note = note              # why a kind is not configured
        self.h2 = h2                  # offers h2 by ALPN
        self.fds_per_idle_conn = fds_per_idle_conn
        self.dead = None              # reason, once it has died or failed its check
        self.info = {}
        self.skip = {}                # metric key -> why it is not measured

    @property
    def is_stapler(self):
        return self.name in STAPLER_KINDS

    def start(self):
        self._log = open(self.logfile, "ab")
        self.proc = spawn(self.argv, cpu=PROXY_CPU, stdout=self._log, stderr=subprocess.STDOUT)
        wait_port(self.port, self.proc, self.name)

    def restart(self):
        """Stop this proxy (by PID) and start a new process with the same command line."""
        if self.proc is not None:
            stop_process(self.proc)
            if self.proc in _STARTED:
                _STARTED.remove(self.proc)
        if getattr(self, "_log", None):
            self._log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:      # the port must be free again
            try:
                with socket.socket() as s:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    s.bind(("127.0.0.1", self.port))
                break
            except OSError:
                time.sleep(0.1)
        self.start()

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


def stapler_version(binary):
    """`stapler --version`: (version line, TLS library line)."""
    try:
        r = subprocess.run([binary, "--version"], capture_output=True, timeout=10)
        lines = (r.stdout + r.stderr).decode(errors="replace").strip().splitlines()
    except (OSError, subprocess.TimeoutExpired) as e:
        return "?", f"? ({e})"
    return (lines[0] if lines else "?"), (lines[1] if len(lines) > 1 else "?")


def build_proxies(names, tmp, ports, bport, certs, args):
    proxies = []
    for name in names:
        d = os.path.join(tmp, name)
        os.makedirs(os.path.join(d, "tmp"), exist_ok=True)
        port = ports.pop()
        logf = os.path.join(d, "stderr.log")
        if name in STAPLER_KINDS:
            binary = args.stapler if name == "stapler" else args.stapler_fast
            cfg = os.path.join(d, "stapler.yaml")
            with open(cfg, "w") as f:
                f.write(stapler_conf(d, port, bport, certs, args.stapler_log_level))
            check = subprocess.run([binary, "-t", "-c", cfg], capture_output=True,
                                   timeout=30)
            if check.returncode != 0:
                raise BenchError(f"{binary} -t rejected the bench config:\n"
                                 + (check.stdout + check.stderr).decode(errors="replace"))
            p = Proxy(name, port, [binary, "-c", cfg], logf)
        elif name == "nginx":
            cfg = os.path.join(d, "nginx.conf")
            with open(cfg, "w") as f:
                f.write(nginx_conf(d, port, bport, certs))
            p = Proxy(name, port, ["nginx", "-p", d + "/", "-e", os.path.join(d, "error.log"),
                                   "-c", cfg], os.path.join(d, "error.log"))
        elif name == "haproxy":
            cfg = os.path.join(d, "haproxy.cfg")
            with open(cfg, "w") as f:
                f.write(haproxy_conf(d, port, bport, certs,
                                     max((NOFILE - 200) // 2, args.fresh_idle_conns + 200)))
            check = subprocess.run(["haproxy", "-c", "-f", cfg], capture_output=True, timeout=30)
            if check.returncode != 0:
                raise BenchError("haproxy -c rejected the bench config:\n"
                                 + (check.stdout + check.stderr).decode(errors="replace"))
            p = Proxy(name, port, ["haproxy", "-db", "-f", cfg], logf)
        elif name == "hitch":
            # hitch picks a certificate by SNI name only, never by key type: with two
            # certificates for one name it would serve one of them to everybody. It gets the
            # RSA certificate alone and its ECDSA column is "–" (as in the notes' table).
            # It has no HTTP layer: no h2 (its bytes go to an HTTP/1.1 backend as they are),
            # and every client connection holds a backend connection, idle or not.
            p = Proxy(name, port,
                      ["hitch", "--daemon=off", "--workers=1", "--backlog=4096",
                       f"--frontend=[127.0.0.1]:{port}", f"--backend=[127.0.0.1]:{bport}",
                       "--tls-protos=TLSv1.2 TLSv1.3", "--ocsp-dir=" + os.path.join(d, "ocsp"),
                       "--log-level=1", "--user=" + args.hitch_user,
                       certs["rsa"][:-4] + ".full.pem"],
                      logf, certs=("rsa",), h2=False, fds_per_idle_conn=2,
                      note="RSA certificate only (no per-key-type choice)")
            os.makedirs(os.path.join(d, "ocsp"), exist_ok=True)
            os.chmod(os.path.join(d, "ocsp"), 0o777)
        elif name == "h2o":
            # h2o 2.2 takes one certificate per listener (several per name came with 2.3): it
            # gets the ECDSA one, and a client that cannot use ECDSA fails the handshake.
            cfg = os.path.join(d, "h2o.conf")
            with open(cfg, "w") as f:
                f.write(h2o_conf(d, port, bport, certs, args.h2o_user))
            check = subprocess.run(["h2o", "-t", "-c", cfg], capture_output=True, timeout=30)
            if check.returncode != 0:
                raise BenchError("h2o -t rejected the bench config:\n"
                                 + (check.stdout + check.stderr).decode(errors="replace"))
            p = Proxy(name, port, ["h2o", "-c", cfg], os.path.join(d, "error.log"),
                      certs=("ecdsa",),
                      note="ECDSA certificate only (h2o 2.2: one certificate per listener)")
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
        if alert:
            err = alert.group(0).strip()
        elif "unexpected eof" in err:
            err = "connection closed without an alert"
        return None, None, None, err
    der = ssl.PEM_cert_to_DER_cert(m.group(0))
    kind = next((k for k, p in certs.items() if pem_to_der(p) == der), "unknown")
    proto = re.search(r"Protocol\s*:\s*(\S+)", out) or re.search(r"New, (\S+),", out)
    cipher = re.search(r"Cipher is (\S+)", out)
    return kind, proto.group(1) if proto else "?", cipher.group(1) if cipher else "?", ""


def curl_h2_check(port):
    """(ok, what) for a GET of /small over HTTP/2 (ALPN h2)."""
    r = subprocess.run(["curl", "-k", "-s", "--http2", "-o", "/dev/null", "--max-time", "10",
                        "-w", "%{http_code} %{size_download} %{http_version}",
                        f"https://127.0.0.1:{port}/small"],
                       capture_output=True, timeout=20, env=clean_env())
    out = r.stdout.decode().strip()
    return r.returncode == 0 and out == f"200 {len(SMALL_BODY)} 2", \
        f"curl --http2: rc {r.returncode}, got '{out}' (code, size, HTTP version)"


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
        key = f"hs_{want}_cpu_ms_per_1k"
        if want not in p.certs:
            p.skip[key] = (f"{p.note}; a client allowing only {want.upper()} signatures gets "
                           f"{kind or 'no certificate'}" + (f" ({err})" if err else ""))
        elif kind != want:
            p.skip[key] = (
                f"a client allowing only {want.upper()} signatures got "
                f"{kind or 'no certificate'} ({err or 'wrong certificate'}), SNI {sni or 'none'}")
    if p.h2:
        ok, what = curl_h2_check(p.port)
        p.info["h2_check"] = what
        if not ok:
            for m in H2_STREAMS:
                p.skip[f"h2_m{m}_cpu_ms_per_1k"] = f"no HTTP/2 through it: {what}"
    else:
        for m in H2_STREAMS:
            p.skip[f"h2_m{m}_cpu_ms_per_1k"] = "no HTTP/2 (does not offer h2 by ALPN)"
    r, _ = run_ws_client(p, 1, 0.3, args)
    p.info["ws_check"] = r
    if not r.get("ok") or r.get("errors"):
        p.skip["ws_cpu_ms_per_1k"] = f"WebSocket echo through it failed: {r.get('last_error')}"


# --------------------------------------------------------------------------- load phases

def hs_worker_main(argv):
    """Child mode: sequential TLS handshakes on fresh connections; prints JSON counts.

    Without --resume: full handshakes, never offering a session. With --resume 1.3 or 1.2:
    one priming connection at that TLS version makes a GET /small and reads the whole answer
    (so that a TLS 1.3 client has processed the server's NewSessionTicket), then every
    handshake offers that session's ticket and must be resumed at that version.
    """
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--sni", default="localhost")
    ap.add_argument("--duration", type=float, required=True)
    ap.add_argument("--expect", help="certificate (PEM) every full handshake must be served")
    ap.add_argument("--resume", choices=["1.2", "1.3"])
    ap.add_argument("--max", type=int, default=1000000)
    a = ap.parse_args(argv)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    expect = pem_to_der(a.expect) if a.expect else None
    ok = errors = mismatch = reused = not_resumed = wrong_version = 0
    last_err = ""
    session = None
    want_version = None
    if a.resume:
        want_version = "TLSv" + a.resume
        v = ssl.TLSVersion.TLSv1_3 if a.resume == "1.3" else ssl.TLSVersion.TLSv1_2
        ctx.minimum_version = ctx.maximum_version = v
        try:
            s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", a.port), timeout=10),
                                server_hostname=a.sni)
            s.sendall(b"GET /small HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            data = b""
            while len(data) < 1 << 20:
                d = s.recv(65536)
                if not d:
                    break
                data += d
            session = s.session
            prime = {"version": s.version(), "status": data[:12].decode(errors="replace"),
                     "has_ticket": bool(session and session.has_ticket)}
            s.close()
        except (OSError, ssl.SSLError) as e:
            print(json.dumps({"ok": 0, "errors": 1, "last_error": f"priming connection: {e}"}))
            return 0
        if prime["version"] != want_version or not prime["has_ticket"] or \
                not prime["status"].startswith("HTTP/1.1 200"):
            print(json.dumps({"ok": 0, "errors": 1, "prime": prime,
                              "last_error": f"priming connection: {prime}"}))
            return 0
    deadline = time.monotonic() + a.duration
    while time.monotonic() < deadline and ok + errors < a.max:
        s = None
        try:
            s = socket.create_connection(("127.0.0.1", a.port), timeout=10)
            # the handshake happens here
            s = ctx.wrap_socket(s, server_hostname=a.sni, session=session)
            if session is None and expect is not None and \
                    s.getpeercert(binary_form=True) != expect:
                mismatch += 1
            if s.session_reused:
                reused += 1
            elif session is not None:
                not_resumed += 1
            if want_version and s.version() != want_version:
                wrong_version += 1
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
                      "not_resumed": not_resumed, "wrong_version": wrong_version,
                      "last_error": last_err}))
    return 0


def run_hs_clients(p, args, procs, duration, env, extra, check):
    """Run `procs` handshake client processes against p; return (results, cpu_s, wall_s).

    CPU is the proxy tree's, read before the first client starts and after the last exits.
    """
    children = []
    outs = []
    c0 = tree_cpu_seconds(p.proc.pid)
    t0 = time.monotonic()
    try:
        for _ in range(procs):
            argv = ["/usr/bin/python3", os.path.abspath(__file__), "--hs-worker",
                    "--port", str(p.port), "--duration", str(duration)] + extra
            children.append(spawn(argv, cpu=LOAD_CPU, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=env))
        for q in children:
            try:
                o, e = q.communicate(timeout=duration + 60)
            except subprocess.TimeoutExpired:
                stop_process(q, signal.SIGKILL)
                raise BenchError(f"handshake client against {p.name} did not finish")
            outs.append((q.returncode, o.decode(errors="replace"), e.decode(errors="replace")))
    finally:
        for q in children:
            stop_process(q, signal.SIGKILL)
            if q in _STARTED:
                _STARTED.remove(q)
    t1 = time.monotonic()
    c1 = tree_cpu_seconds(p.proc.pid)
    results = []
    for rc, o, e in outs:
        try:
            results.append(json.loads(o.strip().splitlines()[-1]))
        except (ValueError, IndexError):
            raise BenchError(f"handshake client against {p.name} failed (rc {rc}): "
                             f"{(o + e).strip()[-300:]}")
    for r in results:
        check(r)
    return results, c1 - c0, t1 - t0


def phase_resumed(p, version, args):
    """Resumed handshakes (session tickets) at TLS `version`; each one checked resumed."""
    def check(r):
        if r.get("not_resumed") or r.get("wrong_version") or (r["ok"] == 0 and r["errors"]):
            raise BenchError(f"{p.name}: {r.get('not_resumed', 0)} handshakes not resumed, "
                             f"{r.get('wrong_version', 0)} at another version than TLS "
                             f"{version} (want 0 and 0); {r.get('last_error', '')}")
    results, cpu, wall = run_hs_clients(p, args, args.hs_procs, args.duration, clean_env(),
                                        ["--resume", version], check)
    n = sum(r["ok"] for r in results)
    errors = sum(r["errors"] for r in results)
    notes = [f"{r['errors']} failed: {r['last_error']}" for r in results if r["errors"]]
    return {"units": n, "errors": errors, "cpu_s": cpu, "wall_s": wall,
            "resumed": sum(r["reused"] for r in results),
            "rate_per_s": n / wall, "value": cpu * 1000.0 / n * 1000.0 if n else None,
            "notes": notes}


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



def ws_read_line(q, deadline):
    """One line from the WebSocket client's stdout, waiting until deadline at most."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise BenchError("WebSocket client: no answer in time")
        r, _, _ = select.select([q.stdout], [], [], min(left, 1.0))
        if r:
            line = q.stdout.readline()
            if not line:
                raise BenchError(f"WebSocket client exited (rc {q.poll()}): "
                                 f"{q.stderr.read().decode(errors='replace')[-300:]}")
            return line.decode(errors="replace").strip()


def run_ws_client(p, conns, duration, args):
    """Open `conns` upgraded WebSocket connections through p, then ping-pong for `duration`.

    Returns (client's JSON result, proxy CPU seconds during the message exchange only: the
    handshakes and upgrades happen before the first reading, the teardown after the second).
    """
    argv = ["/usr/bin/python3", WS_ECHO, "client", "--port", str(p.port), "--conns",
            str(conns), "--size", str(args.ws_size), "--duration", str(duration)]
    q = spawn(argv, cpu=LOAD_CPU, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
              stderr=subprocess.PIPE)
    try:
        first = ws_read_line(q, time.monotonic() + 30 + conns)
        if first != "ready":
            try:
                return json.loads(first), 0.0
            except ValueError:
                raise BenchError(f"WebSocket client: {first[-300:]}")
        c0 = tree_cpu_seconds(p.proc.pid)
        t0 = time.monotonic()
        q.stdin.write(b"go\n")
        q.stdin.flush()
        line = ws_read_line(q, time.monotonic() + duration + 30)
        c1 = tree_cpu_seconds(p.proc.pid)
        t1 = time.monotonic()
        try:
            r = json.loads(line)
        except ValueError:
            raise BenchError(f"WebSocket client: {line[-300:]}")
        r["harness_wall_s"] = t1 - t0
        try:
            q.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        return r, c1 - c0
    finally:
        stop_process(q, signal.SIGKILL)
        if q in _STARTED:
            _STARTED.remove(q)


def phase_ws(p, args):
    r, cpu = run_ws_client(p, args.ws_conns, args.duration, args)
    n = r.get("ok", 0)
    notes = []
    if r.get("errors"):
        notes.append(f"{r['errors']} connections failed: {r.get('last_error')}")
    wall = r.get("wall_s") or args.duration
    return {"units": n, "errors": r.get("errors", 0), "cpu_s": cpu, "wall_s": wall,
            "rate_per_s": n / wall, "value": cpu * 1000.0 / n * 1000.0 if n else None,
            "notes": notes}


H2LOAD_REQ = re.compile(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                        r"(\d+) failed, (\d+) errored, (\d+) timeout")
H2LOAD_CODES = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")
H2LOAD_RATE = re.compile(r"finished in ([\d.]+)(\w+), ([\d.]+) req/s")
H2LOAD_PROTO = re.compile(r"Application protocol: (\S+)")


def run_h2load(p, opts, want_proto, timeout):
    """h2load against p's /small; returns (parsed counts, proxy CPU s, wall s)."""
    argv = ["h2load", "-t", "1", f"--connect-to=127.0.0.1:{p.port}"] + opts + \
        [f"https://localhost:{p.port}/small"]
    c0 = tree_cpu_seconds(p.proc.pid)
    t0 = time.monotonic()
    rc, out, err = run_capture(argv, cpu=LOAD_CPU, timeout=timeout)
    t1 = time.monotonic()
    c1 = tree_cpu_seconds(p.proc.pid)
    m, codes, rate, proto = (H2LOAD_REQ.search(out), H2LOAD_CODES.search(out),
                             H2LOAD_RATE.search(out), H2LOAD_PROTO.search(out))
    if rc != 0 or not m or not codes:
        raise BenchError(f"h2load against {p.name} failed (rc {rc}): "
                         f"{(out + err).strip()[-400:]}")
    if not proto or proto.group(1) != want_proto:
        raise BenchError(f"h2load against {p.name}: negotiated "
                         f"{proto.group(1) if proto else 'no protocol'}, want {want_proto}")
    total, started, done, ok, failed, errored, tmo = (int(x) for x in m.groups())
    c2xx = int(codes.group(1))
    return {"requests": total, "succeeded": ok, "failed": failed, "errored": errored,
            "timeout": tmo, "2xx": c2xx, "other_status": sum(int(x) for x in codes.groups()[1:]),
            "h2load_rps": float(rate.group(3)) if rate else None}, c1 - c0, t1 - t0


def phase_h2(p, streams, args):
    """HTTP/2 GETs of /small: h2load, --h2-conns connections, `streams` in flight on each."""
    r, cpu, wall = run_h2load(p, ["-c", str(args.h2_conns), "-m", str(streams),
                                  "-D", str(args.duration)], "h2", args.duration + 60)
    n = min(r["succeeded"], r["2xx"])
    notes = []
    bad = r["failed"] + r["errored"] + r["timeout"] + r["other_status"]
    if bad:
        notes.append(f"{r['failed']} failed, {r['errored']} errored, {r['timeout']} timed out, "
                     f"{r['other_status']} non-2xx")
    rps = r["h2load_rps"] if r["h2load_rps"] is not None else n / wall
    return {"units": n, "errors": bad, "cpu_s": cpu, "wall_s": wall, "rate_per_s": rps,
            "h2load": r, "value": cpu * 1000.0 / n * 1000.0 if n else None,
            "rps": rps, "notes": notes}


TCP_ESTABLISHED = 1


def phase_fresh_idle(p, args):
    """Idle memory in a fresh process: restart p, open N TLS connections, RSS delta / N.

    One handshake is made (and closed) before the baseline so that what a first connection
    initialises once is not counted. Connections are opened by a few threads (handshakes
    overlap with the proxy's work) and must all still be established when RSS is read.
    """
    n = min(args.fresh_idle_conns, (NOFILE - 300) // p.fds_per_idle_conn)
    p.restart()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE

    def one():
        s = socket.create_connection(("127.0.0.1", p.port), timeout=10)
        try:
            return ctx.wrap_socket(s, server_hostname="localhost")
        except BaseException:
            s.close()
            raise

    one().close()
    time.sleep(0.5)
    rss0 = tree_rss_kib(p.proc.pid)
    conns, errs = [], []
    lock = threading.Lock()
    deadline = time.monotonic() + max(60.0, n / 50.0)

    def opener():
        while time.monotonic() < deadline:
            with lock:
                if len(conns) >= n or len(errs) > 20:
                    return
                conns.append(None)          # reserve a slot
                slot = len(conns) - 1
            try:
                s = one()
                with lock:
                    conns[slot] = s
            except (OSError, ssl.SSLError) as e:
                with lock:
                    conns[slot] = False
                    errs.append(str(e))

    t0 = time.monotonic()
    threads = [threading.Thread(target=opener, daemon=True) for _ in range(args.idle_threads)]
    for t in threads:
        t.start()
    ramp = [(0, rss0)]
    try:
        while any(t.is_alive() for t in threads):
            time.sleep(0.5)
            ramp.append((sum(1 for s in conns if s), tree_rss_kib(p.proc.pid)))
        for t in threads:
            t.join(timeout=30)
        open_s = time.monotonic() - t0
        held = [s for s in conns if s]
        time.sleep(1.0)   # let the proxy finish whatever it does after the handshake
        rss1 = tree_rss_kib(p.proc.pid)
        ramp.append((len(held), rss1))
        closed = 0
        for s in held:
            try:
                info = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)
                if info[0] != TCP_ESTABLISHED:
                    closed += 1
            except OSError:
                closed += 1
        alive_after = p.alive()
    finally:
        for s in conns:
            if s:
                try:
                    s.close()
                except OSError:
                    pass
    notes = []
    if errs:
        notes.append(f"{len(errs)} connections failed: {errs[-1]}")
    if closed:
        notes.append(f"{closed} of {len(held)} connections were closed by the proxy before "
                     "the measurement")
    if not alive_after:
        notes.append("proxy died while holding idle connections")
    if len(held) < n:
        notes.append(f"only {len(held)} of {n} connections opened")
    if n < args.fresh_idle_conns:
        notes.append(f"{n} connections, not {args.fresh_idle_conns}: it holds "
                     f"{p.fds_per_idle_conn} descriptors per connection and the limit is "
                     f"{NOFILE}")
    ok = len(held) == n and not closed and alive_after
    return {"units": n if ok else 0, "conns": len(held), "errors": len(errs),
            "open_s": open_s, "rss_before_kib": rss0, "rss_with_conns_kib": rss1,
            "rss_ramp_kib": ramp, "value": (rss1 - rss0) / n if ok else None, "notes": notes}


# --------------------------------------------------------------------------- syscalls

STRACE_LINE = re.compile(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:(\d+)\s+)?(\w+)\s*$")


def strace_count(p, work, out, allow_empty=False):
    """Count p's syscalls (all its processes and threads) while work() runs: strace -c -f."""
    pids = tree_pids(p.proc.pid)
    argv = ["strace", "-c", "-f", "-o", out]
    for pid in pids:
        argv += ["-p", str(pid)]
    st = spawn(argv, cpu=LOAD_CPU, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        attached, seen = 0, []
        deadline = time.monotonic() + 15
        while attached < len(pids):
            left = deadline - time.monotonic()
            if left <= 0 or st.poll() is not None:
                raise BenchError(f"strace did not attach to {p.name} ({pids}): "
                                 + " ".join(seen)[-300:])
            r, _, _ = select.select([st.stderr], [], [], min(left, 1.0))
            if r:
                line = st.stderr.readline().decode(errors="replace").strip()
                seen.append(line)
                if "attached" in line:
                    attached += 1
        t0 = time.monotonic()
        work()
        wall = time.monotonic() - t0
        time.sleep(0.3)           # the proxy's own closing of the last connections
    finally:
        if st.poll() is None:
            os.kill(st.pid, signal.SIGTERM)        # strace detaches and writes its summary
        try:
            st.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            stop_process(st, signal.SIGKILL)
        if st in _STARTED:
            _STARTED.remove(st)
    calls = {}
    with open(out) as f:
        for line in f:
            m = STRACE_LINE.match(line)
            if m and m.group(3) != "total":
                calls[m.group(3)] = calls.get(m.group(3), 0) + int(m.group(1))
    if not calls and not allow_empty:      # (a proxy idle for 2 s may make no syscall)
        raise BenchError(f"strace wrote no counts for {p.name} (see {out})")
    return calls, wall


def phase_syscalls(p, tmp, args):
    """Syscalls per full handshake and per keep-alive request, in a fresh process.

    Untimed (strace slows the proxy down many times). After a warm-up without strace:
    idle for 2 s (syscalls a quiet proxy makes by itself), `--strace-hs` full handshakes
    (sequential, default client: TLS 1.3, ECDSA), then `--strace-req` GETs of /small over
    HTTP/1.1 keep-alive by h2load on 10 connections, whose 10 handshakes are subtracted at
    the per-handshake figures just measured.
    """
    d = os.path.join(tmp, p.name)
    p.restart()
    conns = 10

    def handshakes(k):
        def check(r):
            if r["ok"] != k or r["errors"] or r["reused"]:
                raise BenchError(f"{p.name}: {r['ok']} of {k} handshakes, {r['errors']} "
                                 f"errors ({r['last_error']}), {r['reused']} resumed")
        run_hs_clients(p, args, 1, 120 + k / 10, clean_env(), ["--max", str(k)], check)

    def requests(n):
        r, _, _ = run_h2load(p, ["--h1", "-n", str(n), "-c", str(conns), "-m", "1"],
                             "http/1.1", 120 + n / 100)
        if r["2xx"] != n:
            raise BenchError(f"{p.name}: h2load --h1 got {r['2xx']} of {n} 2xx answers")

    handshakes(100)                 # warm-up, not traced
    requests(2000)
    idle, idle_wall = strace_count(p, lambda: time.sleep(2.0),
                                   os.path.join(d, "strace-idle.txt"), allow_empty=True)
    hs, _ = strace_count(p, lambda: handshakes(args.strace_hs), os.path.join(d, "strace-hs.txt"))
    req, _ = strace_count(p, lambda: requests(args.strace_req),
                          os.path.join(d, "strace-req.txt"))
    per_hs = {k: v / args.strace_hs for k, v in hs.items()}
    per_req = {}
    for k in set(req) | set(per_hs):
        per_req[k] = max(0.0, (req.get(k, 0) - conns * per_hs.get(k, 0.0)) / args.strace_req)
    return {"handshakes": args.strace_hs, "requests": args.strace_req, "h2load_conns": conns,
            "idle_per_s": sum(idle.values()) / idle_wall, "idle_calls": idle,
            "hs_calls": hs, "req_calls": req, "per_hs": per_hs, "per_req": per_req,
            "per_hs_total": sum(per_hs.values()), "per_req_total": sum(per_req.values())}


# --------------------------------------------------------------------------- reporting

def fmt(v, digits):
    if v is None:
        return "–"
    return f"{v:.{digits}f}"


def medians(results, proxies, fresh):
    """Median of every measured metric over the rounds; derived ones from the medians."""
    med = {}
    for p in proxies:
        m = med[p.name] = {}
        for key, _, _, _, kind in METRICS:
            if kind == "derived":
                continue
            if key == "fresh_idle_kib_per_conn":
                m[key] = fresh.get(p.name, {}).get("value")
                continue
            if key.endswith("_rps"):
                src_key = key[:-len("rps")] + "cpu_ms_per_1k"
                vals = [r[p.name][src_key]["rps"] for r in results
                        if r.get(p.name, {}).get(src_key, {}).get("value") is not None]
            else:
                vals = [r[p.name][key]["value"] for r in results
                        if r.get(p.name, {}).get(key, {}).get("value") is not None]
            m[key] = statistics.median(vals) if vals else None
        cert = p.info.get("default_client", {}).get("cert")
        full = m.get(f"hs_{cert}_cpu_ms_per_1k") if cert in ("ecdsa", "rsa") else None
        for v in ("13", "12"):
            res = m.get(f"res{v}_cpu_ms_per_1k")
            m[f"res{v}_over_full"] = res / full if res is not None and full else None
    return med


def tables(med, proxies, fresh_n):
    out = []
    base = med.get("stapler", {})
    for table, heading in TABLES:
        cols = [(k, t.format(fresh_n=fresh_n), d, kind)
                for k, t, d, tb, kind in METRICS if tb == table]
        if all(med[p.name][k] is None for p in proxies for k, _, _, _ in cols):
            continue            # no phase of this table was run (--phases)
        head = "| proxy | " + " | ".join(t for _, t, _, _ in cols) + " |"
        out += [f"## {heading}", "", head, "|---|" + "---|" * len(cols)]
        for p in proxies:
            out.append(f"| {p.name} | "
                       + " | ".join(fmt(med[p.name][k], d) for k, _, d, _ in cols) + " |")
        costs = [c for c in cols if c[3] == "cost"]
        out += ["", "Ratios peer / stapler (>1: stapler is cheaper, <1: the peer is cheaper)",
                "", "| proxy | " + " | ".join(t for _, t, _, _ in costs) + " |",
                "|---|" + "---|" * len(costs)]
        for p in proxies:
            cells = []
            for k, _, _, _ in costs:
                v, b = med[p.name][k], base.get(k)
                cells.append("–" if v is None or not b else f"{v / b:.2f}")
            out.append(f"| {p.name} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def syscall_table(sysres, top=14):
    """Syscalls per full handshake and per keep-alive request, proxies side by side."""
    names = [n for n in sysres if sysres[n].get("per_hs")]
    if not names:
        return ""
    cols = [(n, "per_hs", f"{n} / HS") for n in names] + \
           [(n, "per_req", f"{n} / req") for n in names]
    calls = set()
    for n in names:
        calls |= set(sysres[n]["per_hs"]) | set(sysres[n]["per_req"])
    rank = sorted(calls, key=lambda c: -max(sysres[n][w].get(c, 0.0) for n, w, _ in cols))
    shown, rest = rank[:top], rank[top:]
    lines = ["## Syscalls per full handshake and per keep-alive request (strace -c -f; "
             "not timed)", "",
             "| syscall | " + " | ".join(t for _, _, t in cols) + " |",
             "|---|" + "---|" * len(cols),
             "| **total** | " + " | ".join(f"**{sum(sysres[n][w].values()):.1f}**"
                                          for n, w, _ in cols) + " |"]
    for c in shown:
        lines.append(f"| {c} | " + " | ".join(f"{sysres[n][w].get(c, 0.0):.2f}"
                                             for n, w, _ in cols) + " |")
    if rest:
        lines.append("| (others) | " + " | ".join(
            f"{sum(sysres[n][w].get(c, 0.0) for c in rest):.2f}" for n, w, _ in cols) + " |")
    lines.append("")
    lines.append("Idle (no client): " + ", ".join(
        f"{n} {sysres[n]['idle_per_s']:.1f} syscalls/s" for n in names) + ".")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main

ALL_PHASES = [ph for ph, _ in PHASES] + ["fresh_idle", "syscalls"]


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--hs-worker":
        return hs_worker_main(sys.argv[2:])
    started_at = time.monotonic()

    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="1 round, 3 s phases, 200 idle connections, 2000 fresh idle "
                         "connections, fewer strace units (a smoke run)")
    ap.add_argument("--rounds", type=int, help="interleaved rounds (default 3, quick 1)")
    ap.add_argument("--duration", type=int, help="seconds per load phase (default 6, quick 3)")
    ap.add_argument("--phases", default=",".join(ALL_PHASES),
                    help="comma-separated subset of " + ",".join(ALL_PHASES))
    ap.add_argument("--idle-conns", type=int, help="idle TLS connections (default 1000, quick 200)")
    ap.add_argument("--idle-warmup", type=int, default=250,
                    help="idle connections opened (and held) before the RSS baseline")
    ap.add_argument("--fresh-idle-conns", type=int,
                    help="idle TLS connections held by a freshly started proxy (default 10000, "
                         "quick 2000)")
    ap.add_argument("--idle-threads", type=int, default=4,
                    help="threads opening the fresh-process idle connections")
    ap.add_argument("--hs-client", choices=["python", "s_time"], default="python",
                    help="full-handshake client: 'python' (fresh ssl connection each time, "
                         "SNI localhost; default) or 's_time' (openssl s_time -new: no SNI)")
    ap.add_argument("--hs-procs", type=int, default=2,
                    help="concurrent handshake client processes (full and resumed), all on the "
                         "load CPU")
    ap.add_argument("--ws-conns", type=int, default=16,
                    help="WebSocket connections, one message in flight on each")
    ap.add_argument("--ws-size", type=int, default=128, help="WebSocket message size, bytes")
    ap.add_argument("--h2-conns", type=int, default=4, help="h2load connections (HTTP/2 phases)")
    ap.add_argument("--strace-hs", type=int, help="full handshakes counted under strace "
                                                  "(default 1000, quick 300)")
    ap.add_argument("--strace-req", type=int, help="keep-alive requests counted under strace "
                                                   "(default 20000, quick 5000)")
    ap.add_argument("--strace-proxies", default="stapler,nginx",
                    help="proxies whose syscalls are counted (default stapler,nginx)")
    ap.add_argument("--proxies", default=",".join(ALL_PROXIES),
                    help="comma-separated subset of " + ",".join(ALL_PROXIES))
    ap.add_argument("--stapler", default=os.path.join(REPO, "build", "stapler"))
    ap.add_argument("--stapler-fast", metavar="PATH",
                    help="a second stapler binary measured as its own column 'stapler-fast' "
                         "(e.g. build-fast/stapler from make build BUILD_DIR=build-fast "
                         "BORINGSSL=fast)")
    ap.add_argument("--stapler-log-level", default="info",
                    help="stapler log.level (default info, its production default)")
    ap.add_argument("--hitch-user", default="nobody",
                    help="hitch refuses to run its workers as root: the user they switch to")
    ap.add_argument("--h2o-user", default="nobody",
                    help="h2o refuses to run as root without a user to switch to")
    ap.add_argument("--out", default="/tmp/stapler-bench.json", help="raw results as JSON")
    ap.add_argument("--keep-tmp", action="store_true", help="keep configs, certs and logs")
    args = ap.parse_args()
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.duration = args.duration or (3 if args.quick else 6)
    args.idle_conns = args.idle_conns or (200 if args.quick else 1000)
    args.fresh_idle_conns = args.fresh_idle_conns or (2000 if args.quick else 10000)
    args.strace_hs = args.strace_hs or (300 if args.quick else 1000)
    args.strace_req = args.strace_req or (5000 if args.quick else 20000)
    names = [n.strip() for n in args.proxies.split(",") if n.strip()]
    if "stapler" not in names:
        names.insert(0, "stapler")
    for n in names:
        if n not in ALL_PROXIES:
            ap.error(f"unknown proxy {n}")
    if args.stapler_fast:
        names.insert(names.index("stapler") + 1, "stapler-fast")
    phases = [ph.strip() for ph in args.phases.split(",") if ph.strip()]
    for ph in phases:
        if ph not in ALL_PHASES:
            ap.error(f"unknown phase {ph}")
    strace_names = [n.strip() for n in args.strace_proxies.split(",") if n.strip()]
    for n in strace_names:
        if n not in names:
            ap.error(f"--strace-proxies: {n} is not among the proxies measured")
    if args.rounds < 1 or args.rounds > 20 or args.duration < 1 or args.duration > 120:
        ap.error("rounds must be 1..20 and duration 1..120 s")
    if not (1 <= args.ws_conns <= 1000 and 1 <= args.ws_size <= 1 << 20
            and 1 <= args.h2_conns <= 100 and 1 <= args.idle_threads <= 64
            and 1 <= args.strace_hs <= 100000 and 1 <= args.strace_req <= 10000000
            and 1 <= args.fresh_idle_conns <= 1000000):
        ap.error("--ws-conns, --ws-size, --h2-conns, --idle-threads, --strace-* or "
                 "--fresh-idle-conns out of range")
    for b in [args.stapler] + ([args.stapler_fast] if args.stapler_fast else []):
        if not os.access(b, os.X_OK):
            ap.error(f"{b} is not executable: run 'make build' first")
    tools = ["taskset", "openssl", "wrk", "curl", "h2load"] + \
        [n for n in names if n not in STAPLER_KINDS]
    if "syscalls" in phases:
        tools.append("strace")
    for tool in tools:
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
    if "fresh_idle" in phases and NOFILE < args.fresh_idle_conns + 500:
        ap.error(f"file descriptor limit {NOFILE} is too low for {args.fresh_idle_conns} "
                 "fresh idle connections (the harness holds one per connection)")
    if LOAD_CPU == PROXY_CPU:
        log("warning: fewer than 2 CPUs: proxy and load share a core")

    def on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)   # even if started with it ignored

    staplers = {"stapler": args.stapler}
    if args.stapler_fast:
        staplers["stapler-fast"] = args.stapler_fast
    stapler_versions = {}
    for n, b in staplers.items():
        stapler_versions[n] = stapler_version(b)
        log(f"{n}: {b}: {stapler_versions[n][0]}; TLS library: {stapler_versions[n][1]}")

    tmp = tempfile.mkdtemp(prefix="stapler-bench-")
    failed = []
    results = []
    fresh = {}
    sysres = {}
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

        ports = free_ports(len(names) + 2)
        bport = ports.pop()
        ws_port = ports.pop()
        ws_server = spawn(["/usr/bin/python3", WS_ECHO, "server", "--port", str(ws_port)],
                          cpu=LOAD_CPU, stdout=subprocess.DEVNULL,
                          stderr=open(os.path.join(tmp, "ws-echo.log"), "wb"))
        wait_port(ws_port, ws_server, "WebSocket echo server")
        bdir = os.path.join(tmp, "backend")
        os.makedirs(os.path.join(bdir, "tmp"))
        with open(os.path.join(bdir, "nginx.conf"), "w") as f:
            f.write(backend_conf(bdir, bport, www, ws_port))
        backend = spawn(["nginx", "-p", bdir + "/", "-e", os.path.join(bdir, "error.log"),
                         "-c", os.path.join(bdir, "nginx.conf")], cpu=LOAD_CPU,
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(bport, backend, "backend nginx")

        proxies = build_proxies(names, tmp, ports, bport, certs, args)
        for p in proxies:
            p.start()
            log(f"started {p.name} pid {p.proc.pid} on 127.0.0.1:{p.port}")
        for p in proxies:
            check_proxy(p, certs, tmp, args)
            for key, why in p.skip.items():
                msg = f"{p.name}: {key} not measured: {why}"
                log(("ERROR: " if p.is_stapler else "note: ") + msg)
                if p.is_stapler:
                    failed.append(msg)
            d = p.info["default_client"]
            log(f"{p.name}: /small and /1m return 200 through it; a default client gets "
                f"{d['cert']} {d['protocol']} {d['cipher']}"
                + ("; HTTP/2 works" if p.h2 and "h2_m1_cpu_ms_per_1k" not in p.skip else "")
                + ("; WebSocket echo works" if "ws_cpu_ms_per_1k" not in p.skip else ""))

        def run_phase(p, phase, key, label, fn):
            if p.dead or key in p.skip:
                return None
            if not p.alive():
                p.dead = f"exited with status {p.proc.returncode}"
                failed.append(f"{p.name} {p.dead} before {label}")
                log("ERROR: " + failed[-1] + "\n" + p.log_tail())
                return None
            lines0 = p.log_lines()
            try:
                r = fn()
            except BenchError as e:
                r = {"units": 0, "value": None, "notes": [str(e)]}
            r["log_lines"] = p.log_lines() - lines0
            if not p.alive():
                p.dead = f"exited with status {p.proc.returncode} during {phase}"
                r["notes"].append(p.dead)
            if not r.get("units") or r.get("value") is None:
                r["value"] = None
                failed.append(f"{label} {p.name}: no work done: " + "; ".join(r["notes"]))
                log("ERROR: " + failed[-1])
                if p.dead:
                    log(p.log_tail())
            log(f"{label} {phase:10s} {p.name:12s} "
                + (f"{r['value']:10.2f}" if r["value"] is not None else "      fail")
                + f"  ({r.get('units', 0)} units"
                + (f", {r['rate_per_s']:.0f}/s" if "rate_per_s" in r else "")
                + (f", cpu {r['cpu_s']:.2f}s" if "cpu_s" in r else "")
                + (f", {r['log_lines']} log lines" if r["log_lines"] else "")
                + (", " + "; ".join(r["notes"]) if r["notes"] else "") + ")")
            return r

        round_phases = [(ph, key) for ph, key in PHASES if ph in phases]
        for rnd in range(args.rounds if round_phases else 0):
            order = proxies[rnd % len(proxies):] + proxies[:rnd % len(proxies)]
            res = {p.name: {} for p in proxies}
            for phase, key in round_phases:
                for p in order:
                    if phase == "hs_ecdsa":
                        fn = lambda: phase_handshakes(p, "ecdsa", tmp, certs, args)  # noqa: E731
                    elif phase == "hs_rsa":
                        fn = lambda: phase_handshakes(p, "rsa", tmp, certs, args)  # noqa: E731
                    elif phase == "res13":
                        fn = lambda: phase_resumed(p, "1.3", args)  # noqa: E731
                    elif phase == "res12":
                        fn = lambda: phase_resumed(p, "1.2", args)  # noqa: E731
                    elif phase == "keepalive":
                        fn = lambda: phase_keepalive(p, args)  # noqa: E731
                    elif phase == "big":
                        fn = lambda: phase_big(p, args)  # noqa: E731
                    elif phase == "ws":
                        fn = lambda: phase_ws(p, args)  # noqa: E731
                    elif phase.startswith("h2_m"):
                        fn = lambda: phase_h2(p, int(phase[4:]), args)  # noqa: E731
                    else:
                        fn = lambda: phase_idle(p, args)  # noqa: E731
                    r = run_phase(p, phase, key, f"round {rnd + 1}/{args.rounds}", fn)
                    if r is not None:
                        res[p.name][key] = r
            results.append(res)

        if "fresh_idle" in phases:
            for p in proxies:
                r = run_phase(p, "fresh_idle", "fresh_idle_kib_per_conn", "fresh process",
                              lambda: phase_fresh_idle(p, args))
                if r is not None:
                    fresh[p.name] = r
                    log(f"  {p.name}: {r.get('conns', 0)} connections opened in "
                        f"{r.get('open_s', 0):.1f} s; RSS {r.get('rss_before_kib')} -> "
                        f"{r.get('rss_with_conns_kib')} KiB")
        if "syscalls" in phases:
            for p in proxies:
                if p.name not in strace_names or p.dead:
                    continue
                try:
                    sysres[p.name] = phase_syscalls(p, tmp, args)
                    s = sysres[p.name]
                    log(f"syscalls   {p.name:12s} {s['per_hs_total']:.1f} per handshake, "
                        f"{s['per_req_total']:.2f} per request, idle {s['idle_per_s']:.1f}/s")
                except BenchError as e:
                    failed.append(f"syscalls {p.name}: {e}")
                    log("ERROR: " + failed[-1])

        med = medians(results, proxies, fresh)
        fresh_n = max((r.get("units", 0) for r in fresh.values()), default=0) or \
            args.fresh_idle_conns
        report = tables(med, proxies, fresh_n)
        systab = syscall_table(sysres)
        elapsed = time.monotonic() - started_at
        print()
        for n, (ver, lib) in stapler_versions.items():
            print(f"- {n}: {staplers[n]}: {ver}; TLS library: {lib}")
        print()
        print(report)
        if systab:
            print(systab)
        print()
        for p in proxies:
            for key, why in p.skip.items():
                print(f"- {p.name}, {key}: – ({why})")
        for name, r in fresh.items():
            for note in r.get("notes", []):
                print(f"- {name}, fresh idle: {note}")
        print(f"- handshake client: {args.hs_client} x{args.hs_procs}; phases {args.duration} s; "
              f"{args.rounds} round(s); {args.idle_conns} idle connections measured after "
              f"{args.idle_warmup} warm-up ones; fresh-process idle: "
              f"{args.fresh_idle_conns} connections; WebSocket: {args.ws_conns} connections, "
              f"{args.ws_size}-byte messages; HTTP/2: {args.h2_conns} connections; strace: "
              f"{args.strace_hs} handshakes, {args.strace_req} requests; stapler log.level "
              f"{args.stapler_log_level}")
        for p in proxies:
            d = p.info.get("default_client", {})
            print(f"- {p.name}: default client negotiates {d.get('protocol')} {d.get('cipher')} "
                  f"with the {d.get('cert')} certificate"
                  + (f"; DIED: {p.dead}" if p.dead else ""))
        print(f"- run time {elapsed / 60:.1f} min")
        if failed:
            print("\nFAILURES:")
            for f in failed:
                print("- " + f)

        meta = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "run_time_s": elapsed,
            "args": {k: v for k, v in vars(args).items()},
            "cpus": os.cpu_count(), "clk_tck": CLK_TCK, "nofile": NOFILE,
            "versions": {
                **{n: f"{v[0]}; {v[1]}" for n, v in stapler_versions.items()},
                "stapler_git": tool_version(["git", "-C", REPO, "rev-parse", "--short", "HEAD"]),
                "nginx": tool_version(["nginx", "-v"]),
                "haproxy": tool_version(["haproxy", "-v"]),
                "hitch": tool_version(["hitch", "--version"]),
                "h2o": tool_version(["h2o", "--version"]),
                "wrk": tool_version(["wrk", "--version"]),
                "h2load": tool_version(["h2load", "--version"]),
                "strace": tool_version(["strace", "-V"]),
                "openssl": tool_version(["openssl", "version"]),
                "kernel": os.uname().release,
            },
            "proxies": {p.name: {"port": p.port, "argv": p.argv, "info": p.info,
                                 "skipped": p.skip, "dead": p.dead} for p in proxies},
        }
        with open(args.out, "w") as f:
            json.dump({"meta": meta, "median": med, "rounds": results, "fresh_idle": fresh,
                       "syscalls": sysres, "failures": failed, "table": report,
                       "syscall_table": systab}, f, indent=2, default=str)
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
