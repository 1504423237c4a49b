"""The snapshot's size bound: summaries, not series, within a byte budget per section.

A subscriber's first frame must stay small whatever the history holds (a client with a 1 MiB
message limit must be able to subscribe, and the snapshot counts against the subscriber's
queue budget). Each entry is summarised (long texts cut, large objects and lists shortened,
marked ``"truncated": true``) and each section keeps its newest entries while they fit its
budget; older runs keep their summary but lose their chart points first. The full data stays
on the REST endpoints (``/api/models``, ``/api/activity``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

__all__ = ["BUDGETS", "SNAPSHOT_MAX_BYTES", "TEXT_CHARS", "fit", "summarise", "summarise_run"]

#: Characters kept of a text in a snapshot entry (the rest is replaced by an ellipsis).
TEXT_CHARS = 512
#: Keys kept of an object, items kept of a list, inside a snapshot entry.
MAX_KEYS, MAX_ITEMS = 32, 16
#: Encoded bytes each section of the snapshot may fill (newest entries first).
BUDGETS = {"models": 24 * 1024, "runs": 112 * 1024, "activity": 40 * 1024,
           "alerts": 40 * 1024, "uploads": 16 * 1024}
#: What the snapshot never exceeds: its sections' budgets, plus ``system`` and ``health``
#: (summarised: a few KiB) and the envelope.
SNAPSHOT_MAX_BYTES = 256 * 1024
_encode = msgspec.json.Encoder().encode


def _cut(value: Any, depth: int, cut: list[bool]) -> Any:
    if isinstance(value, str):
        if len(value) > TEXT_CHARS:
            cut[0] = True
            return value[:TEXT_CHARS - 1] + "\u2026"
        return value
    if isinstance(value, dict):
        if depth >= 3 or len(value) > MAX_KEYS:
            cut[0] = True
        if depth >= 3:
            return None
        items = list(value.items())[:MAX_KEYS]
        return {str(k)[:TEXT_CHARS]: _cut(v, depth + 1, cut) for k, v in items}
    if isinstance(value, list):
        if depth >= 3 or len(value) > MAX_ITEMS:
            cut[0] = True
        if depth >= 3:
            return None
        return [_cut(v, depth + 1, cut) for v in value[:MAX_ITEMS]]
    return value


def summarise(entry: dict[str, Any] | None) -> dict[str, Any] | None:
    """``entry`` with long texts cut and large objects shortened; ``"truncated": true`` if so."""
    if entry is None:
        return None
    cut = [False]
    out: dict[str, Any] = {str(k): _cut(v, 1, cut) for k, v in entry.items()}
    if cut[0]:
        out["truncated"] = True
    return out


def summarise_run(run: dict[str, Any]) -> dict[str, Any]:
    """A ``RunState`` dict for the snapshot: its events summarised, its points kept."""
    out = dict(run)
    for key in ("progress", "completed", "failed"):
        out[key] = summarise(run.get(key))
    for key in ("run_id", "model_name", "group"):
        if isinstance(out.get(key), str):
            out[key] = out[key][:TEXT_CHARS]
    return out


def fit(entries: Iterable[dict[str, Any]], budget: int, *,
        shrink: str | None = None) -> list[dict[str, Any]]:
    """The leading ``entries`` (newest first) whose encoded sizes add up to at most ``budget``.

    Args:
        entries: Summarised entries, in the order to keep them.
        budget: Encoded bytes the kept entries may fill.
        shrink: A key emptied (set to ``[]``) from an entry that does not fit whole, which is
            then kept if it fits that way (the chart ``points`` of an older run).
    """
    kept: list[dict[str, Any]] = []
    used = 0
    for entry in entries:
        size = len(_encode(entry))
        if used + size > budget and shrink is not None and entry.get(shrink):
            entry = {**entry, shrink: []}
            size = len(_encode(entry))
        if used + size > budget:
            break
        kept.append(entry)
        used += size
    return kept
