"""Churn: hundreds of subscribers connect and leave in a loop while events flow.

Each round opens ``CONCURRENT`` real WebSocket subscribers at once; each reads its snapshot and
some live events, then leaves in one of several ways: a clean close, a ping then a close, an
abrupt abort (no close frame), or a stall (reads nothing for a while, then aborts). A publisher
keeps the broadcast busy meanwhile. Two equal phases (``ROUNDS`` rounds each, however long they
take) run back to back: after each, the server has no subscriber left, its file descriptors come
back to the idle count (``FD_TOLERANCE``), and
its memory after the second phase is what it was after the first (``RSS_TOLERANCE``; the first
phase may raise it once, ``WARMUP_TOLERANCE``): the server frees what connections take, round
after round.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
from pathlib import Path

import psutil
import pytest
import websockets

from tests.live_server import LiveServer
from tests.redis.fleet import healthz, lifecycle_event, wait_until

CONCURRENT = 200
#: Rounds per phase: 2000 connections (what 7 s gave on an idle two-core machine), counted
#: rather than timed, so a busy machine makes a phase slower, never smaller.
ROUNDS = 10
#: Descriptors that may differ between two idle moments (the SQLite WAL, a lingering socket).
FD_TOLERANCE = 8
#: Memory a second equal phase may add: allocator noise, not per-connection growth (a leak of
#: even 1 KiB per connection would add several MB over the phase's thousands of connections).
RSS_TOLERANCE = 8 * 1024 * 1024
#: What the first phase may add to a freshly started server: the allocator's arenas and the
#: interpreter's caches grow once to the load's high-water mark (measured: about 14 MiB).
WARMUP_TOLERANCE = 32 * 1024 * 1024


def server_usage(pid: int) -> tuple[int, int]:
    return len(os.listdir(f"/proc/{pid}/fd")), psutil.Process(pid).memory_info().rss


async def subscriber(url: str, style: str, rng: random.Random) -> int:
    """One subscriber's life; returns the number of messages it received."""
    ws = await websockets.connect(url, open_timeout=20, max_size=None)
    received = 0
    try:
        json.loads(await asyncio.wait_for(ws.recv(), 20))  # the snapshot
        received += 1
        if style == "stall":  # connected but not reading
            await asyncio.sleep(rng.uniform(0.2, 0.6))
        else:
            for _ in range(rng.randint(0, 3)):
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(ws.recv(), 0.3)
                    received += 1
        if style == "ping":
            await ws.send(json.dumps({"type": "ping", "id": received}))
        if style in ("abort", "stall"):
            ws.transport.abort()  # gone without a close frame
    finally:
        await ws.close()
    return received


async def phase(server: LiveServer, rounds: int, seed: int) -> tuple[int, int]:
    """Churn for ``rounds`` rounds; returns (connections made, messages received)."""
    rng = random.Random(seed)
    done = asyncio.Event()
    connections = messages = 0

    async def publish() -> None:
        async with websockets.connect(server.publish_url) as pub:
            n = 0
            while not done.is_set():
                await pub.send(json.dumps(lifecycle_event(n, tag=f"churn{seed}")))
                await pub.recv()
                n += 1
                await asyncio.sleep(0.005)

    publisher = asyncio.get_running_loop().create_task(publish())
    styles = ("close", "ping", "abort", "stall")
    for _ in range(rounds):
        results = await asyncio.gather(*(
            subscriber(server.ws_url, rng.choice(styles), rng) for _ in range(CONCURRENT)))
        connections += len(results)
        messages += sum(results)
    done.set()
    await publisher
    return connections, messages


def settle(server: LiveServer, fds_idle: int) -> tuple[int, int]:
    """Wait until no subscriber is left and the descriptors are back (closing handshakes
    finish in their own time); returns the server's (descriptors, RSS) then."""
    assert server.proc is not None
    pid = server.proc.pid
    wait_until(lambda: healthz(server)["subscribers"] == 0, 60, "no subscribers left")
    wait_until(lambda: server_usage(pid)[0] <= fds_idle + FD_TOLERANCE, 60,
               f"descriptors back to {fds_idle} + {FD_TOLERANCE}")
    return server_usage(pid)


@pytest.mark.timeout(150)
def test_subscriber_churn_returns_fds_and_memory_to_baseline(tmp_path: Path) -> None:
    server = LiveServer(tmp_path, extra_args=["--metrics-interval", "0", "--stall-timeout", "0",
                                              "--max-connections", "1000"])
    with server:
        assert server.proc is not None
        fds_idle, rss_idle = server_usage(server.proc.pid)
        first = asyncio.run(phase(server, ROUNDS, seed=1))
        fds_1, rss_1 = settle(server, fds_idle)
        second = asyncio.run(phase(server, ROUNDS, seed=2))
        fds_2, rss_2 = settle(server, fds_idle)
        report = (f"idle fds={fds_idle} rss={rss_idle >> 20}MiB; after {first[0]} connections "
                  f"fds={fds_1} rss={rss_1 >> 20}MiB; after {second[0]} more fds={fds_2} "
                  f"rss={rss_2 >> 20}MiB")
        print(report)
        assert first[0] == second[0] == ROUNDS * CONCURRENT, report
        assert first[1] > first[0] and second[1] > second[0], report  # live events flowed
        assert fds_1 <= fds_idle + FD_TOLERANCE and fds_2 <= fds_idle + FD_TOLERANCE, report
        assert rss_1 - rss_idle <= WARMUP_TOLERANCE, report
        assert rss_2 - rss_1 <= RSS_TOLERANCE, report
        metrics = healthz(server)
        assert metrics["subscribers"] == 0 and metrics["publishers"] == 0
