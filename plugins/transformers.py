"""Hugging Face Transformers adapter: :class:`MLOpsCallback`, a ``transformers.TrainerCallback``.

Add the callback to a ``Trainer``::

    from mlops_hooks.plugins.transformers import MLOpsCallback

    trainer = Trainer(model=model, args=args, train_dataset=train,
                      callbacks=[MLOpsCallback("bert-tiny")])

or name it in the arguments, once this module is imported (nothing is enabled by the import)::

    import mlops_hooks.plugins.transformers  # noqa: F401  (registers "mlops_hooks")

    args = TrainingArguments(output_dir="out", report_to=["mlops_hooks"])

**Registration.** Transformers has no public extension point for ``report_to``: the names are
looked up in ``transformers.integrations.integration_utils.INTEGRATION_TO_CALLBACK``, and this
module adds the key ``"mlops_hooks"`` to that table when it is imported. The callback never turns
itself on: ``report_to="all"`` uses Transformers' own fixed list of integrations, so only a
script that names ``"mlops_hooks"`` gets it. A ``Trainer`` given both (``report_to`` and an
``MLOpsCallback`` in ``callbacks``) reports once, through the callback given by hand.

**What is reported.** Stages ``data_preparation`` (the start) → ``model_training`` →
``validation`` (each evaluation during training, ``eval_on_start`` included) →
``finalization``. Whole-run progress and ETA count optimizer steps (``state.global_step``)
against ``state.max_steps``, the plan the trainer computes from ``max_steps`` or
``num_train_epochs`` and gradient accumulation; a training resumed from a checkpoint continues
the checkpoint's run from the checkpoint's step. Every numeric value of every log (``loss``,
``learning_rate``, ``grad_norm``, ``eval_*``, the final ``train_*``) is sent with the log's
step, so each becomes a metric series. ``run_params`` when training begins (see
``_support.transformers_support``). ``training_completed`` reads ``final_accuracy`` and
``validation_score`` from the last logs under configurable names, ``model_size`` from the
model's tensors; a training stopped before its plan says why in ``stop_reason``:
``early_stopping`` (``EarlyStoppingCallback``) or ``callback`` (another callback set
``should_training_stop``).

**Per step.** ``on_step_end`` is a few attribute reads and the run's clock compare.

**Failures.** Transformers has no exception hook, so failures are caught three ways:

1. While training, the trainer's ``training_step`` and ``evaluate`` are wrapped (instance
   attributes, removed when training ends): an exception there (shapes, out of memory, NaN
   checks, Ctrl-C) is reported at once with its stage and progress, then re-raised unchanged.
2. ``with MLOpsCallback(...) as cb: trainer.train()`` reports any exception raised in the
   block (the data loader, another callback, saving a checkpoint).
3. Otherwise an uncaught exception is reported through a chained ``sys.excepthook``, and a run
   still open at interpreter exit as failed (see ``_support.open_runs``).

**Resuming.** The callback is a ``transformers.trainer_callback.ExportableState``: each
checkpoint's ``trainer_state.json`` keeps its run id (and JSON options), and a training
resumed from it continues that run, unless ``run_id=`` was given (see
``_support.transformers_resume``).

**Distributed.** Only the world's process zero reports; the others send nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from typing import Any

from mlops_hooks.plugins._support import open_runs as _open_runs
from mlops_hooks.plugins._support.base import (
    Adapter,
    FailsOnExit,
    check_metric_names,
    first_metric,
    fraction,
    missing_framework,
    never_raises,
    torch_module_bytes,
)
from mlops_hooks.run import Emit, Run

try:
    from transformers import TrainerCallback
    from transformers.trainer_callback import ExportableState
except ImportError as _error:  # pragma: no cover - exercised without the extra
    raise missing_framework("Hugging Face Transformers", "transformers", _error) from _error

from mlops_hooks.plugins._support import transformers_resume as resume
from mlops_hooks.plugins._support import transformers_support as support

__all__ = ["DEFAULT_ACCURACY_METRICS", "DEFAULT_SCORE_METRICS", "REPORT_TO", "MLOpsCallback",
           "register"]

#: Log names tried, in order, for ``final_accuracy`` and the dashboard's accuracy (0-1).
DEFAULT_ACCURACY_METRICS = ("eval_accuracy", "eval_acc", "accuracy", "train_accuracy")
#: Log names tried, in order, for ``validation_score``.
DEFAULT_SCORE_METRICS = ("eval_accuracy", "eval_acc", "eval_f1", "eval_matthews_correlation",
                         "eval_pearson", "eval_rouge1", "eval_bleu")

REPORT_TO = support.REPORT_TO


class MLOpsCallback(FailsOnExit, Adapter, TrainerCallback, ExportableState):
    """Stream a Transformers ``Trainer.train`` to the mlops-hooks dashboard and plugins.

    Args:
        name: What is trained, shown on the dashboard; defaults to the model's class.
        model_id: Identifier of the produced model, sent with ``training_completed``.
        run_id: Identifier of the run; when omitted, generated per ``train()``, and a
            training resumed from a checkpoint continues the run the checkpoint names.
        accuracy_metrics: Log name(s) for ``final_accuracy`` and the accuracy chart, tried in
            order (values outside 0-1 are ignored).
        score_metrics: Log name(s) for ``validation_score``.
        throttle: Minimum seconds between progress events (stage changes, epoch ends, logs
            and 100% are always sent).
        emit: Where events go (e.g. ``pm.dispatch``); defaults to the process's plugin
            manager.
        params: Parameters to send with the run's ``run_params`` besides what is captured
            (``TrainingArguments``, the model's size); these win on a name clash.
        group: The sweep or study of the run; defaults to ``MLOPS_HOOKS_GROUP``.

    Raises:
        ValueError: An argument is empty or out of range.
        TypeError: ``emit`` is not callable, or ``params`` is not a mapping.

    Example:
        >>> trainer = Trainer(model=model, args=args, train_dataset=data,
        ...                   callbacks=[MLOpsCallback("bert-tiny")])  # doctest: +SKIP
    """

    #: Built by ``report_to=["mlops_hooks"]`` rather than by the user.
    by_report_to = False

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
    ) -> None:
        self.configure(name, model_id=model_id, run_id=run_id, throttle=throttle, emit=emit)
        self.configure_params(params, group)
        self.accuracy_metrics = check_metric_names("accuracy_metrics", accuracy_metrics)
        self.score_metrics = check_metric_names("score_metrics", score_metrics)
        self._run: Run | None = None
        self._last_step = 0  # state.global_step the run has counted
        self._training = False  # between on_train_begin and on_train_end
        self._epoch = 0
        self._logged: dict[str, float] = {}  # every number logged in this training, latest
        self._guard = support.StepGuard(self._fail)
        self._trainer: Any = None  # the Trainer of the current training, when found
        # what a checkpoint keeps to rebuild this callback (resume.exported drops non-JSON)
        self._options: dict[str, Any] = {
            "name": name, "model_id": model_id, "run_id": run_id,
            "accuracy_metrics": list(self.accuracy_metrics),
            "score_metrics": list(self.score_metrics), "throttle": self.throttle,
            "params": dict(self.user_params) or None, "group": group}

    @property
    def run(self) -> Run | None:
        """The run of the current (or last) ``train()``; None on processes other than zero."""
        return self._run

    def state(self) -> dict[str, Any]:
        """What each checkpoint keeps (``ExportableState``): the options and the run's id.

        Saved in the checkpoint's ``trainer_state.json``; a training resumed from it continues
        that run (see ``_support.transformers_resume``).
        """
        run = self._run
        try:  # called by the trainer as training begins and at each save: must never raise
            resume.note_given(support.find_trainer(), self)  # see resume.replaced
            return resume.exported(self._options, run.run_id if run is not None else None)
        except Exception as exc:
            sys.stderr.write(f"mlops-hooks: MLOpsCallback.state: {exc!r}\n")
            return {"args": {}, "attributes": {}}

    # ------------------------------------------------------------------ training lifecycle

    @never_raises
    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None,
                       **kwargs: Any) -> None:
        """Start a run sized from the trainer's plan; a resumed training continues its run."""
        trainer = support.find_trainer()
        given = resume.replaced(trainer, self)
        if given is not None:  # Transformers rebuilt this callback: the user's one reports
            resume.hand_back(trainer, self, given)
            given.on_train_begin(args, state, control, model=model, **kwargs)
            return
        previous = self._run
        if self.reporting(previous):
            self._fail(RuntimeError("train() ended without completing (an exception was "
                                    "raised outside a training step)"))
        self._run, self._training = None, False
        resume.keep_entry(state, type(self).__name__, self.state())  # on every process
        if not state.is_world_process_zero:
            return
        if self.by_report_to and trainer is not None and any(
                isinstance(c, MLOpsCallback) and not c.by_report_to
                for c in trainer.callback_handler.callbacks):
            return  # the user's own MLOpsCallback reports this training
        resumed_at = int(state.global_step or 0)  # > 0: resumed from a checkpoint
        epochs = int(state.num_train_epochs or 0)
        run = self._run = self.new_run(
            type(model).__name__ if model is not None else "transformers-model",
            run_id=resume.checkpoint_run_id(state, type(self).__name__, self._position(trainer))
            if resumed_at and self.run_id is None else None,
            total_steps=state.max_steps if state.max_steps and state.max_steps > 0 else None,
            total_epochs=epochs if epochs > 0 else None,
        )
        self._last_step, self._epoch, self._logged = 0, 0, {}
        if resumed_at:
            run.resume(steps=resumed_at, epochs_done=int(state.epoch or 0))
            self._last_step = resumed_at
        run.start()
        resumed = {"resumed_from_step": resumed_at} if resumed_at else {}
        self.send_params(run, lambda: {**support.training_params(args, state, model), **resumed})
        run.stage("model_training")
        self._training = True
        _open_runs.watch(run)
        if trainer is not None:
            self._guard.install(trainer)
            self._trainer = trainer

    def _position(self, trainer: Any) -> int:
        """This callback's position among the trainer's callbacks of its class (0 mostly)."""
        callbacks = getattr(getattr(trainer, "callback_handler", None), "callbacks", ())
        same = [c for c in callbacks if type(c).__name__ == type(self).__name__]
        return next((i for i, c in enumerate(same) if c is self), 0)

    @never_raises
    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Note the epoch that begins (0-based, as the trainer counts it)."""
        run = self._run
        if self.reporting(run):
            self._epoch = int(state.epoch or 0)
            run.epoch_start(self._epoch)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Count the optimizer steps done (the hot path: attribute reads, one clock compare)."""
        run = self._run
        if run is None:
            return
        try:  # inline rather than @never_raises: this runs on every step
            step = state.global_step
            run.step(None, step - self._last_step)
            self._last_step = step
        except Exception as exc:
            self._step_failed(exc)

    @never_raises
    def _step_failed(self, exc: Exception) -> None:
        self._run = None  # stop reporting this training rather than fail on every step
        raise exc

    def _count(self, state: Any) -> None:
        """Count steps the run has not seen yet (before an event that carries the position)."""
        run = self._run
        if run is not None and state.global_step > self._last_step:
            run.catch_up(state.global_step - self._last_step)
            self._last_step = state.global_step

    @never_raises
    def on_prediction_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Enter ``validation`` at an evaluation's first batch during training."""
        run = self._run
        if self._training and run is not None and run.stage_name == "model_training" \
                and run.active:
            self._count(state)
            run.stage("validation")

    @never_raises
    def on_log(self, args: Any, state: Any, control: Any, logs: Mapping[str, Any] | None = None,
               **kwargs: Any) -> None:
        """Send every number of the log at its step (one metric series per name)."""
        run = self._run
        if not self.reporting(run) or not logs:
            return
        self._count(state)
        values = support.numbers(logs)
        self._logged.update(values)
        loss = logs.get("loss")  # a NaN/Inf loss too: the run reports it (loss_not_finite)
        if isinstance(loss, (int, float)) and not isinstance(loss, bool):
            run.step(loss, 0)
        run.update_metrics(values)

    @never_raises
    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Return to training after an evaluation."""
        self._end_validation(state)

    @never_raises
    def on_predict(self, args: Any, state: Any, control: Any, metrics: Any = None,
                   **kwargs: Any) -> None:
        """Return to training after a prediction run inside training."""
        self._end_validation(state)

    def _end_validation(self, state: Any) -> None:
        run = self._run
        if self._training and self.reporting(run):
            self._count(state)
            run.stage("model_training")

    @never_raises
    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Send the epoch's end (with the accuracy logged last, if any)."""
        run = self._run
        if not self.reporting(run):
            return
        self._count(state)
        run.epoch_end(self._epoch,
                      accuracy=fraction(first_metric(self._logged, self.accuracy_metrics)))

    @never_raises
    def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None,
                     **kwargs: Any) -> None:
        """Complete the run: accuracy, validation score, model size, why it stopped early."""
        run = self._run
        self._training = False
        trainer, self._trainer = self._trainer, None
        self._guard.remove()
        if not self.reporting(run):
            return
        self._count(state)
        reason = support.stop_reason(trainer) if run.stopped_early() else None
        run.stage("finalization")
        run.complete(final_accuracy=fraction(first_metric(self._logged, self.accuracy_metrics)),
                     validation_score=first_metric(self._logged, self.score_metrics),
                     model_size=torch_module_bytes(model) if model is not None else None,
                     stop_reason=reason)
        _open_runs.forget(run)

    # ------------------------------------------------------------------ failures

    def _fail(self, exc: BaseException) -> None:
        """Report ``exc`` as the run's failure (never raises: the user's exception surfaces)."""
        run = self._run
        trainer, self._trainer = self._trainer, None
        self._training = False
        try:
            self._guard.remove()
            if not self.reporting(run):
                return
            state = getattr(trainer, "state", None)
            if state is not None:
                self._count(state)
            run.fail(exc)
            _open_runs.forget(run)
        except Exception as error:
            sys.stderr.write(f"mlops-hooks: could not report the failure: {error!r}\n")


class _ReportToCallback(MLOpsCallback):
    """The callback ``report_to=["mlops_hooks"]`` builds (steps aside for a user's own)."""

    by_report_to = True


def register() -> bool:
    """Make ``TrainingArguments(report_to=["mlops_hooks"])`` add an :class:`MLOpsCallback`.

    Called when this module is imported; calling it again does nothing. See the module's
    documentation for how (Transformers has no public hook for it).

    Returns:
        Whether the name is registered (False if this Transformers has no table to add to).
    """
    return support.register(_ReportToCallback)


register()
