"""Events the server never got, kept on disk at exit: the offline run files.

When the exit flush cannot deliver everything (the server was never reached, or did not answer
within ``MLOPS_HOOKS_FLUSH_TIMEOUT``), what is left is written under ``MLOPS_HOOKS_DIR``
(default ``./mlops-hooks-runs``) instead of being dropped:

* one file per run, ``<run_id>.jsonl`` (events without a ``run_id``: ``no-run-<pid>.jsonl``);
* one event per line, exactly the JSON message sent on ``/ws/publish`` (``type``, the spec's
  fields, ``run_id``, ``timestamp``, ``event_id``), oldest first;
* lines are appended, so a run resumed in another process adds to its file.

Sending the lines again, in order, is idempotent: the server recognises every ``event_id`` it
already stored. See "Offline run files" in ``docs/protocol.md``.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from mlops_hooks import events as ev
from mlops_hooks._publisher.buffer import Entry
from mlops_hooks._publisher.wire import Invalid, prepare

if TYPE_CHECKING:
    from mlops_hooks._publisher.worker import Worker

__all__ = ["DEFAULT_DIR", "keep", "runs_dir", "undelivered"]

#: Where offline run files go when ``MLOPS_HOOKS_DIR`` is not set (relative to the cwd).
DEFAULT_DIR = "mlops-hooks-runs"

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def runs_dir() -> Path:
    """``MLOPS_HOOKS_DIR``, else ``./mlops-hooks-runs``."""
    return Path(os.environ.get("MLOPS_HOOKS_DIR", "").strip() or DEFAULT_DIR)


def undelivered(worker: Worker) -> list[bytes]:
    """The wire messages of every event ``worker`` has not had acknowledged, oldest first.

    Call it once the worker's thread has stopped: in flight, then buffered, then still in the
    inbox. Events that fail validation are left out (they would never be accepted).
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


def keep(payloads: list[bytes], directory: Path | None = None) -> list[Path]:
    """Append each message to its run's file; return the files written, in first-use order.

    Args:
        payloads: Wire messages (JSON objects), oldest first.
        directory: Where the files go; defaults to :func:`runs_dir`.

    Raises:
        OSError: The directory or a file cannot be written.
    """
    directory = directory or runs_dir()
    by_file: dict[Path, list[bytes]] = {}
    for payload in payloads:
        try:
            run_id = msgspec.json.decode(payload).get("run_id")
        except (msgspec.DecodeError, AttributeError):
            run_id = None
        name = _UNSAFE.sub("_", run_id)[:200].lstrip(".") if isinstance(run_id, str) else ""
        path = directory / f"{name or f'no-run-{os.getpid()}'}.jsonl"
        by_file.setdefault(path, []).append(payload)
    if by_file:
        directory.mkdir(parents=True, exist_ok=True)
    for path, lines in by_file.items():
        with path.open("ab") as file:
            file.write(b"".join(line + b"\n" for line in lines))
    return list(by_file)
