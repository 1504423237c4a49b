"""The ``run_params`` protocol extension: decoding, encoding, caps and refusal messages."""

from __future__ import annotations

import json

import pytest

from mlops_hooks import events as ev
from mlops_hooks.manager import hookimpl
from tests.recorder import bare_manager

FULL = {
    "type": "run_params", "run_id": "r1", "model_name": "ResNet", "group": "GridSearchCV(SVC)",
    "params": {"optimizer.lr": 0.1, "optimizer.name": "Adam", "amsgrad": False, "seed": None,
               "max_epochs": 3},
    "metadata": {"host": "box", "pid": 123, "python": "3.11.7",
                 "frameworks": {"torch": "2.13.0", "lightning": "2.6.6"},
                 "command": "python train.py --lr 0.1",
                 "git": {"commit": "0" * 40, "dirty": True}},
    "timestamp": "2025-12-06T10:30:00Z", "seq": 9,
}


def test_run_params_round_trips_field_for_field():
    event = ev.decode(json.dumps(FULL))
    assert type(event) is ev.RunParams
    assert event.params["amsgrad"] is False and event.params["max_epochs"] == 3
    assert json.loads(ev.encode(event)) == FULL
    assert ev.to_dict(ev.from_dict(FULL)) == FULL
    assert ev.decode_many(json.dumps([FULL, FULL])) == [event, event]


def test_a_minimal_run_params_and_null_optionals():
    event = ev.decode('{"type": "run_params", "run_id": "r1", "params": {}, "group": null, '
                      '"model_name": null, "metadata": {"git": null}}')
    assert event == ev.RunParams(run_id="r1", params={}, metadata={"git": None})
    assert json.loads(ev.encode(event)) == {"type": "run_params", "run_id": "r1", "params": {},
                                            "metadata": {"git": None}}


def test_run_params_is_an_extension_outside_the_specs_types():
    assert "run_params" not in ev.EVENT_TYPES and len(ev.EVENT_TYPES) == 12
    assert ev.EXTENSION_TYPES == ("run_params", "host_metrics", "run_state")
    assert {**ev.EVENT_CLASSES, "run_params": ev.RunParams,
            "host_metrics": ev.HostMetrics, "run_state": ev.RunState} == ev.ALL_EVENT_CLASSES
    assert "run_params" in ev.LIFECYCLE_TYPES


def _refusal(payload: dict) -> ev.EventError:
    with pytest.raises(ev.EventError) as info:
        ev.decode(json.dumps(payload))
    return info.value


VALUE_RULE = ("a string of at most 1024 characters, a number within +/-9007199254740991, a "
              "boolean or null (flatten nested values with '.' keys)")


@pytest.mark.parametrize(("params", "field", "got"), [
    ({"ok": 1, "note": "x" * 1025}, "params.note", "a string of 1025 characters"),
    ({"layers": [1, 2]}, "params.layers", "a list"),
    ({"lr": 0.1, "optimizer": {"lr": 0.1}}, "params.optimizer", "an object"),
    ({"seed": 2**60}, "params.seed", str(2**60)),
])
def test_a_param_value_that_is_not_a_capped_scalar_is_named(params, field, got):
    error = _refusal({"type": "run_params", "run_id": "r1", "params": params})
    assert (error.field, error.expected, error.got, error.event_type) == (
        field, VALUE_RULE, got, "run_params")
    assert str(error) == f"run_params.{field}: expected {VALUE_RULE}, got {got}"


def test_the_params_caps():
    at_cap = {"type": "run_params", "run_id": "r1", "params": {f"k{i}": i for i in range(256)}}
    assert len(ev.decode(json.dumps(at_cap)).params) == ev.MAX_PARAMS == 256
    too_many = dict(at_cap, params={f"k{i}": i for i in range(257)})
    error = _refusal(too_many)
    assert (error.field, error.expected) == ("params", "a JSON object of at most 256 keys")
    long_key = _refusal({"type": "run_params", "run_id": "r1", "params": {"k" * 129: 1}})
    assert long_key.field == "params"
    assert long_key.expected == "keys that are a string of at most 128 characters"
    assert long_key.got.startswith("a key of 129 characters")
    text_at_cap = {"type": "run_params", "run_id": "r1", "params": {"k" * 128: "v" * 1024}}
    assert ev.decode(json.dumps(text_at_cap)).params == {"k" * 128: "v" * 1024}


def test_required_fields_and_the_metadata_caps():
    error = _refusal({"type": "run_params", "params": {}})
    assert str(error) == "run_params.run_id: expected a value (the field is required), got missing"
    error = _refusal({"type": "run_params", "run_id": "r1"})
    assert str(error) == "run_params.params: expected a value (the field is required), got missing"
    big = _refusal({"type": "run_params", "run_id": "r1", "params": {},
                    "metadata": {"command": "x" * 20000}})
    assert str(big) == ("run_params.metadata: expected JSON nested at most 6 levels deep and at "
                        "most 16384 bytes encoded, got 20014 bytes")
    deep = _refusal({"type": "run_params", "run_id": "r1", "params": {},
                     "metadata": {"a": {"b": {"c": {"d": {"e": {"f": {"g": 1}}}}}}}})
    assert deep.got == "nested 7 levels deep"
    in_array = json.dumps([FULL, dict(FULL, metadata=[1])])
    with pytest.raises(ev.EventError) as info:
        ev.decode_many(in_array)
    assert str(info.value) == "[1] run_params.metadata: expected a JSON object or null, got [1]"
    unknown = _refusal(dict(FULL, hparams={}))
    assert unknown.got == "unknown field 'hparams'"
    assert unknown.expected == ("only known fields (seq, timestamp, run_id, event_id, params, "
                                "metadata, model_name, group, group_size)")


def test_the_hook_of_its_own_type_is_called_before_mlops_event():
    calls: list[str] = []

    class Plugin:
        @hookimpl
        def mlops_run_params(self, event: ev.RunParams, side: str) -> None:
            calls.append(f"run_params {event.params['lr']} {side}")

        @hookimpl
        def mlops_event(self, event: ev.Event) -> None:
            calls.append(f"event {event.type}")

    manager = bare_manager(plugin=Plugin())
    manager.dispatch(ev.RunParams(run_id="r1", params={"lr": 0.5}))
    assert calls == ["run_params 0.5 training", "event run_params"]
