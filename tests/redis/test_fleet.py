"""Two real server processes on one real redis-server: one stream, one order, one state."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.live_server import LiveServer
from tests.redis.fleet import (
    Tap,
    WsPublisher,
    assert_contiguous,
    fleet_args,
    healthz,
    lifecycle_event,
    post,
    two_servers,
    wait_seq,
)
from tests.redis_server import RedisServer
from tests.spec_examples import payload_examples

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def fleet(tmp_path: Path, redis_server: RedisServer) -> Iterator[tuple[LiveServer, LiveServer]]:
    with two_servers(tmp_path, redis_server) as pair:
        yield pair


def test_subscribers_on_both_servers_receive_one_order(
        fleet: tuple[LiveServer, LiveServer]) -> None:
    a, b = fleet

    async def main() -> None:
        async with Tap(a.ws_url) as on_a, Tap(b.ws_url) as on_b, \
                WsPublisher(b.publish_url) as pub_b, httpx.AsyncClient() as http:
            assert on_a.first["type"] == on_b.first["type"] == "snapshot"

            async def ws_burst() -> list[int]:
                return [(await pub_b.send(lifecycle_event(i, tag="ws")))["seq"]
                        for i in range(60)]

            async def http_burst() -> list[int]:
                seqs: list[int] = []
                for i in range(0, 60, 3):
                    response = await post(http, a, [lifecycle_event(i + k, tag="http")
                                                    for k in range(3)])
                    assert response.status_code == 200, response.text
                    seqs += response.json()["seqs"]
                return seqs

            ws_seqs, http_seqs = await asyncio.gather(ws_burst(), http_burst())
            # one numbering across both servers: 120 distinct seqs, each server's in order
            assert sorted(ws_seqs + http_seqs) == list(range(1, 121))
            assert ws_seqs == sorted(ws_seqs) and http_seqs == sorted(http_seqs)
            await on_a.wait_seq(120)
            await on_b.wait_seq(120)
            assert_contiguous(on_a.seqs)
            assert on_a.seqs == on_b.seqs == list(range(1, 121))
            assert on_a.events == on_b.events  # the same events, byte for byte in content
            # ... and they are the ones sent, each at the seq its publisher was given
            by_seq = {e["seq"]: e["activity"]["id"] for e in on_a.events}
            assert [by_seq[seq] for seq in ws_seqs] == [f"act_ws_{i}" for i in range(60)]
            assert [by_seq[seq] for seq in http_seqs] == [f"act_http_{i}" for i in range(60)]
    asyncio.run(main())


def test_since_replay_works_across_servers(fleet: tuple[LiveServer, LiveServer]) -> None:
    a, b = fleet

    async def main() -> None:
        async with WsPublisher(b.publish_url) as pub, Tap(a.ws_url) as first:
            for i in range(20):
                await pub.send(lifecycle_event(i))
            await first.wait_seq(20)
            seen = first.events
        # the subscriber was on A; while it is away 30 more events go to B
        async with WsPublisher(b.publish_url) as pub:
            for i in range(20, 50):
                await pub.send(lifecycle_event(i))
        wait_seq([a, b], 50)
        # it comes back through the load balancer to B, then to A: the same replay on both
        async with Tap(b.ws_url + "?since=20") as on_b, Tap(a.ws_url + "?since=20") as on_a:
            for tap in (on_b, on_a):
                assert tap.first == {"type": "replay", "from": 21, "to": 50, "count": 30}
                await tap.wait_seq(50)
                assert tap.seqs == list(range(21, 51))
            assert on_a.events == on_b.events
            assert [e["activity"]["id"] for e in seen + on_b.events] == \
                [f"act_e_{i}" for i in range(50)]
    asyncio.run(main())


def test_a_resent_event_keeps_its_seq_on_every_server(
        fleet: tuple[LiveServer, LiveServer]) -> None:
    a, b = fleet

    async def main() -> None:
        async with Tap(a.ws_url) as on_a, Tap(b.ws_url) as on_b, httpx.AsyncClient() as http, \
                WsPublisher(b.publish_url) as pub_b, WsPublisher(a.publish_url) as pub_a:
            event = lifecycle_event(1, event_id="run-42:000001")
            first = await post(http, a, event)
            assert first.json() == {"accepted": 1, "seqs": [1], "duplicates": []}
            again = await post(http, b, event)
            assert again.json() == {"accepted": 0, "seqs": [1], "duplicates": [0]}
            assert await pub_b.send(event) == {"type": "ack", "seq": 1,
                                               "event_id": "run-42:000001", "duplicate": True}
            # racing re-sends through both servers at once still get one number
            racing = lifecycle_event(2, event_id="run-42:000002")
            acks = await asyncio.gather(pub_a.send(racing), pub_b.send(racing))
            assert {ack["seq"] for ack in acks} == {2}
            assert sorted(bool(ack.get("duplicate")) for ack in acks) == [False, True]
            await pub_a.send(lifecycle_event(3))
            await on_a.wait_seq(3)
            await on_b.wait_seq(3)
            for tap in (on_a, on_b):
                assert tap.seqs == [1, 2, 3]  # each event delivered once, everywhere
    asyncio.run(main())


def spec_events() -> list[dict[str, Any]]:
    """Every payload example of the spec, made into a small fleet's worth of history."""
    events: list[dict[str, Any]] = []
    examples = payload_examples()
    for n in range(3):
        for example in examples:
            event = copy.deepcopy(example)
            if event["type"].startswith("training_"):
                event["run_id"] = f"run-{n}"
            if event["type"] == "model_deployed":
                event["model_id"] = f"model-{n}"
            if event["type"] == "activity_update":
                event["activity"]["id"] = f"act-{n}"
            if event["type"] == "system_alert":
                event["alert"]["id"] = f"alert-{n}"
            if event["type"] == "file_validated" and event.get("status") == "success":
                event.pop("error", None)  # the spec's example shows both; the model says no
            events.append(event)
    return events


