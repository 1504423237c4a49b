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

**Several processes** (Lightning DDP and the like) must not do that: only the process that
reports (global rank zero) receives the request, and a flag raised there alone makes that rank
leave the loop while the others wait for it in their next collective (a hang, or a crash when
rank zero's process exits). There, :class:`StopAgreement` has every rank agree on the request
at the same batches instead, the way Lightning's ``EarlyStopping`` agrees on its decision (a
sum over the ranks: stop when any rank wants to), and all ranks raise ``should_stop`` together.
The ranks agree about every :data:`AGREE_SECONDS` (and at every epoch's end): each agreement
also settles, from the batch times the ranks measured, how many batches to the next one
(between 1 and :data:`MAX_EVERY`; the first after :data:`FIRST_EVERY`), so every rank counts
the same batches. A distributed Stop therefore takes effect within about
:data:`AGREE_SECONDS` plus one batch; a single process never takes part in a collective.
"""

from __future__ import annotations

import time
import warnings
import weakref
from typing import Any

from mlops_hooks.run import Run, control

__all__ = ["AGREE_SECONDS", "FIRST_EVERY", "MAX_EVERY", "StopAgreement", "agree_across_ranks",
           "raise_flag_on_stop"]

_now = time.perf_counter  # bound at import: patching the time module never reaches us

#: Seconds aimed at between two agreements of a distributed fit on a Stop request. One
#: agreement is an all-reduce of two numbers (on a GPU, a wait for the queued kernels): about
#: 0.4 ms on CPU with gloo (``benchmarks/ddp_stop.py``), so one every 0.25 s costs under 0.2 %
#: of the fit (for steps of 0.25 ms or more), and a Stop takes effect within about 0.25 s.
AGREE_SECONDS = 0.25
#: Batches before the first agreement (no batch time is known yet).
FIRST_EVERY = 8
#: Most batches between two agreements (very fast steps).
MAX_EVERY = 1024


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


class StopAgreement:
    """All ranks of a distributed fit agree on a Stop request, at the same batches.

    Installed as the callback's ``on_train_batch_start`` (an instance attribute, called by
    Lightning with its arguments) on every rank. When the countdown of batches ends, and at
    every :meth:`agree` the callback makes at an epoch's end, each rank contributes whether its
    run (the callback's ``run``: only the reporting rank has one) was asked to stop and how
    many batches it would like to the next agreement (:data:`AGREE_SECONDS` over its mean batch
    time since the last one); one ``strategy.reduce(..., reduce_op="sum")`` gives every rank the
    same sums, so every rank raises ``trainer.should_stop`` when any was asked, and starts the
    same countdown (the mean of the wishes). The batch count is the same on all ranks (Lightning
    runs as many batches on each), so all take part in each agreement. The callback is held
    weakly.

    Args:
        callback: The callback whose ``run`` property gives this process's run.

    Attributes:
        every: Batches from the last agreement to the next.
        agreed: How many agreements this process took part in.
    """

    def __init__(self, callback: Any) -> None:
        self.every = FIRST_EVERY
        self.agreed = 0
        self._left = FIRST_EVERY
        self._callback = weakref.ref(callback)
        self._since = _now()

    def __call__(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        """Lightning's ``on_train_batch_start``: agree when the countdown ends."""
        self._left -= 1
        if self._left <= 0:
            self.agree(trainer)

    def agree(self, trainer: Any) -> None:
        """Take part in one agreement: raise ``should_stop`` if any rank was asked to stop.

        Never raises into training: a collective that fails (a broken process group) fails on
        every rank, and Lightning reports it at its own next collective.
        """
        callback = self._callback()
        run: Run | None = callback.run if callback is not None else None
        wanted = run is not None and run.should_stop
        now = _now()
        batches = self.every - max(self._left, 0)  # since the last agreement
        elapsed = now - self._since
        # none since the last (an epoch's end right after a countdown's): keep the interval
        wish = AGREE_SECONDS * batches / elapsed if batches > 0 and elapsed > 0 else self.every
        self.agreed += 1
        try:
            import torch

            strategy = trainer.strategy
            votes = torch.tensor([float(wanted), float(min(max(wish, 1.0), MAX_EVERY))],
                                 device=strategy.root_device)
            asked, wishes = (float(v) for v in strategy.reduce(votes, reduce_op="sum"))
            if asked > 0:
                trainer.should_stop = True
            self.every = min(max(int(wishes / max(trainer.world_size, 1)), 1), MAX_EVERY)
        except Exception as exc:  # monitoring never raises into training
            _warn_once(exc)
        self._left, self._since = self.every, _now()


_warned: list[bool] = []


def _warn_once(exc: Exception) -> None:
    if not _warned:
        _warned.append(True)
        warnings.warn(f"mlops-hooks: agreeing on a Stop request across ranks failed: "
                      f"{type(exc).__name__}: {exc} (training goes on)", RuntimeWarning,
                      stacklevel=3)


def agree_across_ranks(callback: Any, trainer: Any) -> StopAgreement | None:
    """Install a :class:`StopAgreement` as ``callback.on_train_batch_start`` on several ranks.

    On a single process (``trainer.world_size`` 1) nothing is installed and ``None`` is
    returned: the flag is raised the moment the request arrives (:func:`raise_flag_on_stop`),
    and no collective is ever made. A hook installed by an earlier fit is removed first; one
    left after a fit holds nothing (the callback weakly) and runs no more batches.

    Args:
        callback: The Lightning callback (its class's ``on_train_batch_start`` is ``None``).
        trainer: The Lightning ``Trainer`` being set up.

    Returns:
        The agreement of this fit, or ``None`` on a single process.
    """
    callback.__dict__.pop("on_train_batch_start", None)
    if getattr(trainer, "world_size", 1) <= 1:
        return None
    agreement = StopAgreement(callback)
    callback.on_train_batch_start = agreement
    return agreement
