#!/usr/bin/python3
"""A plain TCP echo server for tcp mode: echoes until the peer half-closes, then closes.
usage: tcp_echo.py PORT   (prints "ready")."""
import socketserver
import sys


class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        while True:
            data = self.request.recv(65536)
            if not data:
                break
            self.request.sendall(data)


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


with Server(("127.0.0.1", int(sys.argv[1])), Echo) as server:
    print("ready", flush=True)
    server.serve_forever()
