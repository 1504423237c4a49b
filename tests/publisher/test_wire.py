from __future__ import annotations

import json
import os

import pytest

from mlops_hooks import events as ev
from mlops_hooks._publisher.wire import EventIds, Invalid, prepare
from mlops_hooks.protocol import MAX_MESSAGE_BYTES, decode_reply, retryable

ENQUEUED = 1765017000.25  # 2025-12-06T10:30:00.250Z


def test_prepare_stamps_the_enqueue_time_and_an_event_id_on_a_copy():
    event = ev.TrainingProgress(stage="model_training", progress=65, run_id="r1")
    ids = EventIds()
    payload, event_id = prepare(event, ENQUEUED, ids)
    wire = json.loads(payload)
    assert wire["timestamp"] == "2025-12-06T10:30:00.250Z"
    assert wire["event_id"] == event_id and event_id.startswith(ids.prefix + "-")
    assert wire["progress"] == 65 and wire["run_id"] == "r1"
    assert event.timestamp is None and event.event_id is None  # the emitted event is untouched


def test_prepare_keeps_what_the_producer_set():
    event = ev.TrainingFailed(error="boom", error_code="MEMORY_ERROR",
                              timestamp="2025-12-06T10:25:30Z", event_id="mine-1")
    payload, event_id = prepare(event, ENQUEUED, EventIds())
    wire = json.loads(payload)
    assert event_id == "mine-1" and wire["event_id"] == "mine-1"
    assert wire["timestamp"] == "2025-12-06T10:25:30Z"


def test_event_ids_are_unique_and_carry_a_per_process_prefix():
    a, b = EventIds(), EventIds()
    keys = {a.next() for _ in range(1000)} | {b.next() for _ in range(1000)}
    assert len(keys) == 2000
    assert a.prefix != b.prefix and a.prefix.startswith(f"{os.getpid():x}")


def test_an_invalid_event_is_refused_with_the_field_named():
    event = ev.TrainingProgress(stage="model_training", progress=150)  # not validated on init
    with pytest.raises(Invalid) as info:
        prepare(event, ENQUEUED, EventIds())
    assert "training_progress.progress" in str(info.value) and "150" in str(info.value)
    assert info.value.key == "training_progress:progress"


def test_an_unencodable_event_is_refused():
    event = ev.TrainingProgress(stage="model_training", metrics={"loss": object()})  # type: ignore[dict-item]
    with pytest.raises(Invalid, match="cannot be encoded"):
        prepare(event, ENQUEUED, EventIds())


def test_an_oversized_event_is_refused_before_the_server_would_close_the_connection():
    # Valid field by field (9 suggestions of 8,192 characters), 73 KiB in all.
    event = ev.TrainingFailed(error="oom", error_code="MEMORY_ERROR", suggestions=["s" * 8192] * 9)
    with pytest.raises(Invalid, match=f"{MAX_MESSAGE_BYTES}-byte message limit"):
        prepare(event, ENQUEUED, EventIds())


def test_replies_are_decoded_and_garbage_is_named():
    ack = decode_reply(b'{"type":"ack","seq":5,"event_id":"x-1","duplicate":true}')
    assert (ack.type, ack.seq, ack.event_id, ack.duplicate) == ("ack", 5, "x-1", True)
    err = decode_reply('{"type":"error","error":"bad","field":"progress","event_id":null}')
    assert (err.type, err.field) == ("error", "progress")
    pong = decode_reply('{"type":"pong","id":3,"server_time":"2025-12-06T10:30:00Z"}')
    assert pong.id == 3
    with pytest.raises(ValueError, match="unexpected message from the server"):
        decode_reply(b"not json")
    with pytest.raises(ValueError, match="unexpected message"):
        decode_reply(b'{"seq": 1}')


def test_an_error_reply_says_whether_to_retry():
    def reply(extra: str) -> bool:
        return retryable(decode_reply('{"type":"error","error":"x","event_id":null' + extra + "}"))

    assert reply(',"field":"","retry":true') and reply(',"field":null,"retry":true')
    assert not reply(',"field":null,"retry":false') and not reply(',"field":"progress"')
    assert reply(',"field":null')  # servers older than the retry flag
