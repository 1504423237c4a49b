"""The framework-agnostic training run: the state machine every adapter drives.

A :class:`Run` turns "a step happened", "an epoch ended", "the stage changed", "it finished",
"it failed" into the spec's events: ``training_progress`` (whole-run progress 0-100, monotonic;
epoch x/y; loss; ETA from a smoothed rate; throttled), ``training_completed``,
``training_failed`` (error code and suggestions from :mod:`mlops_hooks.failures`) and an
``activity_update`` at start, completion and failure.

The per-step path (:meth:`Run.step`) is a counter update and one clock compare; the loss object
is kept as it is (a tensor stays on its device) and converted only when an event is built.
"""

from __future__ import annotations

import getpass
import math
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from types import TracebackType
from typing import Any

from mlops_hooks import events as ev
from mlops_hooks.failures import classify
from mlops_hooks.formatting import format_bytes, format_duration, iso_utc, to_float

__all__ = ["Run", "track"]

Emit = Callable[[ev.Event], object]
_perf = time.perf_counter
_SMOOTHING = 0.3  # weight of the newest rate sample in the exponential moving average


def _default_emit() -> Emit:
    from mlops_hooks.manager import get_plugin_manager

    return get_plugin_manager("training").dispatch


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name (containers): the spec's default actor
        return "system"


