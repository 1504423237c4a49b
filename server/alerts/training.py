"""Rules on a run's training stream: NaN/Inf loss, divergence, plateau, throughput drop."""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime

from mlops_hooks import events as ev
from mlops_hooks.server.alerts.finding import Finding, Rule, loss_of

__all__ = ["Divergence", "LossNan", "Plateau", "Throughput"]

#: ``training_failed.error_code`` of a run stopped by a NaN or infinite loss.
NUMERICAL_ERROR = "NUMERICAL_ERROR"
#: The run's median rate is recomputed every this many rates (sorting 256 costs microseconds).
MEDIAN_EVERY = 8
_LR = ("Lower the learning rate", "Enable gradient clipping", "Check the input data")


def _label(event: ev.Event) -> str:
    name = getattr(event, "model_name", None)
    run_id = event.run_id or ""
    return f"{name} ({run_id})" if name and name != run_id else run_id


def _number(value: float) -> str:
    return f"{value:.4g}"


class LossNan(Rule[None]):
    """The loss became NaN or infinite.

    Fires at once on a ``training_progress`` with ``loss_not_finite`` (or a non-finite value in
    ``metrics.loss``), else on the run's numerical failure (``training_failed``).
    """

    name = "loss_nan"
    watches = frozenset({"training_progress", "training_failed"})
    alert_type = "loss_not_finite"

    def new_state(self) -> None:
        """No state: the engine keeps the alert open for the rest of the run."""

    def observe(self, event: ev.Event) -> list[Finding]:
        """Fire on a non-finite loss or a ``training_failed`` with ``NUMERICAL_ERROR``."""
        if event.run_id is None:
            return []
        if isinstance(event, ev.TrainingProgress):
            loss = loss_of(event)
            bad = event.loss_not_finite or (
                str(loss) if loss is not None and not math.isfinite(loss) else None)
            if bad is not None:
                where = f" at step {event.current_step}" if event.current_step is not None else ""
                return [self.fire(event.run_id, "Loss Is Not a Number",
                                  f"The loss of run {_label(event)} is {bad}{where}", bad,
                                  actions=_LR)]
        elif isinstance(event, ev.TrainingFailed) and event.error_code == NUMERICAL_ERROR:
            return [self.fire(event.run_id, "Loss Is Not a Number",
                              f"Run {_label(event)} stopped: {event.error}", "nan",
                              actions=_LR)]
        return []


@dataclass
class _Losses:
    window: deque[float]
    best: float = math.inf
    last: tuple[int | None, int | None] = (None, None)
    firing: bool = False


class Divergence(Rule[_Losses]):
    """The loss is rising: the mean of the last ``window`` points above ``factor`` x the best."""

    name = "divergence"
    watches = frozenset({"training_progress"})
    alert_type = "loss_diverging"

    def new_state(self) -> _Losses:
        """An empty window."""
        return _Losses(deque(maxlen=int(self.settings["window"])))

    def observe(self, event: ev.Event) -> list[Finding]:
        """Track each new point's loss; fire while diverging, clear once back under."""
        if not isinstance(event, ev.TrainingProgress) or event.run_id is None:
            return []
        loss = loss_of(event)
        if loss is None or not math.isfinite(loss):
            return []
        run = self.state(event.run_id)
        position = (event.current_step, event.current_epoch)
        if position == run.last and position != (None, None):
            return []  # the same point again (an epoch's end re-sends it)
        run.last = position
        run.window.append(loss)
        run.best = min(run.best, loss)
        if len(run.window) < (run.window.maxlen or 1):
            return []
        mean = sum(run.window) / len(run.window)
        limit = run.best + (float(self.settings["factor"]) - 1) * abs(run.best)
        if mean > limit and run.window[-1] > run.window[0]:
            run.firing = True
            return [self.fire(
                event.run_id, "Training Diverging",
                f"The loss of run {_label(event)} is rising: {_number(loss)} (mean of the last "
                f"{len(run.window)} points {_number(mean)}, more than "
                f"{self.settings['factor']}x the best {_number(run.best)})",
                round(loss, 6), actions=_LR)]
        if run.firing and mean <= limit:  # a clear only after a fire: findings cost
            run.firing = False
            return [self.clear(event.run_id)]
        return []


