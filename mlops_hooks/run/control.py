"""Stop requests for the runs of this process (docs/protocol.md, "Stopping a run").

The dashboard's Stop button reaches a training process over its publisher's own connection:
the publisher's background thread calls :func:`request_stop`, which marks the run and calls
the callbacks an adapter registered with :func:`watch` (a Lightning callback re-arms its paused
batch hook there). The training thread reads the mark at its next step boundary
(:attr:`mlops_hooks.run.Run.should_stop`, one dictionary look-up) and stops the framework's own
way; the run then completes with ``stop_reason: "requested"``.

Nothing here blocks or raises into the caller: a watcher that raises is ignored.
"""

from __future__ import annotations

import contextlib
import inspect
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, NamedTuple

__all__ = ["MAX_PENDING", "StopRequest", "forget", "request_stop", "stop_requested", "watch"]

#: Stop requests kept at most (the oldest is forgotten beyond it).
MAX_PENDING = 1024


class StopRequest(NamedTuple):
    """A stop request for one run.

    Attributes:
        run_id: The run to stop.
        request_id: The server's id of the request (``None`` for a local request).
        requested_by: Who asked (the server's account of the token, ``"anonymous"``, or
            ``"local"`` for :meth:`Run.stop`).
        source: Where from (the client's address), when known.
        received: ``time.time()`` when this process received it.
    """

    run_id: str
    request_id: str | None
    requested_by: str
    source: str | None
    received: float


_lock = threading.Lock()
_requests: dict[str, StopRequest] = {}
_watchers: dict[str, list[Callable[[], Any]]] = {}


def _ref(callback: Callable[[], object]) -> Callable[[], Any]:
    """A bound method is held weakly (it keeps no callback alive); anything else strongly."""
    if inspect.ismethod(callback):
        method = weakref.WeakMethod(callback)
        return lambda: (m := method()) is not None and m()
    return callback


def _call(callbacks: list[Callable[[], Any]]) -> None:
    for callback in callbacks:
        with contextlib.suppress(Exception):
            callback()


def request_stop(run_id: str, *, request_id: str | None = None, requested_by: str = "local",
                 source: str | None = None) -> StopRequest:
    """Mark ``run_id`` to stop at its next step boundary and tell its watchers.

    Args:
        run_id: The run.
        request_id: The server's request id.
        requested_by: Who asked.
        source: Where from.

    Returns:
        The request (the first one, when the run was already asked to stop).
    """
    with _lock:
        known = _requests.get(run_id)
        if known is not None:
            return known
        request = _requests[run_id] = StopRequest(run_id, request_id, requested_by, source,
                                                  time.time())
        while len(_requests) > MAX_PENDING:
            _requests.pop(next(iter(_requests)))
        callbacks = _watchers.pop(run_id, [])
    _call(callbacks)
    return request


def stop_requested(run_id: str) -> StopRequest | None:
    """The stop request of ``run_id``, if one arrived (safe on every step: a look-up)."""
    return _requests.get(run_id)


def watch(run_id: str, callback: Callable[[], object]) -> None:
    """Call ``callback`` (on the thread that receives it) when ``run_id`` is asked to stop.

    At once when it already was. A bound method is held weakly. Called once at most.
    """
    with _lock:
        requested = run_id in _requests
        if not requested:
            _watchers.setdefault(run_id, []).append(_ref(callback))
    if requested:
        _call([callback])


def forget(run_id: str) -> None:
    """The run ended: drop its request and watchers."""
    with _lock:
        _requests.pop(run_id, None)
        _watchers.pop(run_id, None)
