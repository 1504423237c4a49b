"""The Redis backend against the in-memory one, side by side on the same machine.

* ``throughput`` - one ``/ws/publish`` connection, pipelined (256 in flight), N lifecycle
  events: acknowledged events/s on a memory server, and on a server whose backend is Redis
  without persistence and with ``appendonly yes`` + ``appendfsync always``.
* ``latency`` - a publisher paced at 500 events/s and a subscriber: publish -> receive, p50 and
  p99, on one memory server, and across a two-server Redis fleet (publish on B, receive on A).

Usage::

    python benchmarks/redis_publish.py            # about 1 minute on 2 cores
    python benchmarks/redis_publish.py --events 2000 --rounds 2

Needs ``redis-server`` on PATH. Rounds alternate the variants so that load from other processes
hits them alike; compare the ratios of one run, not absolute numbers across machines.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import websockets

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.live_server import LiveServer  # noqa: E402
from tests.redis.fleet import lifecycle_event  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402

QUIET = ["--metrics-interval", "0", "--stall-timeout", "0"]


async def throughput(url: str, n: int, window: int = 256) -> float:
    """Acknowledged events per second through one pipelined publisher connection."""
    async with websockets.connect(url) as ws:
        started = time.perf_counter()
        acked = 0

        async def read() -> None:
            nonlocal acked
            while acked < n:
                await ws.recv()
                acked += 1

        reader = asyncio.get_running_loop().create_task(read())
        for i in range(n):
            while i - acked >= window:
                await asyncio.sleep(0)
            await ws.send(json.dumps(lifecycle_event(i, event_id=f"t{time.time_ns()}-{i}")))
        await reader
        return n / (time.perf_counter() - started)


async def latency(publish_url: str, subscribe_url: str, n: int,
                  rate: float = 500.0) -> tuple[float, float]:
    """Publish -> receive milliseconds (p50, p99) at a paced rate."""
    sent: dict[str, float] = {}
    delays: list[float] = []
    async with websockets.connect(subscribe_url, max_size=None) as sub, \
            websockets.connect(publish_url) as pub:
        await sub.recv()  # snapshot

        async def receive() -> None:
            while len(delays) < n:
                message = json.loads(await sub.recv())
                key = message.get("event_id")
                if key in sent:
                    delays.append((time.perf_counter() - sent[key]) * 1000)

        async def drain_acks() -> None:
            for _ in range(n):
                await pub.recv()

        tasks = [asyncio.get_running_loop().create_task(c) for c in (receive(), drain_acks())]
        for i in range(n):
            key = f"l{time.time_ns()}-{i}"
            sent[key] = time.perf_counter()
            await pub.send(json.dumps(lifecycle_event(i, event_id=key)))
            await asyncio.sleep(1 / rate)
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
    delays.sort()
    return statistics.median(delays), delays[int(len(delays) * 0.99) - 1]


@contextlib.contextmanager
def servers(tmp: Path) -> Iterator[dict[str, LiveServer]]:
    with RedisServer(tmp / "plain") as plain, RedisServer(tmp / "aof", appendonly=True) as aof:
        made = {
            "memory": LiveServer(tmp / "m", extra_args=QUIET),
            "redis": LiveServer(tmp / "r", extra_args=[*QUIET, "--backend", plain.url]),
            "redis-aof": LiveServer(tmp / "ra", extra_args=[*QUIET, "--backend", aof.url]),
            "redis-b": LiveServer(tmp / "rb", extra_args=[*QUIET, "--backend", plain.url]),
        }
        for server in made.values():
            server.start()
        try:
            yield made
        finally:
            for server in made.values():
                server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, servers(Path(tmp)) as s:
        rates: dict[str, list[float]] = {"memory": [], "redis": [], "redis-aof": []}
        for _ in range(args.rounds):
            for name in rates:
                rates[name].append(asyncio.run(throughput(s[name].publish_url, args.events)))
        base = statistics.median(rates["memory"])
        print(f"throughput, one pipelined publisher, {args.events} events x {args.rounds}:")
        for name, values in rates.items():
            rate = statistics.median(values)
            print(f"  {name:10s} {rate:9.0f} events/s   ratio to memory {rate / base:.2f}")
        n = max(500, args.events // 4)
        local = asyncio.run(latency(s["memory"].publish_url, s["memory"].ws_url, n))
        fleet = asyncio.run(latency(s["redis-b"].publish_url, s["redis"].ws_url, n))
        print(f"latency publish -> receive, 500 events/s, {n} events:")
        print(f"  memory, same server      p50 {local[0]:6.2f} ms   p99 {local[1]:6.2f} ms")
        print(f"  redis, publish B -> sub A p50 {fleet[0]:6.2f} ms   p99 {fleet[1]:6.2f} ms")


if __name__ == "__main__":
    main()
