#!/usr/bin/python3
"""A WebSocket echo server on Debian's python3-websockets, for the tunnel tests.
usage: ws_echo.py PORT   (prints "ready"). Sending "headers?" returns the request headers."""
import asyncio
import json
import sys

import websockets


async def echo(ws, path=None):
    async for message in ws:
        if message == "headers?":
            await ws.send(json.dumps(dict(ws.request_headers.raw_items())))
        else:
            await ws.send(message)


async def main(port):
    async with websockets.serve(echo, "127.0.0.1", port, max_size=None):
        print("ready", flush=True)
        await asyncio.Future()


asyncio.run(main(int(sys.argv[1])))
