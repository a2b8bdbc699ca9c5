#!/usr/bin/python3
"""Connection-count load on stapler: idle connections, bursts, slowloris (about 1.5 minutes).

  /usr/bin/python3 tests/soak/connections.py [--stapler build/stapler] [--json FILE]

Generates its own CA and certificates, starts tests/soak/backend.js and stapler (ports picked at
start, everything in a temporary directory), and runs three phases:

  idle       N (10000) idle TLS connections held at once, twice: stapler's RSS and fds per
             connection, and whether RSS grows from the first round to the second.
  burst      5000 connections opened at once, each doing one GET: all get a 200 while
             limits.max_connections allows them; then, against a stapler with
             limits.max_connections 1000, 1000 are served and the rest closed at once (none
             hangs), matching stapler_connections_rejected_total.
  slowloris  500 clients dribbling a ClientHello one byte a second and 500 dribbling request
             headers after the handshake, for about 30 s, while a steady client makes requests:
             the slow ones are cut near timeouts.handshake / timeouts.request_header (10 s),
             header ones get a 408, and the steady client sees no failure.

Exit status 0 only when every check passes. Standard library only; see tests/soak/README.md.
"""
import argparse
import heapq
import os
import re
import selectors
import shutil
import socket
import ssl
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from common import log  # noqa: E402

TCP_ESTABLISHED = 1
R, W = selectors.EVENT_READ, selectors.EVENT_WRITE
SSL_CLOSED = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionError)


def client_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def pct(values, p):
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100.0 * (len(s) - 1))))]


def summary(values, digits=2):
    if not values:
        return {"n": 0}
    return {"n": len(values), "min": round(min(values), digits),
            "p50": round(statistics.median(values), digits),
            "p99": round(pct(values, 99), digits), "max": round(max(values), digits)}


