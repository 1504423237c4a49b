from __future__ import annotations

import hashlib
import json
from pathlib import Path

import msgspec
import pytest

from mlops_hooks import events as ev
from tests.spec_examples import _CANDIDATES, optional_keys, payload_examples, spec_path

EXAMPLES = payload_examples()


def test_every_spec_event_type_has_a_class_and_an_example():
    assert [e["type"] for e in EXAMPLES] == list(ev.EVENT_TYPES)
    assert len(ev.EVENT_TYPES) == 12


#: SHA-256 of the spec as vendored from ``../shared/spec`` (refresh both together).
SPEC_SHA256 = "c4906ea3089064559357b8535e0a34fd93e5f981aba4f3536367971f1d1445a4"


def test_vendored_spec_copy_matches_the_shared_spec():
    """The vendored copy is the contract: byte for byte the shared spec when it is beside this
    checkout (as in the workspace), and the recorded digest of it everywhere (a clean clone)."""
    shared = Path(_CANDIDATES[1])
    copy = Path(_CANDIDATES[2])
    assert hashlib.sha256(copy.read_bytes()).hexdigest() == SPEC_SHA256, (
        "tests/data/websocket-api.md differs from the vendored spec: refresh it and SPEC_SHA256")
    if shared.is_file():
        assert copy.read_text() == shared.read_text(), "refresh tests/data/websocket-api.md"
        assert spec_path() == shared
    else:
        assert spec_path() == copy


def _without_optional(example: dict) -> dict:
    optional = optional_keys().get(example["type"], set())
    return {k: v for k, v in example.items() if k not in optional}


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e["type"])
def test_spec_example_round_trips_field_for_field(example):
    payload = _without_optional(example)
    raw = json.dumps(payload).encode()
    event = ev.decode(raw)
    assert type(event) is ev.EVENT_CLASSES[payload["type"]]
    assert json.loads(ev.encode(event)) == payload
    assert ev.to_dict(ev.from_dict(payload)) == payload


def test_optional_error_field_of_file_validated():
    example = next(e for e in EXAMPLES if e["type"] == "file_validated")
    failed = dict(example, status="error")
    event = ev.decode(json.dumps(failed))
    assert event.error == "Invalid file format"
    with pytest.raises(ev.EventError, match=r"file_validated\.error: expected no error"):
        ev.decode(json.dumps(example))  # error present with status success
    no_error = {k: v for k, v in failed.items() if k != "error"}
    with pytest.raises(ev.EventError, match="non-empty error when status is 'error'"):
        ev.decode(json.dumps(no_error))


def test_envelope_fields_encode_and_defaults_are_omitted():
    event = ev.TrainingProgress(progress=65, stage="model_training", run_id="r1", seq=7,
                                timestamp="2025-12-06T10:30:00Z", event_id="e-1")
    assert json.loads(ev.encode(event)) == {
        "type": "training_progress", "progress": 65, "stage": "model_training",
        "run_id": "r1", "seq": 7, "timestamp": "2025-12-06T10:30:00Z", "event_id": "e-1",
    }
    assert event.type == "training_progress"


def test_activity_keeps_explicit_nulls():
    example = next(e for e in EXAMPLES if e["type"] == "activity_update")
    assert example["activity"]["duration"] is None
    assert json.loads(ev.encode(ev.decode(json.dumps(example))))["activity"]["duration"] is None


