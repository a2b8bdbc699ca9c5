"""Raw tunnels: WebSocket upgrades in HTTP mode and tcp mode, with real peers."""
import asyncio
import json
import os
import socket
import ssl

from harness import StaplerCase, HERE, free_port, wait_until

import websockets


class PeerCase(StaplerCase):
    def start_script(self, script):
        port = free_port()
        p = self.start(["/usr/bin/python3", os.path.join(HERE, script), str(port)], script)
        wait_until(lambda: "ready" in p.log() or not p.alive(), what=script)
        self.assertTrue(p.alive(), p.log())
        p.port = port
        return p


class WebSocketTest(PeerCase):
    def test_echo_through_upgrade(self):
        p = self.proxy(backend=self.start_script("ws_echo.py"))
        ctx = ssl.create_default_context(cafile=self.pki.root + ".pem")

        async def talk():
            uri = "wss://localhost:%d/socket/websocket?vsn=2.0.0" % p.port
            async with websockets.connect(uri, ssl=ctx, max_size=None) as ws:
                await ws.send("hello")
                self.assertEqual(await ws.recv(), "hello")
                big = os.urandom(3 * 1024 * 1024 + 5)
                await ws.send(big)
                self.assertEqual(await ws.recv(), big)
                for i in range(50):
                    await ws.send("m%d" % i)
                for i in range(50):
                    self.assertEqual(await ws.recv(), "m%d" % i)
                await ws.send("headers?")
                headers = json.loads(await ws.recv())
                self.assertEqual(headers.get("X-Forwarded-For"), "127.0.0.1")
                self.assertEqual(headers.get("X-Forwarded-Proto"), "https")
                pong = await ws.ping()
                await asyncio.wait_for(pong, 10)

        asyncio.run(talk())

    def test_refused_upgrade_stays_http(self):
        # The Node backend answers an upgrade request with a normal response.
        p = self.proxy()
        with self.tls_connect(p.port) as s:
            s.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
                      b"Upgrade: websocket\r\n\r\n")
            from harness import read_http_response
            status, _, _, rest = read_http_response(s)
            self.assertEqual(status, 200)
            s.sendall(b"GET /echo?again HTTP/1.1\r\nHost: x\r\n\r\n")
            status, _, body, _ = read_http_response(s, rest)
            self.assertEqual(status, 200)
            self.assertIn(b"again", body)


class TcpModeTest(PeerCase):
    def setUp(self):
        super().setUp()
        self.echo = self.start_script("tcp_echo.py")
        self.p = self.proxy(backend=self.echo, backend_extra="mode: tcp\n")

    def test_bytes_pass_both_ways(self):
        with self.tls_connect(self.p.port) as s:
            data = os.urandom(8 * 1024 * 1024)
            received = bytearray()
            s.setblocking(True)
            view = memoryview(data)
            sent = 0
            while sent < len(data) or len(received) < len(data):
                if sent < len(data):
                    sent += s.send(view[sent:sent + 65536])
                while len(received) < sent:
                    chunk = s.recv(65536)
                    self.assertTrue(chunk)
                    received += chunk
            self.assertEqual(bytes(received), data)

    def test_half_close_reaches_backend(self):
        s = self.tls_connect(self.p.port)
        s.sendall(b"last words")
        got = b""
        while len(got) < 10:
            got += s.recv(100)
        self.assertEqual(got, b"last words")
        # close_notify from us -> stapler half-closes the backend -> echo server closes ->
        # stapler sends close_notify back.
        s.settimeout(10)
        plain = s.unwrap()
        plain.close()

    def test_backend_down_closes_client(self):
        self.echo.stop()
        with self.tls_connect(self.p.port) as s:
            s.settimeout(10)
            try:
                self.assertEqual(s.recv(10), b"")
            except (ConnectionResetError, ssl.SSLError):
                pass
        self.wait_log(self.p, "cannot connect to backend")
