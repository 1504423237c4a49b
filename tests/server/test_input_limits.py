"""Sizes and validation on every path, against a real server (issue 22, items 4 and 8).

One event is at most 64 KiB on ``POST /api/events`` as on ``/ws/publish``; nested ``metrics``,
``metadata`` and ``actions`` are capped; a 1 MiB POST of ~37,000 events does not hold the
event loop; impossible timestamps, unbounded integers and ``types=,,,`` are refused; ``1e400``,
a lone surrogate and a duplicate key get errors that say so.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from mlops_hooks.protocol import MAX_MESSAGE_BYTES
from tests.live_server import LiveServer
from tests.server.live import QUIET, publish, publisher, recv_json, subscriber

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("limits"), extra_args=list(QUIET))
    with live:
        yield live


def post(server: LiveServer, body: bytes | Any) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(server.http_url + "/api/events", content=content,
                      headers={"Content-Type": "application/json"}, timeout=30)


def seq(server: LiveServer) -> int:
    return int(httpx.get(server.http_url + "/healthz", timeout=10).json()["seq"])


def ws_errors(server: LiveServer, messages: list[str]) -> list[dict[str, Any]]:
    """The replies of ``/ws/publish`` to ``messages``, sent as raw text frames."""
    async def run() -> list[dict[str, Any]]:
        async with publisher(server.publish_url) as ws:
            return [await publish(ws, text) for text in messages]
    return asyncio.run(run())


# --------------------------------------------------------------------------- item 4: sizes

def test_one_event_is_at_most_64_kib_on_post_too(server: LiveServer) -> None:
    before = seq(server)
    big = {"type": "training_failed", "error": "oom", "error_code": "MEMORY_ERROR",
           "suggestions": ["s" * 8192] * 9}  # valid field by field, 73 KiB in all
    assert len(json.dumps(big)) > MAX_MESSAGE_BYTES
    single = post(server, big)
    assert single.status_code == 413, single.text
    assert "64 KiB" in single.json()["error"]
    padded = b'{"type": "model_deployed", "model_name": "m"' + b" " * 70_000 + b"}"
    assert post(server, padded).status_code == 413
    small = {"type": "model_deployed", "model_name": "ok"}
    batch = post(server, [small, big, small])
    assert batch.status_code == 413 and batch.json()["index"] == 1, batch.text
    assert seq(server) == before  # nothing of it was accepted
    assert post(server, [small, small]).status_code == 200  # below the limit: unchanged


@pytest.mark.parametrize(("event", "field", "words"), [
    ({"type": "training_progress", "stage": "model_training",
      "metrics": {f"m{i}": 0.5 for i in range(300)}}, "metrics", "at most 256 keys"),
    ({"type": "training_progress", "stage": "model_training", "metrics": {"k" * 200: 1}},
     "metrics", "at most 128 characters"),
    ({"type": "activity_update", "activity": {"id": "a", "title": "t", "metadata":
      {f"k{i}": i for i in range(100)}}}, "activity.metadata", "at most 64 keys"),
    ({"type": "activity_update", "activity": {"id": "a", "title": "t", "metadata":
      {"a": {"b": {"c": {"d": {"e": {"f": {"g": 1}}}}}}}}}, "activity.metadata",
     "nested 7 levels deep"),
    ({"type": "activity_update", "activity": {"id": "a", "title": "t", "metadata":
      {"blob": "x" * 20_000}}}, "activity.metadata", "16384 bytes"),
    ({"type": "system_alert", "alert": {"id": "a", "title": "t", "actions": ["Retry"] * 40}},
     "alert.actions", "at most 16 items"),
    ({"type": "system_alert", "alert": {"id": "a", "title": "t", "actions": ["x" * 1000]}},
     "alert.actions[0]", "at most 256 characters"),
])
def test_nested_values_are_capped_with_errors_naming_the_field(
        server: LiveServer, event: dict[str, Any], field: str, words: str) -> None:
    (reply,) = ws_errors(server, [json.dumps(event)])
    assert reply["type"] == "error" and reply["field"] == field, reply
    assert words in reply["error"], reply["error"]
    refused = post(server, event)
    assert refused.status_code == 400 and refused.json()["field"] == field, refused.text


def test_a_megabyte_post_of_37000_events_does_not_hold_the_event_loop(
        server: LiveServer) -> None:
    body = b"[" + b",".join([b'{"type":"system_metrics"}'] * 37_000) + b"]"
    assert len(body) < 1024 * 1024
    answer: dict[str, Any] = {}

    async def scenario() -> None:
        async with subscriber(f"{server.ws_url}?types=system_metrics") as sub:
            await recv_json(sub)  # the snapshot
            thread = threading.Thread(target=lambda: answer.update(post(server, body).json()))
            thread.start()
            first = await recv_json(sub, timeout=60)  # the batch is being handled...
            during = await asyncio.to_thread(seq, server)  # ...and /healthz still answers
            await asyncio.to_thread(thread.join, 60)
            answer["first"], answer["during"] = first["seq"], during

    asyncio.run(scenario())
    assert answer["accepted"] == 37_000
    last = answer["seqs"][-1]
    # Served in the middle of the batch: the server took other requests between its events.
    assert answer["first"] <= answer["during"] < last, (answer["during"], last)


# --------------------------------------------------------------------------- item 8: validation

@pytest.mark.parametrize(("field", "value"), [
    ("timestamp", "2025-13-45T99:99:99Z"),
    ("timestamp", "0000-00-00T00:00:00Z"),
    ("timestamp", "2025-12-06T24:00:00Z"),
    ("total_predictions", 2**64),
    ("total_predictions", 123456789012345678901234567890),
    ("milestone_reached", -1),
])
def test_impossible_timestamps_and_unbounded_counts_are_refused(
        server: LiveServer, field: str, value: Any) -> None:
    event = {"type": "prediction_volume", "total_predictions": 5, field: value}
    (reply,) = ws_errors(server, [json.dumps(event)])
    assert reply["type"] == "error" and reply["field"] == field, reply
    assert post(server, event).status_code == 400


def test_misleading_json_errors_name_the_real_problem(server: LiveServer) -> None:
    prefix = '{"type": "training_progress", "stage": "model_training", '
    replies = ws_errors(server, [
        prefix + '"progress": 1e400}',
        prefix + '"message": "\\ud800"}',
        '{"type": "training_progress", "type": "model_deployed", "model_name": "m"}',
        prefix + '"progress": }',
    ])
    errors = [r["error"] for r in replies]
    assert all(r["type"] == "error" for r in replies), replies
    assert "number out of range" in errors[0] and "malformed" not in errors[0], errors[0]
    assert "lone surrogate" in errors[1] and "truncated" not in errors[1], errors[1]
    assert "duplicate key 'type'" in errors[2], errors[2]
    assert "malformed JSON" in errors[3], errors[3]
    over = post(server, (prefix + '"progress": 1e400}').encode())
    assert over.status_code == 400 and "number out of range" in over.json()["error"]


def test_a_subscription_to_no_type_is_refused(server: LiveServer) -> None:
    async def refused(query: str) -> httpx.Response | Any:
        with pytest.raises(InvalidStatus) as caught:
            async with subscriber(f"{server.ws_url}?{query}"):
                pass
        return caught.value.response

    for query in ("types=,,,", "types=%20,%20"):
        response = asyncio.run(refused(query))
        assert response.status_code == 400, query
        assert b"types: no event type named" in response.body, response.body

    async def still_all() -> str:
        async with subscriber(f"{server.ws_url}?types=") as sub:
            return str((await recv_json(sub))["type"])
    assert asyncio.run(still_all()) == "snapshot"  # an empty filter still means every type
