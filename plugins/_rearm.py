"""Give a callback back a hook it switched off, at a given time, from one background thread.

A framework that looks a hook up on every batch (Lightning does ``getattr`` and skips it when
it is not callable) pays nothing for a hook that is ``None``. A callback whose per-batch hook
has nothing to do until its next progress event sets the instance attribute to ``None``
and asks :func:`rearm_at` to remove it again at that time: in between, the framework does
not even enter the call. The thread is started lazily, once per process (again in a child
after ``fork``); it holds callbacks weakly, so it keeps nothing alive.
"""

from __future__ import annotations

import heapq
import itertools
import os
import threading
import time
import weakref
from typing import Any

__all__ = ["rearm_at"]

_cond = threading.Condition()
_heap: list[tuple[float, int, weakref.ref[Any], str]] = []
_tie = itertools.count()
_pid: int | None = None


def _after_fork_in_child() -> None:
    """A fresh lock and no thread in a forked child (the parent's lock may have been held)."""
    global _cond, _pid
    _cond = threading.Condition()
    _heap.clear()
    _pid = None


os.register_at_fork(after_in_child=_after_fork_in_child)


def rearm_at(callback: Any, hook: str, when: float) -> None:
    """Remove ``callback``'s instance attribute ``hook`` at ``when`` (``time.perf_counter()``).

    Args:
        callback: The object whose class defines ``hook``; its instance attribute (``None``,
            set by the caller) hides the method until then.
        hook: The attribute name, e.g. ``"on_train_batch_end"``.
        when: The ``time.perf_counter()`` value at which the method is visible again.
    """
    global _pid
    with _cond:
        if _pid != os.getpid():  # first use in this process (or a forked child): own thread
            _heap.clear()
            _pid = os.getpid()
            threading.Thread(target=_loop, name="mlops-hooks-rearm", daemon=True).start()
        heapq.heappush(_heap, (when, next(_tie), weakref.ref(callback), hook))
        _cond.notify()


def _loop() -> None:
    with _cond:
        while True:
            if not _heap:
                _cond.wait()
                continue
            delay = _heap[0][0] - time.perf_counter()
            if delay > 0:
                _cond.wait(delay)
                continue
            _, _, ref, hook = heapq.heappop(_heap)
            callback = ref()
            if callback is not None:
                callback.__dict__.pop(hook, None)