def _check_positive(name: str, value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
    return value


def _check_fraction(name: str, value: object) -> float | None:
    number = to_float(value)
    if value is not None and (number is None or not 0.0 <= number <= 1.0):
        raise ValueError(f"{name} must be a number between 0 and 1, got {value!r}")
    return number


class Run:
    """One training run and the events that describe it.

    Args:
        name: What is being trained (shown on the dashboard), e.g. ``"digits-mlp"``.
        total_epochs: Epochs planned, if known.
        total_steps: Optimizer steps planned over the whole run, if known. Progress is
            ``steps / total_steps``; without it, epochs (and ``steps_per_epoch``) are used; with
            neither, the run is open-ended and reports epochs without a percentage.
        steps_per_epoch: Steps per epoch, if known (refines progress between epoch ends).
        run_id: Identifier shared by every event of the run; generated when omitted.
        model_id: Identifier of the model being produced (sent with ``training_completed``).
        throttle: Minimum seconds between throttled progress events (default 0.25: at most
            about four a second). Stage changes, epoch ends and 100% are always sent.
        emit: Where events go; defaults to the process's plugin manager.

    Raises:
        ValueError: A count is not a positive integer, or ``throttle`` is negative.

    Example:
        >>> run = Run("demo", total_epochs=2, steps_per_epoch=10, emit=print)  # doctest: +SKIP
    """

    def __init__(
        self,
        name: str,
        *,
        total_epochs: int | None = None,
        total_steps: int | None = None,
        steps_per_epoch: int | None = None,
        run_id: str | None = None,
        model_id: str | None = None,
        throttle: float = 0.25,
        emit: Emit | None = None,
    ) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        if not isinstance(throttle, (int, float)) or throttle < 0 or math.isnan(throttle):
            raise ValueError(f"throttle must be a number of seconds >= 0, got {throttle!r}")
        self.name = name
        self.total_epochs = _check_positive("total_epochs", total_epochs)
        self.total_steps = _check_positive("total_steps", total_steps)
        self.steps_per_epoch = _check_positive("steps_per_epoch", steps_per_epoch)
        self.run_id = run_id or f"run_{time.strftime('%Y%m%d_%H%M%S')}_{uuid.uuid4().hex[:8]}"
        self.model_id = model_id
        self.throttle = float(throttle)
        self._emit_fn = emit
        self.stage_name: str = "data_preparation"
        self.progress: float | None = None if self._open_ended else 0.0
        self.steps = 0
        self.epochs_done = 0
        self.current_epoch: int | None = None
        self.finished: str | None = None  # "completed" | "failed"
        self.started = False
        self._loss: object = None
        self._metrics: dict[str, float] = {}
        self._accuracy: float | None = None
        self._t0 = 0.0
        self._t_wall = 0.0
        self._next_emit = math.inf  # nothing is sent before start()
        self._rate_steps = 0
        self._rate_t = 0.0
        self._rate: float | None = None  # smoothed steps per second
        self._epoch_t = 0.0
        self._epoch_secs: float | None = None  # smoothed seconds per epoch
        self._final_step: float = math.inf  # the step that reaches 100% is always sent
        self._explicit: float | None = None  # progress set by advance(), not by step counts
        self._plan_changed()

    # ------------------------------------------------------------------ derived state

    @property
    def next_progress_at(self) -> float:
        """The ``time.perf_counter()`` before which :meth:`step` sends no progress event.

        Except at the planned last step; an adapter that skips :meth:`step` calls until then
        catches up with ``steps`` before the next lifecycle call (``epoch_end``, ``stage``,
        ``complete``, ``fail``), which always send. ``math.inf`` before :meth:`start`.
        """
        return self._next_emit

    @property
    def _open_ended(self) -> bool:
        return self.total_steps is None and self.total_epochs is None

    @property
    def _planned_steps(self) -> int | None:
        if self.total_steps is not None:
            return self.total_steps
        if self.total_epochs is not None and self.steps_per_epoch is not None:
            return self.total_epochs * self.steps_per_epoch
        return None

    def set_totals(
        self,
        *,
        total_epochs: int | None = None,
        total_steps: int | None = None,
        steps_per_epoch: int | None = None,
    ) -> None:
        """Update plan sizes learnt after construction (adapters know them only at fit start)."""
        if total_epochs is not None:
            self.total_epochs = _check_positive("total_epochs", total_epochs)
        if total_steps is not None:
            self.total_steps = _check_positive("total_steps", total_steps)
        if steps_per_epoch is not None:
            self.steps_per_epoch = _check_positive("steps_per_epoch", steps_per_epoch)
        if self.progress is None and not self._open_ended:
            self.progress = 0.0
        self._plan_changed()

    def _plan_changed(self) -> None:
        planned = self._planned_steps
        self._final_step = planned if planned is not None and planned > self.steps else math.inf

    def _compute_progress(self) -> float | None:
        planned = self._planned_steps
        if self._explicit is not None:
            value = self._explicit
        elif planned is not None:
            value = 100.0 * self.steps / planned
        elif self.total_epochs is not None:
            value = 100.0 * self.epochs_done / self.total_epochs
        else:
            return None
        value = min(value, 100.0)
        previous = self.progress or 0.0
        return value if value > previous else previous

    def _eta(self) -> float | None:
        if self._explicit is not None:
            done = self._explicit
            return (_perf() - self._t0) * (100.0 - done) / done if done > 0 else None
        planned = self._planned_steps
        if planned is not None and self._rate:
            return max(0.0, (planned - self.steps) / self._rate)
        if self.total_epochs is not None and self._epoch_secs is not None:
            return max(0.0, (self.total_epochs - self.epochs_done) * self._epoch_secs)
        return None

    # ------------------------------------------------------------------ emitting

    def _emit(self, event: ev.Event) -> None:
        if self._emit_fn is None:
            self._emit_fn = _default_emit()
        self._emit_fn(event)

    def _update_rate(self, now: float) -> None:
        elapsed = now - self._rate_t
        done = self.steps - self._rate_steps
        if elapsed > 0 and done > 0:
            sample = done / elapsed
            rate = self._rate
            self._rate = sample if rate is None else rate + _SMOOTHING * (sample - rate)
            self._rate_t, self._rate_steps = now, self.steps

    def progress_event(self, message: str | None = None) -> ev.TrainingProgress:
        """Build (without sending) the ``training_progress`` event for the current state."""
        pct = self.progress
        eta = self._eta()
        loss = to_float(self._loss)
        epoch = self.current_epoch
        if message is None:
            parts = []
            if pct is not None:
                label = "Training" if self.stage_name == "model_training" else \
                    ev.STAGE_TEXT[self.stage_name]
                parts.append(f"{label} {int(pct)}% complete")
            else:
                parts.append(ev.STAGE_TEXT[self.stage_name])
            if epoch is not None:
                parts.append(f"Epoch {epoch}/{self.total_epochs}" if self.total_epochs
                             else f"Epoch {epoch}")
            message = " - ".join(parts)
        return ev.TrainingProgress(
            run_id=self.run_id,
            progress=round(pct, 1) if pct is not None else None,
            stage=self.stage_name,  # type: ignore[arg-type]
            current_stage=ev.STAGE_TEXT[self.stage_name],
            estimated_time_remaining=round(eta) if eta is not None else None,
            current_epoch=epoch,
            total_epochs=self.total_epochs,
            current_loss=loss,
            message=message,
            model_name=self.name,
            current_step=self.steps,
            total_steps=self._planned_steps,
            current_accuracy=self._accuracy,
            metrics=dict(self._metrics) if self._metrics else None,
        )

    def _send_progress(self, now: float, message: str | None = None) -> None:
        self._update_rate(now)
        self.progress = self._compute_progress()
        self._next_emit = now + self.throttle
        self._emit(self.progress_event(message))

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Run:
        """Start the run: ``activity_update`` (training started) and a first progress event.

        Calling it again does nothing.
        """
        if self.started:
            return self
        self.started = True
        self._t0 = self._rate_t = self._epoch_t = _perf()
        self._rate_steps = self.steps  # a resumed run measures its rate from here
        self._t_wall = time.time()
        self._emit(self._activity("Model Training Started", f"Training {self.name}",
                                  "training_start", "in_progress", "info", None))
        self._send_progress(self._t0)
        return self

    def stage(self, stage: str, message: str | None = None) -> None:
        """Enter ``stage`` (one of the spec's training stages); always sends progress.

        Raises:
            ValueError: ``stage`` is not one of the spec's stages.
        """
        if stage not in ev.STAGE_TEXT:
            raise ValueError(f"stage must be one of {', '.join(ev.TRAINING_STAGES)}, "
                             f"got {stage!r}")
        if self.finished or (stage == self.stage_name and message is None):
            return
        self.stage_name = stage
        if self.started:
            self._send_progress(_perf(), message)

    def epoch_start(self, epoch: int) -> None:
        """Note that epoch ``epoch`` (0-based) begins; shown as ``current_epoch = epoch + 1``."""
        self.current_epoch = epoch + 1

    def step(self, loss: object = None, n: int = 1) -> None:
        """Record ``n`` finished steps (the hot path: arithmetic and one clock compare).

        Args:
            loss: The step's loss: a float, a NumPy scalar or a tensor (kept as is and only
                converted when an event is sent, so no device sync happens per step).
            n: Steps finished since the last call.
        """
        self.steps += n
        if loss is not None:
            self._loss = loss
        now = _perf()
        if now >= self._next_emit or self.steps >= self._final_step:
            if self.steps >= self._final_step:
                self._final_step = math.inf
            self._send_progress(now)

    def advance(self, percent: float, *, steps: int | None = None,
                message: str | None = None) -> None:
        """Set whole-run progress directly (throttled like :meth:`step`).

        For adapters whose work is not a count of equal steps (scikit-learn's task tree). Once
        called, progress comes from these calls rather than from step counts, never goes
        back, and the ETA is extrapolated from the elapsed time.

        Args:
            percent: Whole-run progress, 0-100 (clamped).
            steps: Units of work done so far (shown as ``current_step``), if meaningful.
            message: The message of the progress event, if one is sent now.

        Raises:
            ValueError: ``percent`` is not a number.
        """
        value = to_float(percent)
        if value is None:
            raise ValueError(f"percent must be a finite number, got {percent!r}")
        self._explicit = max(self._explicit or 0.0, min(max(value, 0.0), 100.0))
        self.progress = self._compute_progress()
        if steps is not None:
            self.steps = steps
        now = _perf()
        if self.started and not self.finished and (now >= self._next_emit or value >= 100):
            self._send_progress(now, message)

    def epoch_end(
        self,
        epoch: int | None = None,
        *,
        loss: object = None,
        accuracy: object = None,
        metrics: Mapping[str, object] | None = None,
    ) -> None:
        """Record the end of an epoch and always send progress.

        Args:
            epoch: The epoch that ended (0-based); defaults to the next one.
            loss: The epoch's training loss.
            accuracy: The epoch's accuracy (0-1), for the dashboard's chart.
            metrics: Other numeric metrics (``val_loss``, ``val_accuracy``, ...).
        """
        if self.finished:
            return
        self.epochs_done = (epoch + 1) if epoch is not None else self.epochs_done + 1
        self.current_epoch = self.epochs_done
        if loss is not None:
            self._loss = loss
        if accuracy is not None:
            acc = to_float(accuracy)
            self._accuracy = acc if acc is not None and 0 <= acc <= 1 else self._accuracy
        if metrics:
            for key, value in metrics.items():
                number = to_float(value)
                if number is not None:
                    self._metrics[str(key)] = number
        now = _perf()
        sample = now - self._epoch_t
        self._epoch_t = now
        prev = self._epoch_secs
        self._epoch_secs = sample if prev is None else prev + _SMOOTHING * (sample - prev)
        if self.steps_per_epoch is None and self.total_steps is None and self.steps:
            # Learn the epoch length from the first epoch so progress moves between epoch ends.
            self.steps_per_epoch = max(1, self.steps // self.epochs_done)
            self._plan_changed()
        self._send_progress(now)

    def complete(
        self,
        *,
        final_accuracy: object = None,
        validation_score: object = None,
        model_size: int | str | None = None,
        model_id: str | None = None,
        message: str | None = None,
    ) -> ev.TrainingCompleted | None:
        """Finish the run successfully; later calls do nothing.

        Sends progress 100 at ``finalization``, then ``training_completed`` and an
        ``activity_update``.

        Args:
            final_accuracy: Final accuracy, 0-1.
            validation_score: Validation score (any scale the user reports).
            model_size: Bytes (formatted like ``'2.3MB'``) or an already formatted string.
            model_id: Overrides the run's ``model_id``.
            message: Overrides ``'Training completed successfully!'``.

        Raises:
            ValueError: ``final_accuracy`` is outside 0-1 or ``model_size`` is negative.
        """
        if self.finished:
            return None
        accuracy = _check_fraction("final_accuracy", final_accuracy)
        size = format_bytes(model_size) if isinstance(model_size, (int, float)) else model_size
        if not self.started:
            self.start()
        if self.progress is not None:
            self.progress = 100.0
        self.stage_name = "finalization"
        self._send_progress(_perf())
        self.finished = "completed"
        elapsed = _perf() - self._t0
        done = ev.TrainingCompleted(
            run_id=self.run_id,
            final_accuracy=accuracy,
            training_time=format_duration(elapsed),
            validation_score=to_float(validation_score),
            model_size=size,
            total_epochs=self.epochs_done or self.total_epochs,
            message=message or "Training completed successfully!",
            model_id=model_id or self.model_id,
            model_name=self.name,
        )
        self._emit(done)
        summary = f"{self.name} finished in {done.training_time}"
        if accuracy is not None:
            summary += f" with accuracy {accuracy:.3f}"
        self._emit(self._activity("Model Training Completed", summary, "training_complete",
                                  "completed", "success", elapsed))
        return done

    def fail(self, exc: BaseException, *, stage: str | None = None) -> ev.TrainingFailed | None:
        """Report the run as failed because of ``exc``; later calls do nothing.

        Args:
            exc: The exception that ended the run.
            stage: The stage to report; defaults to the current one.
        """
        if self.finished:
            return None
        if not self.started:
            self.start()
        self.progress = self._compute_progress()  # steps since the last (throttled) event count
        self.finished = "failed"
        failure = classify(exc)
        text = str(exc).strip() or type(exc).__name__
        if type(exc).__name__ not in text and failure.error_code not in ("INTERRUPTED",):
            text = f"{type(exc).__name__}: {text}"
        failed = ev.TrainingFailed(
            run_id=self.run_id,
            timestamp=iso_utc(),
            error=text[:2000],
            error_code=failure.error_code,
            stage_failed=(stage or self.stage_name),  # type: ignore[arg-type]
            progress_when_failed=round(self.progress or 0.0, 1),
            suggestions=list(failure.suggestions),
            model_name=self.name,
        )
        self._emit(failed)
        self._emit(self._activity("Model Training Failed", f"{self.name}: {text[:200]}",
                                  "training_failed", "failed", "error", _perf() - self._t0))
        return failed

    def _activity(self, title: str, description: str, action: str, status: str,
                  severity: str, duration: float | None) -> ev.ActivityUpdate:
        stamp = iso_utc()
        return ev.ActivityUpdate(
            run_id=self.run_id,
            activity=ev.Activity(
                id=f"act_{stamp[:10].replace('-', '')}_{uuid.uuid4().hex[:10]}",
                title=title,
                description=description,
                user=_user(),
                action_type=action,
                status=status,
                timestamp=stamp,
                severity_level=severity,
                duration=round(duration, 3) if duration is not None else None,
                metadata={"model_name": self.name, "run_id": self.run_id,
                          "pid": os.getpid()},
            ),
        )

    # ------------------------------------------------------------------ context manager

    def __enter__(self) -> Run:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None:
            self.fail(exc)
        elif not self.finished:
            self.complete()


@contextmanager
def track(
    name: str,
    *,
    total_epochs: int | None = None,
    total_steps: int | None = None,
    **options: Any,
) -> Iterator[Run]:
    """Track a hand-written training loop; see :class:`Run` for the options.

    An exception inside the block emits ``training_failed`` and is re-raised unchanged; a
    block that ends normally completes the run (unless ``run.complete(...)`` was called).

    Example:
        >>> with track("mnist-cnn", total_epochs=3, steps_per_epoch=100) as run:  # doctest: +SKIP
        ...     run.stage("model_training")
        ...     for epoch in range(3):
        ...         run.epoch_start(epoch)
        ...         for batch in loader:
        ...             run.step(loss=train_step(batch))
        ...         run.epoch_end(epoch, metrics={"val_loss": validate()})
        ...     run.complete(final_accuracy=0.97)
    """
    run = Run(name, total_epochs=total_epochs, total_steps=total_steps, **options)
    with run:
        yield run
