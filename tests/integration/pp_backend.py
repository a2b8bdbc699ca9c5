#!/usr/bin/python3
"""A TCP backend that expects a PROXY protocol header (v1 or v2), answers "HEADER <hex>\\n" with
the exact bytes it received, then echoes everything else. usage: pp_backend.py PORT"""
import socketserver
import sys

SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def header_length(data):
    """Length of the complete header at the start of data, or None if more is needed."""
    if data.startswith(SIG[:len(data)]) and len(data) < 16:
        return None
    if data.startswith(SIG):
        total = 16 + int.from_bytes(data[14:16], "big")
        return total if len(data) >= total else None
    end = data.find(b"\r\n")
    return end + 2 if end >= 0 else None


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        data = b""
        while True:
            n = header_length(data) if data else None
            if n is not None:
                break
            chunk = self.request.recv(4096)
            if not chunk:
                return
            data += chunk
        self.request.sendall(b"HEADER " + data[:n].hex().encode() + b"\n" + data[n:])
        while True:
            chunk = self.request.recv(65536)
            if not chunk:
                return
            self.request.sendall(chunk)


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


with Server(("127.0.0.1", int(sys.argv[1])), Handler) as server:
    print("ready", flush=True)
    server.serve_forever()
