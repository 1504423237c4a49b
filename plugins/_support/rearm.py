"""Give a callback back a hook it switched off, at a given time, from one background thread.

A framework that looks a hook up on every batch (Lightning does ``getattr`` and skips it when
it is not callable) pays nothing for a hook that is ``None``. A callback whose per-batch hook
has nothing to do until its next progress event sets the instance attribute to ``None``
and asks :func:`rearm_at` to remove it again at that time: in between, the framework does
not even enter the call. The thread (``mlops-hooks-rearm``) is started lazily, once per run
(again in a child after ``fork``); it holds callbacks weakly, so it keeps nothing alive, and
:func:`release` ends it with the run, so no thread of ours outlives a ``fit``.

The clock is bound at import (``_now``): a test or a user's code that patches
``time.perf_counter`` never has its values read by this thread.
"""

from __future__ import annotations

import heapq
import itertools
import os
import threading
import time
import weakref
from typing import Any

__all__ = ["rearm_at", "release"]

_now = time.perf_counter  # bound at import: patching the time module never reaches us

_cond = threading.Condition()
_heap: list[tuple[float, int, weakref.ref[Any], str]] = []
_tie = itertools.count()
_pid: int | None = None
_thread: threading.Thread | None = None  # the running thread; it ends when this is not it


def _after_fork_in_child() -> None:
    """A fresh lock and no thread in a forked child (the parent's lock may have been held)."""
    global _cond, _pid, _thread
    _cond = threading.Condition()
    _heap.clear()
    _pid = None
    _thread = None


os.register_at_fork(after_in_child=_after_fork_in_child)


def rearm_at(callback: Any, hook: str, when: float) -> None:
    """Remove ``callback``'s instance attribute ``hook`` at ``when`` (``time.perf_counter()``).

    Args:
        callback: The object whose class defines ``hook``; its instance attribute (``None``,
            set by the caller) hides the method until then.
        hook: The attribute name, e.g. ``"on_train_batch_end"``.
        when: The ``time.perf_counter()`` value at which the method is visible again.
    """
    global _pid, _thread
    with _cond:
        if _pid != os.getpid():  # first use in this process (or a forked child)
            _heap.clear()
            _pid = os.getpid()
            _thread = None
        if _thread is None:
            _thread = threading.Thread(target=_loop, name="mlops-hooks-rearm", daemon=True)
            _thread.start()
        heapq.heappush(_heap, (when, next(_tie), weakref.ref(callback), hook))
        _cond.notify()


def release(callback: Any) -> None:
    """Forget ``callback``'s pending re-arms (its run ended); end the thread if none is left.

    The thread is joined before returning (it only has to wake up), so when the last run of
    the process ends, the thread is gone. Hooks are not re-armed: the caller restores them.

    Args:
        callback: The object given to :func:`rearm_at`.
    """
    global _thread
    with _cond:
        if _pid != os.getpid() or _thread is None:
            return
        keep = [e for e in _heap if e[2]() not in (callback, None)]
        if len(keep) != len(_heap):
            _heap[:] = keep
            heapq.heapify(_heap)
        thread = None
        if not _heap:
            thread, _thread = _thread, None
        _cond.notify()
    if thread is not None and thread is not threading.current_thread():
        thread.join()


def _loop() -> None:
    me = threading.current_thread()
    with _cond:
        while _thread is me:
            if not _heap:
                _cond.wait()
                continue
            delay = _heap[0][0] - _now()
            if delay > 0:
                _cond.wait(delay)
                continue
            _, _, ref, hook = heapq.heappop(_heap)
            callback = ref()
            if callback is not None:
                callback.__dict__.pop(hook, None)
