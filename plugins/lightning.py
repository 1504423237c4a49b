"""PyTorch Lightning adapter: :class:`MLOpsCallback` and the zero-code :func:`auto_callbacks`.

Add one callback and the run streams live::

    from mlops_hooks.plugins.lightning import MLOpsCallback

    trainer = Trainer(max_epochs=10, callbacks=[MLOpsCallback("digits-mlp")])

or, without touching the script, ``MLOPS_HOOKS_AUTO=1 python train.py``: the callback is
registered under Lightning's callbacks-factory entry points, so every ``Trainer`` gets exactly
one (a Trainer that already has an ``MLOpsCallback`` gets no second one).

**Flavours.** The class subclasses the ``Callback`` of every installed flavour
(``lightning.pytorch``, ``pytorch_lightning``), so it works with either ``Trainer``.

**What is reported.** Stages ``data_preparation`` (from ``on_fit_start``: restoring, building
the data loaders) → ``model_training`` → ``validation`` (during validation loops; the sanity
check is never reported) → ``finalization`` (end of fit). Whole-run progress and ETA come from
``trainer.global_step`` against ``trainer.estimated_stepping_batches``; a run without a step or
epoch limit reports epochs without a percentage. The loss is the training step's output, kept
as a tensor and converted only when an event is sent (no device sync per batch).
``training_completed`` reads ``final_accuracy`` and ``validation_score`` from
``trainer.callback_metrics`` under configurable names; ``model_size`` is the bytes of the
module's parameters and buffers. ``training_failed`` comes from ``on_exception``
(KeyboardInterrupt and SIGTERM included) with the stage and progress of that moment.
``run_params`` (``hparams``, optimizer, scheduler, batch size, limits) when training starts.
A Stop request (:mod:`mlops_hooks.run.control`) sets ``trainer.should_stop`` when it arrives:
the batch running then is the last.

**Distributed.** Only global rank zero reports; other ranks report nothing. All ranks agree on
a Stop request (which only rank zero receives) every few batches and at epoch ends, and stop at
the same batch (``_support.stop_flag.StopAgreement``). With spawn-based strategies
(``ddp_spawn``) Lightning calls ``on_exception`` only in the launching process, so rank zero
reports a failure when its worker process exits (``_support.lightning_support``).

**Resuming.** ``state_dict``/``load_state_dict`` keep the ``run_id`` in the checkpoint, so
``trainer.fit(..., ckpt_path=...)`` continues the same run on the dashboard. An auto-attached
callback keeps nothing in checkpoints (``state_dict`` is ``{}``; resuming needs no callback).
"""

from __future__ import annotations

import math
import multiprocessing
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from mlops_hooks.plugins._support import lightning_support as support
from mlops_hooks.plugins._support import stop_flag
from mlops_hooks.plugins._support.base import (
    Adapter,
    check_metric_names,
    first_metric,
    fraction,
    never_raises,
    torch_module_bytes,
)
from mlops_hooks.plugins._support.lightning_logger import MLOpsLogger, share_run
from mlops_hooks.plugins._support.rearm import rearm_at, release
from mlops_hooks.run import Emit, Run, control

__all__ = ["DEFAULT_ACCURACY_METRICS", "DEFAULT_SCORE_METRICS", "MLOpsCallback",
           "MLOpsLogger", "auto_callbacks"]

#: ``callback_metrics`` names tried, in order, for ``final_accuracy`` (a 0-1 value).
DEFAULT_ACCURACY_METRICS = ("val_acc", "val_accuracy", "accuracy", "acc", "train_acc",
                            "train_accuracy")
#: ``callback_metrics`` names tried, in order, for ``validation_score``.
DEFAULT_SCORE_METRICS = ("val_score", "val_acc", "val_accuracy", "val_f1", "val_auroc")
#: ``callback_metrics`` names tried, in order, for the epoch's training loss.
DEFAULT_LOSS_METRICS = ("train_loss_epoch", "train_loss", "loss")

#: The per-batch hook pauses itself when the next progress event is at least this far away.
MIN_PAUSE = 0.02

_now = time.perf_counter  # bound at import: patching the time module never reaches us

_CALLBACK_BASES = support.callback_bases()  # ImportError naming the extra when missing


