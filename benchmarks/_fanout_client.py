"""Subscriber process for ``fanout.py``.

``python _fanout_client.py URL READERS STALLED EXPECT OUT``: opens READERS subscribers that read
everything and STALLED ones that never read (tiny receive buffers), prints ``ready``, waits for
a line on stdin (the publisher starts), and waits until every reader has EXPECT benchmark
messages (or nothing arrived for a while). Writes the publish→receive latencies (seconds, as
float64) to OUT and a JSON line of counts and closes to stdout, then stays connected until
another line arrives on stdin (so the server's CPU time excludes disconnects). Timestamps are
``time.monotonic()``, which is system-wide on Linux.
"""

from __future__ import annotations

import array
import asyncio
import json
import socket
import sys
import time
from urllib.parse import urlsplit

import msgspec
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

IDLE_TIMEOUT = 4.0
_decode = msgspec.json.Decoder().decode


def _sent_at(message: dict) -> float | None:
    activity = message.get("activity")
    if isinstance(activity, dict):
        meta = activity.get("metadata")
        if isinstance(meta, dict):
            return meta.get("t")
    return None


async def reader(url: str, expect: int, latencies: array.array, counts: list[int],
                 closes: list[int], last: list[float], done: list[int],
                 leave: asyncio.Event) -> None:
    async with connect(url, compression=None, max_size=None, ping_interval=None) as ws:
        counts.append(0)
        me = len(counts) - 1
        try:
            while counts[me] < expect:
                data = await ws.recv()
                now = time.monotonic()
                sent = _sent_at(_decode(data))
                if sent is not None:
                    latencies.append(now - sent)
                    counts[me] += 1
                    last[0] = now
        except ConnectionClosed as exc:
            closes.append(exc.rcvd.code if exc.rcvd else 1006)
        done.append(me)
        await leave.wait()  # stay connected until the driver has read the server's CPU time


async def stalled(url: str, port: int) -> object:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    return await connect(url, sock=sock, compression=None, max_queue=1, ping_interval=None)


async def main() -> None:
    url, readers, n_stalled, expect, out = (sys.argv[1], int(sys.argv[2]), int(sys.argv[3]),
                                            int(sys.argv[4]), sys.argv[5])
    port = urlsplit(url).port or 80
    latencies: array.array = array.array("d")
    counts: list[int] = []
    closes: list[int] = []
    last = [time.monotonic()]
    done: list[int] = []
    leave = asyncio.Event()
    stuck = [await stalled(url, port) for _ in range(n_stalled)]
    tasks = [asyncio.create_task(reader(url, expect, latencies, counts, closes, last, done,
                                        leave)) for _ in range(readers)]
    while len(counts) < readers:
        await asyncio.sleep(0.01)
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)  # the driver says the publisher starts
    last[0] = time.monotonic()
    while len(done) < readers:
        await asyncio.sleep(0.05)
        if time.monotonic() - last[0] > IDLE_TIMEOUT:
            break
    with open(out, "wb") as fh:
        latencies.tofile(fh)
    print(json.dumps({"received": sum(counts), "closes": closes, "last": last[0]}), flush=True)
    await asyncio.to_thread(sys.stdin.readline)  # the driver has sampled the server
    leave.set()
    for task in tasks:
        if len(done) < readers:
            task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for ws in stuck:
        ws.transport.abort()  # type: ignore[attr-defined]


if __name__ == "__main__":
    asyncio.run(main())
