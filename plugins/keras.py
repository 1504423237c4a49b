"""Keras 3 adapter: :class:`MLOpsCallback`, a real ``keras.callbacks.Callback``.

Backend-agnostic (JAX, TensorFlow, PyTorch, NumPy). Imported before Keras with no backend
chosen and TensorFlow missing, it picks an installed one (``KERAS_BACKEND=jax`` or ``torch``;
see ``_keras_backend``)::

    from mlops_hooks.plugins.keras import MLOpsCallback

    model.fit(x, y, epochs=10, validation_split=0.2, callbacks=[MLOpsCallback("digits")])

**What is reported.** Progress over the whole run from ``self.params`` (``epochs`` and
``steps``; when ``steps`` is unknown, e.g. a generator without a length, progress moves per
epoch and the epoch length is learnt from the first one), the loss and metrics of the epoch
logs (``loss``, ``accuracy``, ``val_*``), stages ``model_training`` → ``validation`` (the
validation pass inside ``fit``) → ``finalization``, and ``training_completed`` with
``final_accuracy``/``validation_score`` from configurable log names and ``model_size`` from
the weights. ``run_params`` (the optimizer's configuration, batch size, epochs) at the start.

**Batch hooks.** ``on_train_batch_end`` is a counter update and a clock compare under a lock,
and the callback declares ``async_safe``, so Keras keeps dispatching batch hooks on its worker
thread: the training loop itself only enqueues. A Stop request sets ``model.stop_training``
when it arrives (from the publisher's thread): the batch running then is the last.

**Failures.** Keras has no exception hook, so the callback covers failures three ways:

1. During ``fit`` the model's ``train_function`` and ``test_function`` (one training or
   validation step) are wrapped: an exception in a step - shapes, NaN checks, out of memory,
   Ctrl-C - is reported at once with its stage and progress, then re-raised unchanged. The
   wrappers are removed when ``fit`` ends.
2. For anything else that escapes ``fit`` (the data pipeline, another callback), use the
   callback as a context manager: ``with MLOpsCallback("digits") as cb: model.fit(...,
   callbacks=[cb])`` reports any exception raised inside the block.
3. Without the context manager, an uncaught exception is still reported through a chained
   ``sys.excepthook``, and a run left open at interpreter exit is reported as failed
   (see ``_open_runs``).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable, Mapping
from types import FrameType
from typing import Any

from mlops_hooks.formatting import to_float
from mlops_hooks.plugins._support import keras_backend as _keras_backend
from mlops_hooks.plugins._support import open_runs as _open_runs
from mlops_hooks.plugins._support.base import (
    Adapter,
    FailsOnExit,
    check_metric_names,
    first_metric,
    fraction,
    keras_weights_bytes,
    missing_framework,
    never_raises,
)
from mlops_hooks.plugins._support.stop_flag import raise_flag_on_stop
from mlops_hooks.run import Emit, Run

_keras_backend.choose_backend()  # Keras + torch without TensorFlow: import it on torch
try:
    import keras
except ImportError as _error:  # pragma: no cover - exercised in subprocesses
    raise (_keras_backend.backend_import_error(_error)
           or missing_framework("Keras 3", "keras", _error)) from _error

__all__ = ["DEFAULT_ACCURACY_METRICS", "DEFAULT_SCORE_METRICS", "MLOpsCallback"]

#: Log names tried, in order, for ``final_accuracy`` and the epoch accuracy (0-1 values).
DEFAULT_ACCURACY_METRICS = ("val_accuracy", "val_acc", "accuracy", "acc",
                            "val_sparse_categorical_accuracy", "sparse_categorical_accuracy",
                            "val_categorical_accuracy", "categorical_accuracy",
                            "val_binary_accuracy", "binary_accuracy")
#: Log names tried, in order, for ``validation_score``.
DEFAULT_SCORE_METRICS = ("val_accuracy", "val_acc", "val_sparse_categorical_accuracy",
                         "val_categorical_accuracy", "val_binary_accuracy", "val_auc")

_STEP_FUNCTIONS = ("train_function", "test_function")


class MLOpsCallback(FailsOnExit, Adapter, keras.callbacks.Callback):  # type: ignore[misc]
    """Stream a Keras ``fit`` to the mlops-hooks dashboard and plugins.

    Args:
        name: What is trained, shown on the dashboard; defaults to the model's name.
        model_id: Identifier of the produced model, sent with ``training_completed``.
        run_id: Identifier of the run; generated per ``fit`` when omitted.
        accuracy_metrics: Log name(s) for ``final_accuracy`` and the epoch accuracy, tried in
            order (values outside 0-1 are ignored).
        score_metrics: Log name(s) for ``validation_score``.
        throttle: Minimum seconds between progress events (epoch ends, stage changes and 100%
            are always sent).
        emit: Where events go (e.g. ``pm.dispatch``); defaults to the process's plugin
            manager.
        params: Parameters to send with the run's ``run_params`` besides what is captured
            (optimizer configuration, batch size, epochs); these win on a name clash.
        group: The sweep or study of the run; defaults to ``MLOPS_HOOKS_GROUP``.
        group_size: How many runs the group plans; defaults to ``MLOPS_HOOKS_GROUP_SIZE``.

    Raises:
        ValueError: An argument is empty or out of range.
        TypeError: ``emit`` is not callable, or ``params`` is not a mapping.

    Example:
        >>> with MLOpsCallback("digits") as cb:  # doctest: +SKIP
        ...     model.fit(x, y, epochs=5, validation_split=0.2, callbacks=[cb])
    """

    #: Batch hooks only touch this callback's own state under a lock: Keras may run them on
    #: its worker thread.
    async_safe = True

    def __init__(
        self,
        name: str | None = None,
        *,
        model_id: str | None = None,
        run_id: str | None = None,
        accuracy_metrics: str | Iterable[str] = DEFAULT_ACCURACY_METRICS,
        score_metrics: str | Iterable[str] = DEFAULT_SCORE_METRICS,
        throttle: float = 0.25,
        emit: Emit | None = None,
        params: Mapping[str, Any] | None = None,
        group: str | None = None,
        group_size: int | None = None,
    ) -> None:
        super().__init__()
        self.configure(name, model_id=model_id, run_id=run_id, throttle=throttle, emit=emit)
        self.configure_params(params, group, group_size)
        self.accuracy_metrics = check_metric_names("accuracy_metrics", accuracy_metrics)
        self.score_metrics = check_metric_names("score_metrics", score_metrics)
        self._run: Run | None = None
        self._lock = threading.Lock()
        self._epoch_base = 0  # steps done before the current epoch
        self._steps_called = 0  # training steps of this epoch that returned (main thread)
        self._wrapped: dict[str, Any] = {}
        self._wrapped_model: Any = None

    @property
    def run(self) -> Run | None:
        """The run of the current (or last) ``fit``."""
        return self._run

    # ------------------------------------------------------------------ fit lifecycle

    @never_raises
    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        """Start a run sized from ``self.params`` and guard the training steps."""
        previous = self._run
        if self.reporting(previous):
            previous.fail(RuntimeError("fit ended without completing (an exception was "
                                       "raised outside a training step)"))
        params = self.params or {}
        epochs, steps = params.get("epochs"), params.get("steps")
        model = self.model
        run = self._run = self.new_run(
            getattr(model, "name", None) or type(model).__name__,
            total_epochs=epochs if isinstance(epochs, int) and epochs > 0 else None,
            steps_per_epoch=steps if isinstance(steps, int) and steps > 0 else None,
        )
        self._epoch_base = 0
        run.start()
        self.send_params(run, lambda: fit_params(model, params))
        run.stage("model_training")
        _open_runs.watch(run)
        raise_flag_on_stop(run.run_id, model, "stop_training")  # a Stop request: last batch
        self._wrap_steps(model)

    @never_raises
    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Note the epoch; a fit resumed at ``initial_epoch`` starts its progress there."""
        run = self._run
        if run is None:
            return
        with self._lock:
            if run.steps == 0 and epoch > 0 and run.epochs_done == 0:
                run.resume(steps=epoch * (run.steps_per_epoch or 0), epochs_done=epoch)
            self._epoch_base = run.steps
            self._steps_called = 0
            run.epoch_start(epoch)

    @never_raises
    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        """Count the batch (an enqueue's worth of work; may run on Keras' worker thread)."""
        run = self._run
        if run is None:
            return
        with self._lock:
            if run.finished:
                return
            done = self._epoch_base + batch + 1
            run.step(logs.get("loss") if logs else None, max(0, done - run.steps))
            if run.should_stop:  # Stop from the dashboard: fit ends after this batch
                self.model.stop_training = True

    @never_raises
    def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
        """Enter validation when ``fit`` evaluates (a standalone ``evaluate`` is ignored)."""
        run = self._run
        if self.reporting(run):
            with self._lock:
                run.stage("validation")

    @never_raises
    def on_test_end(self, logs: dict[str, Any] | None = None) -> None:
        """Return to training after the validation pass."""
        run = self._run
        if self.reporting(run):
            with self._lock:
                run.stage("model_training")

    @never_raises
    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Send the epoch's end with its loss, accuracy and ``val_*`` metrics."""
        run = self._run
        if run is None:
            return
        logs = logs or {}
        with self._lock:
            run.epoch_end(epoch, loss=logs.get("loss"),
                          accuracy=fraction(first_metric(logs, self.accuracy_metrics)),
                          metrics=logs)

    @never_raises
    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        """Complete the run with accuracy, validation score and the weights' size."""
        run = self._run
        self._unwrap_steps()
        if run is None:
            return
        logs = logs or {}
        with self._lock:
            run.stage("finalization")
            run.complete(final_accuracy=fraction(first_metric(logs, self.accuracy_metrics)),
                         validation_score=first_metric(logs, self.score_metrics),
                         model_size=keras_weights_bytes(self.model))
        _open_runs.forget(run)

    # ------------------------------------------------------------------ failures

    def _fail(self, exc: BaseException) -> None:
        run = self._run
        model = self._wrapped_model
        self._unwrap_steps()
        if not self.reporting(run):
            return
        try:
            with self._lock:
                # Batch hooks may still be queued on Keras' worker thread: count the steps
                # that returned in this thread instead.
                per_call = getattr(model, "steps_per_execution", 1) or 1
                done = self._epoch_base + self._steps_called * int(per_call)
                run.catch_up(done - run.steps)
                run.fail(exc)
        except Exception as error:  # the user's exception is what must surface
            import sys

            sys.stderr.write(f"mlops-hooks: could not report the failure: {error!r}\n")
        _open_runs.forget(run)

    def _wrap_steps(self, model: Any) -> None:
        for attribute in _STEP_FUNCTIONS:
            original = getattr(model, attribute, None)
            if original is None or attribute in self._wrapped:
                continue
            self._wrapped[attribute] = original
            setattr(model, attribute, self._guarded(original, attribute == "train_function"))
        self._wrapped_model = model

    def _unwrap_steps(self) -> None:
        model = self._wrapped_model
        for attribute, original in self._wrapped.items():
            setattr(model, attribute, original)
        self._wrapped = {}
        self._wrapped_model = None

    def _guarded(self, step: Any, training: bool) -> Any:
        fail = self._fail

        def guarded_step(*args: Any, **kwargs: Any) -> Any:
            try:
                result = step(*args, **kwargs)
            except BaseException as exc:
                fail(exc)
                raise
            if training:
                self._steps_called += 1
            return result

        guarded_step.__wrapped__ = step  # type: ignore[attr-defined]
        return guarded_step


