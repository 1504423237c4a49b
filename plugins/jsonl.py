"""Built-in JSONL recorder: every event as one JSON line in ``MLOPS_HOOKS_JSONL``.

Lines are the wire format (:func:`mlops_hooks.events.encode`), so a recording can be replayed
with ``POST /api/events``. Writes are line-buffered and flushed on close; the file is opened in
append mode, per process (a forked child opens its own handle).
"""

from __future__ import annotations

import os
import threading
from typing import IO

from mlops_hooks import events as ev
from mlops_hooks.manager import hookimpl

__all__ = ["JsonlRecorder", "make_plugin"]


class JsonlRecorder:
    """Append every event to ``path``, one JSON object per line.

    Args:
        path: The file to append to (created with its parent directories).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._file: IO[bytes] | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def _handle(self) -> IO[bytes]:
        if self._file is None or self._pid != os.getpid():
            parent = os.path.dirname(os.path.abspath(self.path))
            os.makedirs(parent, exist_ok=True)
            self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115 - kept open
            self._pid = os.getpid()
        return self._file

    @hookimpl
    def mlops_event(self, event: ev.Event) -> None:
        """Append the event as one line."""
        line = ev.encode(event) + b"\n"
        with self._lock:
            self._handle().write(line)

    def close(self) -> None:
        """Close the file (it is reopened if another event arrives)."""
        with self._lock:
            if self._file is not None and self._pid == os.getpid():
                self._file.close()
            self._file = None


def make_plugin() -> JsonlRecorder | None:
    """Factory: a recorder when ``MLOPS_HOOKS_JSONL`` names a path, else nothing."""
    path = os.environ.get("MLOPS_HOOKS_JSONL", "").strip()
    return JsonlRecorder(path) if path else None
