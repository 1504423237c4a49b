"""Logged points: one ``training_progress`` carrying exactly the values logged at one step.

For APIs where the user logs named values at a step of their own (``wandb.log``, Lightning's
``Logger.log_metrics``): each call is a point of each key's series (the server's series take
``current_step`` and every key of ``metrics``, docs/protocol.md), with nothing carried over
from earlier steps, so a key logged every tenth step has a point every tenth step.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import cast

import msgspec

from mlops_hooks import events as ev
from mlops_hooks.formatting import to_float
from mlops_hooks.run.lifecycle import Run
from mlops_hooks.run.messages import non_finite

__all__ = ["LOSS_KEYS", "note_loss", "numeric_values", "send_point"]

#: Keys of logged values that are the training loss (W&B-style ``wandb.log``, a Lightning
#: logger's ``log_metrics``): the first one present is the run's loss.
LOSS_KEYS = ("loss", "train/loss", "train_loss", "train.loss", "training_loss", "train_loss_step")

_perf = time.perf_counter


def numeric_values(values: Mapping[str, object]) -> tuple[dict[str, float], list[str]]:
    """The finite numbers of ``values`` (keys capped to the event's key length).

    Returns:
        ``(numbers, skipped)``: the numeric values, and the keys whose value is not a finite
        number (text, media, NaN), which a series cannot hold.
    """
    numbers: dict[str, float] = {}
    skipped: list[str] = []
    limit = ev.MAX_KEY
    for key, value in values.items():
        kind = type(value)
        if (kind is float or kind is int) and type(key) is str and len(key) <= limit:
            plain = cast(float, value)
            if plain - plain == 0:  # finite: NaN and infinities give NaN
                numbers[key] = float(plain)
            else:
                skipped.append(key)
            continue
        number = None if isinstance(value, (bool, str)) else to_float(value)
        if number is None:
            skipped.append(str(key))
        else:
            numbers[str(key)[:ev.MAX_KEY]] = number
    return numbers, skipped


def send_point(run: Run, step: int, values: Mapping[str, float], *,
               advance: bool = True) -> None:
    """Send the values logged at ``step`` as one point of each key's series.

    Not throttled: every call sends (more than 256 keys go as several events of the same
    step). Does nothing for a run that is not active.

    Args:
        run: The run (started, not finished).
        step: The step of the values (``current_step`` of the event), >= 0.
        values: Finite numbers by key (see :func:`numeric_values`).
        advance: Move the run's step count forward to ``step`` (its progress and ETA follow
            it); False when something else counts the run's steps (an adapter's callback).
    """
    if not run.active or step < 0:
        return
    if advance and step > run._steps:
        run._steps = step
    now = _perf()
    run._estimator.count(now, run._steps)
    run.progress = run._percent()
    run._next_emit = now + run.throttle
    base = run.progress_event()
    run.loss_not_finite = base.loss_not_finite is not None  # these events carry the loss too
    items = list(values.items())
    for start in range(0, max(len(items), 1), ev.MAX_METRICS):
        chunk = dict(items[start:start + ev.MAX_METRICS])
        run._emit(msgspec.structs.replace(base, current_step=step, metrics=chunk or None))


def note_loss(run: Run, values: Mapping[str, object]) -> None:
    """Tell ``run`` of a NaN or infinite training loss among logged ``values``.

    The loss is the first of :data:`LOSS_KEYS` present. Logged values become series points,
    which hold finite numbers only; a NaN or infinite loss is given to the run instead, so it
    reaches the dashboard and the alert rules at once (``loss_not_finite``) and a run that
    ends on one fails as a numerical error, as with the framework adapters. A finite loss ends
    that episode (the run is given no finite loss: the key's series carries it, and progress
    events do not repeat it). Steps are not counted here.
    """
    if not run.active:
        return
    for key in LOSS_KEYS:
        if key in values:
            loss = values[key]
            if isinstance(loss, (bool, str)):
                return
            if non_finite(loss) is not None:
                run.step(loss, 0)
            elif non_finite(run._loss) is not None:
                run._loss = None
            return
