"""The serving side: :func:`deploy` and :class:`PredictionMonitor`.

``deploy()`` announces a model in production (``model_deployed`` and an activity entry).
A ``PredictionMonitor`` counts predictions (as a decorator or with ``record(n)``) and reports
``prediction_volume`` (totals, per-minute rate, milestones 1k/5k/10k/50k/...) and
``model_status_change`` (``active`` while predictions flow, ``error`` with a ``health_score``
when the error rate is high, ``inactive`` after an idle period), throttled.

The per-call cost of ``record()`` is a clock read, a lock and a few integer operations; events
are built on a background thread (or when :meth:`PredictionMonitor.poll` is called), except
milestones and the first ``active``, which are sent at once.

Example:
    >>> monitor = PredictionMonitor("cp_v32_20251206")  # doctest: +SKIP
    >>> @monitor
    ... def predict(features):
    ...     return model.predict(features)
"""

from __future__ import annotations

import functools
import inspect
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, TypeVar

from mlops_hooks import events as ev
from mlops_hooks.formatting import iso_utc, to_float
from mlops_hooks.run import Emit
from mlops_hooks.run.activity import activity

__all__ = ["PredictionMonitor", "deploy"]

F = TypeVar("F", bound=Callable[..., Any])


def _default_emit() -> Emit:
    from mlops_hooks.manager import get_plugin_manager

    return get_plugin_manager("training").dispatch


