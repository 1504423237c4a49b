"""Hypothesis strategies for what a broken or hostile publisher may send.

Bodies are built from the spec's own payload examples, damaged in the ways real clients get
things wrong (a field missing, of the wrong type, out of range, an unknown value or name, the
wrong ``type`` tag, nested objects broken, envelope fields garbled), plus arbitrary JSON, JSON
cut short, ``NaN``/``Infinity`` tokens, arrays mixing good and bad events, and raw bytes.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import strategies as st

from mlops_hooks import events as ev
from tests.spec_examples import payload_examples

EXAMPLES = [e for e in payload_examples()
            if not (e["type"] == "file_validated" and e.get("status") == "success")]
FIELD_NAMES = sorted({name for cls in (*ev.EVENT_CLASSES.values(), ev.Activity, ev.Alert)
                      for name in cls.__struct_fields__})
TYPE_NAMES = [*ev.EVENT_TYPES, "", "ping", "pong", "ack", "snapshot", "replay", "error",
              "TRAINING_PROGRESS", "training-progress", "training_progress "]
ENVELOPE = ["seq", "timestamp", "run_id", "event_id", "type"]

WEIRD_STRINGS = st.sampled_from([
    "", " ", "\x00", "\u202e", "\ufeff", "🔥" * 50, "a" * 2000, "2025-13-45T99:99:99Z",
    "not-a-date", "NaN", "Infinity", "-1", "1e309", "null", "true", "<script>alert(1)</script>",
    "'; DROP TABLE runs; --", "../../etc/passwd", "\\u0000", "%s%s%s", "{{7*7}}",
])
LEAVES = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
          | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=40)
          | WEIRD_STRINGS)
_SHALLOW = (st.lists(LEAVES, max_size=3)
            | st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=8), LEAVES,
                              max_size=3))
#: JSON values two levels deep at most (deeper nesting is in EDGE_CASES): a recursive strategy
#: would cost most of the run's time in generation, not in the server.
JSON_VALUES = LEAVES | _SHALLOW | st.lists(_SHALLOW, max_size=2)


_ACTIONS = st.sampled_from(["set", "delete", "type", "nested", "envelope"])
_NEW_KEYS = st.sampled_from(FIELD_NAMES) | st.text(max_size=12)
_TYPES = st.sampled_from(TYPE_NAMES) | LEAVES
_ENVELOPE = st.sampled_from(ENVELOPE)


def _pick(draw: st.DrawFn, items: list[Any]) -> Any:
    """One of ``items`` (an index draw: cheaper than building a strategy per call)."""
    return items[draw(st.integers(min_value=0, max_value=len(items) - 1))]


@st.composite
def damaged_event(draw: st.DrawFn) -> dict[str, Any]:
    """A spec example with one to four things changed (most changes make it invalid)."""
    event: dict[str, Any] = copy.deepcopy(_pick(draw, EXAMPLES))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        action = draw(_ACTIONS)
        keys = list(event)
        if action == "set":
            key = _pick(draw, keys) if keys and draw(st.booleans()) else draw(_NEW_KEYS)
            event[key] = draw(JSON_VALUES)
        elif action == "delete" and keys:
            del event[_pick(draw, keys)]
        elif action == "type":
            event["type"] = draw(_TYPES)
        elif action == "nested":
            nested = [k for k, v in event.items() if isinstance(v, dict)]
            if nested:
                inner = event[_pick(draw, nested)]
                if inner and draw(st.booleans()):
                    inner.pop(_pick(draw, list(inner)))
                else:
                    inner[draw(_NEW_KEYS)] = draw(JSON_VALUES)
        else:
            event[draw(_ENVELOPE)] = draw(LEAVES)
    return event


def _dumps(value: Any) -> str:
    return json.dumps(value, allow_nan=True)  # NaN/Infinity tokens are not JSON: good input


@st.composite
def body(draw: st.DrawFn) -> str | bytes:
    """One message or request body: text (mostly JSON-ish) or raw bytes."""
    kind = draw(st.sampled_from(["event", "event", "event", "array", "json", "cut", "bytes",
                                 "text"]))
    if kind == "event":
        return _dumps(draw(damaged_event()))
    if kind == "array":
        return _dumps(draw(st.lists(damaged_event() | JSON_VALUES, max_size=6)))
    if kind == "json":
        return _dumps(draw(JSON_VALUES))
    if kind == "cut":
        text = _dumps(draw(damaged_event()))
        return text[: draw(st.integers(min_value=0, max_value=max(0, len(text) - 1)))]
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    return draw(st.text(max_size=300))


#: Hand-picked edge cases, sent on top of the generated ones.
EDGE_CASES: list[str | bytes] = [
    "", " ", "null", "[]", "{}", "[[]]", '"training_progress"', "0", "-0", "1e999999",
    "[" * 100_000 + "]" * 100_000,  # nesting far past any sane depth
    '{"type": "training_progress", "progress": 1e999, "stage": "model_training"}',
    '{"type": "training_progress", "progress": NaN, "stage": "model_training"}',
    '{"type": "training_progress", "progress": 50, "stage": "model_training", "progress": "x"}',
    '{"type": "activity_update", "activity": {"id": "\\ud800", "title": "lone surrogate"}}',
    '{"type": "training_progress", "progress": 50, "stage": "model_training", "run_id": "'
    + "r" * 70_000 + '"}',  # over the WebSocket message limit (64 KiB)
    "\ufeff" + _dumps(EXAMPLES[0]),  # a byte-order mark in front of a valid event
    _dumps([EXAMPLES[0]] * 5000),  # a large but valid batch (~1 MiB boundary for POST)
    b"\xff\xfe\x00\x00",
    b'{"type": "model_deployed", "model_name": "\xc3\x28"}',  # invalid UTF-8
]
