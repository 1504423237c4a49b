"""Turn msgspec's validation errors into :class:`EventError` messages a person can act on.

Decoding stays on msgspec's fast path; only a failed decode comes here, where the raw input is
parsed once more to report what actually arrived at the offending field.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

_AT = re.compile(r"^(?P<msg>.*?)(?: - at `(?P<path>\$[^`]*)`)?$", re.S)
_PATH_PART = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")
_MISSING = object()


class EventError(ValueError):
    """An event failed validation, or its JSON is malformed.

    Attributes:
        field: Dotted path of the offending field (``"progress"``, ``"alert.priority"``,
            ``"[2].type"`` for the third event of an array), or ``""`` for the whole message.
        expected: What the field must hold.
        got: A short rendering of what arrived (``"150"``, ``"'runing'"``, ``"missing"``).
        event_type: The event's ``type`` when it is known.
    """

    def __init__(self, field: str, expected: str, got: str, event_type: str | None = None):
        self.field = field
        self.expected = expected
        self.got = got
        self.event_type = event_type
        index, rest = "", field
        if field.startswith("["):
            index, _, rest = field.partition("]")
            index, rest = index + "] ", rest.lstrip(".")
        where = ".".join(p for p in (event_type, rest) if p) or "event"
        super().__init__(f"{index}{where}: expected {expected}, got {got}")


def _render(value: Any) -> str:
    if value is _MISSING:
        return "missing"
    text = repr(value) if isinstance(value, str) else msgspec.json.encode(value).decode()
    return text if len(text) <= 80 else text[:77] + "..."


def _walk(raw: Any, path: str) -> tuple[Any, str]:
    """Follow ``$.a.b[2]`` into ``raw``; return (value there, dotted path)."""
    node: Any = raw
    dotted = ""
    for name, index in _PATH_PART.findall(path):
        if name:
            dotted = f"{dotted}.{name}" if dotted else name
            node = node.get(name, _MISSING) if isinstance(node, dict) else _MISSING
        else:
            dotted = f"{dotted}[{index}]"
            i = int(index)
            node = node[i] if isinstance(node, list) and i < len(node) else _MISSING
    return node, dotted


def _expected(msg: str, classes: dict[str, Any], field_name: str) -> str:
    text = msg.replace("`", "")
    if text.startswith("Expected "):
        text = text[len("Expected ") :]
        text = text.split(", got ", 1)[0]
    for word, nice in (("float", "number"), ("int", "integer"), ("str", "string")):
        text = re.sub(rf"\b{word}\b", nice, text)
    text = text.replace("integer | number", "number").replace(" | null", " or null")
    text = re.sub(r"^(number|string|integer|bool|object|array) or null$", r"a \1 or null", text)
    text = text.replace("a integer", "an integer").replace("a object", "a JSON object")
    text = re.sub(r"^(?:integer|number) ([<>]=?) ", r"a number \1 ", text)
    if text in ("object", "array", "string", "integer", "number", "bool"):
        text = {"object": "a JSON object", "array": "a JSON array", "integer": "an integer"}.get(
            text, f"a {text}"
        )
    if "matching regex" in text and "\\d{4}" in text:
        return "an ISO-8601 date-time such as '2025-12-06T10:30:00Z'"
    if "matching regex '^[A-Z]" in text:
        return "an upper-case code such as 'MEMORY_ERROR' (A-Z, 0-9, _)"
    text = re.sub(r"^string matching", "a string matching", text)
    if field_name == "type" and "Invalid value" in msg:
        return "one of " + ", ".join(classes)
    return text


def _too_deep() -> EventError:
    return EventError("", "JSON nested a few levels deep",
                      "JSON nested too deeply (past the interpreter's recursion limit)")


def _not_utf8(exc: UnicodeDecodeError) -> EventError:
    return EventError("", "UTF-8 encoded JSON",
                      f"invalid UTF-8 ({exc.reason} at byte {exc.start})")


def _utf8_error(data: Any) -> UnicodeDecodeError | None:
    """The :class:`UnicodeDecodeError` of ``data`` when it is bytes that are not UTF-8."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        return None
    try:
        bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc
    return None


