"""Peer for TestLingerPythonTooBig: on each of RUNS fresh connections it
sends ECHOES messages of SIZE/8 bytes, which the server echoes, without
reading the echoes yet, then one message of SIZE bytes, over the server's
limit; then it reads everything and prints the echoes it got and the close
code and reason it saw:

    python3 python_toobig.py ws://127.0.0.1:PORT/ws RUNS SIZE ECHOES

max_queue=1 makes the peer stop reading its socket while its application
does not call recv, as a busy client does: the echoes then wait in the
server's socket, with the server's Close frame behind them. A server that
closes TCP then, while the big message is still arriving, makes the kernel
send a reset and drop what it has not sent yet, and the peer sees 1006
(abnormal closure) instead of the server's 1009.
"""
import asyncio
import sys

import websockets


async def one(url, size, echoes):
    ws = await websockets.connect(url, max_size=None, max_queue=1, read_limit=2**16, close_timeout=5)
    got = 0
    try:
        for _ in range(echoes):
            await ws.send(b"e" * (size // 8))
        try:
            await ws.send(b"x" * size)
        except websockets.ConnectionClosed:
            pass
        while True:
            await asyncio.wait_for(ws.recv(), 10)
            got += 1
    except websockets.ConnectionClosed as e:
        return "echoes %d close %d %s" % (got, e.code, e.reason)
    finally:
        await ws.close()


async def main(url, runs, size, echoes):
    for _ in range(runs):
        print(await one(url, size, echoes), flush=True)


asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])))
