"""Sends a message over the server's MaxMessageSize (-ws-max-message) on
fresh connections, after BACKLOG messages of 32 KiB that the server echoes
and the client does not read yet (so the server's Close frame waits behind
them), and prints, per connection, the close code and reason the client
got: "1009 <reason>" when the server's Close frame arrived, "1006" when the
connection was reset first (a server that closes its socket with input
unread makes the kernel send a reset, which discards what it had not sent
yet, and on some systems what the client had not read).

Usage: python_toobig.py ws://host:port/path SIZE RUNS BACKLOG
"""
import asyncio
import sys

import websockets


async def one(uri, size, backlog):
    # max_queue=1: the client stops reading while a message waits, so the
    # server's echoes back up behind its Close frame.
    async with websockets.connect(uri, max_size=None, max_queue=1, close_timeout=5) as ws:
        try:
            for _ in range(backlog):
                await ws.send(b"e" * 32768)
            await ws.send(b"x" * size)
            while True:
                await asyncio.wait_for(ws.recv(), 10)
        except websockets.exceptions.ConnectionClosed as e:
            if e.rcvd is None:
                return "1006"
            return "%d %s" % (e.rcvd.code, e.rcvd.reason)
        except asyncio.TimeoutError:
            return "no close"


async def main():
    uri, size, runs, backlog = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    for _ in range(runs):
        print(await one(uri, size, backlog), flush=True)


asyncio.run(main())
