from __future__ import annotations

import json
import time

import pytest
from starlette.websockets import WebSocketDisconnect

from tests.server.conftest import RefusingBackend, ServerRecorder, activity, progress
from tests.timestamps import assert_iso_utc_between


def test_ws_publish_acks_each_event_in_order_with_seq(client):
    with client.websocket_connect("/ws/publish") as pub:
        for i in range(5):
            pub.send_json(progress(pct=i * 10, event_id=f"e{i}"))
        acks = [pub.receive_json() for _ in range(5)]
    assert [a["seq"] for a in acks] == [1, 2, 3, 4, 5]
    assert [a["event_id"] for a in acks] == [f"e{i}" for i in range(5)]
    assert all(a["type"] == "ack" and "duplicate" not in a for a in acks)


def test_duplicate_event_id_returns_original_seq_and_is_not_broadcast(client):
    with client.websocket_connect("/ws") as sub, client.websocket_connect("/ws/publish") as pub:
        assert sub.receive_json()["type"] == "snapshot"
        pub.send_json(activity(1) | {"event_id": "same"})
        assert pub.receive_json() == {"type": "ack", "seq": 1, "event_id": "same"}
        pub.send_json(activity(1) | {"event_id": "same"})
        assert pub.receive_json() == {"type": "ack", "seq": 1, "event_id": "same",
                                      "duplicate": True}
        pub.send_json(activity(2))
        assert pub.receive_json()["seq"] == 2
        assert sub.receive_json()["seq"] == 1
        assert sub.receive_json()["seq"] == 2  # the duplicate never reached the subscriber


BAD_EVENTS = [
    ("not json", "{nope", "", "malformed JSON"),
    ("unknown type", {"type": "model_exploded"}, "type", "unknown type 'model_exploded'"),
    ("missing type", {"progress": 5}, "type", "missing"),
    ("wrong type", progress(pct="half"), "progress", "'half'"),
    ("out of range", progress(pct=150), "progress", "150"),
    ("outside its set", {"type": "model_status_change", "status": "runing", "model_id": "m"},
     "status", "'runing'"),
    ("missing field", {"type": "model_deployed"}, "model_name", "missing"),
    ("unknown field", progress(colour="red"), "colour", "unknown field"),
    ("array", [progress()], "", "one event per message"),
]


@pytest.mark.parametrize(("name", "payload", "field", "text"), BAD_EVENTS,
                         ids=[b[0] for b in BAD_EVENTS])
def test_bad_event_gets_an_error_naming_the_problem_and_the_connection_stays(
        client, name, payload, field, text):
    with client.websocket_connect("/ws/publish") as pub:
        pub.send_text(payload if isinstance(payload, str) else json.dumps(payload))
        reply = pub.receive_json()
        assert reply["type"] == "error"
        assert reply["field"] == field
        assert text in reply["error"]
        pub.send_json(progress())
        assert pub.receive_json()["type"] == "ack"


def test_error_reply_carries_the_event_id(client):
    with client.websocket_connect("/ws/publish") as pub:
        pub.send_json(progress(pct=-1, event_id="abc"))
        reply = pub.receive_json()
    assert reply["event_id"] == "abc" and reply["field"] == "progress"


def test_ping_on_publish_socket_gets_pong(client):
    with client.websocket_connect("/ws/publish") as pub:
        before = time.time()
        pub.send_json({"type": "ping", "id": 7})
        reply = pub.receive_json()
        after = time.time()
    assert set(reply) == {"type", "id", "server_time"}
    assert reply["type"] == "pong" and reply["id"] == 7
    assert_iso_utc_between(reply["server_time"], before, after)


def test_binary_frame_closes_with_1003(client):
    with client.websocket_connect("/ws/publish") as pub:
        pub.send_bytes(b'{"type": "ping"}')
        with pytest.raises(WebSocketDisconnect) as info:
            pub.receive_json()
    assert info.value.code == 1003


def test_oversize_message_closes_with_1009(client):
    with client.websocket_connect("/ws/publish") as pub:
        pub.send_text(json.dumps(activity(1, size=70_000)))
        with pytest.raises(WebSocketDisconnect) as info:
            pub.receive_json()
    assert info.value.code == 1009


def test_timestamp_is_filled_and_kept(client):
    with client.websocket_connect("/ws") as sub:
        sub.receive_json()
        before = time.time()
        client.post("/api/events", json=[progress("a"),
                                         progress("b", timestamp="2025-12-06T10:30:00Z")])
        after = time.time()
        first, second = sub.receive_json(), sub.receive_json()
    assert_iso_utc_between(first["timestamp"], before, after)
    assert second["timestamp"] == "2025-12-06T10:30:00Z"


def test_post_one_event_and_an_array(client):
    one = client.post("/api/events", json=progress())
    assert one.status_code == 200
    assert one.json() == {"accepted": 1, "seqs": [1], "duplicates": []}
    many = client.post("/api/events", json=[activity(1) | {"event_id": "k"}, progress(),
                                            activity(1) | {"event_id": "k"}])
    assert many.json() == {"accepted": 2, "seqs": [2, 3, 2], "duplicates": [2]}


def test_post_invalid_event_names_index_and_field_and_accepts_none(client):
    response = client.post("/api/events", json=[progress(), progress(pct=101)])
    assert response.status_code == 400
    body = response.json()
    assert body["index"] == 1 and body["field"] == "progress"
    assert "101" in body["error"]
    assert client.get("/healthz").json()["seq"] == 0


