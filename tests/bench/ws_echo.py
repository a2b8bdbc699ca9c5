#!/usr/bin/python3
"""WebSocket echo backend and load client for bench.py (standard library only).

  ws_echo.py server --port PORT
      Plain-TCP WebSocket (RFC 6455) echo server on 127.0.0.1:PORT: answers any GET that asks
      for an upgrade with 101, then sends back every data frame unmasked, as one frame with the
      same opcode and payload. A close frame is answered with a close frame, then the
      connection is closed. One thread, asyncio.

  ws_echo.py client --port PORT --conns C --size S --duration D [--path /ws]
      Opens C TLS connections to 127.0.0.1:PORT (SNI localhost), upgrades each with a GET PATH
      and checks the 101 and its Sec-WebSocket-Accept; prints "ready" and waits for a line on
      stdin. Then each connection sends one masked binary message of S bytes, waits for its
      echo (checked byte for byte), sends the next, for D seconds (ping-pong: one message in
      flight per connection). Prints one JSON line: {"ok": echoes received, "errors": ...}.
      Connections are closed after the JSON line is printed, so the caller can take its
      measurement before the teardown.
"""

import argparse
import asyncio
import base64
import hashlib
import json
import os
import selectors
import socket
import ssl
import sys
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_key(key):
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def frame(opcode, payload, mask=None):
    n = len(payload)
    head = bytes([0x80 | opcode])
    mbit = 0x80 if mask is not None else 0
    if n < 126:
        head += bytes([mbit | n])
    elif n < 65536:
        head += bytes([mbit | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([mbit | 127]) + n.to_bytes(8, "big")
    if mask is None:
        return head + payload
    return head + mask + xor_mask(payload, mask)


def xor_mask(data, mask):
    if not data:
        return b""
    reps = (len(data) + 3) // 4
    m = int.from_bytes((mask * reps)[:len(data)], "big")
    return (int.from_bytes(data, "big") ^ m).to_bytes(len(data), "big")


def parse_frame(buf):
    """(fin_opcode, payload, consumed) for one complete frame at buf's start, or None."""
    if len(buf) < 2:
        return None
    b0, b1 = buf[0], buf[1]
    n = b1 & 0x7F
    pos = 2
    if n == 126:
        if len(buf) < 4:
            return None
        n = int.from_bytes(buf[2:4], "big")
        pos = 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n = int.from_bytes(buf[2:10], "big")
        pos = 10
    mask = None
    if b1 & 0x80:
        if len(buf) < pos + 4:
            return None
        mask = bytes(buf[pos:pos + 4])
        pos += 4
    if len(buf) < pos + n:
        return None
    payload = bytes(buf[pos:pos + n])
    if mask is not None:
        payload = xor_mask(payload, mask)
    return b0, payload, pos + n


# --------------------------------------------------------------------------- server

class EchoProtocol(asyncio.Protocol):
    def connection_made(self, transport):
        self.t = transport
        self.buf = bytearray()
        self.upgraded = False

    def data_received(self, data):
        self.buf += data
        if not self.upgraded:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > 65536:
                    self.t.close()
                return
            head = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
            del self.buf[:end + 4]
            fields = {}
            for line in head[1:]:
                k, _, v = line.partition(":")
                fields[k.strip().lower()] = v.strip()
            key = fields.get("sec-websocket-key", "").encode()
            if not head[0].startswith("GET ") or "websocket" not in \
                    fields.get("upgrade", "").lower() or not key:
                self.t.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                             b"Connection: close\r\n\r\n")
                self.t.close()
                return
            self.t.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                         + accept_key(key) + b"\r\n\r\n")
            self.upgraded = True
        out = []
        while True:
            f = parse_frame(self.buf)
            if f is None:
                break
            b0, payload, used = f
            del self.buf[:used]
            opcode = b0 & 0x0F
            if opcode == 0x8:
                out.append(frame(0x8, payload[:2]))
                self.t.write(b"".join(out))
                self.t.close()
                return
            if opcode == 0x9:                       # ping -> pong
                out.append(frame(0xA, payload))
            elif opcode != 0xA:
                out.append(bytes([b0]) + frame(0, payload)[1:])
        if out:
            self.t.write(b"".join(out))


