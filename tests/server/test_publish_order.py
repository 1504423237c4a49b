"""Order across a refusal: nothing a publisher sent behind a refused event is stored before it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from starlette.websockets import WebSocketDisconnect

from mlops_hooks.server.backends._redis_batch import Batcher
from mlops_hooks.server.endpoints.publish import REFUSED_CLOSE
from tests.server.conftest import RefusingBackend, activity

pytestmark = pytest.mark.timeout(30)


def test_after_a_refusal_nothing_behind_it_is_stored_and_the_connection_closes_1013(
        make_client):
    backend = RefusingBackend()
    backend.refuse_once.add("e3")  # refused once: the backend is back for e4 at once
    client = make_client(backend=backend)
    with client.websocket_connect("/ws/publish") as pub:
        for i in range(10):  # pipelined: all sent before any reply is read
            pub.send_json(activity(i) | {"event_id": f"e{i}"})
        replies = [pub.receive_json() for _ in range(4)]
        with pytest.raises(WebSocketDisconnect) as closed:
            pub.receive_json()
    assert [(r["type"], r["event_id"]) for r in replies] == [
        ("ack", "e0"), ("ack", "e1"), ("ack", "e2"), ("error", "e3")]
    assert replies[3]["retry"] is True
    assert (closed.value.code, closed.value.reason) == REFUSED_CLOSE
    assert backend.refused == ["e3"] and client.get("/healthz").json()["seq"] == 3
    with client.websocket_connect("/ws/publish") as pub:  # the publisher resends from e3
        for i in range(3, 10):
            pub.send_json(activity(i) | {"event_id": f"e{i}"})
        acks = [pub.receive_json() for _ in range(7)]
    assert [(a["event_id"], a["seq"]) for a in acks] == [(f"e{i}", i + 1) for i in range(3, 10)]
    assert all("duplicate" not in a for a in acks)  # none was stored behind the refusal
    with client.websocket_connect("/ws?since=0") as sub:
        header = sub.receive_json()
        ids = [sub.receive_json()["activity"]["id"] for _ in range(header["count"])]
    assert ids == [f"act_{i}" for i in range(10)]


def test_a_refused_connection_ignores_pings_and_bad_frames_behind_the_refusal(make_client):
    backend = RefusingBackend()
    backend.refuse_once.add("first")
    client = make_client(backend=backend)
    with client.websocket_connect("/ws/publish") as pub:
        pub.send_json(activity(0) | {"event_id": "first"})
        pub.send_json({"type": "ping", "id": 1})
        pub.send_bytes(b"binary")
        assert pub.receive_json()["retry"] is True
        with pytest.raises(WebSocketDisconnect) as closed:
            pub.receive_json()
    assert closed.value.code in (REFUSED_CLOSE[0], 1003)  # whichever close won the race
    assert client.get("/healthz").json()["publishers"] == 0


def test_calls_queued_behind_a_failed_batch_fail_with_it() -> None:
    """The Redis backend's batcher: Redis back between two batches stores nothing out of turn."""
    sent: list[list[str]] = []

    async def send(calls: Sequence[Any]) -> list[Any]:
        sent.append(list(calls))
        await asyncio.sleep(0.01)  # a round trip, while more calls queue
        if len(sent) == 1:
            raise ConnectionError("redis is down")
        return list(calls)  # ... and back for any later batch

    async def main() -> None:
        batcher = Batcher(send, max_batch=2)
        first = [batcher.submit(c) for c in ("a", "b")]
        await asyncio.sleep(0)  # the first batch is in flight
        behind = [batcher.submit(c) for c in ("c", "d", "e")]
        results = await asyncio.gather(*first, *behind, return_exceptions=True)
        assert all(isinstance(r, ConnectionError) for r in results), results
        assert sent == [["a", "b"]]  # c, d, e never reached Redis
        assert await batcher.submit("a") == "a"  # a caller resending is served
    asyncio.run(main())
