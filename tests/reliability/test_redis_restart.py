"""Redis restarts (SIGKILL) under two servers while a real publisher streams and dashboards watch.

The publisher (``mlops_hooks.publisher.Publisher``, its own thread and socket) sends to server A;
subscribers are attached to A and B. Redis is killed mid-stream and started again on the same
port and AOF. Nothing the servers acknowledged is lost, nothing arrives twice, both dashboards
see the same events in the same ``seq`` order, and neither is ever disconnected.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlops_hooks import events as ev
from mlops_hooks.manager import create_plugin_manager
from mlops_hooks.publisher import Publisher
from tests.live_server import LiveServer
from tests.redis.fleet import Tap, assert_contiguous, healthz, two_servers, wait_until
from tests.redis_server import RedisServer

TOTAL = 600


@pytest.fixture
def fleet(tmp_path: Path, redis_aof: RedisServer) -> Iterator[tuple[LiveServer, LiveServer]]:
    with two_servers(tmp_path, redis_aof) as pair:
        yield pair


def event(i: int) -> ev.ActivityUpdate:
    return ev.ActivityUpdate(run_id="redis-restart", event_id=f"p-{i:05d}",
                             activity=ev.Activity(id=f"a-{i}", title=f"#{i}"))


@pytest.mark.timeout(120)
def test_redis_killed_and_restarted_under_a_live_stream(
        fleet: tuple[LiveServer, LiveServer], redis_aof: RedisServer) -> None:
    a, b = fleet
    publisher = Publisher(a.ws_url, backoff_base=0.05, backoff_cap=0.5,
                          plugin_manager=create_plugin_manager("training", builtins=False,
                                                               entrypoints=False))
    outage = threading.Event()

    def training() -> None:  # a steady stream, like a run's events, ~100 events/s
        for i in range(TOTAL):
            publisher.publish(event(i))
            if i == TOTAL // 3:
                outage.set()
            time.sleep(0.01)

    async def main() -> None:
        async with Tap(a.ws_url) as on_a, Tap(b.ws_url) as on_b:
            stream = asyncio.get_running_loop().run_in_executor(None, training)
            await asyncio.to_thread(outage.wait, 30)
            redis_aof.kill()
            await asyncio.to_thread(wait_until,
                                    lambda: healthz(a)["status"] == "degraded", 20, "degraded")
            await asyncio.sleep(1.0)  # the stream goes on into the publisher's buffer
            redis_aof.start()
            await stream
            assert await asyncio.to_thread(publisher.flush, 60)
            # A marker after everything the publisher sent (all acknowledged): the fleet has one
            # order, so a duplicate of any event would reach each dashboard before it.
            publisher.publish(event(TOTAL))
            assert await asyncio.to_thread(publisher.flush, 60)
            for tap in (on_a, on_b):
                await tap.wait(lambda t: any(e["event_id"] == f"p-{TOTAL:05d}" for e in t.events),
                               30, "the marker")
            for tap in (on_a, on_b):
                assert tap.events[-1]["event_id"] == f"p-{TOTAL:05d}"  # the marker came last
                ids = [e["event_id"] for e in tap.events[:-1]]
                assert len(ids) == len(set(ids)) == TOTAL  # none lost, none twice
                assert sorted(ids) == [f"p-{i:05d}" for i in range(TOTAL)]
                assert_contiguous(tap.seqs)
                assert tap.closed is None
            assert on_a.events == on_b.events  # one order on both servers
    try:
        asyncio.run(main())
        status = publisher.status()
        assert status["acked"] == TOTAL + 1 and status["buffered"] == 0  # and the marker
        assert status["dropped"] == status["rejected"] == status["invalid"] == 0
        for server in (a, b):
            info = healthz(server)["backend_info"]
            assert info["connected"] is True and info["reconnects"] >= 1
    finally:
        publisher.close(0)