def parse_response(data):
    """(status, body) when `data` holds one complete Content-Length response, else None."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = data[:end].decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        k, _, v = line.partition(":")
        if k.strip().lower() == "content-length":
            length = int(v)
    if len(data) < end + 4 + length:
        return None
    return status, bytes(data[end + 4:end + 4 + length])


# ---------------------------------------------------------------------------- event loop

class Loop:
    """selectors plus a timer heap; handlers are callables taking the event mask."""

    def __init__(self):
        self.sel = selectors.DefaultSelector()
        self.timers = []
        self.seq = 0

    def call_at(self, when, fn):
        self.seq += 1
        heapq.heappush(self.timers, (when, self.seq, fn))

    def watch(self, sock, events, handler):
        try:
            self.sel.modify(sock, events, handler)
        except KeyError:
            self.sel.register(sock, events, handler)

    def unwatch(self, sock):
        try:
            self.sel.unregister(sock)
        except (KeyError, ValueError):
            pass

    def run(self, done, deadline):
        while not done() and time.monotonic() < deadline:
            now = time.monotonic()
            while self.timers and self.timers[0][0] <= now:
                heapq.heappop(self.timers)[2]()
            if done():
                break
            wait = 0.2
            if self.timers:
                wait = max(0.0, min(wait, self.timers[0][0] - time.monotonic()))
            if not self.sel.get_map():
                time.sleep(wait)
                continue
            for key, mask in self.sel.select(wait):
                key.data(mask)


class Conn:
    """One non-blocking client connection: TCP connect, then either a TLS handshake (and then
    whatever `after_handshake` does) or, for a ClientHello dribbler, plain bytes."""

    def __init__(self, loop, port, ctx, tls=True):
        self.loop, self.ctx, self.tls = loop, ctx, tls
        self.t_start = time.monotonic()
        self.t_connected = self.t_handshake = self.t_end = None
        self.state = "connect"
        self.error = None
        self.inbuf = bytearray()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        self.ssl = None
        err = self.sock.connect_ex(("127.0.0.1", port))
        if err not in (0, 115):                     # EINPROGRESS
            self.fail("connect: " + os.strerror(err))
            return
        loop.watch(self.sock, W, self.on_event)

    # hooks
    def on_handshake(self):
        pass

    def on_connected_plain(self):
        pass

    def on_end(self):
        pass

    def fileobj(self):
        return self.ssl or self.sock

    def fail(self, why):
        if self.state in ("failed", "closed"):
            return
        self.error = why
        self.state = "failed"
        self.t_end = time.monotonic()
        self.loop.unwatch(self.fileobj())
        self.close()
        self.on_end()

    def close(self):
        try:
            self.fileobj().close()
        except OSError:
            pass

    def on_event(self, mask):
        try:
            if self.state == "connect":
                err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    return self.fail("connect: " + os.strerror(err))
                self.t_connected = time.monotonic()
                self.loop.unwatch(self.sock)
                if not self.tls:
                    self.state = "plain"
                    return self.on_connected_plain()
                self.ssl = self.ctx.wrap_socket(self.sock, server_hostname="localhost",
                                                do_handshake_on_connect=False)
                self.state = "handshake"
                return self.handshake()
            if self.state == "handshake":
                return self.handshake()
            return self.on_io(mask)
        except (OSError, ssl.SSLError) as e:
            self.fail("%s: %s" % (self.state, e))

    def handshake(self):
        try:
            self.ssl.do_handshake()
        except ssl.SSLWantReadError:
            return self.loop.watch(self.ssl, R, self.on_event)
        except ssl.SSLWantWriteError:
            return self.loop.watch(self.ssl, W, self.on_event)
        self.t_handshake = time.monotonic()
        self.state = "open"
        self.loop.unwatch(self.ssl)
        self.on_handshake()

    def on_io(self, mask):
        pass

    def established(self):
        try:
            info = self.fileobj().getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
            return info[0] == TCP_ESTABLISHED
        except OSError:
            return False


# ---------------------------------------------------------------------------- idle

def open_idle(port, n, concurrency=256, timeout=180):
    """Opens n TLS connections (at most `concurrency` handshakes at once) and leaves them idle.
    Returns (open connections, failures, seconds)."""
    loop, ctx = Loop(), client_context()
    conns, pending = [], [0]
    t0 = time.monotonic()

    class Idle(Conn):
        def on_handshake(self):
            pending[0] -= 1

        def on_end(self):
            pending[0] -= 1

    started = [0]

    def top_up():
        while started[0] < n and pending[0] < concurrency:
            started[0] += 1
            pending[0] += 1
            conns.append(Idle(loop, port, ctx))
        loop.call_at(time.monotonic() + 0.01, top_up)

    top_up()
    loop.run(lambda: started[0] >= n and pending[0] == 0, time.monotonic() + timeout)
    ok = [c for c in conns if c.state == "open"]
    failed = [c for c in conns if c.state != "open"]
    return ok, failed, time.monotonic() - t0


def close_all(conns):
    for c in conns:
        c.close()


def wait_open(s, want, timeout=30):
    """Waits until stapler_connections_open is `want`; returns the last value seen."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = common.metric(common.metrics(s.admin_port), "stapler_connections_open")
        if value == want:
            break
        time.sleep(0.2)
    return value


def pool_bytes(m):
    """stapler_buffer_pool_bytes by state, or None when stapler has no such metric."""
    if "stapler_buffer_pool_bytes" not in m:
        return None
    return {l.get("state", "all"): int(v) for l, v in m["stapler_buffer_pool_bytes"]}


