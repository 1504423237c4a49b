"""SIGTERM during ``track()``: report the run as killed, then let the default action happen.

A scheduler ends a job with SIGTERM (``scancel``, Kubernetes pod eviction, SLURM pre-emption).
Python's default action ends the process at once, so without this the run would only be seen
to vanish (``crashed``). While a ``track()`` run is active in the main thread and SIGTERM has
its default action, :func:`watch` installs a handler that fails every watched run with
:class:`SIGTERMException` (``error_code: "TERMINATED"``: the server marks the run ``killed``),
waits a bounded time for the publisher to deliver it, restores the default action and sends
SIGTERM again: the process still dies of SIGTERM, as the scheduler expects. The Keras adapter's
runs are watched too (``plugins/_support/open_runs.py``), and so are scikit-learn's (the
callback's fits in the main process, and ``monitored_fit``). When the last watched run ends the
default action is restored. A handler the program installed itself is never replaced.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlops_hooks.run.lifecycle import Run

__all__ = ["FLUSH_SECONDS", "SIGTERMException", "unwatch", "watch", "watching"]

#: Seconds the handler waits for the report to be delivered before the process ends.
FLUSH_SECONDS = 3.0
_runs: list[Run] = []


class SIGTERMException(Exception):
    """The process received SIGTERM (the failure a killed ``track()`` run reports).

    Named like Lightning's, which :func:`mlops_hooks.failures.classify` knows as TERMINATED.
    """


def watch(run: Run) -> None:
    """Report ``run`` as killed if SIGTERM arrives before :func:`unwatch` (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return
    if not _runs:
        try:
            if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
                return  # the program (or a framework) handles SIGTERM its own way
            signal.signal(signal.SIGTERM, _on_sigterm)
        except (ValueError, OSError):  # no signals here (an embedded interpreter)
            return
    _runs.append(run)


def unwatch(run: Run) -> None:
    """``run`` ended: forget it; the last one restores SIGTERM's default action."""
    if run not in _runs:
        return
    _runs.remove(run)
    if not _runs and signal.getsignal(signal.SIGTERM) is _on_sigterm:
        with contextlib.suppress(ValueError):  # not the main thread: the handler stays, idle
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextlib.contextmanager
def watching(run: Run) -> Iterator[Run]:
    """:func:`watch` ``run`` for the ``with`` block, then :func:`unwatch` it."""
    watch(run)
    try:
        yield run
    finally:
        unwatch(run)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    """Report every watched run as killed, flush, then die of SIGTERM."""
    runs = list(_runs)
    _runs.clear()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    for run in runs:
        with contextlib.suppress(Exception):  # reporting must never keep the process alive
            run.fail(SIGTERMException("the process received SIGTERM"))
    _flush()
    os.kill(os.getpid(), signal.SIGTERM)


def _flush() -> None:
    from mlops_hooks.manager import get_plugin_manager

    for _name, plugin in get_plugin_manager("training").list_name_plugin():
        flush = getattr(plugin, "flush", None)
        if callable(flush):
            with contextlib.suppress(Exception):  # a plugin's bug must not keep us alive
                flush(FLUSH_SECONDS)
