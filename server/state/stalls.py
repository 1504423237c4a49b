"""Stall detection: no step for k times a run's median step time (and at least a floor).

The clock of a run is the server's own receive time (``time.monotonic()``) of its
``training_progress`` events. An event *advances* the run when its position (step, progress,
epoch or stage) differs from the previous event's; the intervals between advancing events give
the run's median step time. A ``running`` run whose last advance is older than
``max(floor, factor * median)`` is stalled. Until two advancing events have arrived (no median
yet) a run is never called stalled here: the server's stall watchdog (``--stall-timeout``,
events of any kind) still covers a run that hangs before its first step.
"""

from __future__ import annotations

import statistics
from collections import OrderedDict, deque
from typing import Any

from mlops_hooks.formatting import format_duration

__all__ = ["INTERVALS", "StepClock"]

#: Intervals kept per run for its median (the most recent ones).
INTERVALS = 64
#: Runs whose clocks are kept (the least recently advanced go first).
MAX_CLOCKS = 256


def _position(data: dict[str, Any]) -> tuple[Any, ...]:
    return (data.get("current_step"), data.get("progress"), data.get("current_epoch"),
            data.get("stage"))


class _Clock:
    __slots__ = ("intervals", "last_at", "position")

    def __init__(self, position: tuple[Any, ...], now: float) -> None:
        self.position = position
        self.last_at = now
        self.intervals: deque[float] = deque(maxlen=INTERVALS)


class StepClock:
    """Per-run times of advancing steps, and which runs have gone quiet for too long.

    Args:
        factor: ``k``: a run is stalled after ``k`` times its median step time ...
        floor: ... and never before this many seconds without a step.

    Raises:
        ValueError: ``factor`` or ``floor`` is not a positive number.
    """

    def __init__(self, factor: float, floor: float) -> None:
        for name, value in (("stall factor", factor), ("stall floor", floor)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"the {name} must be a number > 0, got {value!r}")
        self.factor = float(factor)
        self.floor = float(floor)
        self._clocks: OrderedDict[str, _Clock] = OrderedDict()

    def progress(self, run_id: str, data: dict[str, Any], now: float) -> bool:
        """Note a ``training_progress`` (its wire dict) received at ``now``.

        Returns:
            Whether it advanced the run (a new step, progress, epoch or stage).
        """
        position = _position(data)
        clock = self._clocks.get(run_id)
        if clock is None:
            self._clocks[run_id] = _Clock(position, now)
            while len(self._clocks) > MAX_CLOCKS:
                self._clocks.popitem(last=False)
            return True
        if position == clock.position:
            return False
        clock.intervals.append(max(0.0, now - clock.last_at))
        clock.position = position
        clock.last_at = now
        self._clocks.move_to_end(run_id)
        return True

    def forget(self, run_id: str) -> None:
        """Drop a run's clock (it ended)."""
        self._clocks.pop(run_id, None)

    def threshold(self, run_id: str) -> float | None:
        """Seconds without a step after which the run is stalled (``None``: no median yet)."""
        clock = self._clocks.get(run_id)
        if clock is None or not clock.intervals:
            return None
        return max(self.floor, self.factor * statistics.median(clock.intervals))

    def stalled(self, run_id: str, now: float) -> str | None:
        """Why the run is stalled at ``now`` (``None``: it is not, or it cannot be told yet)."""
        limit = self.threshold(run_id)
        clock = self._clocks.get(run_id)
        if limit is None or clock is None:
            return None
        quiet = now - clock.last_at
        if quiet < limit:
            return None
        median = statistics.median(clock.intervals)
        return (f"no step for {format_duration(quiet)} ({self.factor:g}x the median step time "
                f"of {format_duration(median)}, at least {format_duration(self.floor)})")
