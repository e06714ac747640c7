"""Interop peer for warren's WebSocket server, run by TestInteropPython:

    python3 python_client.py ws://127.0.0.1:PORT/ws

It uses the `websockets` package (Debian python3-websockets) for echo,
ping/pong, a large compressed message and both close handshakes, and prints
one line per check; the Go test compares them.
"""
import asyncio
import sys

import websockets


async def main(url):
    async with websockets.connect(url, subprotocols=["v1.warren"], max_size=2**22) as ws:
        deflate = any(getattr(e, "name", "") == "permessage-deflate" for e in ws.extensions)
        print("open protocol=%s deflate=%s" % (ws.subprotocol, deflate))
        await ws.send("hello")
        print("text", await ws.recv() == "hello")
        await ws.send(b"\x00\x01\x02\xff")
        print("binary", await ws.recv() == b"\x00\x01\x02\xff")
        big = "warren " * 60000
        await ws.send(big)
        print("large", await ws.recv() == big)
        waiter = await ws.ping(b"are you there")
        await asyncio.wait_for(waiter, 5)
        print("pong ok")
        await ws.send("close-me")
        try:
            await ws.recv()
            print("server close missing")
        except websockets.ConnectionClosed as e:
            print("server close", e.code, e.reason)
    ws = await websockets.connect(url)
    await ws.close(1000, "bye")
    print("client close", ws.close_code, ws.close_reason)


asyncio.run(asyncio.wait_for(main(sys.argv[1]), 10))
