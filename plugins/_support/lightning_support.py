"""Lightning plumbing for :mod:`mlops_hooks.plugins.lightning`: flavours, plan, attach, exits.

Kept apart from the callback so the callback reads as a list of hook translations.
"""

from __future__ import annotations

import importlib
import math
import os
import sys
import types
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from mlops_hooks.formatting import to_float
from mlops_hooks.plugins._support.base import missing_framework

T = TypeVar("T")

__all__ = [
    "FLAVOURS",
    "UNUSED_BATCH_HOOKS",
    "auto_enabled",
    "callback_bases",
    "callbacks_being_configured",
    "continue_from",
    "has_user_callback",
    "numbers",
    "on_worker_exit",
    "plan",
    "reports_early_failure",
    "run_params",
    "send_late_metrics",
    "step_tracker",
]

#: The two import names Lightning is published under, preferred first.
FLAVOURS = ("lightning.pytorch", "pytorch_lightning")


def callback_bases() -> tuple[type, ...]:
    """The ``Callback`` class of every installed Lightning flavour.

    Raises:
        ImportError: No flavour is installed; the message names the extra to install.
    """
    bases: list[type] = []
    first_error: ImportError | None = None
    for flavour in FLAVOURS:
        try:
            module = importlib.import_module(flavour)
        except ImportError as exc:
            first_error = first_error or exc
            continue
        bases.append(module.Callback)
    if not bases:
        assert first_error is not None
        raise missing_framework("PyTorch Lightning", "lightning", first_error)
    return tuple(bases)


# ---------------------------------------------------------------------- the plan of a fit


def plan(trainer: Any) -> tuple[int | None, int | None, int | None]:
    """Return ``(total_steps, total_epochs, steps_per_epoch)`` in optimizer steps.

    Called at ``on_train_start``, when the train loader exists, so reading
    ``estimated_stepping_batches`` loads nothing and calls no collective. Unknown parts (an
    iterable dataset, ``max_epochs=-1`` without ``max_steps``) are None.
    """
    estimated = to_float(trainer.estimated_stepping_batches)
    total_steps = int(estimated) if estimated is not None and estimated > 0 else None
    batches = to_float(trainer.num_training_batches)
    accumulate = max(1, int(trainer.accumulate_grad_batches or 1))
    per_epoch = math.ceil(batches / accumulate) if batches is not None and batches > 0 else None
    max_epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else None
    total_epochs = max_epochs
    if trainer.max_steps not in (None, -1) and per_epoch:
        needed = math.ceil(trainer.max_steps / per_epoch)  # max_steps ends the run earlier
        total_epochs = min(needed, max_epochs) if max_epochs else needed
    return total_steps, total_epochs, per_epoch


def continue_from(trainer: Any, run: Any) -> None:
    """Start the run's position at the trainer's (a resumed or repeated fit) once."""
    if run.steps == 0 and run.epochs_done == 0 and (trainer.global_step
                                                   or trainer.current_epoch):
        run.resume(steps=trainer.global_step, epochs_done=trainer.current_epoch)


