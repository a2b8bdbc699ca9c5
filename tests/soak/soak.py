#!/usr/bin/python3
"""Mixed-load soak of one stapler for N minutes (default 30).

  /usr/bin/python3 tests/soak/soak.py [--minutes 30] [--stapler build/stapler] [--json FILE]

Generates its own CA and certificates (leaves whose authorityInfoAccess names a local
`openssl ocsp` responder), starts tests/soak/backend.js, the responder and stapler, then runs
a paced load (the LOAD table, scaled by --rate), each kind in its own client threads:

  full       full TLS handshakes, cycling TLS 1.3, TLS 1.2 ECDSA and TLS 1.2 RSA (certificate
             verified, version, key type and subject checked), one GET /small each
  resumed    TLS 1.3 and TLS 1.2 handshakes resuming the previous session (ticket), one GET each
  keepalive  GETs of /small and small /bytes on kept-alive connections
  upload     POSTs of 4 KiB .. 4 MiB (Content-Length or chunked), hashed by the backend
  download   GETs of 1 B .. 8 MiB (Content-Length or chunked), checked by size and SHA-256
  websocket  echo of text and binary messages (1 B .. 64 KiB), per thread over 4 long-lived
             WebSockets and one that is closed and reopened every 100 messages
  ocsp       every 15 s `openssl s_client -status`: a valid, good staple for the served
             certificate (ECDSA and RSA, TLS 1.3 and 1.2)

while stapler gets SIGHUP every 30 s and the OCSP responder is stopped for 12-20 s every
35-55 s (answers valid 5 minutes, so stapler refetches every ~2.5 minutes and meets the outages;
no outage starts within --ocsp-guard seconds of a staple's end, so a staple that lapses is
stapler's fault, not the schedule's).

Every 10 s the load pauses for a moment (in-flight operations finish, none starts) and stapler's
RSS, file descriptors (by kind: client sockets, backend sockets, other) and /metrics are
sampled. Invariants, all needed for exit status 0: no failed or lost request of any kind,
stapler alive throughout and exiting 0 on SIGTERM, every reload ok, every staple check good,
no 4xx/5xx counted by stapler, and after the warm-up (20 % of the run or 2 minutes, whichever
is larger) RSS and fds flat within 5 % (fds: or 8 descriptors, the backend keep-alive pool's
swing), client sockets in stapler exactly those the load holds.
"""
import argparse
import base64
import calendar
import contextlib
import hashlib
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from common import log  # noqa: E402

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


# ---------------------------------------------------------------------------- bookkeeping

class Tally:
    """Per-kind counts of good and failed operations, the first errors of each kind."""

    def __init__(self, t0):
        self.t0 = t0
        self.lock = threading.Lock()
        self.ok = {}
        self.failed = {}
        self.extra = {}
        self.errors = []

    def good(self, kind, n=1):
        with self.lock:
            self.ok[kind] = self.ok.get(kind, 0) + n

    def count(self, key, n=1):
        with self.lock:
            self.extra[key] = self.extra.get(key, 0) + n

    def bad(self, kind, why):
        with self.lock:
            self.failed[kind] = self.failed.get(kind, 0) + 1
            if len(self.errors) < 200:
                self.errors.append({"t": round(time.monotonic() - self.t0, 1), "kind": kind,
                                    "error": why})
        log("FAILED %s: %s" % (kind, why))


class Gate:
    """Lets the sampler pause the load: operations run inside op(); quiesce() waits until none
    is in flight and lets none start until reopen()."""

    def __init__(self):
        self.cv = threading.Condition()
        self.closed = False
        self.inflight = 0

    @contextlib.contextmanager
    def op(self):
        with self.cv:
            while self.closed:
                self.cv.wait()
            self.inflight += 1
        try:
            yield
        finally:
            with self.cv:
                self.inflight -= 1
                self.cv.notify_all()

    def quiesce(self, timeout=20.0):
        deadline = time.monotonic() + timeout
        with self.cv:
            self.closed = True
            while self.inflight and time.monotonic() < deadline:
                self.cv.wait(0.05)
            return self.inflight == 0

    def reopen(self):
        with self.cv:
            self.closed = False
            self.cv.notify_all()


# ---------------------------------------------------------------------------- HTTP client

class Check(Exception):
    """A wrong answer (as opposed to an I/O error)."""


class Stream:
    """A blocking TLS connection with a read buffer."""

    def __init__(self, port, ctx, session=None, timeout=30.0):
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        try:
            self.s = ctx.wrap_socket(raw, server_hostname="localhost", session=session)
        except BaseException:
            raw.close()
            raise
        self.buf = bytearray()
        self.rbuf = bytearray(1 << 18)
        self.rmv = memoryview(self.rbuf)

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass

    def fill(self, n=1 << 18):
        k = self.s.recv_into(self.rbuf, n)
        if not k:
            raise ConnectionError("connection closed by stapler (%d bytes unread)" % len(self.buf))
        self.buf += self.rmv[:k]

    def read_until(self, delim, limit=65536):
        while True:
            i = self.buf.find(delim)
            if i >= 0:
                out = bytes(self.buf[:i])
                del self.buf[:i + len(delim)]
                return out
            if len(self.buf) > limit:
                raise Check("no %r within %d bytes" % (delim, limit))
            self.fill()

    def read_exact(self, n):
        while len(self.buf) < n:
            self.fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def hash_exact(self, n, h, keep):
        """Feeds the next n bytes into hash h; returns them when keep, else None."""
        kept = bytearray() if keep else None
        left = n
        if self.buf:
            k = min(left, len(self.buf))
            chunk = self.buf[:k]
            h.update(chunk)
            if keep:
                kept += chunk
            del self.buf[:k]
            left -= k
        while left:      # straight from the socket, never past the body
            k = self.s.recv_into(self.rbuf, min(left, len(self.rbuf)))
            if not k:
                raise ConnectionError("connection closed by stapler, %d body bytes missing" % left)
            h.update(self.rmv[:k])
            if keep:
                kept += self.rmv[:k]
            left -= k
        return bytes(kept) if keep else None


