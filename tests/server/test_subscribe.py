"""``WS /ws``, each test on both paths a subscriber can take.

``asgi``: Starlette's TestClient (no socket: the hub awaits the ASGI ``send`` per message).
``live``: a real ``mlops-hooks serve`` process and a real WebSocket client, where the hub writes
the records' prebuilt frames through the connection's frame sink, as in production.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import WebSocketDenialResponse

from tests.live_server import LiveServer
from tests.server.conftest import activity, progress
from tests.server.live import LiveClient, live_flags
from tests.timestamps import assert_iso_utc_between

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=["asgi", "live"])
def make_client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """``make_client(**config)``: a TestClient around an app, or a client of a real server."""
    if request.param == "asgi":
        yield request.getfixturevalue("make_client")
        return
    servers: list[tuple[LiveServer, LiveClient]] = []

    def make(**overrides: Any) -> LiveClient:
        server = LiveServer(tmp_path / f"live{len(servers)}", extra_args=live_flags(overrides))
        server.start()
        servers.append((server, LiveClient(server)))
        return servers[-1][1]

    try:
        yield make
    finally:
        for server, client in reversed(servers):
            client.close()
            server.stop()


def test_first_frame_is_the_snapshot_with_its_seq(client):
    client.post("/api/events", json=[
        {"type": "model_deployed", "model_name": "Churn v1", "model_id": "m1",
         "model_accuracy": 0.9},
        progress(pct=50, model_name="churn"), activity(1)])
    before = time.time()
    with client.websocket_connect("/ws") as sub:
        snap = sub.receive_json()
    after = time.time()
    assert snap["type"] == "snapshot" and snap["seq"] == 3
    assert [(m["model_id"], m["status"]) for m in snap["models"]] == [("m1", "active")]
    assert [(r["run_id"], r["status"]) for r in snap["runs"]] == [("run-1", "running")]
    assert [a["id"] for a in snap["activity"]] == ["act_1"]
    assert_iso_utc_between(snap["server_time"], before, after)
    assert snap["connections"] == 1
    for key in ("server_time", "system", "health", "alerts", "uploads"):
        assert key in snap


def test_live_events_follow_the_snapshot_in_seq_order(client):
    with client.websocket_connect("/ws") as sub:
        assert sub.receive_json()["seq"] == 0
        client.post("/api/events", json=[activity(i) for i in range(5)])
        seqs = [sub.receive_json()["seq"] for _ in range(5)]
    assert seqs == [1, 2, 3, 4, 5]


def test_types_filter(client):
    with client.websocket_connect("/ws?types=activity_update,model_deployed") as sub:
        sub.receive_json()
        client.post("/api/events", json=[progress(), activity(1),
                                         {"type": "model_deployed", "model_name": "m"}])
        kinds = [sub.receive_json()["type"] for _ in range(2)]
    assert kinds == ["activity_update", "model_deployed"]


def test_since_replays_what_was_missed_then_goes_live(client):
    client.post("/api/events", json=[activity(i) for i in range(6)])
    with client.websocket_connect("/ws?since=3") as sub:
        header = sub.receive_json()
        replayed = [sub.receive_json()["seq"] for _ in range(3)]
        client.post("/api/events", json=activity(99))
        live = sub.receive_json()["seq"]
    assert header == {"type": "replay", "from": 4, "to": 6, "count": 3}
    assert replayed == [4, 5, 6] and live == 7


def test_since_with_types_counts_only_matching_events(client):
    client.post("/api/events", json=[activity(1), progress(), activity(2)])
    with client.websocket_connect("/ws?since=0&types=activity_update") as sub:
        header = sub.receive_json()
        seqs = [sub.receive_json()["seq"] for _ in range(2)]
    assert header["count"] == 2 and seqs == [1, 3]


def test_replay_coalesces_superseded_progress(client):
    client.post("/api/events", json=[progress(pct=i) for i in range(5)] + [activity(1)])
    with client.websocket_connect("/ws?since=0") as sub:
        header = sub.receive_json()
        events = [sub.receive_json() for _ in range(header["count"])]
    assert header["count"] == 2
    assert [(e["type"], e["seq"]) for e in events] == [("training_progress", 5),
                                                        ("activity_update", 6)]


def test_since_older_than_the_buffer_gets_a_fresh_snapshot(make_client):
    client = make_client(replay_size=3)
    client.post("/api/events", json=[activity(i) for i in range(6)])
    with client.websocket_connect("/ws?since=1") as sub:
        frame = sub.receive_json()
    assert frame["type"] == "snapshot" and frame["seq"] == 6


def test_since_ahead_of_the_stream_gets_a_snapshot(client):
    client.post("/api/events", json=activity(1))
    with client.websocket_connect("/ws?since=50") as sub:
        frame = sub.receive_json()
    assert frame["type"] == "snapshot" and frame["seq"] == 1


def test_since_at_the_head_replays_nothing(client):
    client.post("/api/events", json=activity(1))
    with client.websocket_connect("/ws?since=1") as sub:
        assert sub.receive_json() == {"type": "replay", "from": 2, "to": 1, "count": 0}
        client.post("/api/events", json=activity(2))
        assert sub.receive_json()["seq"] == 2


@pytest.mark.parametrize(("query", "text"), [
    ("since=abc", "since must be a non-negative integer"),
    ("since=-4", "since must be a non-negative integer"),
    ("types=training_progress,bogus", "unknown event type(s) 'bogus'"),
])
def test_bad_query_is_refused_with_400_and_a_reason(client, query, text):
    with pytest.raises(WebSocketDenialResponse) as info, \
            client.websocket_connect(f"/ws?{query}"):
        pass
    assert info.value.status_code == 400
    assert text in info.value.json()["error"]


def test_ping_pong_and_unknown_messages(client):
    with client.websocket_connect("/ws") as sub:
        sub.receive_json()
        before = time.time()
        sub.send_json({"type": "ping", "id": "abc"})
        pong = sub.receive_json()
        after = time.time()
        sub.send_json({"type": "subscribe"})
        error = sub.receive_json()
        sub.send_text("not json")
        error2 = sub.receive_json()
        sub.send_json({"type": "ping", "id": 2})
        assert sub.receive_json()["id"] == 2
    assert pong["type"] == "pong" and pong["id"] == "abc"
    assert_iso_utc_between(pong["server_time"], before, after)
    assert error["type"] == "error" and "ping" in error["error"]
    assert error2["type"] == "error"


def test_two_subscribers_get_identical_frames(client):
    with client.websocket_connect("/ws") as a, client.websocket_connect("/ws") as b:
        a.receive_json()
        b.receive_json()
        client.post("/api/events", json=[activity(1), progress()])
        assert [a.receive_text() for _ in range(2)] == [b.receive_text() for _ in range(2)]


def test_a_replay_too_large_for_the_queue_is_a_fresh_snapshot_instead(make_client):
    client = make_client(queue_max_bytes=64 * 1024)  # a replay may fill at most half: 32 KiB
    client.post("/api/events", json=[activity(i, size=4000) for i in range(5)])  # ~20 KiB
    with client.websocket_connect("/ws?since=0") as sub:
        assert sub.receive_json() == {"type": "replay", "from": 1, "to": 5, "count": 5}
        assert [sub.receive_json()["seq"] for _ in range(5)] == [1, 2, 3, 4, 5]
    client.post("/api/events", json=[activity(i, size=4000) for i in range(5, 10)])
    with client.websocket_connect("/ws?since=0") as sub:  # ~40 KiB missed: too large
        snapshot = sub.receive_json()
        client.post("/api/events", json=activity(10))
        live = sub.receive_json()
    assert snapshot["type"] == "snapshot" and snapshot["seq"] == 10
    assert [a["id"] for a in snapshot["activity"]][:2] == ["act_9", "act_8"]
    assert live["seq"] == 11  # live events follow the snapshot, no gap
    with client.websocket_connect("/ws?since=5") as sub:  # the last five fit again
        assert sub.receive_json() == {"type": "replay", "from": 6, "to": 11, "count": 6}


def _upload(name: str, done: int) -> dict:
    return {"type": "upload_progress", "filename": name, "bytes_uploaded": done,
            "total_bytes": 100}


def _volume(model: str, total: int, milestone: int | None = None) -> dict:
    return {"type": "prediction_volume", "model_id": model, "total_predictions": total,
            "milestone_reached": milestone}


def test_replay_coalesces_uploads_per_file_and_volume_per_model_but_not_milestones(make_client):
    client = make_client()
    events = []
    for i in range(1, 4):
        events += [_upload("a.csv", i), _upload("b.csv", i * 10), _volume("m1", i),
                   _volume("m2", i * 100), _volume("m1", i, milestone=i)]
    client.post("/api/events", json=events)  # seq 1..15
    with client.websocket_connect("/ws?since=0") as sub:
        header = sub.receive_json()
        got = [sub.receive_json() for _ in range(header["count"])]
    kept = [(e["seq"], e["type"], e.get("filename") or e.get("model_id"),
             e.get("bytes_uploaded", e.get("total_predictions")), e.get("milestone_reached"))
            for e in got]
    assert kept == [
        (5, "prediction_volume", "m1", 1, 1),    # milestones are never coalesced
        (10, "prediction_volume", "m1", 2, 2),
        (11, "upload_progress", "a.csv", 3, None),  # the newest of each file ...
        (12, "upload_progress", "b.csv", 30, None),
        (13, "prediction_volume", "m1", 3, None),  # ... and of each model
        (14, "prediction_volume", "m2", 300, None),
        (15, "prediction_volume", "m1", 3, 3),
    ]
    assert header == {"type": "replay", "from": 1, "to": 15, "count": 7}
