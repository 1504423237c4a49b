"""Payload examples read from the protocol spec itself (``../shared/spec/websocket-api.md``).

The spec writes JavaScript object literals; this turns each into JSON so tests can check that
the event classes accept exactly what the spec shows.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

_CANDIDATES = [
    os.environ.get("MLOPS_HOOKS_SPEC", ""),
    Path(__file__).resolve().parents[2] / "shared" / "spec" / "websocket-api.md",
    Path(__file__).resolve().parent / "data" / "websocket-api.md",
]


def spec_path() -> Path:
    for candidate in _CANDIDATES:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise FileNotFoundError("websocket-api.md not found; set MLOPS_HOOKS_SPEC")


def _strip_comments(text: str) -> str:
    out = []
    for line in text.splitlines():
        in_str: str | None = None
        cut = len(line)
        for i, ch in enumerate(line):
            if in_str:
                if ch == in_str and line[i - 1] != "\\":
                    in_str = None
            elif ch in "'\"":
                in_str = ch
            elif line.startswith("//", i):
                cut = i
                break
        out.append(line[:cut])
    return "\n".join(out)


def js_to_json(literal: str) -> Any:
    """Convert one JavaScript object literal from the spec into a Python value."""
    text = _strip_comments(literal)
    text = re.sub(r"'((?:[^'\\]|\\.)*)'", lambda m: json.dumps(m.group(1)), text)
    text = re.sub(r"([{,]\s*)([A-Za-z_][A-Za-z0-9_]*)\??\s*:", r'\1"\2":', text)
    text = re.sub(r",(\s*[}\]])", r"\1", text)
    return json.loads(text)


def payload_examples() -> list[dict[str, Any]]:
    """Every ``**Payload:**`` example of the spec, in document order."""
    text = spec_path().read_text(encoding="utf-8")
    blocks = re.findall(r"\*\*Payload:\*\*\s*```javascript\n(.*?)```", text, re.S)
    return [js_to_json(block) for block in blocks]


def optional_keys() -> dict[str, set[str]]:
    """Keys the spec marks optional (``error?:``), by event type."""
    text = spec_path().read_text(encoding="utf-8")
    result: dict[str, set[str]] = {}
    for block in re.findall(r"\*\*Payload:\*\*\s*```javascript\n(.*?)```", text, re.S):
        kind = re.search(r"type:\s*'([a-z_]+)'", block)
        keys = set(re.findall(r"([A-Za-z_]+)\?:", block))
        if kind and keys:
            result[kind.group(1)] = keys
    return result