@pytest.mark.parametrize(
    ("payload", "field", "expected", "got"),
    [
        ({"type": "training_progress", "progress": 150, "stage": "model_training"},
         "progress", "a number <= 100", "150"),
        ({"type": "training_progress", "progress": -1, "stage": "model_training"},
         "progress", "a number >= 0", "-1"),
        ({"type": "training_progress", "progress": "x", "stage": "model_training"},
         "progress", "a number or null", "'x'"),
        ({"type": "training_progress", "progress": 5, "stage": "training"},
         "stage", "one of 'data_preparation', 'feature_engineering'", "'training'"),
        ({"type": "bogus"}, "type", "one of model_deployed", "unknown type 'bogus'"),
        ({"type": [], "model_name": "m"}, "type", "a string", "[]"),
        ({"type": {"a": 1}}, "type", "a string", '{"a":1}'),
        ({"progress": 5}, "type", "one of model_deployed", "missing"),
        ({"type": "model_status_change", "status": "running", "model_id": "m"},
         "status", "one of 'active', 'error', 'inactive', 'training'", "'running'"),
        ({"type": "system_metrics", "current_health": "ok"}, "current_health",
         "one of 'critical', 'healthy', 'warning'", "'ok'"),
        ({"type": "system_alert", "alert": {"id": "a", "title": "t", "priority": "urgent"}},
         "alert.priority", "one of 'high', 'low', 'medium'", "'urgent'"),
        ({"type": "file_validated", "status": "maybe", "filename": "f.csv"}, "status",
         "one of 'error', 'success'", "'maybe'"),
        ({"type": "model_deployed", "model_name": "m", "model_accuracy": 97.3},
         "model_accuracy", "a number <= 1", "97.3"),
        ({"type": "training_progress", "stage": "validation", "current_epoch": 1.5},
         "current_epoch", "an integer or null", "1.5"),
        ({"type": "training_progress", "stage": "validation", "progres": 5},
         "progres", "only known fields", "unknown field 'progres'"),
        ({"type": "model_deployed"}, "model_name", "a value (the field is required)", "missing"),
        ({"type": "prediction_volume", "total_predictions": 5, "timestamp": "yesterday"},
         "timestamp", "an ISO-8601 date-time", "'yesterday'"),
        ({"type": "training_failed", "error": "x", "error_code": "bad code"},
         "error_code", "an upper-case code such as 'MEMORY_ERROR'", "'bad code'"),
    ],
)
def test_decode_errors_name_field_expected_and_got(payload, field, expected, got):
    for decoder in (lambda p: ev.decode(json.dumps(p)), ev.from_dict):
        with pytest.raises(ev.EventError) as info:
            decoder(payload)
        err = info.value
        assert err.field == field
        assert expected in err.expected
        assert got in err.got
        assert field in str(err) and got in str(err)


def test_malformed_json_and_non_objects():
    with pytest.raises(ev.EventError, match="malformed JSON"):
        ev.decode(b"{not json")
    with pytest.raises(ev.EventError, match="expected a JSON object, got 'str'"):
        ev.decode(b'"str"')
    with pytest.raises(ev.EventError, match=r"\[1\] event: expected a JSON object, got 3"):
        ev.decode_many(b'[{"type":"training_progress","stage":"validation"}, 3]')
    deep = "[" * 100_000 + "]" * 100_000  # past the recursion limit: an error, not a crash
    nested = '{"type": "activity_update", "activity": {"id": "a", "title": "t", "metadata": ' \
        + '{"a": ' * 5000 + "1" + "}" * 5000 + "}}"
    for decoder, text in ((ev.decode, deep), (ev.decode_many, deep), (ev.decode, nested),
                          (ev.decode_many, f"[{nested}]")):
        with pytest.raises(ev.EventError, match="JSON nested too deeply"):
            decoder(text)
    bad_utf8 = b'{"type": "model_deployed", "model_name": "\xc3("}'
    for decoder, data in ((ev.decode, bad_utf8), (ev.decode_many, b"[" + bad_utf8 + b"]")):
        with pytest.raises(ev.EventError) as info:
            decoder(data)
        # Our own wording, whatever msgspec's release calls it: the reason and the byte offset.
        offset = data.index(b"\xc3")
        assert str(info.value) == ("event: expected UTF-8 encoded JSON, got invalid UTF-8 "
                                   f"(invalid continuation byte at byte {offset})")


def test_decode_many_accepts_one_or_an_array():
    one = ev.decode_many(b'{"type":"training_progress","stage":"validation"}')
    many = ev.decode_many(b' [{"type":"training_progress","stage":"validation"},'
                          b'{"type":"health_change","current_health":"warning"}]')
    assert [e.type for e in one] == ["training_progress"]
    assert [e.type for e in many] == ["training_progress", "health_change"]
    with pytest.raises(ev.EventError, match=r"\[1\] health_change.current_health"):
        ev.decode_many(b'[{"type":"training_progress","stage":"validation"},'
                       b'{"type":"health_change","current_health":"fine"}]')


def test_error_type_is_a_value_error():
    assert issubclass(ev.EventError, ValueError)


def test_int_and_float_values_are_encoded_exactly():
    raw = (b'{"type":"training_progress","progress":65,"stage":"model_training",'
           b'"current_loss":0.0234}')
    assert ev.encode(ev.decode(raw)) == raw
    assert isinstance(msgspec.json.decode(ev.encode(ev.decode(raw)))["progress"], int)