def explain(
    exc: msgspec.ValidationError | msgspec.DecodeError | ValueError | RecursionError,
    data: Any,
    classes: dict[str, Any],
) -> EventError:
    """Build the :class:`EventError` for a failed decode of ``data``."""
    if isinstance(exc, RecursionError):
        return _too_deep()
    if isinstance(exc, UnicodeDecodeError):
        return _not_utf8(exc)
    if isinstance(exc, msgspec.DecodeError) and not isinstance(exc, msgspec.ValidationError):
        # Classified from the input, not from msgspec's wording (which changes between releases).
        bad_text = _utf8_error(data)
        if bad_text is not None:
            return _not_utf8(bad_text)
        return EventError("", "a JSON object", f"malformed JSON ({exc})")
    message = str(exc)
    m = _AT.match(message)
    assert m is not None  # the pattern matches any string
    msg, path = m.group("msg"), m.group("path") or "$"
    raw: Any = data
    if isinstance(data, (bytes, str)):
        try:
            raw = msgspec.json.decode(data)
        except msgspec.DecodeError:
            bad_text = _utf8_error(data)
            if bad_text is not None:
                return _not_utf8(bad_text)
            return EventError("", "a JSON object", "malformed JSON")
        except RecursionError:
            return _too_deep()
        except UnicodeDecodeError as bad:
            return _not_utf8(bad)
    value, dotted = _walk(raw, path)
    prefix = dotted
    missing = re.match(r"Object missing required field `([^`]+)`", msg)
    unknown = re.match(r"Object contains unknown field `([^`]+)`", msg)
    leaf = dotted.rsplit(".", 1)[-1]
    event_obj = raw
    if isinstance(raw, list) and dotted.startswith("["):
        index = int(dotted[1 : dotted.index("]")])
        event_obj = raw[index] if index < len(raw) else None
    event_type = event_obj.get("type") if isinstance(event_obj, dict) else None
    if not isinstance(event_type, str) or event_type not in classes:  # [] or {} are unhashable
        event_type = None
    if missing:
        name = missing.group(1)
        field = f"{prefix}.{name}" if prefix else name
        if name == "type":
            return EventError(field, "one of " + ", ".join(classes), "missing")
        return EventError(field, "a value (the field is required)", "missing", event_type)
    if unknown:
        name = unknown.group(1)
        field = f"{prefix}.{name}" if prefix else name
        known = ""
        if event_type and not prefix.startswith(("alert", "activity")):
            known = ", ".join(classes[event_type].__struct_fields__)
        expected = f"only known fields ({known})" if known else "only known fields"
        return EventError(field, expected, f"unknown field {name!r}", event_type)
    if msg.startswith("Invalid enum value"):
        allowed = _allowed_values(classes, event_type, dotted)
        expected = f"one of {allowed}" if allowed else "one of the allowed values"
        return EventError(dotted, expected, _render(value), event_type)
    if "Expected `" not in msg and "Invalid value" not in msg:
        # A __post_init__ check, or another message msgspec phrases itself.
        expected = msg.split(" - at ")[0].replace("`", "").rstrip(".")
        return EventError(dotted, expected, _render(value), event_type)
    if leaf == "type" and isinstance(value, str) and value not in classes:
        return EventError(dotted, "one of " + ", ".join(classes), f"unknown type {value!r}")
    return EventError(dotted, _expected(msg, classes, leaf), _render(value), event_type)


def _allowed_values(classes: dict[str, Any], event_type: str | None, dotted: str) -> str:
    """List the Literal values allowed at ``dotted`` in ``event_type`` (best effort)."""
    if event_type is None:
        return ""
    info: Any = msgspec.inspect.type_info(classes[event_type])
    for part in re.sub(r"^\[\d+\]\.?", "", dotted).split("."):
        fields = getattr(info, "fields", None)
        if fields is None:
            return ""
        match = [f for f in fields if f.name == part]
        if not match:
            return ""
        info = match[0].type
        while isinstance(info, msgspec.inspect.UnionType):
            non_null = [t for t in info.types if not isinstance(t, msgspec.inspect.NoneType)]
            info = non_null[0] if non_null else info
            if not isinstance(info, msgspec.inspect.UnionType):
                break
    values = getattr(info, "values", None)
    if not values:
        return ""
    return ", ".join(repr(v) for v in values)
