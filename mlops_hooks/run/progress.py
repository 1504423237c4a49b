"""Where a run is and how fast it goes: its position, progress and ETA maths.

:class:`Position` (the base of :class:`~mlops_hooks.run.Run`) holds the plan, the steps and
epochs done and the progress they make; :class:`Estimator` holds the smoothed rates. Both are
pure arithmetic: the clock is read by the caller (the run) and passed in.

Progress is ``steps / planned steps`` when the plan knows its steps, else
``epochs done / total epochs``, else unknown (an open-ended run); an adapter whose work is not
a count of equal steps sets it directly (:meth:`Estimator.set_percent`). It never goes back.
The ETA comes from a smoothed step rate, else a smoothed epoch duration, else (explicit
progress) the elapsed time extrapolated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["SMOOTHING", "Estimator", "Plan", "Position", "smooth"]

#: Weight of the newest sample in the exponential moving averages.
SMOOTHING = 0.3


def smooth(average: float | None, sample: float) -> float:
    """The exponential moving average after ``sample``."""
    return sample if average is None else average + SMOOTHING * (sample - average)


@dataclass
class Plan:
    """How big a run is, as far as known (``None``: unknown)."""

    total_epochs: int | None = None
    total_steps: int | None = None
    steps_per_epoch: int | None = None

    @property
    def open_ended(self) -> bool:
        """Neither steps nor epochs are planned: progress has no percentage."""
        return self.total_steps is None and self.total_epochs is None

    @property
    def planned_steps(self) -> int | None:
        """Steps over the whole run: given, or epochs times steps per epoch."""
        if self.total_steps is not None:
            return self.total_steps
        if self.total_epochs is not None and self.steps_per_epoch is not None:
            return self.total_epochs * self.steps_per_epoch
        return None


class Estimator:
    """The smoothed step rate, epoch duration and explicit percentage of one run.

    Times are ``time.perf_counter()`` values the caller passes in.
    """

    __slots__ = (
        "_epoch_t",
        "_first_percent",
        "_first_t",
        "_rate_steps",
        "_rate_t",
        "_t0",
        "epoch_secs",
        "explicit",
        "rate",
    )

    def __init__(self) -> None:
        self.rate: float | None = None  # smoothed steps per second
        self.epoch_secs: float | None = None  # smoothed seconds per epoch
        self.explicit: float | None = None  # progress set directly, not from step counts
        self._t0 = 0.0
        self._rate_t = 0.0
        self._rate_steps = 0
        self._epoch_t = 0.0
        self._first_t: float | None = None  # when explicit progress first moved past 0
        self._first_percent = 0.0

    @property
    def started_at(self) -> float:
        """When the run started."""
        return self._t0

    def start(self, now: float, steps: int) -> None:
        """Start measuring at ``now``; a resumed run measures its rate from ``steps`` on."""
        self._t0 = self._rate_t = self._epoch_t = now
        self._rate_steps = steps

    def rebase(self, steps: int) -> None:
        """Measure the step rate from ``steps`` on (a run that resumed after it started)."""
        self._rate_steps = steps

    def count(self, now: float, steps: int) -> None:
        """Fold the steps done since the last sample into the smoothed rate."""
        elapsed = now - self._rate_t
        done = steps - self._rate_steps
        if elapsed > 0 and done > 0:
            self.rate = smooth(self.rate, done / elapsed)
            self._rate_t, self._rate_steps = now, steps

    def epoch_ended(self, now: float) -> None:
        """Fold the epoch that just ended into the smoothed epoch duration."""
        sample = now - self._epoch_t
        self._epoch_t = now
        self.epoch_secs = smooth(self.epoch_secs, sample)

    def set_percent(self, percent: float, now: float) -> None:
        """Progress from here on is given directly (clamped to 0-100, never going back).

        The first time it moves past 0 is remembered: from then on the ETA is the rate of
        the work itself (the time per unit of work done since), not the time spent before
        the first unit ended (worker start-up, data loading).
        """
        self.explicit = max(self.explicit or 0.0, min(max(percent, 0.0), 100.0))
        if self._first_t is None and self.explicit > 0:
            self._first_t, self._first_percent = now, self.explicit

    def percent(self, plan: Plan, steps: int, epochs_done: int,
                previous: float | None) -> float | None:
        """Whole-run progress, 0-100, never below ``previous``; ``None`` when unknown."""
        planned = plan.planned_steps
        if self.explicit is not None:
            value = self.explicit
        elif planned is not None:
            value = 100.0 * steps / planned
        elif plan.total_epochs is not None:
            value = 100.0 * epochs_done / plan.total_epochs
        else:
            return None
        value = min(value, 100.0)
        previous = previous or 0.0
        return value if value > previous else previous

    def eta(self, now: float, plan: Plan, steps: int, epochs_done: int) -> float | None:
        """Seconds left, or ``None`` when there is nothing to extrapolate from yet."""
        if self.explicit is not None:
            done = self.explicit
            if done >= 100.0:
                return 0.0
            since = now - self._first_t if self._first_t is not None else 0.0
            if since > 0 and done > self._first_percent:  # seconds per percent of work
                return since * (100.0 - done) / (done - self._first_percent)
            return (now - self._t0) * (100.0 - done) / done if done > 0 else None
        planned = plan.planned_steps
        if planned is not None and self.rate:
            return max(0.0, (planned - steps) / self.rate)
        if plan.total_epochs is not None and self.epoch_secs is not None:
            return max(0.0, (plan.total_epochs - epochs_done) * self.epoch_secs)
        return None


def _check_positive(name: str, value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
    return value


def _check_count(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return value


class Position:
    """Where a run is: its plan, the steps and epochs done, and the progress they make.

    The base of :class:`~mlops_hooks.run.Run`, which adds events and the clock. Reading is
    free; changing the position goes through :meth:`set_totals`, :meth:`resume` and
    :meth:`catch_up` (and the run's own lifecycle methods).

    Attributes:
        progress: Whole-run progress of the last event, 0-100 (``None``: open-ended).
    """

    def __init__(self, *, total_epochs: int | None, total_steps: int | None,
                 steps_per_epoch: int | None) -> None:
        self._plan = Plan(_check_positive("total_epochs", total_epochs),
                          _check_positive("total_steps", total_steps),
                          _check_positive("steps_per_epoch", steps_per_epoch))
        self.progress: float | None = None if self._plan.open_ended else 0.0
        self._steps = 0
        self._epochs_done = 0
        self._estimator = Estimator()
        self._final_step: float = math.inf  # the step that reaches 100% is always sent
        self._plan_changed()

    @property
    def steps(self) -> int:
        """Finished steps counted so far (setting it is :meth:`resume` with ``steps``)."""
        return self._steps

    @steps.setter
    def steps(self, steps: int) -> None:
        self.resume(steps=steps)

    @property
    def epochs_done(self) -> int:
        """Epochs finished so far."""
        return self._epochs_done

    @property
    def total_epochs(self) -> int | None:
        """Epochs planned, if known."""
        return self._plan.total_epochs

    @property
    def total_steps(self) -> int | None:
        """Steps planned as given (see :attr:`planned_steps`), if known."""
        return self._plan.total_steps

    @property
    def steps_per_epoch(self) -> int | None:
        """Steps per epoch, given or learnt from the first epoch, if known."""
        return self._plan.steps_per_epoch

    @property
    def planned_steps(self) -> int | None:
        """Steps over the whole run: given, or epochs times steps per epoch."""
        return self._plan.planned_steps

    def set_totals(
        self,
        *,
        total_epochs: int | None = None,
        total_steps: int | None = None,
        steps_per_epoch: int | None = None,
    ) -> None:
        """Update plan sizes learnt after construction (adapters know them only at fit start)."""
        if total_epochs is not None:
            self._plan.total_epochs = _check_positive("total_epochs", total_epochs)
        if total_steps is not None:
            self._plan.total_steps = _check_positive("total_steps", total_steps)
        if steps_per_epoch is not None:
            self._plan.steps_per_epoch = _check_positive("steps_per_epoch", steps_per_epoch)
        if self.progress is None and not self._plan.open_ended:
            self.progress = 0.0
        self._plan_changed()

    def resume(self, *, steps: int | None = None, epochs_done: int | None = None) -> None:
        """Continue from a position restored from a checkpoint (or a fit's initial epoch).

        Allowed until the first step is counted: before :meth:`start`, or right after it
        while :attr:`steps` is still 0. A started run measures its rate from here on.

        Args:
            steps: Steps already done.
            epochs_done: Epochs already done.

        Raises:
            RuntimeError: Steps were already counted.
            ValueError: A count is not an integer >= 0.
        """
        if self._steps:
            raise RuntimeError(f"resume() is only possible before steps are counted; "
                               f"{self._steps} were")
        if steps is not None:
            self._steps = _check_count("steps", steps)
            self._estimator.rebase(self._steps)
        if epochs_done is not None:
            self._epochs_done = _check_count("epochs_done", epochs_done)
        self._plan_changed()

    def stopped_early(self) -> bool:
        """The run ends before its plan: fewer epochs (and steps) done than planned.

        Every known part of the plan must be unfinished, so a count lagging behind (steps
        still queued in a worker thread) never makes a finished run look stopped.
        """
        planned = self._plan.planned_steps
        checks = [self._steps < planned] if planned is not None else []
        if self._plan.total_epochs is not None:
            checks.append(self._epochs_done < self._plan.total_epochs)
        return bool(checks) and all(checks)

    def catch_up(self, n: int) -> None:
        """Count ``n`` finished steps without sending anything.

        For an adapter that skipped :meth:`step` calls (a paused batch hook) or whose batch
        hooks are still queued: the next lifecycle call sends the position.
        """
        if n > 0:
            self._steps += n

    def _plan_changed(self) -> None:
        planned = self._plan.planned_steps
        self._final_step = planned if planned is not None and planned > self._steps else math.inf

    def _percent(self) -> float | None:
        return self._estimator.percent(self._plan, self._steps, self._epochs_done, self.progress)

    def _learn_epoch_length(self) -> None:
        """After an epoch of an unsized plan, take its steps as the epoch length."""
        if self._plan.steps_per_epoch is None and self._plan.total_steps is None and self._steps:
            # Learn the epoch length from the first epoch so progress moves between epoch ends.
            self._plan.steps_per_epoch = max(1, self._steps // self._epochs_done)
            self._plan_changed()
