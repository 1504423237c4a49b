"""The lifecycle of a run: start, stages, steps, epochs, completion, failure.

A :class:`Run` turns "a step happened", "an epoch ended", "the stage changed", "it finished",
"it failed" into the spec's events: ``training_progress`` (throttled), ``training_completed``,
``training_failed`` (error code and suggestions from :mod:`mlops_hooks.failures`) and an
``activity_update`` at start, completion and failure. The maths is :mod:`.progress`'s, the
English :mod:`.messages`' and the activity entries :mod:`.activity`'s; this module reads the
clock and decides when to send.

The per-step path (:meth:`Run.step`) is a counter update and one clock compare; the loss object
is kept as it is (a tensor stays on its device) and converted only when an event is built.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Literal

from mlops_hooks import events as ev
from mlops_hooks.failures import classify
from mlops_hooks.formatting import format_bytes, format_duration, iso_utc, to_float
from mlops_hooks.run import messages as text
from mlops_hooks.run.activity import run_activity
from mlops_hooks.run.stopping import Stoppable

__all__ = ["Emit", "Outcome", "Run"]

Emit = Callable[[ev.Event], object]
#: How a finished run ended (:attr:`Run.finished`).
Outcome = Literal["completed", "failed"]
_perf = time.perf_counter


def _default_emit() -> Emit:
    from mlops_hooks.manager import get_plugin_manager

    return get_plugin_manager("training").dispatch


class Run(Stoppable):
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

    Attributes:
        name: What is trained.
        model_id: The produced model's identifier, if given.
        progress: Whole-run progress of the last event, 0-100 (``None``: open-ended).
        stage_name: The current training stage.
        current_epoch: The epoch shown on the dashboard (1-based), once known.
        started: :meth:`start` was called.
        finished: ``"completed"`` or ``"failed"`` once the run is over, else ``None``.
        loss_not_finite: The last progress event reported a NaN or infinite loss.

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
        super().__init__(total_epochs=total_epochs, total_steps=total_steps,
                         steps_per_epoch=steps_per_epoch)
        self.name = name
        self._run_id = run_id or f"run_{time.strftime('%Y%m%d_%H%M%S')}_{uuid.uuid4().hex[:8]}"
        self.model_id = model_id
        self.throttle = float(throttle)
        self._emit_fn = emit
        self.stage_name: ev.TrainingStage = "data_preparation"
        self.current_epoch: int | None = None
        self.finished: Outcome | None = None
        self.started = False
        self._loss: object = None
        self.loss_not_finite = False
        self._metrics: dict[str, float] = {}
        self._accuracy: float | None = None
        self._next_emit = math.inf  # nothing is sent before start()

    # ------------------------------------------------------------------ identity and state

    @property
    def run_id(self) -> str:
        """The identifier every event of the run carries.

        Settable before :meth:`start` only (a fit resumed from a checkpoint continues the
        checkpoint's run); afterwards a new id would split the run's stream.

        Raises:
            RuntimeError: Set after :meth:`start`.
            ValueError: Set to something other than a non-empty string.
        """
        return self._run_id

    @run_id.setter
    def run_id(self, run_id: str) -> None:
        if self.started:
            raise RuntimeError(f"run_id can only change before start(); run {self._run_id!r} "
                               "has started")
        if not isinstance(run_id, str) or not run_id:
            raise ValueError(f"run_id must be a non-empty string, got {run_id!r}")
        self._run_id = run_id

    @property
    def active(self) -> bool:
        """Started and not finished: the run takes steps, stages and a completion or failure."""
        return self.started and self.finished is None

    @property
    def next_progress_at(self) -> float:
        """The ``time.perf_counter()`` before which :meth:`step` sends no progress event.

        Except at the planned last step; an adapter that skips :meth:`step` calls until then
        counts the skipped steps with :meth:`catch_up` before the next lifecycle call
        (``epoch_end``, ``stage``, ``complete``, ``fail``), which always send. ``math.inf``
        before :meth:`start`.
        """
        return self._next_emit

    # ------------------------------------------------------------------ emitting

    def _emit(self, event: ev.Event) -> None:
        if self._emit_fn is None:
            self._emit_fn = _default_emit()
        self._emit_fn(event)

    def progress_event(self, message: str | None = None) -> ev.TrainingProgress:
        """Build (without sending) the ``training_progress`` event for the current state."""
        pct = self.progress
        eta = 0.0 if pct is not None and pct >= 100 else self._estimator.eta(
            _perf(), self._plan, self._steps, self._epochs_done)
        epoch, loss = self.current_epoch, text.as_number(self._loss)  # one device read
        if message is None:
            message = text.progress_message(self.stage_name, pct, epoch, self.total_epochs)
        return ev.TrainingProgress(
            run_id=self._run_id,
            progress=round(pct, 1) if pct is not None else None,
            stage=self.stage_name,
            current_stage=ev.STAGE_TEXT[self.stage_name],
            estimated_time_remaining=round(eta) if eta is not None else None,
            current_epoch=epoch,
            total_epochs=self.total_epochs,
            current_loss=to_float(loss),
            message=message,
            model_name=self.name,
            # a loop that reports epochs only (no step counted, none planned) has no step
            current_step=self._steps if self._steps or self._plan.planned_steps else None,
            total_steps=self._plan.planned_steps,
            current_accuracy=self._accuracy,
            metrics=dict(self._metrics) if self._metrics else None,
            loss_not_finite=text.non_finite_name(loss),
        )

    def _send_progress(self, now: float, message: str | None = None) -> None:
        self._estimator.count(now, self._steps)
        self.progress = self._percent()
        self._next_emit = now + self.throttle
        event = self.progress_event(message)
        self.loss_not_finite = event.loss_not_finite is not None
        self._emit(event)

    def _activity(self, kind: tuple[str, str], description: str, status: str, severity: str,
                  duration: float | None) -> ev.ActivityUpdate:
        title, action = kind
        return run_activity(self._run_id, self.name, title, description, action, status,
                            severity, duration)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Run:
        """Start the run: ``activity_update`` (training started) and a first progress event.

        Calling it again does nothing.
        """
        if self.started:
            return self
        self.started = True
        now = _perf()
        self._estimator.start(now, self._steps)  # a resumed run measures its rate from here
        self._emit(self._activity(text.STARTED, f"Training {self.name}", "in_progress", "info",
                                  None))
        self._send_progress(now)
        return self

    def stage(self, stage: str, message: str | None = None) -> None:
        """Enter ``stage`` (one of the spec's training stages); always sends progress.

        Raises:
            ValueError: ``stage`` is not one of the spec's stages.
        """
        checked = text.check_stage(stage)
        if self.finished or (checked == self.stage_name and message is None):
            return
        self.stage_name = checked
        if self.started:
            self._send_progress(_perf(), message)

    def epoch_start(self, epoch: int) -> None:
        """Note that epoch ``epoch`` (0-based) begins; shown as ``current_epoch = epoch + 1``."""
        self.current_epoch = epoch + 1

    def step(self, loss: object = None, n: int = 1) -> None:
        """Record ``n`` finished steps (the hot path: arithmetic and one clock compare).

        Args:
            loss: The step's loss: a float, a NumPy scalar or a tensor (kept as is and only
                converted when an event is sent, so no device sync happens per step). A NaN or
                infinite host value sends progress at once, throttle or not, once per episode.
            n: Steps finished since the last call.
        """
        self._steps += n
        if loss is not None:
            self._loss = loss
        now = _perf()
        if now >= self._next_emit or self._steps >= self._final_step or (
                loss is not None and not self.loss_not_finite and text.is_not_finite_now(loss)):
            if self._steps >= self._final_step:
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
        now = _perf()
        self._estimator.set_percent(value, now)
        self.progress = self._percent()
        if steps is not None:
            self._steps = steps
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
        self._epochs_done = (epoch + 1) if epoch is not None else self._epochs_done + 1
        self.current_epoch = self._epochs_done
        if loss is not None:
            self._loss = loss
        if accuracy is not None:
            acc = to_float(accuracy)
            self._accuracy = acc if acc is not None and 0 <= acc <= 1 else self._accuracy
        self._merge_metrics(metrics)
        now = _perf()
        self._estimator.epoch_ended(now)
        self._learn_epoch_length()
        self._send_progress(now)

    def _merge_metrics(self, metrics: Mapping[str, object] | None) -> None:
        for key, value in (metrics or {}).items():
            number, name = to_float(value), str(key)[:ev.MAX_KEY]  # the event's caps
            if number is not None and (name in self._metrics
                                       or len(self._metrics) < ev.MAX_METRICS):
                self._metrics[name] = number

    def update_metrics(self, metrics: Mapping[str, object]) -> None:
        """Add metrics that arrive after the epoch's end and send progress with them.

        For values a framework logs once the adapter has seen the epoch end (Lightning's
        ``LightningModule.on_train_epoch_end``); the event keeps the current step and epoch.
        """
        if self.active:
            self._merge_metrics(metrics)
            self._send_progress(_perf())

    def complete(
        self,
        *,
        final_accuracy: object = None,
        validation_score: object = None,
        model_size: int | str | None = None,
        model_id: str | None = None,
        message: str | None = None,
        stop_reason: str | None = None,
    ) -> ev.TrainingCompleted | None:
        """Finish the run successfully; later calls do nothing.

        Sends progress 100 (ETA 0) at ``finalization``, then ``training_completed`` and an
        ``activity_update``. A run that ends before its plan (an early stop) says so in the
        message. A run whose last loss is NaN or infinite did not succeed: it is reported as
        failed (``NUMERICAL_ERROR`` at ``model_training``) and None is returned.

        Args:
            final_accuracy: Final accuracy, 0-1; defaults to the last epoch's accuracy.
            validation_score: Validation score (any scale the user reports); defaults to the
                last ``val_score``/``val_accuracy``/``val_acc`` metric of an epoch.
            model_size: Bytes (formatted like ``'2.3MB'``) or an already formatted string.
            model_id: Overrides the run's ``model_id``.
            message: Overrides ``'Training completed successfully!'`` (or the early stop's).
            stop_reason: Why the run ended early (``"early_stopping"``, ``"pruned"``,
                ``"callback"``), sent as ``training_completed.stop_reason``; a stop requested
                from the dashboard (``"requested"``) wins when one arrived.

        Raises:
            ValueError: ``final_accuracy`` is outside 0-1, ``model_size`` is negative or
                ``stop_reason`` is not a lower-case name (``[a-z][a-z0-9_]*``).
        """
        if self.finished:
            return None
        accuracy = text.check_fraction("final_accuracy", final_accuracy)
        text.check_stop_reason(stop_reason)
        size = format_bytes(model_size) if isinstance(model_size, (int, float)) else model_size
        if not self.started:
            self.start()
        bad_loss = text.non_finite(self._loss)
        if bad_loss is not None:
            self.fail(FloatingPointError(text.non_finite_text(
                bad_loss, self.current_epoch, self.total_epochs)), stage="model_training")
            return None
        if accuracy is None:
            accuracy = self._accuracy
        if validation_score is None:
            validation_score = text.carried_score(self._metrics)
        reason, message = self.ending(message, stop_reason)  # a stop requested, or an early stop
        if self.progress is not None:
            self.progress = 100.0
        self.stage_name = "finalization"
        self._send_progress(_perf())
        self.finished = "completed"
        elapsed = _perf() - self._estimator.started_at
        training_time = format_duration(elapsed)
        done = ev.TrainingCompleted(
            run_id=self._run_id,
            final_accuracy=accuracy,
            training_time=training_time,
            validation_score=to_float(validation_score),
            model_size=size,
            total_epochs=self._epochs_done or self.total_epochs,
            message=message or text.COMPLETED_MESSAGE,
            model_id=model_id or self.model_id,
            model_name=self.name,
            stop_reason=reason,
        )
        self._emit(done)
        summary = text.completed_summary(self.name, training_time, accuracy)
        self._emit(self._activity(text.COMPLETED, summary, "completed", "success", elapsed))
        return done

    def fail(self, exc: BaseException, *, stage: str | None = None) -> ev.TrainingFailed | None:
        """Report the run as failed because of ``exc``; later calls do nothing.

        Args:
            exc: The exception that ended the run.
            stage: The stage to report; defaults to the current one.

        Raises:
            ValueError: ``stage`` is not one of the spec's stages.
        """
        if self.finished:
            return None
        stage_failed = text.check_stage(stage) if stage is not None else None
        if not self.started:
            self.start()
        self.progress = self._percent()  # steps since the last (throttled) event count
        self.finished = "failed"
        failure = classify(exc)
        error = text.failure_text(exc, failure.error_code)
        failed = ev.TrainingFailed(
            run_id=self._run_id,
            timestamp=iso_utc(),
            error=error[:text.MAX_ERROR],
            error_code=failure.error_code,
            stage_failed=stage_failed or self.stage_name,
            progress_when_failed=round(self.progress or 0.0, 1),
            suggestions=list(failure.suggestions),
            model_name=self.name,
        )
        self._emit(failed)
        self._emit(self._activity(text.FAILED, f"{self.name}: {error[:text.MAX_ACTIVITY_ERROR]}",
                                  "failed", "error", _perf() - self._estimator.started_at))
        return failed

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
