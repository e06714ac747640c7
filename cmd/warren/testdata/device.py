"""A warren device on Python's websockets library, for the serve tests.

    python3 device.py WS_URL TELEMETRY_FRAME [ACK_DELAY_SECONDS]

It connects to WS_URL (the token in ?token=), sends TELEMETRY_FRAME as one
text frame, and acks every command with
{"done": <name>, "payload": <payload>}, ACK_DELAY_SECONDS (default 0)
after it came; a command named "never" it never acks. After acking a
command named "bye" it closes the connection (1000). It prints one JSON line per event:
{"event": "open"}, {"event": "frame", "frame": ...} for every frame it gets,
and {"event": "close", "code": ..., "reason": ...} at the end. It gives up
after 30 s.
"""

import asyncio
import json
import sys

import websockets


def emit(**event):
    print(json.dumps(event), flush=True)


async def device(url, telemetry, delay):
    async with websockets.connect(url, open_timeout=10) as ws:
        emit(event="open")
        await ws.send(telemetry)
        try:
            async for message in ws:
                frame = json.loads(message)
                emit(event="frame", frame=frame)
                if frame.get("type") != "command" or frame["name"] == "never":
                    continue
                if delay > 0:
                    await asyncio.sleep(delay)
                ack = {"type": "ack", "id": frame["id"], "status": "ok",
                       "result": {"done": frame["name"], "payload": frame.get("payload")}}
                await ws.send(json.dumps(ack))
                if frame["name"] == "bye":
                    await ws.close(1000, "bye")
        except websockets.ConnectionClosed:
            pass
        emit(event="close", code=ws.close_code, reason=ws.close_reason)


delay = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
asyncio.run(asyncio.wait_for(device(sys.argv[1], sys.argv[2], delay), 30))
