#!/usr/bin/python3
"""An OCSP "responder" that misbehaves on purpose, over real HTTP, for the faults a real
responder does not produce. The first path segment picks the behaviour:
  /NAME/     serve the file given for NAME on the command line (/good/, /other/ ...), as
             application/pkix-cert (.crt), application/pkcs7-mime (.p7c) or
             application/ocsp-response (anything else)
  /interim/  "100 Continue" and "103 Early Hints" first, then the file given for "good"
  /octet/    the file given for "good", as application/octet-stream
  /500/      HTTP 500            /redirect/  HTTP 302
  /garbage/  bytes that are not HTTP, then close
  /notocsp/  HTTP 200 with a body that is not an OCSP response
  /slow/     headers, a few body bytes, then nothing for 30 s
  /huge/     a 10 MiB body
usage: ocsp_faults.py PORT name=FILE ...   (prints "ready")"""
import http.server
import socketserver
import sys
import time

FILES = dict(arg.split("=", 1) for arg in sys.argv[2:])


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def reply(self, status, body, ctype="application/ocsp-response"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def handle_any(self):
        sys.stdout.write("%s %s\n" % (self.command, self.path))
        sys.stdout.flush()
        if self.command == "POST":
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
        mode = self.path.strip("/").split("/")[0]
        if mode in FILES:
            path = FILES[mode]
            ctype = {"crt": "application/pkix-cert", "p7c": "application/pkcs7-mime"}.get(
                path.rsplit(".", 1)[-1], "application/ocsp-response")
            with open(path, "rb") as f:
                self.reply(200, f.read(), ctype)
        elif mode == "interim":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n"
                             b"HTTP/1.1 103 Early Hints\r\nLink: </x>; rel=preload\r\n\r\n")
            self.wfile.flush()
            with open(FILES["good"], "rb") as f:
                self.reply(200, f.read())
        elif mode == "octet":
            with open(FILES["good"], "rb") as f:
                self.reply(200, f.read(), "application/octet-stream")
        elif mode == "500":
            self.reply(500, b"internal error", "text/plain")
        elif mode == "redirect":
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.1:1/")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif mode == "garbage":
            self.wfile.write(b"\x00\x01 this is not HTTP \xff\xfe\r\n\r\n")
            self.close_connection = True
        elif mode == "notocsp":
            self.reply(200, b"<html>hello</html>", "text/html")
        elif mode == "slow":
            self.send_response(200)
            self.send_header("Content-Length", "2000")
            self.end_headers()
            self.wfile.write(b"0\x82\x07")
            self.wfile.flush()
            time.sleep(30)
        elif mode == "huge":
            self.send_response(200)
            self.send_header("Content-Length", str(10 * 1024 * 1024))
            self.end_headers()
            try:
                for _ in range(160):
                    self.wfile.write(b"\x30" * 65536)
            except OSError:
                pass
        else:
            self.reply(404, b"unknown mode", "text/plain")

    do_GET = handle_any
    do_POST = handle_any


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


with Server(("127.0.0.1", int(sys.argv[1])), Handler) as server:
    print("ready", flush=True)
    server.serve_forever()