class Response:
    def __init__(self, status, headers, length, sha256, body):
        self.status, self.headers, self.length, self.sha256, self.body = \
            status, headers, length, sha256, body


def read_response(st, keep_limit=65536):
    head = st.read_until(b"\r\n\r\n").decode("latin-1").split("\r\n")
    parts = head[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
        raise Check("bad status line %r" % head[0][:80])
    status = int(parts[1])
    headers = {}
    for line in head[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    h = hashlib.sha256()
    if "content-length" in headers:
        n = int(headers["content-length"])
        body = st.hash_exact(n, h, n <= keep_limit)
        return Response(status, headers, n, h.hexdigest(), body)
    if headers.get("transfer-encoding", "").lower() == "chunked":
        total, kept = 0, bytearray()
        while True:
            size = int(st.read_until(b"\r\n").split(b";")[0], 16)
            if size == 0:
                while st.read_until(b"\r\n"):       # trailers, then the blank line
                    pass
                break
            part = st.hash_exact(size, h, total + size <= keep_limit)
            if part is not None and kept is not None:
                kept += part
            else:
                kept = None
            total += size
            if st.read_exact(2) != b"\r\n":
                raise Check("chunk not followed by CRLF")
        return Response(status, headers, total, h.hexdigest(),
                        bytes(kept) if kept is not None else None)
    if status in (204, 304) or status < 200:
        return Response(status, headers, 0, h.hexdigest(), b"")
    raise Check("response without framing (status %d)" % status)


def request(st, method, target, body=b"", chunked=False):
    head = "%s %s HTTP/1.1\r\nHost: localhost\r\n" % (method, target)
    if chunked:
        head += "Transfer-Encoding: chunked\r\n\r\n"
        out = [head.encode()]
        for i in range(0, len(body), 65536):
            piece = body[i:i + 65536]
            out.append(b"%x\r\n" % len(piece))
            out.append(piece)
            out.append(b"\r\n")
        out.append(b"0\r\n\r\n")
        for part in out:
            st.s.sendall(part)
        return
    if method == "POST" or body:
        head += "Content-Length: %d\r\n" % len(body)
    if len(body) < 65536:
        st.s.sendall(head.encode() + b"\r\n" + body)
    else:
        st.s.sendall(head.encode() + b"\r\n")
        st.s.sendall(body)


def expect_small(st, rid):
    request(st, "GET", "/small?id=%s" % rid)
    r = read_response(st)
    if r.status != 200 or r.headers.get("x-id") != rid or r.body != common.small_body(rid):
        raise Check("GET /small?id=%s: status %d, X-Id %s, body %r"
                    % (rid, r.status, r.headers.get("x-id"), (r.body or b"")[:60]))


def expect_bytes(st, rid, n, chunked):
    request(st, "GET", "/bytes?n=%d&id=%s%s" % (n, rid, "&chunked=1" if chunked else ""))
    r = read_response(st, keep_limit=0)
    if r.status != 200 or r.headers.get("x-id") != rid:
        raise Check("GET /bytes?n=%d: status %d, X-Id %s" % (n, r.status, r.headers.get("x-id")))
    if r.length != n or r.sha256 != common.pattern_sha256(n):
        raise Check("GET /bytes?n=%d%s: got %d bytes, SHA-256 %s"
                    % (n, " chunked" if chunked else "", r.length,
                       "matches" if r.sha256 == common.pattern_sha256(n) else "differs"))


# ---------------------------------------------------------------------------- load kinds

class Worker(threading.Thread):
    """Runs self.step() every 1/rate seconds inside the gate until stopped."""

    kind = "?"

    counter = {}

    def __init__(self, env, rate):
        index = Worker.counter[self.kind] = Worker.counter.get(self.kind, 0) + 1
        super().__init__(name="%s%d" % (self.kind, index), daemon=True)
        self.env, self.rate = env, rate
        self.n = 0
        self.doing = ""
        self.op_started = None

    def rid(self, prefix):
        """A request id unique in the run; self.doing names the operation for error reports."""
        return "%s%s-%d" % (prefix, self.name[len(self.kind):], self.n)

    def held(self):
        """Client connections to stapler this worker holds open between operations."""
        return 0

    def run(self):
        env = self.env
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        while not env.stop.is_set():
            with env.gate.op():
                if env.stop.is_set():
                    break
                self.doing = ""
                self.op_started = time.monotonic()
                try:
                    self.step()
                except (OSError, ssl.SSLError, Check, ValueError, subprocess.SubprocessError) \
                        as e:
                    env.tally.bad(self.kind, "%s: %s (%s)" % (type(e).__name__, e, self.doing))
                    self.reset()
                except Exception as e:      # a bug in this script: report it as a failure
                    env.tally.bad(self.kind, "script error %s: %s\n%s"
                                  % (type(e).__name__, e, traceback.format_exc()))
                    self.reset()
                self.op_started = None
            self.n += 1
            next_at = max(next_at + interval, time.monotonic() - 5 * interval)
            env.stop.wait(max(0.0, next_at - time.monotonic()))
        try:
            self.finish()
        except (OSError, ssl.SSLError, Check) as e:
            env.tally.bad(self.kind, "closing at the end: %s: %s" % (type(e).__name__, e))
        self.reset()

    def reset(self):
        """Drops what the worker holds (after an error, or at the end)."""

    def finish(self):
        """Ends what the worker holds cleanly at the end of the run."""


def tls_context(env, version, key=None):
    ctx = ssl.create_default_context(cafile=env.pki.root + ".pem")
    ctx.set_alpn_protocols(["http/1.1"])
    if version == "1.3":
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    else:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers("ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-CHACHA20-POLY1305" if key == "rsa"
                        else "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305")
    return ctx


def served_cn(st):
    for rdn in st.s.getpeercert().get("subject", ()):
        for k, v in rdn:
            if k == "commonName":
                return v
    return None


class Full(Worker):
    kind = "full"

    def __init__(self, env, rate):
        super().__init__(env, rate)
        self.variants = [("tls1.3", "TLSv1.3", tls_context(env, "1.3"), "localhost-ecdsa"),
                         ("tls1.2-ecdsa", "TLSv1.2", tls_context(env, "1.2", "ecdsa"),
                          "localhost-ecdsa"),
                         ("tls1.2-rsa", "TLSv1.2", tls_context(env, "1.2", "rsa"),
                          "localhost-rsa")]

    def step(self):
        name, version, ctx, cn = self.variants[self.n % len(self.variants)]
        st = Stream(self.env.port, ctx)
        try:
            if st.s.version() != version or st.s.session_reused or served_cn(st) != cn:
                raise Check("%s: got %s, reused %s, certificate %s"
                            % (name, st.s.version(), st.s.session_reused, served_cn(st)))
            self.doing = "%s GET /small?id=%s" % (name, self.rid("full"))
            expect_small(st, self.rid("full"))
        finally:
            st.close()
        self.env.tally.good("full")
        self.env.tally.count("full_" + name)


class Resumed(Worker):
    kind = "resumed"

    def __init__(self, env, rate):
        super().__init__(env, rate)
        self.variants = [("tls1.3", "TLSv1.3", tls_context(env, "1.3")),
                         ("tls1.2", "TLSv1.2", tls_context(env, "1.2", "ecdsa"))]
        self.sessions = {}

    def step(self):
        name, version, ctx = self.variants[self.n % len(self.variants)]
        prev = self.sessions.get(name)
        st = Stream(self.env.port, ctx, session=prev)
        try:
            if st.s.version() != version:
                raise Check("%s: got %s" % (name, st.s.version()))
            self.doing = "%s GET /small?id=%s" % (name, self.rid("res"))
            expect_small(st, self.rid("res"))
            reused = st.s.session_reused
            self.sessions[name] = st.s.session      # TLS 1.3: tickets came with the response
        finally:
            st.close()
        if prev is None:
            self.env.tally.count("resumed_first_full_" + name)
        elif reused:
            self.env.tally.count("resumed_" + name)
        else:
            self.env.tally.count("resumption_missed_" + name)
        self.env.tally.good("resumed")


class KeepAlive(Worker):
    kind = "keepalive"

    def __init__(self, env, rate):
        super().__init__(env, rate)
        self.ctx = tls_context(env, "1.3")
        self.st = None
        self.on_conn = 0

    def held(self):
        return 1 if self.st else 0

    def reset(self):
        if self.st:
            self.st.close()
        self.st = None

    def step(self):
        if self.st is None or self.on_conn >= 2000:
            self.reset()
            self.st = Stream(self.env.port, self.ctx)
            self.on_conn = 0
            self.env.tally.count("keepalive_connections")
        self.on_conn += 1
        rid = self.rid("ka")
        if self.n % 5 == 4:
            n = random.randint(1, 65536)
            self.doing = "GET /bytes?n=%d&id=%s" % (n, rid)
            expect_bytes(self.st, rid, n, self.n % 10 == 9)
        else:
            self.doing = "GET /small?id=%s" % rid
            expect_small(self.st, rid)
        self.env.tally.good("keepalive")


class Upload(Worker):
    kind = "upload"

    def __init__(self, env, rate):
        super().__init__(env, rate)
        self.ctx = tls_context(env, "1.3")
        self.st = None
        self.bytes = 0

    def held(self):
        return 1 if self.st else 0

    def reset(self):
        if self.st:
            self.st.close()
        self.st = None

    def step(self):
        if self.st is None:
            self.st = Stream(self.env.port, self.ctx)
        n = int(math.exp(random.uniform(math.log(4096), math.log(4 << 20))))
        off = random.randrange(len(self.env.noise) - n)
        body = self.env.noise[off:off + n]
        chunked = self.n % 4 == 3
        rid = self.rid("up")
        self.doing = "POST /upload?id=%s, %d bytes%s" % (rid, n, " chunked" if chunked else "")
        request(self.st, "POST", "/upload?id=%s" % rid, body, chunked=chunked)
        r = read_response(self.st)
        try:
            j = json.loads(r.body)
        except (TypeError, ValueError):
            raise Check("POST %d bytes: status %d, body %r" % (n, r.status, (r.body or b"")[:80]))
        want = hashlib.sha256(body).hexdigest()
        if r.status != 200 or r.headers.get("x-id") != rid or j.get("bodyLength") != n or \
                j.get("bodySha256") != want or j.get("method") != "POST":
            raise Check("POST %d bytes%s: status %d, backend saw %s bytes, SHA-256 %s"
                        % (n, " chunked" if chunked else "", r.status, j.get("bodyLength"),
                           "matches" if j.get("bodySha256") == want else "differs"))
        self.bytes += n
        self.env.tally.good("upload")
        self.env.tally.count("upload_bytes", n)


class Download(Worker):
    kind = "download"
    SIZES = (1, 1000, 16384, 100000, 1 << 20, (3 << 20) + 17, 8 << 20)

    def __init__(self, env, rate):
        super().__init__(env, rate)
        self.ctx = tls_context(env, "1.3")
        self.st = None

    def held(self):
        return 1 if self.st else 0

    def reset(self):
        if self.st:
            self.st.close()
        self.st = None

    def step(self):
        if self.st is None:
            self.st = Stream(self.env.port, self.ctx)
        n = random.choice(self.SIZES)
        rid = self.rid("dl")
        self.doing = "GET /bytes?n=%d&id=%s%s" % (n, rid, " chunked" if self.n % 4 == 3 else "")
        expect_bytes(self.st, rid, n, self.n % 4 == 3)
        self.env.tally.good("download")
        self.env.tally.count("download_bytes", n)


def ws_frame(opcode, payload):
    """A masked client frame."""
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    mask = os.urandom(4)
    if not payload:
        return head + mask
    m = int.from_bytes((mask * ((n + 3) // 4))[:n], "big")
    return head + mask + (int.from_bytes(payload, "big") ^ m).to_bytes(n, "big")


def ws_read(st):
    """(opcode, payload) of one unmasked server frame."""
    b0, b1 = st.read_exact(2)
    if b1 & 0x80:
        raise Check("masked frame from the server")
    n = b1 & 0x7F
    if n == 126:
        n = int.from_bytes(st.read_exact(2), "big")
    elif n == 127:
        n = int.from_bytes(st.read_exact(8), "big")
    if not b0 & 0x80:
        raise Check("fragmented frame from the server")
    return b0 & 0x0F, st.read_exact(n)


class WebSocket(Worker):
    kind = "websocket"
    LONG = 4

    def __init__(self, env, rate):
        super().__init__(env, rate)
        self.ctx = tls_context(env, "1.3")
        self.conns = [None] * (self.LONG + 1)      # the last one is closed every 100 messages
        self.sent_on_churn = 0

    def held(self):
        return sum(1 for c in self.conns if c)

    def reset(self):
        for i, c in enumerate(self.conns):
            if c:
                c.close()
            self.conns[i] = None

    def open(self):
        st = Stream(self.env.port, self.ctx)
        key = base64.b64encode(os.urandom(16))
        self.doing = "upgrade GET /ws?id=%s" % self.rid("ws")
        st.s.sendall(b"GET /ws?id=%s HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                     b"Sec-WebSocket-Key: " % self.rid("ws").encode() + key + b"\r\n\r\n")
        head = st.read_until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        want = base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()
        got = [ln.split(":", 1)[1].strip() for ln in head[1:]
               if ln.lower().startswith("sec-websocket-accept:")]
        if not head[0].startswith("HTTP/1.1 101") or got != [want]:
            st.close()
            raise Check("upgrade answered %r, accept %s" % (head[0], got))
        self.env.tally.count("websocket_opened")
        return st

    def step(self):
        i = self.n % len(self.conns)
        if self.conns[i] is None:
            self.conns[i] = self.open()
        st = self.conns[i]
        n = int(math.exp(random.uniform(0, math.log(65536))))
        if self.n % 2:
            opcode, payload = 0x1, os.urandom((n + 1) // 2).hex()[:n].encode()
        else:
            off = random.randrange(len(self.env.noise) - n)
            opcode, payload = 0x2, self.env.noise[off:off + n]
        self.doing = "connection %d: message of %d bytes, opcode %d" % (i, n, opcode)
        st.s.sendall(ws_frame(opcode, payload))
        op, echo = ws_read(st)
        if op != opcode or echo != payload:
            raise Check("echo of %d bytes (opcode %d): got opcode %d, %d bytes, %s"
                        % (n, opcode, op, len(echo), "same" if echo == payload else "different"))
        self.env.tally.good("websocket")
        if i == self.LONG:
            self.sent_on_churn += 1
            if self.sent_on_churn % 100 == 0:
                self.conns[i] = None
                self.close(st)

    def close(self, st):
        """The closing handshake: close frame, its answer, then the end of the tunnel."""
        try:
            st.s.sendall(ws_frame(0x8, (1000).to_bytes(2, "big")))
            op, data = ws_read(st)
            if op != 0x8:
                raise Check("close answered with opcode %d" % op)
            try:
                st.fill()
                raise Check("data after the close frame")
            except ConnectionError:
                pass
        finally:
            st.close()
        self.env.tally.count("websocket_closed_cleanly")

    def finish(self):
        for i, st in enumerate(self.conns):
            if st:
                self.conns[i] = None
                self.close(st)


STAMP = re.compile(r"(Next|This) Update: (\w{3} +\d+ \d\d:\d\d:\d\d \d{4}) GMT")


class Ocsp(Worker):
    """openssl s_client -status: the staple is sent, successful, good, for the served
    certificate's serial, and its nextUpdate is in the future."""
    kind = "ocsp"

    def __init__(self, env, rate):
        super().__init__(env, rate)
        self.variants = [("ecdsa", "tls1.3", []),
                         ("rsa", "tls1.2", ["-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"]),
                         ("rsa", "tls1.3", ["-tls1_3", "-sigalgs", "rsa_pss_rsae_sha256"]),
                         ("ecdsa", "tls1.2", ["-tls1_2", "-cipher",
                                              "ECDHE-ECDSA-AES128-GCM-SHA256"])]

    def step(self):
        key, version, extra = self.variants[self.n % len(self.variants)]
        argv = [common.OPENSSL, "s_client", "-connect", "127.0.0.1:%d" % self.env.port,
                "-servername", "localhost", "-status", "-CAfile", self.env.pki.root + ".pem",
                "-verify_return_error"] + extra
        p = subprocess.run(argv, input=b"Q\n", capture_output=True, timeout=20)
        out = p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")
        leaf = self.env.pki.ecdsa if key == "ecdsa" else self.env.pki.rsa
        problems = []
        if p.returncode != 0:
            problems.append("s_client exit %d" % p.returncode)
        if "CN = %s" % leaf["subject"] not in out and "CN=%s" % leaf["subject"] not in out:
            problems.append("not the %s certificate" % key)
        if "OCSP response: no response sent" in out:
            problems.append("no staple sent")
        elif "OCSP Response Status: successful" not in out:
            problems.append("no successful OCSP response")
        if "Cert Status: good" not in out:
            problems.append("status not good")
        if not re.search(r"Serial Number: 0*%s\s" % leaf["serial"], out):
            problems.append("staple not for serial %s" % leaf["serial"])
        stamps = dict((k, calendar.timegm(time.strptime(v, "%b %d %H:%M:%S %Y")))
                      for k, v in STAMP.findall(out))
        if "Next" not in stamps or stamps["Next"] <= time.time():
            problems.append("nextUpdate not in the future (%s)" % stamps.get("Next"))
        if problems:
            raise Check("%s %s: %s" % (key, version, ", ".join(problems)))
        self.env.tally.good("ocsp")
        self.env.tally.count("ocsp_%s_%s" % (key, version))
        if "This" in stamps:
            age = int(time.time() - stamps["This"])
            with self.env.tally.lock:
                extra = self.env.tally.extra
                extra["ocsp_staple_age_max_s"] = max(extra.get("ocsp_staple_age_max_s", 0), age)


# ---------------------------------------------------------------------------- responder

class Flapper(threading.Thread):
    """Stops the OCSP responder for 12-20 s every 35-55 s, unless a staple ends within
    `guard` seconds (then the outage is skipped, so the staple can be renewed)."""

    def __init__(self, env, guard):
        super().__init__(name="flapper", daemon=True)
        self.env, self.guard = env, guard
        self.outages = 0
        self.skipped = 0
        self.restarts_failed = 0

    def staple_ends_in(self):
        try:
            st = json.loads(common.admin_get(self.env.stapler.admin_port, "/status"))
            return min(c["staple"]["seconds_to_next_update"] for c in st["certificates"])
        except Exception:
            return 0

    def run(self):
        env = self.env
        rnd = random.Random(7)
        while not env.stop.wait(rnd.uniform(35, 55)):
            left = self.staple_ends_in()
            if left < self.guard:
                self.skipped += 1
                env.event("responder outage skipped: a staple ends in %d s" % left)
                continue
            down = rnd.uniform(12, 20)
            env.responder.stop()
            self.outages += 1
            env.event("responder stopped for %.0f s (staples end in %d s)" % (down, left))
            env.stop.wait(down)
            for attempt in range(20):
                try:
                    env.responder = common.start_responder(env.procs, env.pki, nmin=env.ocsp_nmin,
                                                           name="responder")
                    break
                except RuntimeError as e:       # the port may still be held for a moment
                    self.restarts_failed += 1
                    env.event("responder restart failed: %s" % str(e).splitlines()[0])
                    time.sleep(1)
            env.event("responder started")


# ---------------------------------------------------------------------------- sampling

class Watchdog(threading.Thread):
    """Reports an operation still running after `limit` seconds, once, with what the sockets
    of stapler, the backend and the client hold then (ss -tnpi), written to the temp dir."""

    def __init__(self, env, workers, limit=8.0):
        super().__init__(name="watchdog", daemon=True)
        self.env, self.workers, self.limit = env, workers, limit
        self.reported = set()
        self.dumps = []

    def run(self):
        env = self.env
        while not env.stop.wait(1.0):
            now = time.monotonic()
            for w in self.workers:
                started = w.op_started
                if started is None or now - started < self.limit or (w, started) in self.reported:
                    continue
                self.reported.add((w, started))
                path = os.path.join(env.tmp, "stuck-%d.txt" % len(self.dumps))
                with open(path, "w") as f:
                    f.write("%s: %s, running for %.1f s\n\n" % (w.name, w.doing, now - started))
                    for port in (env.port, env.backend.port):
                        f.write(subprocess.run(["ss", "-tnpi", "( sport = :%d or dport = :%d )"
                                                % (port, port)], capture_output=True,
                                               text=True).stdout + "\n")
                    try:
                        with urllib.request.urlopen("http://127.0.0.1:%d/stats?id=watchdog"
                                                    % env.backend.port, timeout=5) as r:
                            f.write("backend /stats: %s\n\n" % r.read().decode())
                    except OSError as e:
                        f.write("backend /stats: %s\n" % e)
                    try:
                        f.write(common.admin_get(env.stapler.admin_port, "/metrics"))
                    except OSError as e:
                        f.write("metrics: %s\n" % e)
                self.dumps.append(path)
                env.event("STUCK %s: %s for %.0f s; sockets in %s"
                          % (w.name, w.doing, now - started, path))

def socket_kinds(pid, port, backend_port):
    """Counts stapler's descriptors: client sockets (local port = stapler's), backend
    sockets (remote port = the backend's), listening and other sockets, other descriptors."""
    inodes = {}
    for name in ("/proc/%d/net/tcp" % pid, "/proc/%d/net/tcp6" % pid):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    fl = line.split()
                    lport = int(fl[1].rsplit(":", 1)[1], 16)
                    rport = int(fl[2].rsplit(":", 1)[1], 16)
                    inodes[fl[9]] = (lport, rport, fl[3])
        except OSError:
            pass
    out = {"client": 0, "backend": 0, "listen_or_other_socket": 0, "other": 0}
    try:
        fds = os.listdir("/proc/%d/fd" % pid)
    except OSError:
        return None
    for fd in fds:
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        m = re.match(r"socket:\[(\d+)\]", target)
        if not m:
            out["other"] += 1
            continue
        info = inodes.get(m.group(1))
        if info is None:
            out["listen_or_other_socket"] += 1
        elif info[2] == "0A":                      # LISTEN
            out["listen_or_other_socket"] += 1
        elif info[0] == port:
            out["client"] += 1
        elif info[1] == backend_port:
            out["backend"] += 1
        else:
            out["listen_or_other_socket"] += 1
    return out


def trend(samples, key, warm_index):
    """Warm-up value, min, max, final and % changes of samples[*][key] after the warm-up."""
    vals = [s[key] for s in samples[warm_index:] if s.get(key) is not None]
    if not vals:
        return None
    w = vals[0]
    return {"warmup": w, "min": min(vals), "max": max(vals), "final": vals[-1],
            "max_change_pct": round(100.0 * (max(vals) - w) / w, 2) if w else None,
            "final_change_pct": round(100.0 * (vals[-1] - w) / w, 2) if w else None,
            "samples": len(vals)}


class Env:
    pass


# Load kinds: (class, threads, operations a second per thread at --rate 1). At --rate 1, on two
# cores, stapler uses about a quarter of one and this script about half of one.
LOAD = [(Full, 2, 20), (Resumed, 2, 20), (KeepAlive, 6, 100), (Upload, 4, 12),
        (Download, 4, 16), (WebSocket, 4, 100)]


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--stapler", default=common.default_stapler(),
                    help="stapler binary (default: $STAPLER_BIN or build/stapler)")
    ap.add_argument("--json", help="write the figures to this file")
    ap.add_argument("--rate", type=float, default=1.0,
                    help="multiplies every load rate of the LOAD table (1.0: on two cores "
                         "stapler uses about 25-32 %% of one, this script about 60-75 %%)")
    ap.add_argument("--sample", type=float, default=10.0, help="seconds between samples (10)")
    ap.add_argument("--hup", type=float, default=30.0, help="seconds between SIGHUPs (30)")
    ap.add_argument("--ocsp-nmin", type=int, default=5,
                    help="minutes the responder's answers are valid (5)")
    ap.add_argument("--ocsp-guard", type=float, default=120.0,
                    help="no responder outage starts when a staple ends within this (120 s)")
    ap.add_argument("--tolerance", type=float, default=5.0, help="flatness, percent (5)")
    ap.add_argument("--fd-slack", type=int, default=8,
                    help="fds may also move by this many (the backend keep-alive pool) (8)")
    ap.add_argument("--kinds", default="full,resumed,keepalive,upload,download,websocket,ocsp",
                    help="the load kinds to run (all)")
    ap.add_argument("--workers", default="auto", help="stapler's workers (auto)")
    ap.add_argument("--no-access-log", action="store_true")
    ap.add_argument("--keep-tmp", action="store_true")
    args = ap.parse_args()
    if not os.access(args.stapler, os.X_OK):
        print("soak.py: no stapler binary at %s" % args.stapler, file=sys.stderr)
        return 2
    common.raise_nofile()
    duration = args.minutes * 60.0
    warmup = max(0.2 * duration, 120.0)

    tmp = tempfile.mkdtemp(prefix="stapler-soak-")
    env = Env()
    env.tmp = tmp
    env.procs = common.Procs(tmp)
    env.stop = threading.Event()
    env.gate = Gate()
    env.ocsp_nmin = args.ocsp_nmin
    env.events = []
    t0 = time.monotonic()
    env.tally = Tally(t0)

    def event(what):
        env.events.append({"t": round(time.monotonic() - t0, 1), "event": what})
        log(what)
    env.event = event

    res = {"stapler": args.stapler, "minutes": args.minutes, "rate": args.rate,
           "warmup_s": warmup, "sample_s": args.sample}
    checks = []
    samples = []
    workers = []
    ok = False
    try:
        log("generating certificates in %s" % tmp)
        env.pki = common.Pki(tmp, common.free_port())
        env.noise = os.urandom((4 << 20) + 65536 + 1)
        env.backend = common.start_backend(env.procs)
        env.responder = common.start_responder(env.procs, env.pki, nmin=args.ocsp_nmin)
        s = env.stapler = common.start_stapler(
            env.procs, args.stapler, tmp, env.pki, env.backend.port, fetch=True,
            workers=args.workers, access_log=not args.no_access_log,
            limits={"max_connections": 4000}, drop=common.good_access_line)
        env.port = s.port

        def staples_good():
            st = json.loads(common.admin_get(s.admin_port, "/status"))
            return all(c["staple"]["state"] == "good" for c in st["certificates"])
        common.wait_until(staples_good, timeout=30, what="both staples good")
        log("stapler %d on port %d, backend %d, responder %d; %g minutes, warm-up %d s"
            % (s.pid, s.port, env.backend.port, env.pki.ocsp_port, args.minutes, warmup))

        kinds = args.kinds.split(",")
        workers = [cls(env, rate * args.rate) for cls, threads, rate in LOAD
                   for _ in range(threads) if cls.kind in kinds]
        workers.append(Ocsp(env, 1 / 15.0))
        res["load_per_s"] = {cls.kind: threads * rate * args.rate for cls, threads, rate in LOAD
                             if cls.kind in kinds}
        flapper = Flapper(env, args.ocsp_guard)
        t0 = time.monotonic()
        env.tally.t0 = t0
        cpu0 = {"stapler": common.cpu_seconds(s.pid),
                "backend": common.cpu_seconds(env.backend.pid), "client": sum(os.times()[:2])}
        for w in workers:
            w.start()
        flapper.start()
        watchdog = Watchdog(env, workers)
        watchdog.start()

        hups = 0
        next_hup = t0 + args.hup
        next_sample = t0
        warm_index = None
        cpu_warm = None
        died = False
        while True:
            now = time.monotonic()
            if not s.alive():
                died = True
                event("stapler died: exit %s" % s.proc.returncode)
                break
            if now >= t0 + duration:
                break
            if now >= next_hup:
                s.send_signal(signal.SIGHUP)
                hups += 1
                next_hup += args.hup
            if now >= next_sample:
                next_sample += args.sample
                quiet = env.gate.quiesce(5.0)
                try:
                    time.sleep(0.3)          # stapler closes what the clients just closed
                    m = common.metrics(s.admin_port)
                    fdk = socket_kinds(s.pid, s.port, env.backend.port) or {}
                    sample = {"t": round(now - t0, 1), "rss_kib": common.rss_kib(s.pid),
                              "fds": common.fd_count(s.pid),
                              "held": sum(w.held() for w in workers), "quiet": quiet,
                              "connections_open": common.metric(m, "stapler_connections_open"),
                              "cpu_s": common.cpu_seconds(s.pid)}
                    sample.update({"fds_" + k: v for k, v in fdk.items()})
                finally:
                    env.gate.reopen()
                pool = m.get("stapler_buffer_pool_bytes")
                if pool is not None:
                    for labels, v in pool:
                        sample["pool_%s_bytes" % labels.get("state", "all")] = int(v)
                    free = sample.get("pool_free_bytes", sample.get("pool_all_bytes", 0))
                    sample["rss_minus_pool_free_kib"] = sample["rss_kib"] - free // 1024
                samples.append(sample)
                if warm_index is None and now - t0 >= warmup:
                    warm_index = len(samples) - 1
                    cpu_warm = (now, common.cpu_seconds(s.pid),
                                common.cpu_seconds(env.backend.pid), sum(os.times()[:2]))
                t = env.tally
                log("t=%4ds rss %d KiB fds %d (client %s backend %s other %s) open %s held %d "
                    "pool %s/%s | ok %s failed %d"
                    % (sample["t"], sample["rss_kib"], sample["fds"], fdk.get("client"),
                       fdk.get("backend"), fdk.get("other"), sample["connections_open"],
                       sample["held"], sample.get("pool_in_use_bytes", "-"),
                       sample.get("pool_free_bytes", "-"), sum(t.ok.values()),
                       sum(t.failed.values())))
            time.sleep(max(0.0, min(next_sample, next_hup, t0 + duration) - time.monotonic()))

        env.stop.set()
        env.gate.reopen()
        for w in workers:
            w.join(30)
        flapper.join(40)
        t_end = time.monotonic()
        cpu1 = {"stapler": common.cpu_seconds(s.pid),
                "backend": common.cpu_seconds(env.backend.pid), "client": sum(os.times()[:2])}
        alive = s.alive()
        open_left = None
        if alive:        # every client has closed: stapler must have no connection left
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                open_left = common.metric(common.metrics(s.admin_port),
                                          "stapler_connections_open")
                if open_left == 0:
                    break
                time.sleep(0.2)
            time.sleep(1.0)
        m = common.metrics(s.admin_port) if alive else {}
        res["connections_open_after_load"] = open_left
        rc = s.stop()
        res["access_lines_200_101"] = s.dropped

        # ---- figures
        t = env.tally
        res["counts_ok"] = dict(t.ok)
        res["counts_failed"] = dict(t.failed)
        res["counts_extra"] = dict(t.extra)
        res["errors"] = t.errors
        res["events"] = env.events
        res["samples"] = samples
        res["sighups"] = hups
        res["responder_outages"] = flapper.outages
        res["responder_outages_skipped"] = flapper.skipped
        res["stuck_operations"] = watchdog.dumps
        wall = t_end - t0
        res["achieved_per_s"] = {k: round(v / wall, 1) for k, v in t.ok.items()}
        res["cpu_pct_whole_run"] = {k: round(100.0 * (cpu1[k] - cpu0[k]) / wall, 1)
                                    for k in cpu0 if cpu0[k] is not None and cpu1[k] is not None}
        if cpu_warm:
            span = t_end - cpu_warm[0]
            res["cpu_pct_after_warmup"] = {
                "stapler": round(100.0 * (cpu1["stapler"] - cpu_warm[1]) / span, 1),
                "backend": round(100.0 * (cpu1["backend"] - cpu_warm[2]) / span, 1),
                "client": round(100.0 * (cpu1["client"] - cpu_warm[3]) / span, 1)}
        if m:
            res["metrics_end"] = {
                "reloads_ok": common.metric(m, "stapler_reloads_total", result="ok"),
                "reloads_failed": common.metric(m, "stapler_reloads_total", result="failed"),
                "handshakes_tls12": common.metric(m, "stapler_tls_versions_total", version="1.2"),
                "handshakes_tls13": common.metric(m, "stapler_tls_versions_total", version="1.3"),
                "handshakes_resumed": common.metric(m, "stapler_tls_resumed_total"),
                "handshake_failures": common.metric(m, "stapler_tls_handshake_failures_total"),
                "staples_sent": common.metric(m, "stapler_ocsp_staples_sent_total"),
                "ocsp_fetches_ok": common.metric(m, "stapler_ocsp_fetches_total", result="ok"),
                "ocsp_fetches_failed": common.metric(m, "stapler_ocsp_fetches_total",
                                                     result="failed"),
                "backend_errors": common.metric(m, "stapler_backend_errors_total"),
                "errors_generated": common.metric(m, "stapler_http_errors_generated_total"),
                "log_lines_dropped": common.metric(m, "stapler_log_lines_dropped_total"),
            }
            # class is a Python keyword: look these up by hand
            for cls in ("4xx", "5xx"):
                res["metrics_end"]["responses_" + cls] = sum(
                    v for l, v in m.get("stapler_http_responses_total", []) if l.get("class") == cls)
        if warm_index is None:
            warm_index = max(0, len(samples) - 1)
        res["warmup_sample_index"] = warm_index
        tr = {k: trend(samples, k, warm_index)
              for k in ("rss_kib", "fds", "fds_client", "fds_backend", "fds_other",
                        "pool_free_bytes", "pool_in_use_bytes", "rss_minus_pool_free_kib")}
        res["trend"] = {k: v for k, v in tr.items() if v is not None}

        # ---- checks
        total_ok = sum(t.ok.values())
        total_failed = sum(t.failed.values())
        checks.append(("0 failed or lost operations",
                       total_failed == 0 and total_ok > 0,
                       "ok %s; failed %s%s" % (dict(sorted(t.ok.items())), dict(t.failed),
                                               ("; first: %s" % t.errors[0]["error"])
                                               if t.errors else "")))
        kinds_needed = ("full", "resumed", "keepalive", "upload", "download", "websocket", "ocsp")
        missing = [k for k in kinds_needed if k in kinds and not t.ok.get(k)]
        checks.append(("every kind of load ran", not missing, "missing: %s" % missing))
        misses = sum(v for k, v in t.extra.items() if k.startswith("resumption_missed_"))
        resumed = sum(v for k, v in t.extra.items() if k.startswith("resumed_tls"))
        if "resumed" in kinds:
            checks.append(("every offered session resumed (across %d reloads)" % hups,
                           misses == 0 and resumed > 0,
                           "resumed %d, missed %d" % (resumed, misses)))
        checks.append(("stapler never died, exits 0 on SIGTERM", alive and not died and rc == 0,
                       "alive %s, exit %s" % (alive, rc)))
        checks.append(("no connection left in stapler once the load has closed its own",
                       open_left == 0, "stapler_connections_open %s 5 s after" % open_left))
        if m:
            me = res["metrics_end"]
            checks.append(("every SIGHUP reloaded ok", me["reloads_ok"] == hups
                           and me["reloads_failed"] == 0,
                           "sent %d, ok %s, failed %s" % (hups, me["reloads_ok"],
                                                          me["reloads_failed"])))
            checks.append(("no 4xx/5xx response, no backend error in stapler's metrics",
                           me["responses_4xx"] == 0 and me["responses_5xx"] == 0
                           and me["backend_errors"] == 0,
                           "4xx %s, 5xx %s, backend errors %s"
                           % (me["responses_4xx"], me["responses_5xx"], me["backend_errors"])))
        if m and not args.no_access_log:
            want = sum(t.ok.get(k, 0) for k in ("full", "resumed", "keepalive", "upload",
                                                 "download")) + t.extra.get("websocket_opened", 0)
            got = res["access_lines_200_101"] + int(res["metrics_end"]["log_lines_dropped"])
            checks.append(("stapler logged every request the load got an answer to",
                           got == want, "access lines with 200/101 (+ dropped) %d, requests "
                           "and upgrades answered %d" % (got, want)))
        after = samples[warm_index:]
        checks.append(("samples after the warm-up", len(after) >= 2,
                       "%d samples, %d after the warm-up" % (len(samples), len(after))))
        tol = args.tolerance / 100.0
        rt = res["trend"].get("rss_kib")
        if rt:
            checks.append(("RSS flat after the warm-up (max and final <= +%g %%)" % args.tolerance,
                           rt["max"] <= rt["warmup"] * (1 + tol)
                           and rt["final"] <= rt["warmup"] * (1 + tol),
                           "warm-up %d KiB, max %d (%+.2f %%), final %d (%+.2f %%)"
                           % (rt["warmup"], rt["max"], rt["max_change_pct"], rt["final"],
                              rt["final_change_pct"])))
        ft = res["trend"].get("fds")
        if ft:
            allow = max(ft["warmup"] * tol, args.fd_slack)
            checks.append(("fds flat after the warm-up (max and final <= +max(%g %%, %d))"
                           % (args.tolerance, args.fd_slack),
                           ft["max"] <= ft["warmup"] + allow and ft["final"] <= ft["warmup"] + allow,
                           "warm-up %d, max %d (%+.2f %%), final %d (%+.2f %%)"
                           % (ft["warmup"], ft["max"], ft["max_change_pct"], ft["final"],
                              ft["final_change_pct"])))
        ot = res["trend"].get("fds_other")
        if ot:
            checks.append(("non-socket fds constant after the warm-up",
                           ot["max"] == ot["warmup"] and ot["final"] == ot["warmup"],
                           "warm-up %d, max %d, final %d" % (ot["warmup"], ot["max"], ot["final"])))
        mism = [(x["t"], x.get("fds_client"), x["held"]) for x in samples
                if x["quiet"] and x.get("fds_client") is not None
                and x["fds_client"] != x["held"]]
        checks.append(("client sockets in stapler = connections the load holds, at every sample",
                       not mism, "mismatches (t, stapler, held): %s" % mism[:5]))
        ok = all(c[1] for c in checks)
    except Exception as e:
        traceback.print_exc()
        checks.append(("ran to the end", False, "%s: %s" % (type(e).__name__, e)))
    finally:
        env.stop.set()
        env.gate.reopen()
        env.procs.stop_all()
        res["checks"] = [{"check": c[0], "ok": c[1], "detail": c[2]} for c in checks]
        res["ok"] = ok
        print("\n==== soak.py summary (%.1f min) ====" % ((time.monotonic() - t0) / 60.0))
        for kind in ("full", "resumed", "keepalive", "upload", "download", "websocket", "ocsp"):
            print("  %-10s ok %7d  failed %d" % (kind, env.tally.ok.get(kind, 0),
                                                 env.tally.failed.get(kind, 0)))
        if env.tally.extra:
            print("  details: %s" % json.dumps(dict(sorted(env.tally.extra.items()))))
        for k in ("sighups", "responder_outages", "responder_outages_skipped"):
            if k in res:
                print("  %s: %s" % (k, res[k]))
        if "metrics_end" in res:
            print("  stapler metrics: %s" % json.dumps(res["metrics_end"]))
        if "load_per_s" in res and "achieved_per_s" in res:
            print("  operations/s, target -> achieved: %s" % ", ".join(
                "%s %g -> %g" % (k, v, res["achieved_per_s"].get(k, 0))
                for k, v in res["load_per_s"].items()))
        if "cpu_pct_after_warmup" in res:
            print("  CPU %% of one core after the warm-up: %s" % res["cpu_pct_after_warmup"])
        for k, v in res.get("trend", {}).items():
            print("  %-24s warm-up %s, min %s, max %s (%+.2f %%), final %s (%+.2f %%)"
                  % (k, v["warmup"], v["min"], v["max"], v["max_change_pct"] or 0, v["final"],
                     v["final_change_pct"] or 0))
        for name, good, detail in checks:
            print("%s  %s\n      %s" % ("PASS" if good else "FAIL", name, detail))
        print("RESULT: %s" % ("PASS" if ok else "FAIL"))
        if args.json:
            common.write_json(args.json, res)
        if args.keep_tmp or not ok:
            print("logs and certificates kept in %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
