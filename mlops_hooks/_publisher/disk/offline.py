"""Runs kept on disk: offline runs, spilled runs and what the exit flush could not deliver.

Every run gets its own directory under ``MLOPS_HOOKS_DIR`` (default ``./mlops-hooks-runs``;
:mod:`.mode`), the same layout whichever way the events got there:

* ``events.jsonl``: one event per line, exactly the JSON message sent on ``/ws/publish``
  (``type``, the spec's fields, ``run_id``, the original ``timestamp``, ``event_id``), oldest
  first; appended, never rewritten, so a run resumed in another process adds to it;
* ``run.json``: the run's metadata (``run_id``, ``model_name``, ``group``, ``started``,
  ``ended``, ``status``, ``host``, ``pid``, ``mode``), rewritten atomically as it changes;
* ``sync.json``: written by ``mlops-hooks sync``: how far each server has acknowledged.

Events without a ``run_id`` go to ``no-run-<pid>``. Sending the lines again, in order, is
idempotent: the server recognises every ``event_id`` it already stored. See "Offline run files"
in ``docs/protocol.md``.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from mlops_hooks import events as ev
from mlops_hooks._publisher.buffer import Entry
from mlops_hooks._publisher.disk.mode import DEFAULT_DIR, run_dir, runs_dir
from mlops_hooks._publisher.wire import Invalid, prepare

if TYPE_CHECKING:
    from mlops_hooks._publisher.worker import Worker

__all__ = ["DEFAULT_DIR", "EVENTS", "META", "SYNC", "keep", "keep_and_say", "read_json", "runs_dir",
           "undelivered", "write_json"]

EVENTS = "events.jsonl"
META = "run.json"
SYNC = "sync.json"
_ENDS = {"training_completed": "completed", "training_failed": "failed"}


def undelivered(worker: Worker) -> list[bytes]:
    """The wire messages of every event ``worker`` has not had acknowledged, oldest first.

    Call it once the worker's thread has stopped (or from that thread): in flight, then
    buffered, then still in the inbox. Events that fail validation are left out (they would
    never be accepted).
    """
    payloads: list[bytes] = []
    entries = [item for item in worker.sent if type(item) is Entry]
    entries += worker.buffer.clear()
    for entry in entries:
        if entry.payload is not None:
            payloads.append(entry.payload)
        elif entry.event is not None:
            _append_prepared(payloads, entry.event, entry.enqueued, worker)
    for item in list(worker.mailbox.inbox):
        if type(item) is tuple:
            _append_prepared(payloads, item[0], item[1], worker)
    return payloads


def _append_prepared(payloads: list[bytes], event: ev.Event, enqueued: float,
                     worker: Worker) -> None:
    with contextlib.suppress(Invalid):  # never accepted: not worth keeping
        payloads.append(prepare(event, enqueued, worker.ids)[0])


def keep(payloads: list[bytes], directory: Path | None = None, *,
         how: str = "spilled") -> list[Path]:
    """Append each message to its run's ``events.jsonl``; return the run directories written.

    Args:
        payloads: Wire messages (JSON objects), oldest first.
        directory: Where the run directories go; defaults to :func:`.mode.runs_dir`.
        how: Recorded in ``run.json`` as ``mode``: ``offline`` (``MLOPS_HOOKS_MODE``) or
            ``spilled`` (the server could not be reached).

    Raises:
        OSError: A directory or a file cannot be written.
    """
    directory = directory or runs_dir()
    by_run: dict[Path, tuple[list[bytes], list[dict[str, Any]]]] = {}
    for payload in payloads:
        try:
            row = msgspec.json.decode(payload)
        except msgspec.DecodeError:
            row = {}
        if not isinstance(row, dict):
            row = {}
        run_id = row.get("run_id")
        path = run_dir(run_id if isinstance(run_id, str) else None, directory)
        lines, rows = by_run.setdefault(path, ([], []))
        lines.append(payload)
        rows.append(row)
    for path, (lines, rows) in by_run.items():
        path.mkdir(parents=True, exist_ok=True)
        with (path / EVENTS).open("ab") as file:
            file.write(b"".join(line + b"\n" for line in lines))
        _update_meta(path, rows, how)
    return list(by_run)


def keep_and_say(payloads: list[bytes], count: int, *, how: str = "spilled") -> str:
    """:func:`keep` ``payloads``; say where: ``"N event(s) kept in DIR"`` (or why not).

    Args:
        payloads: Wire messages to write (may be empty when they were written already).
        count: How many events to report as kept.
        how: As for :func:`keep`.
    """
    try:
        dirs = keep(payloads, how=how) if payloads else []
    except OSError as exc:
        return f"{count} event(s) could not be kept on disk ({exc})"
    where = str(dirs[0]) if len(dirs) == 1 else f"{runs_dir()}"
    return f"{count} event(s) kept in {where}" if count else "nothing to keep"


def _update_meta(path: Path, rows: list[dict[str, Any]], how: str) -> None:
    """Fold a batch of events into ``run.json`` (written only when something changed)."""
    old = read_json(path / META)
    meta: dict[str, Any] = dict(old) if old else {
        "run_id": None, "model_name": None, "group": None, "started": None, "ended": None,
        "status": "running", "host": socket.gethostname(), "pid": os.getpid(), "mode": how}
    for row in rows:
        if meta["run_id"] is None and isinstance(row.get("run_id"), str):
            meta["run_id"] = row["run_id"]
        if meta["started"] is None:
            meta["started"] = row.get("timestamp")
        for key in ("model_name", "group"):
            if meta.get(key) is None and isinstance(row.get(key), str):
                meta[key] = row[key]
        status = _ENDS.get(str(row.get("type")))
        if status is not None:
            meta.update(status=status, ended=row.get("timestamp"))
        elif meta["status"] != "running" and row.get("type") == "training_progress":
            meta.update(status="running", ended=None)  # resumed
    if meta != old:
        write_json(path / META, meta)


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``; ``None`` when the file is missing or not a JSON object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` atomically (a reader never sees half a file).

    Raises:
        OSError: The file cannot be written.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)