@dataclass
class _Best:
    best: float | None = None
    epoch: int = 0
    firing: bool = False


class Plateau(Rule[_Best]):
    """No improvement of ``metric`` (by more than ``min_delta``) for ``patience`` epochs."""

    name = "plateau"
    watches = frozenset({"training_progress"})
    alert_type = "metric_plateau"
    clears_at_end = False

    def new_state(self) -> _Best:
        """Nothing seen yet."""
        return _Best()

    def observe(self, event: ev.Event) -> list[Finding]:
        """Follow the metric epoch by epoch."""
        if not isinstance(event, ev.TrainingProgress) or event.run_id is None \
                or event.current_epoch is None:
            return []
        metric = str(self.settings["metric"])
        value = (event.metrics or {}).get(metric)
        if value is None and metric == "loss":
            value = event.current_loss
        if value is None or not math.isfinite(value):
            return []
        run = self.state(event.run_id)
        delta = float(self.settings["min_delta"])
        better = run.best is None or (value < run.best - delta if self.settings["mode"] == "min"
                                      else value > run.best + delta)
        if better:
            run.best, run.epoch = float(value), event.current_epoch
            firing, run.firing = run.firing, False
            return [self.clear(event.run_id)] if firing else []
        waited = event.current_epoch - run.epoch
        if waited >= int(self.settings["patience"]):
            run.firing = True
            return [self.fire(
                event.run_id, "Metric Plateau",
                f"{metric} of run {_label(event)} has not improved for {waited} epochs "
                f"(best {_number(run.best or 0.0)} at epoch {run.epoch}, now {_number(value)})",
                round(float(value), 6),
                actions=("Lower the learning rate", "Stop the run early"))]
        return []


@dataclass
class _Rates:
    rates: deque[float] = field(default_factory=lambda: deque(maxlen=256))
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=3))
    last: tuple[int, float, int | None] | None = None
    median: float = 0.0  # of ``rates``, recomputed every MEDIAN_EVERY rates
    firing: bool = False


def _seconds(timestamp: str | None) -> float | None:
    if not timestamp:
        return None
    try:
        return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class Throughput(Rule[_Rates]):
    """Steps per second below ``fraction`` of the run's own median (after ``min_samples``)."""

    name = "throughput"
    watches = frozenset({"training_progress"})
    alert_type = "throughput_drop"
    clears_at_end = True

    def new_state(self) -> _Rates:
        """No rate measured yet."""
        return _Rates(recent=deque(maxlen=int(self.settings["recent"])))

    def observe(self, event: ev.Event) -> list[Finding]:
        """Measure steps/s between progress events of one epoch (by their timestamps)."""
        if not isinstance(event, ev.TrainingProgress) or event.run_id is None \
                or event.current_step is None:
            return []
        now = _seconds(event.timestamp)
        if now is None:
            return []
        run = self.state(event.run_id)
        last, run.last = run.last, (event.current_step, now, event.current_epoch)
        if last is None or event.current_step <= last[0] or now <= last[1] \
                or event.current_epoch != last[2]:
            return []  # an epoch boundary (validation) is not a slow step
        rate = (event.current_step - last[0]) / (now - last[1])
        run.rates.append(rate)
        run.recent.append(rate)
        if len(run.rates) < int(self.settings["min_samples"]):
            return []
        if len(run.rates) % MEDIAN_EVERY == 0 or not run.median:
            run.median = statistics.median(run.rates)
        median = run.median
        current = statistics.median(run.recent)
        fraction = float(self.settings["fraction"])
        if current < fraction * median:
            run.firing = True
            return [self.fire(
                event.run_id, "Training Throughput Dropped",
                f"Run {_label(event)} runs at {current:.3g} steps/s, below {fraction:g} of its "
                f"median {median:.3g} steps/s",
                round(current, 4), actions=("Check the data loader", "Check the machine"))]
        if run.firing:
            run.firing = False
            return [self.clear(event.run_id)]
        return []
