"""A raw-socket HTTP/1.1 backend whose every move is scripted, for the faults real servers make
only under conditions a test cannot arrange on demand (answering before the body, closing an idle
connection just as a request arrives, bodies after a 204, two responses for one request). It
speaks real HTTP over real loopback sockets and records every byte each connection received, so
an independent parser (h11) can judge what reached the backend.

A behaviour is a function `behaviour(conn)` run in its own thread for each accepted connection;
`Conn` has the helpers a behaviour needs. Each response a behaviour sends names the request it
answers in an `X-Answer` header (its target), so a client can check responses arrive in order.
"""
import socket
import threading
import time


class Closed(Exception):
    """The peer closed (or reset) before what we waited for arrived."""


class Request:
    def __init__(self, method, target, version, headers, raw_head):
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers  # list of (lowercased name, value), both str
        self.raw_head = raw_head

    def header(self, name):
        values = [v for k, v in self.headers if k == name]
        return values[0] if values else None

    def wants_close(self):
        conn = (self.header("connection") or "").lower()
        return "close" in conn or self.version == "HTTP/1.0"


class Conn:
    def __init__(self, backend, sock, index):
        self.backend = backend
        self.sock = sock
        self.index = index
        self.received = bytearray()  # every byte read from this connection, in order
        self.buf = b""  # read and not yet consumed by the behaviour
        self.closed = False
        self.requests_seen = 0

    # ---- reading ----------------------------------------------------------------------------
    def _recv(self, timeout):
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return None
        except OSError:
            data = b""
        if not data:
            raise Closed()
        self.received += data
        return data

    def read_head(self, timeout=10.0):
        """Reads up to the end of a request head. Returns a Request, or raises Closed."""
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Closed()
            data = self._recv(left)
            if data:
                self.buf += data
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        method, target, version = (parts + ["", "", ""])[:3]
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.append((name.strip().lower(), value.strip()))
        self.requests_seen += 1
        return Request(method, target, version, headers, head + b"\r\n\r\n")

    def read_exactly(self, n, timeout=10.0):
        deadline = time.monotonic() + timeout
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Closed()
            data = self._recv(left)
            if data:
                self.buf += data
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_line(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while b"\r\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Closed()
            data = self._recv(left)
            if data:
                self.buf += data
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def read_body(self, req, timeout=10.0):
        """Reads the body `req`'s framing announces (Content-Length or chunked)."""
        te = (req.header("transfer-encoding") or "").lower()
        if te.endswith("chunked"):
            body = b""
            while True:
                size = int(self.read_line(timeout).split(b";")[0], 16)
                if size == 0:
                    while self.read_line(timeout) != b"":
                        pass
                    return body
                body += self.read_exactly(size, timeout)
                self.read_exactly(2, timeout)
        n = int(req.header("content-length") or "0")
        return self.read_exactly(n, timeout)

    def drain(self, timeout=5.0):
        """Reads (and records) until the peer closes or `timeout` passes without data."""
        try:
            while True:
                if self._recv(timeout) is None:
                    return
        except Closed:
            return

    # ---- writing ----------------------------------------------------------------------------
    def send(self, data):
        try:
            self.sock.sendall(data)
        except OSError:
            raise Closed()

    def respond(self, req, status=200, body=b"ok", headers=(), close=False):
        """A well-formed response naming the request it answers."""
        lines = ["HTTP/1.1 %d %s" % (status, "X"), "X-Answer: %s" % req.target,
                 "Content-Length: %d" % len(body)]
        lines += list(headers)
        if close:
            lines.append("Connection: close")
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    def close(self):
        if not self.closed:
            self.closed = True
            try:
                self.sock.close()
            except OSError:
                pass

    def shutdown_write(self):
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def serve_keepalive(conn):
    """A correct keep-alive server: reads each request and its body, answers, until close."""
    while True:
        req = conn.read_head(timeout=30)
        conn.read_body(req)
        conn.respond(req, close=req.wants_close())
        if req.wants_close():
            return


class ScriptedBackend:
    def __init__(self, behaviour):
        self.behaviour = behaviour
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.port = self.listener.getsockname()[1]
        self.conns = []
        self.lock = threading.Lock()
        self.errors = []
        self.threads = []
        self.stopping = False
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()

    def _accept(self):
        while not self.stopping:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                conn = Conn(self, sock, len(self.conns))
                self.conns.append(conn)
            t = threading.Thread(target=self._run, args=(conn,), daemon=True)
            t.start()
            with self.lock:
                self.threads.append(t)

    def _run(self, conn):
        try:
            self.behaviour(conn)
        except Closed:
            pass
        except Exception as e:  # a bug in the script: make the test see it
            self.errors.append(repr(e))
        finally:
            if not conn.closed:
                conn.drain(timeout=0.2)  # keep what is already in flight for the judge
            conn.close()

    def received(self):
        """Bytes received per connection, in accept order."""
        with self.lock:
            return [bytes(c.received) for c in self.conns]

    def wait_idle(self, timeout=10.0):
        """Waits until every connection's thread has finished."""
        deadline = time.monotonic() + timeout
        with self.lock:
            threads = list(self.threads)
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def stop(self):
        self.stopping = True
        try:
            self.listener.close()
        except OSError:
            pass
        with self.lock:
            for c in self.conns:
                c.close()