def run_params(trainer: Any, pl_module: Any) -> dict[str, Any]:
    """A fit's parameters, read once when training starts (nested values are flattened later).

    The module's ``hparams`` (``save_hyperparameters``; the datamodule's too), then each
    optimizer's class and first parameter group's settings (``optimizer.name``,
    ``optimizer.lr``, ...; ``optimizer_1.`` for a second one), each scheduler's class, the
    train dataloader's batch size when it has one, and the Trainer's limits and precision.
    """
    captured: dict[str, Any] = {}
    for owner in (pl_module, getattr(trainer, "datamodule", None)):
        hparams = getattr(owner, "hparams", None)
        if isinstance(hparams, Mapping):
            captured.update((str(k), v) for k, v in hparams.items() if str(k) not in captured)
    for i, optimizer in enumerate(getattr(trainer, "optimizers", None) or ()):
        groups = getattr(optimizer, "param_groups", None) or [{}]
        settings = {"name": type(optimizer).__name__}
        settings.update((str(k), v) for k, v in groups[0].items() if k != "params")
        captured.setdefault("optimizer" if i == 0 else f"optimizer_{i}", settings)
    for i, config in enumerate(getattr(trainer, "lr_scheduler_configs", None) or ()):
        scheduler = getattr(config, "scheduler", None)
        captured.setdefault("lr_scheduler" if i == 0 else f"lr_scheduler_{i}",
                            {"name": type(scheduler).__name__,
                             "interval": getattr(config, "interval", None)})
    batch_size = _batch_size(getattr(trainer, "train_dataloader", None))
    if batch_size is not None:
        captured.setdefault("batch_size", batch_size)
    for name in ("max_epochs", "max_steps", "accumulate_grad_batches", "precision"):
        captured.setdefault(name, getattr(trainer, name, None))
    return captured


def send_late_metrics(run: Any, trainer: Any, sent: dict[str, float] | None) -> None:
    """Send the ``callback_metrics`` that changed since ``sent`` (updated in place).

    ``sent`` is None before the first epoch end of the fit: nothing is late yet.

    Lightning calls the callbacks' ``on_train_epoch_end`` before the module's, so what the
    module logs there reaches ``callback_metrics`` only afterwards: it is sent at the next
    epoch's start (or the end of training) with the step the epoch ended at.
    """
    if sent is None:
        return
    current = {str(k): to_float(v) for k, v in dict(trainer.callback_metrics).items()}
    late = {k: v for k, v in current.items() if v is not None and sent.get(k) != v}
    if late:
        sent.update(late)
        run.update_metrics(late)