def _required(name: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    return value


def _optional(name: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string or None, got {value!r}")
    return value


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def deploy(
    model_name: str,
    model_version: str | None = None,
    model_accuracy: float | None = None,
    *,
    model_id: str | None = None,
    emit: Emit | None = None,
) -> ev.ModelDeployed:
    """Announce that a model was deployed to production.

    Emits ``model_deployed`` and an ``activity_update`` ("Model Deployed").

    Args:
        model_name: Display name, e.g. ``"Customer Predictor v3.2"``.
        model_version: Version label, e.g. ``"v3.2"``.
        model_accuracy: Accuracy of the deployed model, 0-1.
        model_id: Identifier used by later status and volume events; derived from the name,
            version and date (``customer_predictor_v3_2_20251206``) when omitted.
        emit: Where events go; defaults to the process's plugin manager.

    Returns:
        The ``model_deployed`` event that was sent.

    Raises:
        ValueError: A name is empty or the accuracy is not a number in 0-1.

    Example:
        >>> deploy("Customer Predictor v3.2", "v3.2", 0.973)  # doctest: +SKIP
    """
    name = _required("model_name", model_name)
    version = _optional("model_version", model_version)
    accuracy = to_float(model_accuracy)
    if model_accuracy is not None and (accuracy is None or not 0.0 <= accuracy <= 1.0):
        raise ValueError(f"model_accuracy must be a number between 0 and 1, "
                         f"got {model_accuracy!r}")
    stamp = iso_utc()
    if model_id is None:
        parts = [_slug(name)]
        if version and _slug(version) not in parts[0]:
            parts.append(_slug(version))
        parts.append(stamp[:10].replace("-", ""))
        model_id = "_".join(p for p in parts if p)
    identifier = _required("model_id", model_id)
    deployed = ev.ModelDeployed(model_name=name, model_version=version, model_accuracy=accuracy,
                                deployment_timestamp=stamp, model_id=identifier)
    send = emit or _default_emit()
    send(deployed)
    details = f" {version}" if version else ""
    if accuracy is not None:
        details += f" (accuracy {accuracy:.3f})"
    send(ev.ActivityUpdate(activity=activity(
        "Model Deployed", f"{name}{details} deployed to production", "model_deployment",
        "completed", "success", duration=None, stamp=stamp,
        metadata={"model_name": name, "model_version": version, "model_id": identifier,
                  "model_accuracy": accuracy},
    )))
    return deployed


def default_milestones() -> Iterator[int]:
    """1,000, 5,000, 10,000, 50,000, 100,000, ... (a 1 then a 5 per power of ten)."""
    value = 1000
    while True:
        yield value
        yield value * 5
        value *= 10


class PredictionMonitor:
    """Count a model's predictions and report volume, milestones and status.

    Args:
        model_id: The deployed model's identifier (as given to :func:`deploy`).
        interval: Minimum seconds between throttled events (volume and status).
        idle_after: Seconds without predictions after which the model is ``inactive``.
        window: Seconds over which the per-minute rate and the error rate are measured.
        error_threshold: Error rate (0-1) above which the status becomes ``error``.
        min_samples: Predictions needed in the window before an error rate counts.
        milestones: Totals that trigger a milestone event (default 1k, 5k, 10k, 50k, ...).
        emit: Where events go; defaults to the process's plugin manager.
        background: Run a daemon thread that reports idleness and pending volume; without
            it, call :meth:`poll` periodically.
        clock: Monotonic clock in seconds (for tests).

    Raises:
        ValueError: An argument is out of range.
    """

    def __init__(
        self,
        model_id: str,
        *,
        interval: float = 5.0,
        idle_after: float = 60.0,
        window: float = 60.0,
        error_threshold: float = 0.05,
        min_samples: int = 20,
        milestones: Iterable[int] | None = None,
        emit: Emit | None = None,
        background: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.model_id = _required("model_id", model_id)
        for label, value in (("interval", interval), ("idle_after", idle_after),
                             ("window", window)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{label} must be a number of seconds > 0, got {value!r}")
        if not isinstance(error_threshold, (int, float)) or not 0 <= error_threshold <= 1:
            raise ValueError(f"error_threshold must be between 0 and 1, got {error_threshold!r}")
        if isinstance(min_samples, bool) or not isinstance(min_samples, int) or min_samples < 1:
            raise ValueError(f"min_samples must be an integer >= 1, got {min_samples!r}")
        self.interval, self.idle_after, self.window = interval, idle_after, window
        self.error_threshold, self.min_samples = error_threshold, min_samples
        self._milestones = iter(sorted(self._check_milestones(milestones))) \
            if milestones is not None else default_milestones()
        self._next_milestone: float = next(self._milestones, float("inf"))
        self._emit_fn = emit
        self._clock = clock
        self._wall0, self._mono0 = time.time(), clock()
        self._lock = threading.Lock()
        self._emit_lock = threading.Lock()
        self.total = 0
        self.errors = 0
        self.status: ev.ModelStatus | None = None
        self._last: float | None = None  # clock time of the last prediction
        self._first: float | None = None
        self._reported_total = 0
        self._next_emit = 0.0
        self._samples: deque[tuple[float, int, int]] = deque()
        self._background = background
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @staticmethod
    def _check_milestones(milestones: Iterable[int]) -> list[int]:
        values = list(milestones)
        if any(isinstance(m, bool) or not isinstance(m, int) or m <= 0 for m in values):
            raise ValueError(f"milestones must be positive integers, got {values!r}")
        return values

    # ------------------------------------------------------------------ counting

    def record(self, n: int = 1, *, errors: int = 0) -> None:
        """Count ``n`` predictions, ``errors`` of which failed (thread-safe, sub-microsecond).

        Raises:
            ValueError: ``n`` or ``errors`` is negative, or ``errors`` > ``n``.
        """
        if n < 0 or errors < 0 or errors > n:
            raise ValueError(f"record() needs 0 <= errors <= n, got n={n!r}, errors={errors!r}")
        now = self._clock()
        with self._lock:
            self.total += n
            self.errors += errors
            self._last = now
            if self._first is None:
                self._first = now
            # A milestone, or the first prediction of an idle (or new) model, is sent at once.
            urgent = self.total >= self._next_milestone or self.status in (None, "inactive")
            due = now >= self._next_emit
        if urgent or due:
            self._flush(now, wait=urgent)
        if self._background and self._thread is None:
            self._start_thread()

    def __call__(self, func: F | None = None, /, *,
                 count: Callable[[Any], int] | None = None) -> Any:
        """Decorate a predict function: each call counts one prediction (or ``count(result)``).

        A call that raises counts as one failed prediction and re-raises. Works on
        coroutine functions too. Use as ``@monitor`` or ``@monitor(count=len)``.
        """
        if func is None:
            return functools.partial(self.__call__, count=count)

        def counted(result: Any) -> int:
            try:
                return int(count(result)) if count is not None else 1
            except Exception:
                return 1

        if inspect.iscoroutinefunction(func):
            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                try:
                    result = await func(*args, **kwargs)
                except Exception:
                    self.record(1, errors=1)
                    raise
                self.record(counted(result))
                return result

            return async_wrapper

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                result = func(*args, **kwargs)
            except Exception:
                self.record(1, errors=1)
                raise
            self.record(counted(result))
            return result

        return wrapper

    # ------------------------------------------------------------------ reporting

    def poll(self) -> None:
        """Report idleness and pending volume now (the background thread calls this)."""
        self._flush(self._clock(), wait=False)

    def _flush(self, now: float, *, wait: bool) -> None:
        if not self._emit_lock.acquire(blocking=wait):
            return  # another thread is reporting right now
        try:
            events = self._collect(now)
            if events:
                send = self._emit_fn = self._emit_fn or _default_emit()
                for event in events:
                    send(event)
        finally:
            self._emit_lock.release()

    def _collect(self, now: float) -> list[ev.Event]:
        with self._lock:
            total, errors, last = self.total, self.errors, self._last
            milestone = None
            while total >= self._next_milestone:
                milestone = int(self._next_milestone)
                self._next_milestone = next(self._milestones, float("inf"))
            throttled = now >= self._next_emit
        samples = self._samples
        if not samples and self._first is not None:
            samples.append((self._first, 0, 0))  # nothing was counted before the first one
        samples.append((now, total, errors))
        while len(samples) > 1 and samples[1][0] <= now - self.window:
            samples.popleft()
        t0, total0, errors0 = samples[0]
        events: list[ev.Event] = []
        if last is not None and (milestone is not None or (throttled
                                                            and total != self._reported_total)):
            rate = (total - total0) / max(now - t0, 1.0) * 60.0
            events.append(ev.PredictionVolume(
                total_predictions=total, predictions_per_minute=round(rate, 1),
                milestone_reached=milestone, timestamp=iso_utc(),
                message=f"{milestone} predictions milestone reached!" if milestone else None,
                model_id=self.model_id))
            self._reported_total = total
        status = self._status(now, last, total - total0, errors - errors0)
        becomes_active = status is not None and status[0] == "active"
        if status is not None and (throttled or becomes_active):
            self.status = status[0]
            events.append(ev.ModelStatusChange(
                status=status[0],
                model_id=self.model_id,
                health_score=None if status[0] == "inactive" else status[1],
                last_prediction=self._wall(last) if last is not None else None,
                timestamp=iso_utc()))
        if events and throttled:
            self._next_emit = now + self.interval
        return events

    def _status(self, now: float, last: float | None, count: int,
                failed: int) -> tuple[ev.ModelStatus, float] | None:
        if last is None:
            return None
        rate = failed / count if count else 0.0
        health = round(1.0 - rate, 3)
        new: ev.ModelStatus
        if now - last >= self.idle_after:
            new = "inactive"
        elif count >= self.min_samples and rate > self.error_threshold:
            new = "error"
        else:
            new = "active"
        return (new, health) if new != self.status else None

    def _wall(self, mono: float) -> str:
        return iso_utc(self._wall0 + (mono - self._mono0))

    # ------------------------------------------------------------------ background thread

    def _start_thread(self) -> None:
        with self._lock:
            if self._thread is not None or self._stop.is_set():
                return
            self._thread = threading.Thread(target=self._loop, daemon=True,
                                            name=f"mlops-hooks-predictions-{self.model_id}")
        self._thread.start()

    def _loop(self) -> None:
        tick = max(0.05, min(self.interval, self.idle_after, 1.0))
        while not self._stop.wait(tick):
            try:
                self.poll()
            except Exception as exc:  # a broken plugin must not kill the reporter
                import sys

                sys.stderr.write(f"mlops-hooks: prediction monitor {self.model_id}: {exc!r}\n")

    def close(self) -> None:
        """Stop the background thread, send pending volume and mark the model ``inactive``."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        self._next_emit = 0.0
        self.poll()
        if self.status in ("active", "error"):
            self.status = "inactive"
            send = self._emit_fn = self._emit_fn or _default_emit()
            send(ev.ModelStatusChange(
                status="inactive", model_id=self.model_id,
                last_prediction=self._wall(self._last) if self._last is not None else None,
                timestamp=iso_utc()))

    def __enter__(self) -> PredictionMonitor:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