def phase_idle(s, args, res, checks):
    n = args.conns
    log("idle: warming up with %d connections" % args.idle_warmup)
    warm, wfail, _ = open_idle(s.port, args.idle_warmup)
    close_all(warm)
    wait_open(s, 0)
    time.sleep(1.0)
    rounds = []
    for rnd in (1, 2):
        rss0, fds0 = common.rss_kib(s.pid), common.fd_count(s.pid)
        log("idle round %d: opening %d TLS connections (stapler RSS %d KiB, %d fds)"
            % (rnd, n, rss0, fds0))
        conns, failed, secs = open_idle(s.port, n)
        time.sleep(2.0)        # let stapler finish what follows a handshake (tickets, buffers)
        rss1, fds1 = common.rss_kib(s.pid), common.fd_count(s.pid)
        est = sum(1 for c in conns if c.established())
        m = common.metrics(s.admin_port)
        opened = common.metric(m, "stapler_connections_open")
        pool = pool_bytes(m)
        close_all(conns)
        left = wait_open(s, 0)
        time.sleep(1.0)
        rss2, fds2 = common.rss_kib(s.pid), common.fd_count(s.pid)
        r = {"round": rnd, "opened": len(conns), "failed": len(failed),
             "still_established": est, "stapler_connections_open": opened,
             "open_seconds": round(secs, 1), "handshakes_per_s": round(len(conns) / secs),
             "rss_before_kib": rss0, "rss_with_conns_kib": rss1, "rss_after_close_kib": rss2,
             "fds_before": fds0, "fds_with_conns": fds1, "fds_after_close": fds2,
             "rss_per_conn_kib": round((rss1 - rss0) / max(1, len(conns)), 2),
             "fds_per_conn": round((fds1 - fds0) / max(1, len(conns)), 3),
             "open_after_close": left,
             "buffer_pool_with_conns_bytes": pool,
             "buffer_pool_after_close_bytes": pool_bytes(common.metrics(s.admin_port))}
        if failed:
            r["first_error"] = failed[0].error
        rounds.append(r)
        log("idle round %d: %d open in %.1f s, RSS %d -> %d KiB (%.2f KiB/conn), fds %d -> %d "
            "(%.3f/conn), after close RSS %d KiB, %d fds"
            % (rnd, len(conns), secs, rss0, rss1, r["rss_per_conn_kib"], fds0, fds1,
               r["fds_per_conn"], rss2, fds2))
        checks.append(("idle round %d: %d connections opened and held" % (rnd, n),
                       len(conns) == n and est == n and opened == n,
                       "opened %d, established %d, stapler counts %s%s"
                       % (len(conns), est, opened,
                          (", first error: " + failed[0].error) if failed else "")))
        checks.append(("idle round %d: all closed in stapler afterwards" % rnd,
                       left == 0 and fds2 <= fds0 + 4, "open %s, fds %d (before %d)"
                       % (left, fds2, fds0)))
        if rnd == 1:
            time.sleep(args.idle_pause)
    a, b = rounds
    growth = 100.0 * (b["rss_with_conns_kib"] - a["rss_with_conns_kib"]) / a["rss_with_conns_kib"]
    after = 100.0 * (b["rss_after_close_kib"] - a["rss_after_close_kib"]) / \
        a["rss_after_close_kib"]
    res["idle"] = {"conns": n, "rounds": rounds, "rss_with_conns_change_pct": round(growth, 2),
                   "rss_after_close_change_pct": round(after, 2),
                   "rss_per_conn_kib": a["rss_per_conn_kib"], "fds_per_conn": a["fds_per_conn"],
                   "rss_kept_after_close_kib": a["rss_after_close_kib"] - a["rss_before_kib"]}
    checks.append(("idle: RSS with %d connections does not grow from round 1 to 2 (<= +%g %%)"
                   % (n, args.rss_tolerance), growth <= args.rss_tolerance,
                   "%d -> %d KiB (%+.2f %%)" % (a["rss_with_conns_kib"], b["rss_with_conns_kib"],
                                                growth)))


# ---------------------------------------------------------------------------- burst