# ---------------------------------------------------------------------- parameters


def fit_params(model: Any, params: Mapping[str, Any]) -> dict[str, Any]:
    """A ``fit``'s parameters: the optimizer's configuration, the batch size and the epochs.

    ``optimizer.name`` is the optimizer's class and ``optimizer.learning_rate`` its current
    rate as a number (a schedule's class is ``optimizer.learning_rate_schedule``).
    """
    captured: dict[str, Any] = {}
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None:
        config = dict(optimizer.get_config())
        schedule = config.get("learning_rate")
        if isinstance(schedule, Mapping):
            config["learning_rate_schedule"] = schedule.get("class_name")
        rate = optimizer.learning_rate  # a variable's value, or a schedule's current rate
        rate = _shortest(keras.ops.convert_to_numpy(getattr(rate, "value", rate)))
        config.update(name=type(optimizer).__name__, learning_rate=rate)
        captured["optimizer"] = config
    batch_size = _fit_batch_size(model)
    if batch_size is not None:
        captured["batch_size"] = batch_size
    captured["epochs"] = params.get("epochs")
    captured["steps_per_epoch"] = params.get("steps")
    return captured


def _shortest(value: Any) -> float | None:
    """A float32 as the shortest decimal that reads back as it (0.003, not 0.0030000000261)."""
    import numpy as np

    array = np.asarray(value)
    if array.ndim == 0 and array.dtype.kind == "f":
        scalar: np.floating[Any] = array.dtype.type(array)
        return to_float(np.format_float_scientific(scalar, unique=True))
    return to_float(value)


def _fit_batch_size(model: Any, depth: int = 12) -> int | None:
    """The batch size of the running ``fit`` of ``model``, read from its epoch iterator.

    Keras does not pass it to callbacks; every backend's ``fit`` holds the iterator in a local
    named ``epoch_iterator`` (None when it is not found, or the data has no fixed batch size).
    """
    frame: FrameType | None = sys._getframe(1)
    for _ in range(depth):
        if frame is None:
            return None
        iterator = frame.f_locals.get("epoch_iterator") if frame.f_code.co_name == "fit" \
            else None
        if iterator is not None and frame.f_locals.get("self") is model:
            size = getattr(getattr(iterator, "data_adapter", None), "batch_size", None)
            return size if isinstance(size, int) and not isinstance(size, bool) else None
        frame = frame.f_back
    return None
