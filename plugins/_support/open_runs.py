"""A safety net for runs a framework can end without telling the adapter.

Keras has no exception hook: when ``fit`` raises outside a training or validation step (in the
data pipeline, in another callback), the adapter is not called again. A run registered here is
still reported as failed:

* by an uncaught exception: ``sys.excepthook`` is chained (the previous hook still runs), and the
  run fails with that exception, its stage and its progress;
* at interpreter exit, if it is still open (the exception was caught and ignored): it fails with
  "the process exited before the run finished";
* by SIGTERM (in the main thread, while SIGTERM has its default action): it fails as
  ``TERMINATED`` (:mod:`mlops_hooks.run.signals`), then the process dies of SIGTERM.

Both run before the publisher's exit flush, so the failure reaches the server.
"""

from __future__ import annotations

import atexit
import sys
import threading
import types
import weakref

from mlops_hooks.run import Run, signals

__all__ = ["forget", "open_runs", "report_open_runs", "watch"]

_open: weakref.WeakSet[Run] = weakref.WeakSet()
_lock = threading.Lock()
_installed = False
_previous_hook = sys.excepthook


def watch(run: Run) -> None:
    """Report ``run`` as failed if the process ends (or an exception escapes) while it is open."""
    global _installed, _previous_hook
    signals.watch(run)  # SIGTERM: reported as killed, then the default action
    with _lock:
        _open.add(run)
        if _installed:
            return
        _installed = True
        _previous_hook = sys.excepthook
        sys.excepthook = _excepthook
        atexit.register(_at_exit)


def forget(run: Run) -> None:
    """Stop watching ``run`` (it completed or failed)."""
    signals.unwatch(run)
    with _lock:
        _open.discard(run)


def open_runs() -> list[Run]:
    """The watched runs that are still open."""
    with _lock:
        return [run for run in _open if run.active]


def report_open_runs(exception: BaseException) -> None:
    """Fail every open run with ``exception`` (never raises)."""
    for run in open_runs():
        try:
            run.fail(exception)
        except Exception as exc:  # monitoring must not hide the user's traceback
            sys.stderr.write(f"mlops-hooks: could not report {run.run_id}: {exc!r}\n")
        forget(run)


def _excepthook(exc_type: type[BaseException], exc: BaseException,
                tb: types.TracebackType | None) -> None:
    report_open_runs(exc)
    _previous_hook(exc_type, exc, tb)


def _at_exit() -> None:
    report_open_runs(SystemExit("the process exited before the run finished"))