def burst(port, n, timeout=90):
    """n connections opened at once, each doing GET /small and then holding its connection
    (so that a served connection keeps its max_connections slot) until every one has an
    outcome. Returns a dict of outcomes and timings."""
    loop, ctx = Loop(), client_context()
    ended = [0]

    class Burst(Conn):
        def on_handshake(self):
            self.rid = "b%d" % id(self)
            self.out = ("GET /small?id=%s HTTP/1.1\r\nHost: localhost\r\n\r\n" % self.rid).encode()
            self.state = "request"
            self.loop.watch(self.ssl, W, self.on_event)

        def on_io(self, mask):
            if self.state == "request":
                try:
                    k = self.ssl.send(self.out)
                    self.out = self.out[k:]
                except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
                    return
                if not self.out:
                    self.state = "response"
                    self.loop.watch(self.ssl, R, self.on_event)
                return
            while True:
                try:
                    d = self.ssl.recv(65536)
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    break
                if not d:
                    return self.fail("response: closed after %d bytes" % len(self.inbuf))
                self.inbuf += d
            r = parse_response(self.inbuf)
            if r is None:
                return
            self.status, body = r
            self.t_end = time.monotonic()
            self.loop.unwatch(self.ssl)
            if self.status != 200 or body != common.small_body(self.rid):
                self.state = "wrong"
                self.error = "status %d body %r" % (self.status, body[:60])
            else:
                self.state = "served"
            ended[0] += 1

        def on_end(self):
            ended[0] += 1

    t0 = time.monotonic()
    conns = [Burst(loop, port, ctx) for _ in range(n)]
    t_issued = time.monotonic() - t0
    loop.run(lambda: ended[0] >= n, time.monotonic() + timeout)
    wall = time.monotonic() - t0
    served = [c for c in conns if c.state == "served"]
    # Closed by stapler before the handshake finished: refused (limits.max_connections).
    refused = [c for c in conns if c.state == "failed" and c.t_handshake is None]
    other = [c for c in conns if c not in served and c not in refused]
    hung = [c for c in conns if c.state not in ("served", "failed", "wrong")]
    still_open = sum(1 for c in served if c.established())
    close_all(conns)
    errors = {}
    for c in refused + other:
        key = re.sub(r"\s*\(_ssl\.c:\d+\)", "", c.error or c.state)[:80]
        errors[key] = errors.get(key, 0) + 1
    return {"conns": n, "served": len(served), "refused": len(refused), "other": len(other),
            "hung": len(hung), "served_still_open_at_end": still_open,
            "connects_issued_s": round(t_issued, 2), "wall_s": round(wall, 2),
            "served_s": summary([c.t_end - c.t_start for c in served]),
            "refused_s": summary([c.t_end - c.t_start for c in refused]),
            "outcomes": errors,
            "first_other_error": other[0].error if other else None}