def test_state_converges_on_every_server(fleet: tuple[LiveServer, LiveServer],
                                         tmp_path: Path, redis_server: RedisServer) -> None:
    a, b = fleet
    events = spec_events()

    async def main() -> None:
        async with httpx.AsyncClient() as http:
            for i, event in enumerate(events):
                response = await post(http, a if i % 2 else b, event)
                assert response.status_code == 200, response.text
    asyncio.run(main())
    # each round's run ends (training_completed, then training_failed) each add the server's
    # run_state right after them (issue 17): stored once across the fleet
    stored = len(events) + 2 * 3
    wait_seq([a, b], stored)

    def views(server: LiveServer) -> dict[str, Any]:
        out = {path: httpx.get(server.http_url + path, timeout=10).json()
               for path in ("/api/models", "/api/activity?limit=500")}
        system = httpx.get(server.http_url + "/api/monitoring/system", timeout=10).json()
        system.pop("connections", None)  # each server counts its own connections
        out["system"] = system
        return out

    on_a, on_b = views(a), views(b)
    assert on_a == on_b
    # what three rounds of the spec's examples leave, exactly
    models = on_a["/api/models"]
    assert models["seq"] == stored == 42
    # model_deployed names model-N; model_status_change names the spec's cp_v32_20251206
    assert sorted(m["model_id"] for m in models["models"]) == [
        "cp_v32_20251206", "model-0", "model-1", "model-2"]
    # each run gets progress, completed, then failed (the spec's order): failed wins
    assert {run["run_id"]: run["status"] for run in models["runs"]} == {
        "run-0": "failed", "run-1": "failed", "run-2": "failed"}
    assert [e["id"] for e in on_a["/api/activity?limit=500"]["activity"]] == [
        "act-2", "act-1", "act-0"]  # newest first
    system = on_a["system"]
    assert system["seq"] == stored
    assert [alert["id"] for alert in system["alerts"]] == ["alert-2", "alert-1", "alert-0"]
    assert system["health"]["current_health"] == "warning"
    kinds = [example["type"] for example in payload_examples()]
    last_round = 2 * (len(kinds) + 2)
    assert system["system"]["seq"] == last_round + kinds.index("system_metrics") + 1 + 2

    # a third server that joins later builds the same state from the stream
    with LiveServer(tmp_path / "c", extra_args=fleet_args(redis_server)) as c:
        assert healthz(c)["seq"] == stored
        assert views(c) == on_a