def test_post_wrong_content_type_is_415_and_oversize_is_413(client):
    response = client.post("/api/events", content=b"type=x",
                           headers={"content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 415 and "application/json" in response.json()["error"]
    big = [activity(i, size=8000) for i in range(200)]
    response = client.post("/api/events", json=big)
    assert response.status_code == 413 and "limit" in response.json()["error"]


def test_server_side_hooks_see_every_ingested_event(make_client):
    recorder = ServerRecorder()
    from mlops_hooks.manager import create_plugin_manager

    pm = create_plugin_manager("server", builtins=False, entrypoints=False)
    pm.register(recorder, name="recorder")
    client = make_client(plugins=pm)
    client.post("/api/events", json=[progress(), activity(1) | {"event_id": "d"},
                                     activity(1) | {"event_id": "d"}])
    assert [e.type for e in recorder.events] == ["training_progress", "activity_update"]
    assert [e.seq for e in recorder.events] == [1, 2]
    assert set(recorder.sides) == {"server"}


def test_a_raising_plugin_does_not_stop_the_broadcast(make_client, capsys):
    from mlops_hooks.manager import create_plugin_manager, hookimpl

    class Broken:
        @hookimpl
        def mlops_event(self, event):
            raise RuntimeError("boom")

    pm = create_plugin_manager("server", builtins=False, entrypoints=False)
    pm.register(Broken(), name="broken")
    client = make_client(plugins=pm)
    with client.websocket_connect("/ws") as sub:
        sub.receive_json()
        assert client.post("/api/events", json=progress()).status_code == 200
        assert sub.receive_json()["seq"] == 1
    assert "broken" in capsys.readouterr().err


def test_an_event_the_backend_cannot_store_gets_a_retry_error(make_client):
    backend = RefusingBackend()
    client = make_client(backend=backend)
    backend.down = True
    with client.websocket_connect("/ws/publish") as pub:
        pub.send_json(progress(event_id="later"))
        reply = pub.receive_json()
    assert reply["type"] == "error" and reply["retry"] is True and reply["field"] is None
    assert reply["event_id"] == "later" and "cannot accept events right now" in reply["error"]
    assert client.get("/healthz").json()["status"] == "degraded"
    response = client.post("/api/events", json=[progress()])
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    assert response.json()["retry"] is True and response.json()["seqs"] == []


def test_an_invalid_event_is_not_worth_a_retry(client):
    with client.websocket_connect("/ws/publish") as pub:
        pub.send_json(progress(pct=101))
        assert pub.receive_json()["retry"] is False
        pub.send_text("{nope")
        assert pub.receive_json()["retry"] is False


def test_post_a_single_invalid_event_names_index_0(client):
    response = client.post("/api/events", json=progress(pct=101))  # one event, not an array
    assert response.status_code == 400
    body = response.json()
    assert (body["index"], body["field"]) == (0, "progress") and "101" in body["error"]
    first = client.post("/api/events", json=[progress(pct=-1), progress()]).json()
    assert (first["index"], first["field"]) == (0, "progress")
    assert client.get("/healthz").json()["seq"] == 0


def test_post_a_batch_refused_partway_is_503_with_the_stored_seqs_and_the_index(make_client):
    backend = RefusingBackend()
    backend.refuse_once = {"third"}
    client = make_client(backend=backend)
    batch = [activity(1), activity(2), activity(3) | {"event_id": "third"}, activity(4)]
    with client.websocket_connect("/ws") as sub:
        assert sub.receive_json()["seq"] == 0
        response = client.post("/api/events", json=batch)
        assert response.status_code == 503 and response.headers["retry-after"] == "1"
        body = response.json()
        assert (body["seqs"], body["index"], body["retry"]) == ([1, 2], 2, True)
        assert "cannot accept events right now" in body["error"]
        assert backend.refused == ["third"]  # nothing behind it was tried
        assert client.get("/healthz").json()["seq"] == 2
        again = client.post("/api/events", json=batch[body["index"]:])  # resend the rest
        assert again.status_code == 200 and again.json()["seqs"] == [3, 4]
        got = [sub.receive_json() for _ in range(4)]
    assert [(e["seq"], e["activity"]["id"]) for e in got] == [
        (1, "act_1"), (2, "act_2"), (3, "act_3"), (4, "act_4")]


def test_server_hooks_run_before_the_broadcast(make_client, monkeypatch):
    from mlops_hooks.manager import create_plugin_manager, hookimpl

    order: list[tuple[str, int]] = []

    class Watcher:
        @hookimpl
        def mlops_activity_update(self, event):
            order.append(("mlops_activity_update", event.seq))

        @hookimpl
        def mlops_event(self, event):
            order.append(("mlops_event", event.seq))

    pm = create_plugin_manager("server", builtins=False, entrypoints=False)
    pm.register(Watcher(), name="watcher")
    client = make_client(plugins=pm)
    hub = client.app.state.core.hub
    broadcast = hub.broadcast

    def spy(record):
        order.append(("broadcast", record.seq))
        broadcast(record)

    monkeypatch.setattr(hub, "broadcast", spy)
    with client.websocket_connect("/ws") as sub:
        sub.receive_json()
        client.post("/api/events", json=[activity(1), activity(2)])
        assert [sub.receive_json()["seq"] for _ in range(2)] == [1, 2]
    assert len(order) == 6
    for seq, (first, second, third) in ((1, order[:3]), (2, order[3:])):
        assert {first, second} == {("mlops_activity_update", seq), ("mlops_event", seq)}
        assert third == ("broadcast", seq)  # both hooks ran before any subscriber got it