class _MLOpsCallbackImpl(Adapter):
    """Stream a Lightning ``fit`` to the mlops-hooks dashboard and plugins.

    Args:
        name: What is trained, shown on the dashboard; defaults to the LightningModule's class.
        model_id: Identifier of the produced model, sent with ``training_completed``.
        run_id: Identifier of the run (generated when omitted; restored from a checkpoint).
        accuracy_metrics: ``callback_metrics`` name(s) for ``final_accuracy`` and the epoch
            accuracy, tried in order (values outside 0-1 are ignored).
        score_metrics: ``callback_metrics`` name(s) for ``validation_score``.
        loss_metrics: ``callback_metrics`` name(s) for the epoch's loss.
        throttle: Minimum seconds between progress events (stage changes, epoch ends and
            100% are always sent).
        emit: Where events go (e.g. ``pm.dispatch``); defaults to the process's plugin
            manager. Must be picklable for spawn-based strategies.
        params: Parameters to send with the run's ``run_params`` besides what is captured
            (``hparams``, optimizer, batch size, limits); these win on a name clash.
        group: The sweep or study of the run; defaults to ``MLOPS_HOOKS_GROUP``.
        group_size: How many runs the group plans; defaults to ``MLOPS_HOOKS_GROUP_SIZE``.

    Raises:
        ValueError: An argument is empty or out of range.
        TypeError: ``emit`` is not callable, or ``params`` is not a mapping.

    Example:
        >>> trainer = Trainer(max_epochs=5, callbacks=[MLOpsCallback("digits")])  # doctest: +SKIP
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        model_id: str | None = None,
        run_id: str | None = None,
        accuracy_metrics: str | Iterable[str] = DEFAULT_ACCURACY_METRICS,
        score_metrics: str | Iterable[str] = DEFAULT_SCORE_METRICS,
        loss_metrics: str | Iterable[str] = DEFAULT_LOSS_METRICS,
        throttle: float = 0.25,
        emit: Emit | None = None,
        params: Mapping[str, Any] | None = None,
        group: str | None = None,
        group_size: int | None = None,
    ) -> None:
        self.configure(name, model_id=model_id, run_id=run_id, throttle=throttle, emit=emit)
        self.configure_params(params, group, group_size)
        self.accuracy_metrics = check_metric_names("accuracy_metrics", accuracy_metrics)
        self.score_metrics = check_metric_names("score_metrics", score_metrics)
        self.loss_metrics = check_metric_names("loss_metrics", loss_metrics)
        self.auto = False  # added by auto_callbacks(), not by the user
        self._run: Run | None = None
        self._restored_run_id: str | None = None
        self._last_step = 0
        self._counting = False  # between on_train_start and the end of the fit
        # a subclass's own on_train_batch_end must run on every batch: never paused then
        self._may_pause = (type(self).on_train_batch_end
                           is _MLOpsCallbackImpl.on_train_batch_end
                           or getattr(type(self), "_pausable_override", False))
        self._step_tracker: Any = None
        self._exit_guard: Any = None
        self._sent_metrics: dict[str, float] | None = None  # of the last epoch end
        self._agreement: stop_flag.StopAgreement | None = None  # on several ranks only

    if TYPE_CHECKING:  # Lightning's ``Callback`` (a base of the built class) provides it
        def _generate_state_key(self, **kwargs: Any) -> str: ...

    # ------------------------------------------------------------------ identity & state

    @property
    def state_key(self) -> str:
        """Key of this callback's state in checkpoints (auto-attached ones use their own).

        Lightning reads it for every hook it calls, so it is a plain attribute lookup.
        """
        return self._state_key

    @property
    def auto(self) -> bool:
        """Whether :func:`auto_callbacks` added this callback (not the user)."""
        return self._auto

    @auto.setter
    def auto(self, value: bool) -> None:
        self._auto = bool(value)
        # Lightning's own key for a callback with arguments (``MLOpsCallback{'auto': True}``);
        # the user's callback keeps Lightning's default key, its class name.
        self._state_key = self._generate_state_key(auto=True) if self._auto else \
            type(self).__qualname__

    @property
    def run(self) -> Run | None:
        """The run of the current (or last) fit in this process; None on non-zero ranks."""
        return self._run

    def state_dict(self) -> dict[str, Any]:
        """Keep the run id in checkpoints so a resumed fit continues the same run.

        An auto-attached callback returns ``{}``: Lightning then stores nothing for it.
        """
        if self.auto:
            return {}
        run_id = self._run.run_id if self._run is not None else self.run_id
        return {"run_id": run_id} if run_id else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Continue the checkpoint's run (called before the resumed run reports anything)."""
        run_id = state_dict.get("run_id")
        if not isinstance(run_id, str) or not run_id:
            return
        if self._run is not None and not self._run.started:
            self._run.run_id = run_id
        elif self._run is None:
            self._restored_run_id = run_id  # loaded before setup: used by the next fit

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()  # a spawned worker starts its own run
        state.update(_run=None, _exit_guard=None, _last_step=0, _step_tracker=None,
                     _counting=False, _agreement=None)
        state.pop("on_train_batch_end", None)  # a paused hook is this process's business
        state.pop("on_train_batch_start", None)  # and so is a stop agreement (several ranks)
        return state

    # ------------------------------------------------------------------ fit lifecycle

    @never_raises
    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """Decide whether this process reports (global rank zero) and prepare the run."""
        if stage != "fit":
            return
        self._run, self._sent_metrics = None, None
        self._resume_batch_hook()
        if self.auto and support.has_user_callback(trainer, self, _MLOpsCallbackImpl):
            trainer.callbacks = [c for c in trainer.callbacks if c is not self]
            return
        self._agreement = stop_flag.agree_across_ranks(self, trainer)  # None: one process
        if not trainer.is_global_zero:
            return
        self._restored_run_id, restored = None, self._restored_run_id
        epochs, steps = trainer.max_epochs, trainer.max_steps
        self._run = self.new_run(
            type(pl_module).__name__, run_id=restored,
            total_epochs=epochs if epochs and epochs > 0 and steps == -1 else None,
            total_steps=steps if steps and steps > 0 else None,  # a percentage from the start
        )
        if multiprocessing.parent_process() is not None:
            self._exit_guard = support.on_worker_exit(self._worker_exit)

    @never_raises
    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        """Start the run, unless a checkpoint is still to be restored."""
        run = self._run
        if run is None or run.started:
            return
        restoring_later = getattr(trainer.strategy, "restore_checkpoint_after_setup", False)
        if trainer.ckpt_path is None and not restoring_later:
            support.continue_from(trainer, run)  # a second fit() of the same Trainer
            run.start()  # data_preparation: restoring, building the data loaders

    @never_raises
    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        """Learn the plan (steps, epochs), continue a resumed run, enter model_training."""
        run = self._run
        if run is None:
            return
        total_steps, total_epochs, per_epoch = support.plan(trainer)
        run.set_totals(total_steps=total_steps, total_epochs=total_epochs,
                       steps_per_epoch=per_epoch)
        self._last_step = trainer.global_step
        self._step_tracker = support.step_tracker(trainer)
        self._counting = True
        self._resume_batch_hook()
        control.watch(run.run_id, self._resume_batch_hook)  # a Stop request re-arms the hook
        if self._agreement is None:  # one process: the flag ends the current batch
            stop_flag.raise_flag_on_stop(run.run_id, trainer, "should_stop")
        support.continue_from(trainer, run)  # restored from a checkpoint (or known only now)
        run.start()
        self.send_params(run, lambda: support.run_params(trainer, pl_module))
        share_run(trainer, run)  # an MLOpsLogger of this Trainer logs into this run
        run.stage("model_training")

    @never_raises
    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        """Note the epoch that begins."""
        if self._run is not None:
            support.send_late_metrics(self._run, trainer, self._sent_metrics)
            self._run.epoch_start(trainer.current_epoch)
            self._run.stage("model_training")

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        """Count optimizer steps and keep the loss tensor (the hot path: no device sync).

        Once a progress event is sent, the hook pauses itself until the next one is due (the
        instance attribute is ``None``, so Lightning skips the call and its profiler context;
        :func:`~._rearm.rearm_at` removes it then). The step count is absolute, so the skipped
        batches are counted at the next call, and lifecycle hooks catch up first. A subclass
        that overrides this hook is never paused: its own code runs on every batch; nor is it
        while the last event reported a NaN/Inf loss (the loss that ends the episode is seen).
        """
        run = self._run
        if run is None:
            return
        try:  # inline rather than @never_raises: this runs on every batch it is not paused
            loss: Any = outputs.get("loss") if type(outputs) is dict \
                or isinstance(outputs, Mapping) else outputs
            if getattr(loss, "requires_grad", False):
                loss = loss.detach()
            tracker = self._step_tracker
            step = tracker.completed if tracker is not None else trainer.global_step
            run.step(loss, step - self._last_step)
            self._last_step = step
            if run.should_stop and self._agreement is None:  # Lightning ends after this batch
                trainer.should_stop = True
            wake = run.next_progress_at
            if self._may_pause and wake != math.inf and wake - _now() >= MIN_PAUSE \
                    and not run.loss_not_finite:  # a NaN episode: see each loss until it ends
                self.on_train_batch_end = None  # type: ignore[method-assign,assignment]
                rearm_at(self, "on_train_batch_end", wake)
        except Exception as exc:
            self._batch_hook_failed(exc)

    def _resume_batch_hook(self) -> None:
        self.__dict__.pop("on_train_batch_end", None)

    def _end_pauses(self) -> None:
        """The fit's batches are over: no re-arm pending, and the re-arm thread ends."""
        self._resume_batch_hook()
        release(self)

    def _catch_up(self, trainer: Any | None) -> None:
        """Count the steps of the batches the paused hook did not see."""
        run = self._run
        if run is None or not self._counting:
            return
        tracker = self._step_tracker
        if tracker is not None:
            step = tracker.completed
        elif trainer is not None:
            step = trainer.global_step
        else:
            return
        if step > self._last_step:
            run.catch_up(step - self._last_step)
            self._last_step = step

    @never_raises
    def _batch_hook_failed(self, exc: Exception) -> None:
        self._run = None  # stop reporting this fit rather than fail on every batch
        raise exc

    @never_raises
    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        """Enter the validation stage (never for the sanity check)."""
        if self._run is not None and not trainer.sanity_checking and self._run.started:
            self._catch_up(trainer)
            self._run.stage("validation")

    @never_raises
    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        """Return to training after a validation loop inside fit."""
        if self._run is not None and not trainer.sanity_checking and self._run.started:
            self._catch_up(trainer)
            self._run.stage("model_training")

    @never_raises
    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        """Send the epoch's end with its metrics (validation metrics of the epoch included)."""
        if self._agreement is not None:  # every rank, before anything else can fail
            self._agreement.agree(trainer)
        run = self._run
        if run is None:
            return
        self._catch_up(trainer)
        metrics = dict(trainer.callback_metrics)
        run.epoch_end(
            trainer.current_epoch,
            loss=first_metric(metrics, self.loss_metrics),
            accuracy=first_metric(metrics, self.accuracy_metrics),
            metrics=metrics,
        )
        self._sent_metrics = support.numbers(metrics)

    @never_raises
    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        """Enter finalization."""
        if self._run is not None:
            self._catch_up(trainer)
            self._counting = False
            self._end_pauses()
            support.send_late_metrics(self._run, trainer, self._sent_metrics)
            self._run.stage("finalization")

    @never_raises
    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        """Complete the run with accuracy, validation score and model size."""
        run = self._run
        if run is None:
            return
        metrics = trainer.callback_metrics
        run.complete(
            final_accuracy=fraction(first_metric(metrics, self.accuracy_metrics)),
            validation_score=first_metric(metrics, self.score_metrics),
            model_size=torch_module_bytes(pl_module),
        )
        self._disarm()

    @never_raises
    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """End the batch hook's pauses (and the re-arm thread) however the fit ended."""
        if stage == "fit":
            self._end_pauses()

    @never_raises
    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        """Report the failure (KeyboardInterrupt and SIGTERM included) of a fit."""
        run = self._run
        if run is None:
            if not support.reports_early_failure(trainer, self) or (
                    self.auto and support.has_user_callback(trainer, self, _MLOpsCallbackImpl)):
                return
            run = self._run = self.new_run(type(pl_module).__name__, throttle=False)
        self._catch_up(trainer)
        self._counting = False
        self._end_pauses()
        run.fail(exception)
        self._disarm()

    # ------------------------------------------------------------------ worker exit

    def _worker_exit(self, exception: BaseException | None) -> None:
        run = self._run
        if self.reporting(run):
            self._catch_up(None)
            run.fail(exception or SystemExit("the training process exited before the run "
                                             "finished"))

    def _disarm(self) -> None:
        if self._exit_guard is not None:
            self._exit_guard.cancel()
            self._exit_guard = None


if TYPE_CHECKING:
    MLOpsCallback = _MLOpsCallbackImpl
else:
    MLOpsCallback = support.build_class(_MLOpsCallbackImpl, _CALLBACK_BASES, __name__)


def auto_callbacks() -> list[Any]:
    """Lightning's callbacks-factory entry point: one ``MLOpsCallback`` when enabled.

    Enabled by ``MLOPS_HOOKS_AUTO=1`` (also ``true``/``yes``/``on``). Returns nothing when the
    Trainer being built already has an ``MLOpsCallback``; if that cannot be seen at build time,
    the added callback removes itself at ``setup``, so a Trainer never reports twice.

    Returns:
        ``[MLOpsCallback()]`` or ``[]``.
    """
    if not support.auto_enabled():
        return []
    existing = support.callbacks_being_configured()
    if existing is not None and any(isinstance(c, _MLOpsCallbackImpl) for c in existing):
        return []
    callback = MLOpsCallback()
    callback.auto = True
    return [callback]