def server_main(a):
    async def run():
        loop = asyncio.get_running_loop()
        srv = await loop.create_server(EchoProtocol, "127.0.0.1", a.port, backlog=4096,
                                       reuse_address=True)
        async with srv:
            await srv.serve_forever()
    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    return 0


# --------------------------------------------------------------------------- client

class Conn:
    def __init__(self, s, size):
        self.s = s
        self.inbuf = bytearray()
        self.out = b""
        self.payload = b""
        self.size = size

    def next_message(self):
        self.payload = os.urandom(self.size)
        self.out = frame(0x2, self.payload, mask=os.urandom(4))


def upgrade(port, path, timeout):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s = ctx.wrap_socket(s, server_hostname="localhost")
    key = base64.b64encode(os.urandom(16))
    s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: localhost\r\n"
              b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
              b"Sec-WebSocket-Key: " + key + b"\r\n\r\n")
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(4096)
        if not d:
            raise OSError(f"connection closed during the upgrade: {buf[:200]!r}")
        buf += d
        if len(buf) > 65536:
            raise OSError("upgrade response too long")
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if not lines[0].startswith("HTTP/1.1 101"):
        raise OSError(f"upgrade answered {lines[0]!r}")
    want = accept_key(key).decode()
    got = [ln.split(":", 1)[1].strip() for ln in lines[1:]
           if ln.lower().startswith("sec-websocket-accept:")]
    if got != [want]:
        raise OSError(f"Sec-WebSocket-Accept {got} != {want}")
    if rest:
        raise OSError("data after the 101 before any message was sent")
    return s


def client_main(a):
    conns = []
    try:
        for _ in range(a.conns):
            conns.append(Conn(upgrade(a.port, a.path, 10), a.size))
    except (OSError, ssl.SSLError) as e:
        print(json.dumps({"ok": 0, "errors": 1, "last_error": f"setup: {e}"}), flush=True)
        return 1
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 1
    sel = selectors.DefaultSelector()
    for c in conns:
        c.s.setblocking(False)
        c.next_message()
        sel.register(c.s, selectors.EVENT_READ | selectors.EVENT_WRITE, c)
    ok = errors = 0
    last_err = ""
    t0 = time.monotonic()
    deadline = t0 + a.duration
    while time.monotonic() < deadline and sel.get_map():
        for key, ev in sel.select(timeout=0.5):
            c = key.data
            try:
                if c.out:
                    try:
                        n = c.s.send(c.out)
                        c.out = c.out[n:]
                    except (ssl.SSLWantWriteError, BlockingIOError):
                        pass
                    if not c.out:
                        sel.modify(c.s, selectors.EVENT_READ, c)
                    continue
                while True:
                    try:
                        d = c.s.recv(65536)
                    except (ssl.SSLWantReadError, BlockingIOError):
                        break
                    if not d:
                        raise OSError("connection closed by the proxy")
                    c.inbuf += d
                f = parse_frame(c.inbuf)
                if f is None:
                    continue
                b0, payload, used = f
                del c.inbuf[:used]
                if b0 != 0x82 or payload != c.payload or c.inbuf:
                    raise OSError(f"bad echo: first byte {b0:#x}, {len(payload)} bytes")
                ok += 1
                c.next_message()
                try:
                    n = c.s.send(c.out)
                    c.out = c.out[n:]
                except (ssl.SSLWantWriteError, BlockingIOError):
                    pass
                if c.out:
                    sel.modify(c.s, selectors.EVENT_READ | selectors.EVENT_WRITE, c)
            except (OSError, ssl.SSLError) as e:
                errors += 1
                last_err = str(e)
                sel.unregister(c.s)
    wall = time.monotonic() - t0
    print(json.dumps({"ok": ok, "errors": errors, "last_error": last_err, "wall_s": wall,
                      "conns_left": len(sel.get_map())}), flush=True)
    for c in conns:
        try:
            c.s.close()
        except OSError:
            pass
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("server")
    s.add_argument("--port", type=int, required=True)
    c = sub.add_parser("client")
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--conns", type=int, default=16)
    c.add_argument("--size", type=int, default=128)
    c.add_argument("--duration", type=float, required=True)
    c.add_argument("--path", default="/ws")
    a = ap.parse_args()
    return server_main(a) if a.mode == "server" else client_main(a)


if __name__ == "__main__":
    sys.exit(main())
