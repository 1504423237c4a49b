"""Turn msgspec's validation errors into :class:`EventError` messages a person can act on.

Decoding stays on msgspec's fast path; only a failed decode comes here, where the raw input is
parsed once more to report what actually arrived at the offending field. What msgspec refuses
before any field (a duplicate key, a number out of range, a lone surrogate) is classified from
the input itself, by a second parse with the standard library, not from msgspec's wording.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import msgspec

from mlops_hooks._events.fields import MAX_INT, MAX_PARAM_TEXT

_AT = re.compile(r"^(?P<msg>.*?)(?: - at (?P<key>`key` in )?`(?P<path>\$[^`]*)`)?$", re.S)
_LENGTH = re.compile(r"^(object|array|string) of length <= (\d+)$")
_LENGTH_TEXT = {"object": "a JSON object of at most {} keys",
                "array": "a JSON array of at most {} items",
                "string": "a string of at most {} characters"}
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
    length = _LENGTH.match(text)
    if length is not None:
        return _LENGTH_TEXT[length.group(1)].format(length.group(2))
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


class _Found(Exception):
    def __init__(self, error: EventError) -> None:
        super().__init__(str(error))
        self.error = error


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        dup = next(k for i, k in enumerate(keys) if k in keys[:i])
        raise _Found(EventError(dup, "each key once in an object", f"duplicate key {dup!r}"))
    return dict(pairs)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Found(EventError("", "numbers within the range of a 64-bit float",
                                f"number out of range ({text[:40]})"))
    return value


def _constant(text: str) -> Any:
    raise _Found(EventError("", "JSON numbers", f"{text} (not JSON)"))


def _surrogate(value: Any) -> bool:
    """Whether a string anywhere in ``value`` (keys included) holds a lone surrogate."""
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            if any("\ud800" <= c <= "\udfff" for c in node):
                return True
        elif isinstance(node, dict):
            stack.extend(node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


def diagnose(data: Any) -> EventError | None:
    r"""Name what is wrong with JSON ``data`` as JSON, or ``None`` when it is sound JSON.

    Duplicate keys, numbers out of a float's range (``1e400``), ``NaN``/``Infinity`` and lone
    surrogate escapes (``"\ud800"``) are told apart from malformed JSON.
    """
    if isinstance(data, (bytes, bytearray, memoryview)):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            return _not_utf8(exc)
    if not isinstance(data, str):
        return None
    try:
        value = json.loads(data, object_pairs_hook=_unique_keys, parse_float=_finite,
                           parse_constant=_constant)
    except _Found as found:
        return found.error
    except json.JSONDecodeError as exc:
        return EventError("", "a JSON object", f"malformed JSON ({exc.msg} at line "
                                               f"{exc.lineno} column {exc.colno})")
    except RecursionError:
        return _too_deep()
    if _surrogate(value):
        return EventError("", "text that is valid Unicode",
                          "a lone surrogate escape such as '\\ud800' in a string")
    return None


def check_metadata(event: Any, where: str, depth: int, size: int) -> None:
    """Refuse a ``metadata`` object nested deeper than ``depth`` or over ``size`` bytes.

    Checks ``activity.metadata`` (``activity_update``) and ``metadata`` (``run_params``).

    Raises:
        EventError: Naming the field (``where`` prefixes an array index).
    """
    activity_metadata = getattr(getattr(event, "activity", None), "metadata", None)
    if activity_metadata:
        _check_object(event, f"{where}activity.metadata", activity_metadata, depth, size)
    run_metadata = getattr(event, "metadata", None)
    if isinstance(run_metadata, dict) and run_metadata:
        _check_object(event, f"{where}metadata", run_metadata, depth, size)


def _check_object(event: Any, field: str, metadata: Any, depth: int, size: int) -> None:
    deepest, stack = 0, [(metadata, 1)]
    while stack and deepest <= depth:
        node, level = stack.pop()
        deepest = max(deepest, level)
        children = node.values() if isinstance(node, dict) else node
        stack.extend((c, level + 1) for c in children if isinstance(c, (dict, list)))
    encoded = len(msgspec.json.encode(metadata))
    got = (f"nested {deepest} levels deep" if deepest > depth else
           f"{encoded} bytes" if encoded > size else None)
    if got is not None:
        raise EventError(field, f"JSON nested at most {depth} levels "
                         f"deep and at most {size} bytes encoded", got, event.type)


def _param_ok(value: Any) -> bool:
    if value is None or isinstance(value, (bool, float)):
        return True
    if isinstance(value, int):
        return abs(value) <= MAX_INT
    return isinstance(value, str) and len(value) <= MAX_PARAM_TEXT


def _param_error(dotted: str, params: dict[Any, Any]) -> EventError:
    """Name the first parameter of ``params`` whose value is not a JSON scalar within the caps."""
    key, value = next(((k, v) for k, v in params.items() if not _param_ok(v)), ("", _MISSING))
    field = f"{dotted}.{key}" if key else dotted
    got = (f"a string of {len(value)} characters" if isinstance(value, str) else
           "a list" if isinstance(value, list) else "an object" if isinstance(value, dict)
           else _render(value))
    return EventError(field, f"a string of at most {MAX_PARAM_TEXT} characters, a number "
                             f"within +/-{MAX_INT}, a boolean or null (flatten nested values "
                             "with '.' keys)", got, "run_params")


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
        return diagnose(data) or EventError("", "a JSON object", f"malformed JSON ({exc})")
    found = diagnose(data)  # sound JSON for msgspec may still hold a duplicate key or 1e400
    if found is not None:
        return found
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
    if event_type == "run_params" and path.endswith(".params[...]") and isinstance(value, dict):
        return _param_error(dotted, value)
    if m.group("key"):  # a key of a mapping (``metrics``, ``metadata``) is at fault
        keys = [k for k in value if isinstance(k, str)] if isinstance(value, dict) else []
        longest = max(keys, key=len, default="")
        return EventError(dotted, "keys that are " + _expected(msg, classes, ""),
                          f"a key of {len(longest)} characters ({_render(longest)})",
                          event_type)
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
