"""The differential desync suite: hostile client streams x hostile backend behaviours, each
stream also split at random byte boundaries and sent one byte per TLS record. For every pair
the forwarding invariant is checked from outside, with an independent strict parser (h11) as
the judge:

- the backend received exactly the requests stapler logged as forwarded (nothing else, in
  particular nothing smuggled inside another request's body), each with exactly one
  X-Forwarded-For, stapler's, and every byte stream a backend connection received parses;
- the client received at most one final response per logged exchange, in order, each the
  answer to its own request (the backend names the request it answers in X-Answer).

Backends are scripted (scripted_backend.py, real HTTP over real sockets) for the faults real
servers make only under load or by design (Cowboy answering before the body and closing, a
keep-alive close racing a request, bodies after a 204); the same client corpus also runs
against the real Node backend, whose own parser (llhttp in Node) then records what it got.
"""
import json
import os
import random
import re
import socket
import ssl
import time

import h11

from harness import StaplerCase, HERE, NODE, SANITIZED, wait_until, free_port
from scripted_backend import ScriptedBackend, Closed

SEED = int(os.environ.get("STAPLER_DESYNC_SEED", "20261204"))


# ---- the client corpus ----------------------------------------------------------------------

# Appended to every case name while corpus() builds it, so each pair's requests have ids of
# their own (and every length in the stream is computed with them).
_suffix = [""]


def req(case, i, method=b"GET", extra=b"", body=b"", version=b"HTTP/1.1", host=b"x"):
    target = b"/r/%s%s/%d" % (case.encode(), _suffix[0].encode(), i)
    head = b"%s %s %s\r\n" % (method, target, version)
    if host is not None:
        head += b"Host: " + host + b"\r\n"
    return head + extra + b"\r\n" + body


def smuggled(case):
    """A request hidden where a correct parser sees body bytes. When a case's framing is in fact
    valid it is just a pipelined request: then stapler must parse and log it like any other."""
    return (b"GET /r/%s%s/smuggled HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 6.6.6.6\r\n"
            b"Content-Length: 0\r\n\r\n" % (case.encode(), _suffix[0].encode()))