def phase_burst(procs, binary, tmp, pki, backend, s, args, res, checks):
    n = args.burst
    m0 = common.metrics(s.admin_port)
    log("burst: %d connections at once, limits.max_connections %d" % (n, args.idle_limit))
    a = burst(s.port, n)
    m1 = common.metrics(s.admin_port)
    a["rejected_metric_delta"] = common.metric(m1, "stapler_connections_rejected_total") - \
        common.metric(m0, "stapler_connections_rejected_total")
    res["burst_unlimited"] = a
    log("burst: served %d, refused %d, other %d, hung %d in %.1f s (served p50 %.2f s max %.2f s)"
        % (a["served"], a["refused"], a["other"], a["hung"], a["wall_s"],
           a["served_s"].get("p50", 0), a["served_s"].get("max", 0)))
    checks.append(("burst: all %d served (200) under a high max_connections" % n,
                   a["served"] == n and a["hung"] == 0,
                   "served %d, refused %d, other %d (%s), hung %d"
                   % (a["served"], a["refused"], a["other"], a["outcomes"], a["hung"])))
    wait_open(s, 0)

    limit = args.burst_limit
    log("burst: starting a stapler with limits.max_connections %d" % limit)
    s2 = common.start_stapler(procs, binary, tmp, pki, backend.port, name="stapler-limited",
                              limits={"max_connections": limit},
                              timeouts={"request_header": "60s", "idle": "120s"})
    m0 = common.metrics(s2.admin_port)
    b = burst(s2.port, n)
    m1 = common.metrics(s2.admin_port)
    b["max_connections"] = limit
    b["rejected_metric_delta"] = int(common.metric(m1, "stapler_connections_rejected_total") -
                                     common.metric(m0, "stapler_connections_rejected_total"))
    b["accepted_metric_delta"] = int(common.metric(m1, "stapler_connections_accepted_total") -
                                     common.metric(m0, "stapler_connections_accepted_total"))
    res["burst_limited"] = b
    log("burst (limit %d): served %d, refused %d (metric %d), other %d, hung %d in %.1f s; "
        "refused after p50 %.2f s max %.2f s"
        % (limit, b["served"], b["refused"], b["rejected_metric_delta"], b["other"], b["hung"],
           b["wall_s"], b["refused_s"].get("p50", 0), b["refused_s"].get("max", 0)))
    workers = int(common.metric(m1, "stapler_workers") or 1)
    checks.append(("burst (max_connections %d): %d served" % (limit, limit),
                   limit <= b["served"] <= limit + workers - 1 and b["other"] == 0,
                   "served %d, other %d (%s)" % (b["served"], b["other"], b["outcomes"])))
    checks.append(("burst (max_connections %d): the rest refused, none hangs" % limit,
                   b["served"] + b["refused"] == n and b["hung"] == 0,
                   "refused %d, hung %d" % (b["refused"], b["hung"])))
    checks.append(("burst (max_connections %d): refused promptly (max <= %g s)"
                   % (limit, args.prompt),
                   b["refused"] > 0 and b["refused_s"]["max"] <= args.prompt,
                   "refused after %s s" % b["refused_s"]))
    checks.append(("burst (max_connections %d): refused = stapler_connections_rejected_total"
                   % limit, b["refused"] == b["rejected_metric_delta"],
                   "client saw %d refused, metric grew by %d"
                   % (b["refused"], b["rejected_metric_delta"])))
    wait_open(s2, 0)
    rc = s2.stop()
    checks.append(("burst: limited stapler exits 0 on SIGTERM", rc == 0, "exit %s" % rc))


# ---------------------------------------------------------------------------- slowloris

