"""Serving in the demo: deploy the best model, then a burst of requests through it.

The predict function of the deployed model is wrapped by a real ``PredictionMonitor``, which
reports ``prediction_volume`` (totals, rate, the 1,000 and 5,000 milestones) and
``model_status_change``. Part of the way through, a misbehaving client sends images with a
missing pixel: the model raises on them, the monitor counts the failures, and the status goes
``active`` → ``error`` → (once the window has moved past the incident) ``active``; at the end the
monitor is closed and the model becomes ``inactive``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlops_hooks.cli.demo._options import Plan
from mlops_hooks.serving import PredictionMonitor

__all__ = ["Traffic", "send_traffic"]

Progress = Callable[[float, list[str]], None]


@dataclass
class Traffic:
    """What the burst did."""

    requests: int = 0
    errors: int = 0
    correct: int = 0
    statuses: tuple[str, ...] = ()
    seconds: float = 0.0


def _malformed(i: int, start: int, end: int, share: float) -> bool:
    if not start <= i < end or share <= 0:
        return False
    every = max(1, round(1 / share))
    return (i - start) % every == 0


def send_traffic(predict: Callable[[np.ndarray[Any, Any]], int], x: np.ndarray[Any, Any],
                 y: np.ndarray[Any, Any], *, model_id: str, plan: Plan,
                 progress: Progress) -> Traffic:
    """Send ``plan.predictions`` requests at ``plan.prediction_rate`` per second.

    Args:
        predict: Classifies one row.
        x: Rows to send (cycled).
        y: Their labels (to count correct answers).
        model_id: The deployed model.
        plan: Sizes and rates.
        progress: Called with (percent, status parts) about ten times a second.

    Returns:
        Counts, the statuses the monitor went through, and the duration.
    """
    result = Traffic()
    statuses: list[str] = []
    start = int(plan.incident[0] * plan.predictions)
    end = int(plan.incident[1] * plan.predictions)
    with PredictionMonitor(model_id, interval=plan.monitor_interval, idle_after=60.0,
                           window=plan.monitor_window, min_samples=20) as monitor:
        served = monitor(predict)
        t0 = time.monotonic()
        next_report = t0
        for i in range(plan.predictions):
            due = t0 + i / plan.prediction_rate
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            row = x[i % len(x)]
            if _malformed(i, start, end, plan.incident_share):
                row = row[:-1]  # a client that drops a pixel: the model cannot take it
            try:
                label = served(row)
            except (ValueError, RuntimeError):
                result.errors += 1
            else:
                result.correct += int(label == y[i % len(y)])
            result.requests += 1
            if monitor.status and (not statuses or statuses[-1] != monitor.status):
                statuses.append(monitor.status)
            if now >= next_report:
                next_report = now + 0.1
                rate = result.requests / max(now - t0, 1e-6)
                progress(100.0 * result.requests / plan.predictions,
                         [f"{result.requests:,}/{plan.predictions:,} requests",
                          f"{rate:,.0f}/s", f"{result.errors} errors",
                          f"model {monitor.status or 'starting'}"])
        result.seconds = time.monotonic() - t0
        time.sleep(min(plan.monitor_interval, 1.0))  # the last throttled volume goes out
    if monitor.status and statuses[-1:] != [monitor.status]:
        statuses.append(monitor.status)
    result.statuses = tuple(statuses)
    return result
