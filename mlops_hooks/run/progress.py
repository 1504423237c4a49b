"""Progress and ETA maths of a run: pure arithmetic, with the clock read by the caller.

Progress is ``steps / planned steps`` when the plan knows its steps, else
``epochs done / total epochs``, else unknown (an open-ended run); an adapter whose work is not
a count of equal steps sets it directly (:meth:`Estimator.set_percent`). It never goes back.
The ETA comes from a smoothed step rate, else a smoothed epoch duration, else (explicit
progress) the elapsed time extrapolated.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SMOOTHING", "Estimator", "Plan", "smooth"]

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

    @property
    def started_at(self) -> float:
        """When the run started."""
        return self._t0

    def start(self, now: float, steps: int) -> None:
        """Start measuring at ``now``; a resumed run measures its rate from ``steps`` on."""
        self._t0 = self._rate_t = self._epoch_t = now
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

    def set_percent(self, percent: float) -> None:
        """Progress from here on is given directly (clamped to 0-100, never going back)."""
        self.explicit = max(self.explicit or 0.0, min(max(percent, 0.0), 100.0))

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
            return (now - self._t0) * (100.0 - done) / done if done > 0 else None
        planned = plan.planned_steps
        if planned is not None and self.rate:
            return max(0.0, (planned - steps) / self.rate)
        if plan.total_epochs is not None and self.epoch_secs is not None:
            return max(0.0, (plan.total_epochs - epochs_done) * self.epoch_secs)
        return None
