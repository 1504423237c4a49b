"""How a script's end settles the runs it left open (used by ``mlops_hooks.wandb``).

A run registered with :func:`watch` is settled even when the script never says it is done:

* an uncaught exception (``sys.excepthook``, chained: the previous hook still runs) fails it
  with that exception, its stage and its progress;
* at interpreter exit, a run still open is completed (``on_exit="complete"``: W&B's rule, a
  script that ends normally without ``finish()`` succeeded) or failed
  (``on_exit="fail"``).

The exit handler is registered when the first run is watched, after that run has started and
so after the publisher's own exit flush was registered: handlers run in reverse order, so the
completion or failure is sent before the publisher flushes.
"""

from __future__ import annotations

import atexit
import sys
import threading
import types
import weakref
from typing import Literal

from mlops_hooks.run.lifecycle import Run

__all__ = ["forget", "watch"]

OnExit = Literal["complete", "fail"]

_open: weakref.WeakKeyDictionary[Run, OnExit] = weakref.WeakKeyDictionary()
_lock = threading.Lock()
_installed = False
_previous_hook = sys.excepthook


def watch(run: Run, on_exit: OnExit = "complete") -> None:
    """Settle ``run`` when an exception ends the script (failed) or the script exits (``on_exit``).

    Raises:
        ValueError: ``on_exit`` is neither ``"complete"`` nor ``"fail"``.
    """
    global _installed, _previous_hook
    if on_exit not in ("complete", "fail"):
        raise ValueError(f"on_exit must be 'complete' or 'fail', got {on_exit!r}")
    with _lock:
        _open[run] = on_exit
        if _installed:
            return
        _installed = True
        _previous_hook = sys.excepthook
        sys.excepthook = _excepthook
        atexit.register(_at_exit)


def forget(run: Run) -> None:
    """Stop watching ``run`` (it was finished by the script)."""
    with _lock:
        _open.pop(run, None)


def _settle(exception: BaseException | None) -> None:
    with _lock:
        runs = [(run, how) for run, how in _open.items() if run.active]
        _open.clear()
    for run, how in runs:
        try:
            if exception is not None:
                run.fail(exception)
            elif how == "complete":
                run.complete()
            else:
                run.fail(SystemExit("the process exited before the run finished"))
        except Exception as exc:  # monitoring must not hide the user's traceback
            sys.stderr.write(f"mlops-hooks: could not report {run.run_id}: {exc!r}\n")


def _excepthook(exc_type: type[BaseException], exc: BaseException,
                tb: types.TracebackType | None) -> None:
    _settle(exc)
    _previous_hook(exc_type, exc, tb)


def _at_exit() -> None:
    _settle(None)
