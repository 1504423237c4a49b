"""Act on a Stop request the moment it arrives, on the framework's own stop flag.

An adapter that learns of a Stop request only in its own batch hook sees it one step late when
the request arrives while another callback's part of the step runs (a callback placed after
the adapter's): the framework finishes that step, runs one more, and only then stops. Lightning
reads ``trainer.should_stop`` after every batch (``_TrainingEpochLoop.done``) and Keras reads
``model.stop_training`` after every batch's callbacks (``fit``'s step loop), so the flag can be
set by whichever thread receives the request (the publisher's background thread): the step
running at that moment is the last, whatever the callbacks' order. A plain attribute write is
safe across threads; the batch-hook check stays as the fallback (a request made with
:meth:`~mlops_hooks.run.Run.stop` on the training thread, say).
"""

from __future__ import annotations

import weakref
from typing import Any

from mlops_hooks.run import control

__all__ = ["raise_flag_on_stop"]


def raise_flag_on_stop(run_id: str, owner: Any, attribute: str) -> None:
    """Set ``owner.<attribute> = True`` when ``run_id`` is asked to stop (at once if it was).

    ``owner`` is held weakly (a finished fit keeps nothing alive), and nothing raises into the
    thread that delivers the request (:func:`mlops_hooks.run.control.watch` ignores errors).

    Args:
        run_id: The run whose Stop request stops the fit.
        owner: The framework object holding the flag (a Lightning ``Trainer``, a Keras model).
        attribute: The flag's name (``"should_stop"``, ``"stop_training"``).

    Raises:
        TypeError: ``owner`` cannot be referenced weakly.
    """
    ref = weakref.ref(owner)

    def raise_flag() -> None:
        target = ref()
        if target is not None:
            setattr(target, attribute, True)

    control.watch(run_id, raise_flag)