def phase_slowloris(procs, binary, tmp, pki, backend, args, res, checks):
    s = common.start_stapler(procs, binary, tmp, pki, backend.port, name="stapler-slowloris",
                             timeouts={"handshake": "%ds" % args.slow_timeout,
                                       "request_header": "%ds" % args.slow_timeout})
    loop, ctx = Loop(), client_context()
    window_end = time.monotonic() + args.slow_window
    attempts = {"hello": [], "header": []}
    live = [0]
    request = (b"GET /small?id=slow HTTP/1.1\r\nHost: localhost\r\nUser-Agent: slowloris\r\n"
               b"X-Padding: " + b"p" * 400 + b"\r\n\r\n")

    def restart(kind):
        if time.monotonic() < window_end:
            start(kind)

    class Slow(Conn):
        """Dribbles self.data one byte every args.slow_interval seconds; records when the
        first byte went out, what came back and when the connection was cut."""

        def __init__(self, kind, data):
            self.kind, self.data, self.sent = kind, data, 0
            self.t_first = self.t_response = None
            self.status = None
            live[0] += 1
            attempts[kind].append(self)
            super().__init__(loop, s.port, ctx, tls=(kind == "header"))

        def on_connected_plain(self):      # ClientHello dribbler
            self.loop.watch(self.sock, R, self.on_event)
            self.drip()

        def on_handshake(self):            # header dribbler
            self.state = "open"
            self.loop.watch(self.ssl, R, self.on_event)
            self.drip()

        def drip(self):
            if self.state not in ("plain", "open") or self.status is not None:
                return
            if self.sent >= len(self.data):
                return self.fail("sent everything: not cut")
            try:
                self.fileobj().send(self.data[self.sent:self.sent + 1])
            except (ssl.SSLWantWriteError, BlockingIOError):
                pass
            except (OSError, ssl.SSLError) as e:
                return self.cut("send: %s" % e)
            else:
                if self.sent == 0:
                    self.t_first = time.monotonic()
                self.sent += 1
            self.loop.call_at(time.monotonic() + args.slow_interval, self.drip)

        def on_io(self, mask):
            try:
                while True:
                    d = self.fileobj().recv(65536)
                    if not d:
                        return self.cut("eof")
                    self.inbuf += d
                    if self.kind == "header" and self.status is None:
                        r = parse_response(self.inbuf)
                        if r is not None:
                            self.status = r[0]
                            self.t_response = time.monotonic()
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                return
            except SSL_CLOSED as e:
                return self.cut(type(e).__name__)
            except (OSError, ssl.SSLError) as e:
                return self.cut("recv: %s" % e)

        def cut(self, how):
            self.how = how
            self.state = "closed"
            self.t_end = time.monotonic()
            self.loop.unwatch(self.fileobj())
            self.close()
            self.on_end()

        def on_end(self):
            live[0] -= 1
            restart(self.kind)

    def start(kind):
        if kind == "hello":
            inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
            obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
            try:
                obj.do_handshake()
            except ssl.SSLWantReadError:
                pass
            Slow(kind, out.read())
        else:
            Slow(kind, request)

    # The steady client: keep-alive GETs every 100 ms, a new connection every 20 requests.
    steady = {"ok": 0, "failed": 0, "errors": [], "latency": [], "connections": 0}
    stop = threading.Event()

    def steady_client():
        sctx = ssl.create_default_context(cafile=pki.root + ".pem")
        sctx.set_alpn_protocols(["http/1.1"])
        sock, i = None, 0
        while not stop.is_set():
            t = time.monotonic()
            try:
                if sock is None or i % 20 == 0:
                    if sock is not None:
                        sock.close()
                    sock = sctx.wrap_socket(socket.create_connection(("127.0.0.1", s.port), 10),
                                            server_hostname="localhost")
                    steady["connections"] += 1
                rid = "steady%d" % i
                sock.sendall(("GET /small?id=%s HTTP/1.1\r\nHost: localhost\r\n\r\n" % rid)
                             .encode())
                buf = bytearray()
                while parse_response(buf) is None:
                    d = sock.recv(65536)
                    if not d:
                        raise ConnectionError("closed before the response")
                    buf += d
                status, body = parse_response(buf)
                if status != 200 or body != common.small_body(rid):
                    raise ValueError("status %d body %r" % (status, body[:60]))
                steady["ok"] += 1
                steady["latency"].append(time.monotonic() - t)
            except (OSError, ssl.SSLError, ValueError) as e:
                steady["failed"] += 1
                steady["errors"].append(str(e))
                if sock is not None:
                    sock.close()
                sock = None
            i += 1
            stop.wait(max(0.0, 0.1 - (time.monotonic() - t)))
        if sock is not None:
            sock.close()

    m0 = common.metrics(s.admin_port)
    th = threading.Thread(target=steady_client, daemon=True)
    th.start()
    log("slowloris: %d ClientHello and %d header dribblers (1 byte / %g s) for %d s, "
        "timeouts %d s" % (args.slow, args.slow, args.slow_interval, args.slow_window,
                           args.slow_timeout))
    # Spread the starts over the first second so that cuts do not all land at once.
    t0 = time.monotonic()
    for i in range(args.slow):
        loop.call_at(t0 + i / float(args.slow), lambda: start("hello"))
        loop.call_at(t0 + (i + 0.5) / float(args.slow), lambda: start("header"))
    loop.run(lambda: time.monotonic() > window_end and live[0] == 0,
             window_end + args.slow_timeout * 3 + 10)
    stop.set()
    th.join(15)
    m1 = common.metrics(s.admin_port)
    stuck = live[0]

    lo, hi = args.slow_timeout - args.cut_early, args.slow_timeout + args.cut_late
    hello = [c for c in attempts["hello"] if c.t_first is not None]
    header = [c for c in attempts["header"] if c.t_first is not None]
    hello_cut = [c.t_end - c.t_connected for c in hello if c.state == "closed"]
    header_resp = [c.t_response - c.t_first for c in header if c.t_response is not None]
    header_cut = [c.t_end - c.t_first for c in header if c.state == "closed"]
    statuses = {}
    for c in header:
        statuses[str(c.status)] = statuses.get(str(c.status), 0) + 1
    not_started = [c for c in attempts["hello"] + attempts["header"] if c.t_first is None]
    hs_timeouts = common.metric(m1, "stapler_tls_handshake_failures_total", reason="timeout") - \
        common.metric(m0, "stapler_tls_handshake_failures_total", reason="timeout")
    r = {"timeout_s": args.slow_timeout, "interval_s": args.slow_interval,
         "window_s": args.slow_window, "clients_each": args.slow,
         "hello_attempts": len(hello), "hello_cut_s": summary(hello_cut),
         "hello_bytes_sent_max": max([c.sent for c in hello] or [0]),
         "header_attempts": len(header), "header_response_s": summary(header_resp),
         "header_cut_s": summary(header_cut), "header_statuses": statuses,
         "attempts_that_never_sent": len(not_started),
         "never_sent_errors": sorted(set(c.error or c.state for c in not_started))[:5],
         "still_open_at_end": stuck, "handshake_timeout_metric_delta": int(hs_timeouts),
         "steady": {"ok": steady["ok"], "failed": steady["failed"],
                    "connections": steady["connections"],
                    "latency_s": summary(steady["latency"], 4),
                    "errors": steady["errors"][:5]}}
    res["slowloris"] = r
    log("slowloris: hello cut after %s s; header 408 after %s s, closed after %s s, statuses %s; "
        "steady %d ok %d failed (latency max %.3f s)"
        % (r["hello_cut_s"], r["header_response_s"], r["header_cut_s"], statuses, steady["ok"],
           steady["failed"], r["steady"]["latency_s"].get("max", 0)))
    checks.append(("slowloris: every ClientHello dribbler cut %g-%g s after connecting" % (lo, hi),
                   len(hello) > 0 and len(hello_cut) == len(hello)
                   and lo <= min(hello_cut) and max(hello_cut) <= hi,
                   "%d attempts, cut after %s s" % (len(hello), r["hello_cut_s"])))
    checks.append(("slowloris: every header dribbler answered 408 %g-%g s after its first byte"
                   % (lo, hi),
                   len(header) > 0 and statuses == {"408": len(header)}
                   and lo <= min(header_resp) and max(header_resp) <= hi,
                   "%d attempts, statuses %s, 408 after %s s"
                   % (len(header), statuses, r["header_response_s"])))
    checks.append(("slowloris: every header dribbler's connection closed (<= %g s)"
                   % (hi + args.linger),
                   len(header_cut) == len(header) and max(header_cut or [1e9]) <= hi + args.linger,
                   "closed after %s s" % r["header_cut_s"]))
    checks.append(("slowloris: no dribbler left open, every one got going",
                   stuck == 0 and not not_started,
                   "%d open at the end, %d never sent a byte %s"
                   % (stuck, len(not_started), r["never_sent_errors"])))
    checks.append(("slowloris: steady client 0 failures",
                   steady["failed"] == 0 and steady["ok"] > 0,
                   "%d ok, %d failed %s" % (steady["ok"], steady["failed"],
                                            steady["errors"][:3])))
    rc = s.stop()
    checks.append(("slowloris: stapler exits 0 on SIGTERM", rc == 0, "exit %s" % rc))


