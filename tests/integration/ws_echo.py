#!/usr/bin/python3
"""A WebSocket echo server on Debian's python3-websockets, for the tunnel tests.
usage: ws_echo.py PORT   (prints "ready"). Sending "headers?" returns the request headers.
Plain HTTP GET /hello (no upgrade) is answered 200 "hello <X-Forwarded-For>"."""
import asyncio
import http
import json
import sys

import websockets


def plain_http(path, headers):
    if path.startswith("/hello"):
        body = ("hello %s\n" % headers.get("X-Forwarded-For", "-")).encode()
        return http.HTTPStatus.OK, [("Content-Type", "text/plain")], body
    return None  # go on with the WebSocket handshake


async def echo(ws, path=None):
    async for message in ws:
        if message == "headers?":
            await ws.send(json.dumps(dict(ws.request_headers.raw_items())))
        else:
            await ws.send(message)


async def main(port):
    async with websockets.serve(echo, "127.0.0.1", port, max_size=None,
                                process_request=plain_http):
        print("ready", flush=True)
        await asyncio.Future()


asyncio.run(main(int(sys.argv[1])))