def numbers(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The numeric values of ``metrics`` as floats (what an epoch end sent)."""
    converted = {str(k): to_float(v) for k, v in metrics.items()}
    return {k: v for k, v in converted.items() if v is not None}


def _batch_size(loader: Any) -> int | None:
    """The batch size of one torch ``DataLoader`` (None for several, or a sampler of its own)."""
    size = getattr(loader, "batch_size", None)
    if size is None:
        size = getattr(getattr(loader, "batch_sampler", None), "batch_size", None)
    return size if isinstance(size, int) and not isinstance(size, bool) else None


def step_tracker(trainer: Any) -> Any:
    """The object whose ``completed`` is ``trainer.global_step``, read once per batch.

    ``trainer.global_step`` walks several properties on every call; the progress tracker it
    ends at is one attribute away. Returns None (use ``trainer.global_step``) when Lightning's
    internals differ from what is expected.
    """
    try:
        loop = trainer.fit_loop.epoch_loop
        if trainer.lightning_module.automatic_optimization:
            tracker = loop.automatic_optimization.optim_progress.optimizer.step.total
        else:
            tracker = loop.manual_optimization.optim_step_progress.total
        return tracker if tracker.completed == trainer.global_step else None
    except Exception:
        return None


# ---------------------------------------------------------------------- zero-code attach


def auto_enabled() -> bool:
    """Whether ``MLOPS_HOOKS_AUTO`` asks for the callback to be attached to every Trainer."""
    return os.environ.get("MLOPS_HOOKS_AUTO", "").strip().lower() in ("1", "true", "yes", "on")


def callbacks_being_configured(max_depth: int = 12) -> list[Any] | None:
    """The callbacks of the Trainer whose callbacks-factory entry points are being loaded.

    Lightning calls the factories without arguments from its ``_CallbackConnector``, after the
    user's callbacks are in ``trainer.callbacks``; the connector is found on the call stack.
    Returns None when it cannot be found (then ``setup`` removes a duplicate instead).
    """
    frame: types.FrameType | None = sys._getframe(1)
    for _ in range(max_depth):
        if frame is None:
            return None
        owner = frame.f_locals.get("self")
        if type(owner).__name__ == "_CallbackConnector":
            callbacks = getattr(getattr(owner, "trainer", None), "callbacks", None)
            return list(callbacks) if isinstance(callbacks, list) else None
        frame = frame.f_back
    return None


def has_user_callback(trainer: Any, auto_callback: object, kind: type) -> bool:
    """Whether ``trainer`` has an ``MLOpsCallback`` other than the auto-attached one."""
    return any(isinstance(c, kind) and c is not auto_callback and not getattr(c, "auto", False)
               for c in trainer.callbacks)


# ---------------------------------------------------------------------- failures


def _launched_by_multiprocessing(trainer: Any) -> bool:
    launcher = getattr(trainer.strategy, "launcher", None)
    return any(c.__name__ == "_MultiProcessingLauncher" for c in type(launcher).__mro__)


def reports_early_failure(trainer: Any, callback: Any) -> bool:
    """Whether a fit that failed before the callback's ``setup`` is reported by this process.

    Only global rank zero of a fit reports, and never the process that launched spawn-based
    workers (they report for themselves).
    """
    fn = getattr(trainer.state, "fn", None)
    return (fn == "fit" and trainer.is_global_zero and not _launched_by_multiprocessing(trainer)
            and callback in trainer.callbacks)


class _ExitGuard:
    """Calls ``report(exception)`` when this worker process exits, unless cancelled."""

    def __init__(self, report: Callable[[BaseException | None], None]) -> None:
        from multiprocessing import util

        self._report: Callable[[BaseException | None], None] | None = report
        self._finalizer = util.Finalize(None, self._fire, exitpriority=50)

    def _fire(self) -> None:
        report, self._report = self._report, None
        if report is None:
            return
        # Runs in multiprocessing's ``finally`` around the worker: the exception on its way
        # out is visible. torch's spawn wrapper turns the real one into SystemExit(1), whose
        # context is the user's exception.
        exception = sys.exc_info()[1]
        while (type(exception) is SystemExit and exception is not None
               and exception.__context__ is not None):
            exception = exception.__context__
        try:
            report(exception)
        except Exception as exc:  # monitoring never changes how a worker exits
            sys.stderr.write(f"mlops-hooks: reporting the worker's exit failed: {exc!r}\n")

    def cancel(self) -> None:
        self._report = None
        self._finalizer.cancel()


def on_worker_exit(report: Callable[[BaseException | None], None]) -> _ExitGuard:
    """Call ``report(exception or None)`` when this multiprocessing worker exits.

    Spawn-based strategies run ``fit`` in workers and call ``on_exception`` only in the
    launching process, which has no run; rank zero's worker reports its own failure here.
    ``cancel()`` the guard once the run has completed or failed.
    """
    return _ExitGuard(report)


#: Per-batch hooks this callback does not use. Lightning calls every callback's hook inside a
#: profiler context unless the attribute is not callable (``_call_callback_hooks`` checks
#: ``callable(fn)``), so setting these to ``None`` removes the floor any callback costs per step.
#: Only per-batch hooks are listed: Lightning calls them through that one function alone.
UNUSED_BATCH_HOOKS = (
    "on_train_batch_start",
    "on_before_backward",
    "on_after_backward",
    "on_before_optimizer_step",
    "on_before_zero_grad",
    "on_validation_batch_start",
    "on_validation_batch_end",
    "on_test_batch_start",
    "on_test_batch_end",
    "on_predict_batch_start",
    "on_predict_batch_end",
)


def build_class(impl: type[T], bases: tuple[type, ...], module: str) -> type[T]:
    """``MLOpsCallback``: ``impl`` on the ``Callback`` of every installed flavour.

    Batch hooks ``impl`` does not define are set to ``None``, so Lightning skips them.
    """
    cls = types.new_class("MLOpsCallback", (impl, *bases))
    cls.__module__ = module
    cls.__doc__ = impl.__doc__
    for hook in UNUSED_BATCH_HOOKS:
        if hook not in vars(impl):
            setattr(cls, hook, None)
    return cls