# ---------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stapler", default=common.default_stapler(),
                    help="stapler binary (default: $STAPLER_BIN or build/stapler)")
    ap.add_argument("--json", help="write the figures to this file")
    ap.add_argument("--phases", default="idle,burst,slowloris")
    ap.add_argument("--conns", type=int, default=10000, help="idle connections (10000)")
    ap.add_argument("--idle-warmup", type=int, default=1000)
    ap.add_argument("--idle-limit", type=int, default=12000,
                    help="limits.max_connections of the idle/burst stapler (12000)")
    ap.add_argument("--idle-pause", type=float, default=12.0,
                    help="seconds between the idle rounds (stapler frees spare buffers after "
                         "10 s)")
    ap.add_argument("--rss-tolerance", type=float, default=5.0,
                    help="allowed RSS growth from idle round 1 to 2, percent (5)")
    ap.add_argument("--burst", type=int, default=5000)
    ap.add_argument("--burst-limit", type=int, default=1000)
    ap.add_argument("--prompt", type=float, default=10.0,
                    help="a refused connection must be closed within this many seconds of "
                         "its connect (10)")
    ap.add_argument("--slow", type=int, default=500, help="dribblers of each kind (500)")
    ap.add_argument("--slow-window", type=float, default=25.0,
                    help="seconds during which cut dribblers reconnect (25: ~31 s in all)")
    ap.add_argument("--slow-interval", type=float, default=1.0,
                    help="seconds between a dribbler's bytes (1)")
    ap.add_argument("--slow-timeout", type=int, default=10,
                    help="timeouts.handshake and timeouts.request_header (10)")
    ap.add_argument("--cut-early", type=float, default=0.25)
    ap.add_argument("--cut-late", type=float, default=1.5)
    ap.add_argument("--linger", type=float, default=5.0,
                    help="allowed seconds from the 408 to the close (lingering close)")
    ap.add_argument("--keep-tmp", action="store_true")
    args = ap.parse_args()
    phases = set(args.phases.split(","))

    limit = common.raise_nofile()
    need = max(args.conns, args.burst) + 500
    if limit < need:
        print("connections.py: open-file hard limit %d < %d needed" % (limit, need),
              file=sys.stderr)
        return 2
    if not os.access(args.stapler, os.X_OK):
        print("connections.py: no stapler binary at %s" % args.stapler, file=sys.stderr)
        return 2

    tmp = tempfile.mkdtemp(prefix="stapler-conns-")
    procs = common.Procs(tmp)
    res = {"stapler": args.stapler, "nofile": limit}
    checks = []
    t_start = time.monotonic()
    ok = False
    try:
        log("generating certificates in %s" % tmp)
        pki = common.Pki(tmp, common.free_port())
        backend = common.start_backend(procs)
        if phases & {"idle", "burst"}:
            s = common.start_stapler(procs, args.stapler, tmp, pki, backend.port,
                                     limits={"max_connections": args.idle_limit},
                                     timeouts={"handshake": "60s", "request_header": "300s",
                                               "idle": "600s"})
            res["workers"] = int(common.metric(common.metrics(s.admin_port), "stapler_workers"))
            if "idle" in phases:
                phase_idle(s, args, res, checks)
            if "burst" in phases:
                phase_burst(procs, args.stapler, tmp, pki, backend, s, args, res, checks)
            alive = s.alive()
            rc = s.stop()
            checks.append(("stapler alive through idle/burst, exits 0", alive and rc == 0,
                           "alive %s, exit %s" % (alive, rc)))
        if "slowloris" in phases:
            phase_slowloris(procs, args.stapler, tmp, pki, backend, args, res, checks)
        ok = all(c[1] for c in checks)
    except Exception as e:       # report, clean up, fail
        import traceback
        traceback.print_exc()
        checks.append(("ran to the end", False, "%s: %s" % (type(e).__name__, e)))
    finally:
        procs.stop_all()
        res["seconds"] = round(time.monotonic() - t_start, 1)
        res["checks"] = [{"check": c[0], "ok": c[1], "detail": c[2]} for c in checks]
        res["ok"] = ok
        print("\n==== connections.py summary (%.0f s) ====" % res["seconds"])
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
