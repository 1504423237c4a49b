"""Redis goes away under two real servers with subscribers attached, then comes back."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.live_server import LiveServer
from tests.redis.fleet import (
    Tap,
    WsPublisher,
    assert_contiguous,
    healthz,
    lifecycle_event,
    post,
    two_servers,
    wait_until,
)
from tests.redis_server import RedisServer

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def fleet(tmp_path: Path, redis_aof: RedisServer) -> Iterator[tuple[LiveServer, LiveServer]]:
    with two_servers(tmp_path, redis_aof) as pair:
        yield pair


def backend_up(server: LiveServer) -> float:
    text = httpx.get(server.http_url + "/metrics", timeout=10).text
    match = re.search(r'^mlops_hooks_backend_up\{backend="redis"\} (\S+)$', text, re.M)
    assert match, text
    return float(match.group(1))


@pytest.mark.parametrize("hard", [False, True], ids=["shutdown", "kill9"])
def test_redis_restart_under_two_servers_with_subscribers(
        fleet: tuple[LiveServer, LiveServer], redis_aof: RedisServer, hard: bool) -> None:
    a, b = fleet
    acked: dict[str, int] = {}  # event_id -> seq, for every event a server acknowledged

    async def main() -> None:
        async with Tap(a.ws_url) as on_a, Tap(b.ws_url) as on_b, httpx.AsyncClient() as http, \
                WsPublisher(b.publish_url) as pub_b:
            for i in range(20):
                event = lifecycle_event(i, event_id=f"ev-{i}")
                if i % 2:
                    ack = await pub_b.send(event)
                    acked[ack["event_id"]] = ack["seq"]
                else:
                    response = await post(http, a, event)
                    acked[event["event_id"]] = response.json()["seqs"][0]
            await on_a.wait_seq(20)

            # Redis goes away (SIGTERM: AOF flushed; SIGKILL: only the fsynced AOF survives)
            if hard:
                redis_aof.kill()
            else:
                redis_aof.stop()
            for server in (a, b):
                wait_until(lambda s=server: healthz(s)["status"] == "degraded", 20,
                           "degraded /healthz")
                info = healthz(server)["backend_info"]
                assert info["connected"] is False and info["last_error"]
                assert backend_up(server) == 0.0
            # publishing fails clearly: nothing is acknowledged that Redis did not store
            refused = await post(http, a, lifecycle_event(20, event_id="ev-20"))
            assert refused.status_code == 503 and "Redis" in refused.json()["error"]
            metrics = (await http.get(a.http_url + "/metrics")).text
            assert 'mlops_hooks_rejected_total{reason="backend_unavailable"} 1' in metrics
            error = await pub_b.send(lifecycle_event(21, event_id="ev-21"))
            assert error["type"] == "error" and "Redis" in error["error"]
            assert error["event_id"] == "ev-21" and error["retry"] is True
            # ... and closes the connection (1013), so nothing sent behind it can overtake it
            assert await pub_b.wait_closed() == 1013
            # ... while both servers keep serving their subscribers and their REST views
            for tap, name in ((on_a, "a"), (on_b, "b")):
                await tap.ping(f"outage-{name}")
                await tap.wait(lambda t, n=name: any(m.get("id") == f"outage-{n}"
                                                     for m in t.messages), 10, "pong")
            for server in (a, b):
                models = await http.get(server.http_url + "/api/models")
                assert models.status_code == 200 and models.json()["seq"] == 20

            redis_aof.start()  # same port, same data directory
            for server in (a, b):
                wait_until(lambda s=server: healthz(s)["status"] == "ok", 30, "recovery")
                info = healthz(server)["backend_info"]
                assert info["connected"] is True and info["reconnects"] >= 1
                assert backend_up(server) == 1.0
            # the refused events are re-sent (as the publisher does, reconnected), then more
            async with WsPublisher(b.publish_url) as again:
                for i in (20, 21, *range(22, 30)):
                    event = lifecycle_event(i, event_id=f"ev-{i}")
                    if i % 2:
                        ack = await again.send(event)
                        assert ack["type"] == "ack", ack
                        acked[ack["event_id"]] = ack["seq"]
                    else:
                        response = await post(http, a, event)
                        assert response.status_code == 200, response.text
                        acked[event["event_id"]] = response.json()["seqs"][0]
            await on_a.wait_seq(30)
            await on_b.wait_seq(30)
            # nothing acknowledged was lost, nothing came twice, one order on both servers
            for tap in (on_a, on_b):
                assert_contiguous(tap.seqs)
                assert {e["event_id"]: e["seq"] for e in tap.events} == acked
            assert on_a.events == on_b.events
            assert on_a.closed is None and on_b.closed is None  # never disconnected
    asyncio.run(main())