def corpus(suffix=""):
    """(name, stream) pairs: requests of every smuggling family, each followed by a canary;
    every request id carries `suffix`."""
    _suffix[0] = suffix
    c = []

    def add(name, *parts):
        c.append((name, b"".join(parts).replace(b"SMUGGLED", smuggled(name))))

    # Content-Length / Transfer-Encoding disagreements.
    add("cl-te", req("cl-te", 0, b"POST", b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n",
                     b"0\r\n\r\nSMUGGLED"), req("cl-te", 1))
    add("te-cl", req("te-cl", 0, b"POST", b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n",
                     b"%x\r\nSMUGGLED\r\n0\r\n\r\n" % len(smuggled("te-cl"))), req("te-cl", 1))
    add("te-identity", req("te-identity", 0, b"POST",
                           b"Transfer-Encoding: chunked, identity\r\n", b"0\r\n\r\nSMUGGLED"))
    add("te-tab", req("te-tab", 0, b"POST", b"Transfer-Encoding:\tchunked\r\n",
                      b"0\r\n\r\nSMUGGLED"), req("te-tab", 1))
    add("te-space-colon", req("te-space-colon", 0, b"POST", b"Transfer-Encoding : chunked\r\n",
                              b"0\r\n\r\nSMUGGLED"))
    add("te-twice", req("te-twice", 0, b"POST",
                        b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
                        b"0\r\n\r\nSMUGGLED"))
    add("te-x", req("te-x", 0, b"POST", b"Transfer-Encoding: xchunked\r\n", b"0\r\n\r\n"))
    n = b"%d" % len(smuggled("cl-twice"))
    add("cl-twice", req("cl-twice", 0, b"POST", b"Content-Length: 0\r\nContent-Length: " + n +
                        b"\r\n", b"SMUGGLED"))
    add("cl-list", req("cl-list", 0, b"POST", b"Content-Length: %d, 0\r\n"
                       % len(smuggled("cl-list")), b"SMUGGLED"))
    add("cl-plus", req("cl-plus", 0, b"POST", b"Content-Length: +%d\r\n"
                       % len(smuggled("cl-plus")), b"SMUGGLED"))
    add("cl-http10-te", req("cl-http10-te", 0, b"POST", b"Transfer-Encoding: chunked\r\n",
                            b"0\r\n\r\nSMUGGLED", version=b"HTTP/1.0"))
    # obs-fold, bare CR and LF, NUL, control bytes.
    add("obs-fold", req("obs-fold", 0, b"GET", b"X-A: a\r\n Transfer-Encoding: chunked\r\n"),
        req("obs-fold", 1))
    add("bare-lf", b"GET /r/bare-lf%s/0 HTTP/1.1\nHost: x\n\n" % suffix.encode(),
        req("bare-lf", 1))
    add("bare-cr", req("bare-cr", 0, b"GET", b"X-A: a\rTransfer-Encoding: chunked\r\n"))
    add("nul-header", req("nul-header", 0, b"GET", b"X-A: a\x00b\r\n"))
    add("nul-target", b"GET /r/nul-target%s/0\x00x HTTP/1.1\r\nHost: x\r\n\r\n"
        % suffix.encode())
    add("del-target", b"GET /r/del-target%s/0\x7f HTTP/1.1\r\nHost: x\r\n\r\n"
        % suffix.encode())
    # Chunk sizes and extensions.
    add("chunk-ext", req("chunk-ext", 0, b"POST", b"Transfer-Encoding: chunked\r\n",
                         b"5;a=b;c=\"d\"\r\nhello\r\n0\r\n\r\n"), req("chunk-ext", 1))
    add("chunk-huge", req("chunk-huge", 0, b"POST", b"Transfer-Encoding: chunked\r\n",
                          b"ffffffffffffffffffff\r\nhello\r\n0\r\n\r\n"), req("chunk-huge", 1))
    add("chunk-neg", req("chunk-neg", 0, b"POST", b"Transfer-Encoding: chunked\r\n",
                         b"-1\r\nhello\r\n0\r\n\r\n"))
    add("chunk-0x", req("chunk-0x", 0, b"POST", b"Transfer-Encoding: chunked\r\n",
                        b"0x5\r\nhello\r\n0\r\n\r\n"))
    add("chunk-lf", req("chunk-lf", 0, b"POST", b"Transfer-Encoding: chunked\r\n",
                        b"5\nhello\n0\n\nSMUGGLED"))
    add("chunk-short", req("chunk-short", 0, b"POST", b"Transfer-Encoding: chunked\r\n",
                           b"3\r\nhello\r\n0\r\n\r\n"))
    add("chunk-zeros", req("chunk-zeros", 0, b"POST", b"Transfer-Encoding: chunked\r\n",
                           b"0005\r\nhello\r\n000\r\n\r\n"), req("chunk-zeros", 1))
    add("chunk-trailers", req("chunk-trailers", 0, b"POST", b"Transfer-Encoding: chunked\r\n",
                              b"2\r\nhi\r\n0\r\nX-T: 1\r\nX-Forwarded-For: 6.6.6.6\r\n"
                              b"Content-Length: 83\r\n\r\n"), req("chunk-trailers", 1))
    # Upgrades the config does not allow, and what follows them.
    add("h2c", req("h2c", 0, b"GET", b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
                                     b"HTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n"),
        req("h2c", 1))
    add("h2c-preface", req("h2c-preface", 0, b"GET", b"Connection: Upgrade\r\nUpgrade: h2c\r\n"),
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    add("upgrade-foo", req("upgrade-foo", 0, b"GET", b"Connection: upgrade\r\nUpgrade: foo\r\n"),
        req("upgrade-foo", 1))
    add("upgrade-no-conn", req("upgrade-no-conn", 0, b"GET", b"Upgrade: websocket\r\n"),
        req("upgrade-no-conn", 1))
    # Pipelining, early answers, big bodies.
    add("pipeline", *[req("pipeline", i, b"POST", b"Content-Length: 5\r\n", b"hello")
                      for i in range(4)], req("pipeline", 4, b"HEAD"), req("pipeline", 5))
    add("body-smuggle", req("body-smuggle", 0, b"POST", b"Content-Length: %d\r\n"
                            % (len(smuggled("body-smuggle")) * 30), b"SMUGGLED" * 30),
        req("body-smuggle", 1))
    add("chunked-smuggle", req("chunked-smuggle", 0, b"POST", b"Transfer-Encoding: chunked\r\n",
                               b"".join(b"%x\r\nSMUGGLED\r\n" % len(smuggled("chunked-smuggle"))
                                        for _ in range(20)) + b"0\r\n\r\n"),
        req("chunked-smuggle", 1))
    add("expect", req("expect", 0, b"POST", b"Expect: 100-continue\r\nContent-Length: 5\r\n",
                      b"hello"), req("expect", 1))
    # Hosts, targets, versions, forwarding fields.
    add("absolute", b"GET http://app.example/r/absolute%s/0 HTTP/1.1\r\nHost: other\r\n\r\n"
        % suffix.encode(),
        req("absolute", 1))
    add("two-hosts", req("two-hosts", 0, b"GET", b"Host: y\r\n"))
    add("bad-host", req("bad-host", 0, host=b"a/b@c"))
    add("http10", req("http10", 0, version=b"HTTP/1.0", host=None,
                      extra=b"Connection: keep-alive\r\n"), req("http10", 1))
    add("http09", b"GET /r/http09%s/0\r\n\r\n" % suffix.encode())
    add("http2-line", req("http2-line", 0, version=b"HTTP/2.0"))
    add("xff-spoof", req("xff-spoof", 0, b"GET", b"X-Forwarded-For: 6.6.6.6\r\n"
                                                  b"Forwarded: for=6.6.6.6\r\n"
                                                  b"X-Forwarded-Host: evil\r\n"),
        req("xff-spoof", 1))
    add("conn-named", req("conn-named", 0, b"GET", b"Connection: X-Forwarded-For\r\n"),
        req("conn-named", 1))
    add("connect", b"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n")
    add("garbage", b"\x16\x03\x01\x00\x05hello")
    for i, (name, stream) in enumerate(c):
        c[i] = (name, stream + req(name, 99, b"GET", b"Connection: close\r\n"))
    _suffix[0] = ""
    return c


# ---- backend behaviours ---------------------------------------------------------------------

def answer(conn, r, status=200, body=b"ok", extra=b""):
    """A correct response (no body for HEAD) naming the request it answers."""
    conn.send(b"HTTP/1.1 %d X\r\nX-Answer: %s\r\nContent-Length: %d\r\n%s\r\n%s"
              % (status, r.target.encode("latin-1"), len(body), extra,
                 b"" if r.method == "HEAD" else body))


def serve(conn, handle):
    """Runs `handle(conn, request)` for each request; it answers and says whether to go on."""
    while True:
        r = conn.read_head(timeout=5)
        if not handle(conn, r):
            return
        if r.wants_close():
            return


def b_normal(conn):
    def h(conn, r):
        conn.read_body(r)
        answer(conn, r)
        return True
    serve(conn, h)


def b_early_close(conn):
    def h(conn, r):
        if r.method == "POST":  # Cowboy: answers a body it will not read, then closes
            answer(conn, r, 413, b"", b"connection: close\r\n")
            conn.close()
            return False
        conn.read_body(r)
        answer(conn, r)
        return True
    serve(conn, h)


def b_early_close_quiet(conn):
    def h(conn, r):
        if r.method == "POST":  # the same without saying so
            answer(conn, r, 401, b"")
            conn.close()
            return False
        conn.read_body(r)
        answer(conn, r)
        return True
    serve(conn, h)


def b_early_then_read(conn):
    def h(conn, r):
        answer(conn, r)
        conn.read_body(r)
        return True
    serve(conn, h)


def b_interim(conn):
    def h(conn, r):
        conn.send(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n")
        conn.read_body(r)
        answer(conn, r)
        return True
    serve(conn, h)


def b_bodiless_lies(conn):
    n = [0]

    def h(conn, r):
        conn.read_body(r)
        n[0] += 1
        t = r.target.encode("latin-1")
        if n[0] % 2:
            conn.send(b"HTTP/1.1 204 No Content\r\nX-Answer: %s\r\nContent-Length: 49\r\n\r\n"
                      % t + b"HTTP/1.1 200 OK\r\nX-Answer: forged\r\nContent-Length: 0\r\n\r\n")
        else:
            conn.send(b"HTTP/1.1 304 Not Modified\r\nX-Answer: %s\r\ncontent-length: 1234\r\n\r\n"
                      % t)
        return True
    serve(conn, h)


def b_extra_bytes(conn):
    """A second response right behind the first, in the same segment. (One sent later cannot
    be told from the answer to the next request on a reused connection, by any proxy; stapler
    closes an idle connection that receives anything, and looks before reusing one.)"""
    def h(conn, r):
        conn.read_body(r)
        body = b"" if r.method == "HEAD" else b"ok"
        conn.send(b"HTTP/1.1 200 X\r\nX-Answer: %s\r\nContent-Length: 2\r\n\r\n%s"
                  % (r.target.encode("latin-1"), body) +
                  b"HTTP/1.1 200 OK\r\nX-Answer: forged\r\nContent-Length: 0\r\n\r\n")
        return True
    serve(conn, h)


def b_close_mid_body(conn):
    def h(conn, r):
        conn.read_body(r)
        conn.send(b"HTTP/1.1 200 OK\r\nX-Answer: %s\r\nContent-Length: 100\r\n\r\npartial"
                  % r.target.encode("latin-1"))
        conn.close()
        return False
    serve(conn, h)


def b_idle_close_race(conn):
    def h(conn, r):
        if conn.requests_seen >= 2:  # a kept-alive connection closing as a request arrives
            conn.close()
            return False
        conn.read_body(r)
        answer(conn, r)
        return True
    serve(conn, h)


def b_accept_upgrade(conn):
    def h(conn, r):
        conn.read_body(r)
        up = r.header("upgrade")
        if up:
            conn.send(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n"
                      % up.encode())
            conn.upgraded = True
            conn.drain(timeout=1)
            return False
        answer(conn, r)
        return True
    serve(conn, h)


def b_chunked_trailers(conn):
    def h(conn, r):
        conn.read_body(r)
        conn.send(b"HTTP/1.1 200 OK\r\nX-Answer: %s\r\nTransfer-Encoding: chunked\r\n\r\n"
                  % r.target.encode("latin-1"))
        if r.method != "HEAD":
            conn.send(b"2\r\nok\r\n0\r\nX-Sum: 1\r\n\r\n")
        return True
    serve(conn, h)


BEHAVIOURS = [("normal", b_normal), ("early_close", b_early_close),
              ("early_close_quiet", b_early_close_quiet), ("early_then_read", b_early_then_read),
              ("interim", b_interim), ("bodiless_lies", b_bodiless_lies),
              ("extra_bytes", b_extra_bytes), ("close_mid_body", b_close_mid_body),
              ("idle_close_race", b_idle_close_race), ("accept_upgrade", b_accept_upgrade),
              ("chunked_trailers", b_chunked_trailers)]


# ---- the judges -----------------------------------------------------------------------------

def backend_requests(stream):
    """Parses what one backend connection received with h11 (server role). Returns the list of
    (method, target, headers) and an error string or None. A request cut off by the end of the
    stream still counts (the backend saw its head); after an upgrade request the rest is the
    new protocol."""
    out, data = [], stream
    while data:
        c = h11.Connection(h11.SERVER)
        c.receive_data(data)
        current = None
        while True:
            try:
                ev = c.next_event()
            except h11.RemoteProtocolError as e:
                return out, "h11 refused what the backend received: %s" % e
            if isinstance(ev, h11.Request):
                current = (ev.method.decode(), ev.target.decode("latin-1"),
                           [(k.decode().lower(), v.decode("latin-1")) for k, v in ev.headers])
                out.append(current)
            elif ev is h11.NEED_DATA:
                return out, None
            elif isinstance(ev, h11.EndOfMessage):
                data = c.trailing_data[0]
                if current and any(k == "upgrade" for k, _ in current[2]):
                    return out, None  # what follows belongs to the upgraded protocol
                break
            elif ev is h11.PAUSED:
                return out, None
    return out, None


def client_responses(stream, methods):
    """Parses what the client received with h11 (client role). Returns [(status, x_answer)] of
    the final responses and an error string or None."""
    out = []
    if not stream:  # nothing, or a reset that destroyed what was sent: no response seen
        return out, None
    c = h11.Connection(h11.CLIENT)
    c.receive_data(stream)
    c.receive_data(b"")
    in_body = False
    for method in methods:
        try:
            c.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
            c.send(h11.EndOfMessage())
        except h11.LocalProtocolError:
            break
        while True:
            try:
                ev = c.next_event()
            except h11.RemoteProtocolError as e:
                if in_body:  # a response cut short: the client sees the truncation
                    return out, None
                return out, "h11 refused what the client received: %s" % e
            if isinstance(ev, h11.Response):
                xa = dict((k.decode().lower(), v.decode("latin-1")) for k, v in ev.headers)
                out.append((ev.status_code, xa.get("x-answer")))
                in_body = True
            elif isinstance(ev, h11.InformationalResponse):
                if ev.status_code == 101:
                    out.append((101, None))
                    return out, None
            elif isinstance(ev, h11.EndOfMessage):
                in_body = False
                break
            elif ev is h11.NEED_DATA or isinstance(ev, h11.ConnectionClosed) or ev is h11.PAUSED:
                return out, None
        if c.our_state is h11.MUST_CLOSE or c.their_state is h11.MUST_CLOSE:
            return out, None
        try:
            c.start_next_cycle()
        except h11.LocalProtocolError:
            return out, None
    return out, None


ACCESS = re.compile(r'access client=(127\.\d+\.\d+\.\d+):\d+ .* method=(\S+) '
                    r'path=("(?:[^"\\]|\\.)*"|\S+) status=(\d+)(?: upstream=(\S+))?')


def access_lines(log):
    out = []
    for line in log.splitlines():
        m = ACCESS.search(line)
        if m:
            path = m.group(3)
            if path.startswith('"'):
                path = json.loads(path)
            out.append({"client": m.group(1), "method": m.group(2), "path": path,
                        "status": int(m.group(4)), "forwarded": m.group(5) != "-"})
            # (A log without upstream= comes from an older stapler: counted as forwarded.)
    return out


def methods_of(stream):
    """The method of each request the client sent (the client judge needs HEAD's place); the
    smuggled ones inside bodies are not requests and get no answer."""
    found = re.findall(rb"(GET|HEAD|POST|PUT|OPTIONS|DELETE|CONNECT|PRI) (\S+) HTTP/", stream)
    return [m.decode() for m, t in found if b"smuggled" not in t]


# ---- the suite --------------------------------------------------------------------------------

class DesyncCase(StaplerCase):
    @staticmethod
    def deliveries(stream):
        """Whole, split at random points, one byte per TLS record for short streams, and for
        streams with bodies split with pauses, so a backend can answer (and close) before the
        rest of a body arrives."""
        kinds = ["whole", "split"]
        if len(stream) <= (250 if SANITIZED else 450):
            kinds.append("bytewise")
        if b"POST" in stream:
            kinds.append("paced")
        return kinds

    @staticmethod
    def pieces(stream, how, rng):
        if how == "whole":
            return [stream]
        if how == "bytewise":
            return [stream[i:i + 1] for i in range(len(stream))]
        if how == "paced":  # after the first head, then in three more pieces
            first = stream.find(b"\r\n\r\n") + 4
            rest = len(stream) - first
            cuts = [first] + [first + rest * k // 4 for k in (1, 2, 3)]
            return [stream[a:b] for a, b in zip([0] + cuts, cuts + [len(stream)])]
        cuts = sorted(rng.sample(range(1, len(stream)), min(6, len(stream) - 1)))
        return [stream[a:b] for a, b in zip([0] + cuts, cuts + [len(stream)])]

    def pairs(self, rng):
        """Every corpus stream in every delivery, each pair with request ids of its own."""
        cases = corpus()
        for n, (case, stream) in enumerate(cases):
            for k, how in enumerate(self.deliveries(stream)):
                suffix = ".%d%s" % (n, how[0])
                mine = corpus(suffix)[n][1]
                yield "%s (%s)" % (case, how), case + suffix, mine, self.pieces(mine, how, rng)

    def talk(self, port, pieces, n, paced=False):
        """Sends `pieces` (one TLS record or more each) from a loopback address of the pair's
        own, so its log lines and X-Forwarded-For are its own; reads until the close."""
        source = "127.1.%d.%d" % (n // 250, n % 250 + 1)
        raw = socket.socket()
        raw.bind((source, 0))
        raw.settimeout(5)
        raw.connect(("127.0.0.1", port))
        s = self.tls_context().wrap_socket(raw, server_hostname="localhost")
        got = b""
        try:
            for i, p in enumerate(pieces):
                if paced and i:
                    time.sleep(0.04)
                s.sendall(p)
            s.settimeout(4)
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
        except (OSError, ssl.SSLError):
            pass
        finally:
            s.close()
        return source, got

    def check_backend(self, received, logged, client, allow_duplicates, problems, where):
        forwarded = [l["path"] for l in logged if l["forwarded"]]
        counts = {}
        for method, target, headers in received:
            xffs = [v for k, v in headers if k == "x-forwarded-for"]
            if xffs != [client]:
                problems.append("%s: %s %s reached the backend with X-Forwarded-For %r"
                                % (where, method, target, xffs))
            values = " ".join(v for k, v in headers)
            if "6.6.6.6" in values or any(k in ("x-forwarded-host", "forwarded")
                                          for k, _ in headers):
                problems.append("%s: a client's forwarding field reached the backend" % where)
            if target not in forwarded:
                problems.append("%s: the backend got %s %s, which stapler never logged as "
                                "forwarded (logged: %s)" % (where, method, target, forwarded))
            counts[target] = counts.get(target, 0) + 1
        for target, n in counts.items():
            if n > forwarded.count(target) and not allow_duplicates:
                problems.append("%s: %s reached the backend %d times" % (where, target, n))
        got = [t for _, t, _ in received]
        # Written but never read is possible only when the backend went away: stapler then
        # answered 502 itself.
        missing = [l["path"] for l in logged
                   if l["forwarded"] and l["path"] not in got and l["status"] != 502]
        if missing:
            problems.append("%s: logged as forwarded but never received: %s" % (where, missing))

    def check_client(self, got, logged, stream, problems, where):
        responses, err = client_responses(got, methods_of(stream) + ["GET"] * 8)
        if err:
            problems.append("%s: %s: %r" % (where, err, got[:300]))
        if len(responses) > len(logged):
            problems.append("%s: %d responses for %d logged exchanges: %r"
                            % (where, len(responses), len(logged), responses))
        for (status, xa), l in zip(responses, logged):
            if status != l["status"]:
                problems.append("%s: the client got %d where the log says %d for %s"
                                % (where, status, l["status"], l["path"]))
            if xa is not None and xa != l["path"]:
                problems.append("%s: the answer to %s came for %s" % (where, xa, l["path"]))

    def judge_all(self, talks, logs, received, allow_duplicates, problems, label):
        for where, tag, stream, client, got in talks:
            where = "%s x %s" % (where, label)
            logged = [l for l in logs if l["client"] == client]
            mine = [r for r in received if r[1].startswith("/r/%s/" % tag)]
            self.check_backend(mine, logged, client, allow_duplicates, problems, where)
            self.check_client(got, logged, stream, problems, where)
        tags = {t[1] for t in talks}
        for method, target, headers in received:
            parts = target.split("/")
            if len(parts) < 4 or parts[1] != "r" or parts[2] not in tags:
                problems.append("%s: the backend got %s %s, which no pair sent"
                                % (label, method, target))


class ScriptedDesyncTest(DesyncCase):
    def test_scripted_backends(self):
        problems, pairs = [], 0
        for bname, behaviour in BEHAVIOURS:
            backend = ScriptedBackend(behaviour)
            self.addCleanup(backend.stop)
            p = self.proxy(backend=backend, name="stapler-" + bname,
                           extra="timeouts: { request_header: 2s, idle: 3s }\n")
            talks = []
            for n, (where, tag, stream, pieces) in enumerate(self.pairs(random.Random(SEED))):
                client, got = self.talk(p.port, pieces, n, "(paced)" in where)
                talks.append((where, tag, stream, client, got))
            pairs += len(talks)
            time.sleep(0.3)  # the log writer's last batch
            backend.wait_idle(2)
            received = []
            for i, conn in enumerate(list(backend.conns)):
                reqs, err = backend_requests(bytes(conn.received))
                if err and not getattr(conn, "upgraded", False):
                    problems.append("%s: backend connection %d: %s: %r"
                                    % (bname, i, err, bytes(conn.received)[-300:]))
                received += reqs
            self.judge_all(talks, access_lines(p.log()), received,
                           bname == "idle_close_race", problems, bname)
            self.assertEqual(backend.errors, [])
            self.assertTrue(p.alive(), p.log()[-2000:])
        self.assertGreater(pairs, 500)
        if problems and os.environ.get("STAPLER_KEEP_LOGS"):
            with open(os.path.join(self.tmp, "problems.txt"), "w") as f:
                f.write("\n".join(problems))
        self.assertEqual(problems, [], "\n".join(problems[:40]))


class NodeDesyncTest(DesyncCase):
    """The same corpus against Node's http server, which records what its own parser got."""

    def test_real_backend(self):
        log_path = os.path.join(self.tmp, "node-requests.log")
        port = free_port()
        env = dict(os.environ, KEEPALIVE_MS="5000", REQUEST_LOG=log_path)
        node = self.start([NODE, os.path.join(HERE, "backend.js"), str(port)], "backend", env)
        wait_until(lambda: "ready" in node.log(), what="backend")
        node.port = port
        p = self.proxy(backend=node, extra="timeouts: { request_header: 2s, idle: 3s }\n")
        talks = []
        for n, (where, tag, stream, pieces) in enumerate(self.pairs(random.Random(SEED))):
            client, got = self.talk(p.port, pieces, n, "(paced)" in where)
            talks.append((where, tag, stream, client, got))
        time.sleep(0.3)
        with open(log_path) as f:
            received = [(r["method"], r["url"], [("x-forwarded-for", v) for v in r["xff"]])
                        for r in map(json.loads, f)]
        problems = []
        self.judge_all(talks, access_lines(p.log()), received, False, problems, "node")
        self.assertGreater(len(talks), 50)
        if problems and os.environ.get("STAPLER_KEEP_LOGS"):
            with open(os.path.join(self.tmp, "problems.txt"), "w") as f:
                f.write("\n".join(problems))
        self.assertEqual(problems, [], "\n".join(problems[:40]))
