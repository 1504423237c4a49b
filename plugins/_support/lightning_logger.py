"""``MLOpsLogger``: a Lightning ``Logger`` whose every ``self.log`` becomes a series point.

Re-exported as :class:`mlops_hooks.plugins.lightning.MLOpsLogger`. Lightning calls
``log_metrics(metrics, step)`` for each logged batch (``on_step``) and epoch (``on_epoch``)
with its own step (optimizer steps done); each call is one point of each metric's series at
that step. ``log_hyperparams`` sends the run's parameters.

**With** ``MLOpsCallback`` in the same ``Trainer``, the logger finds the callback's run when
Lightning shows it the module (``log_graph``, right after the fit starts) and logs into it:
one run, whose progress, stages and outcome the callback reports. **Alone**, the logger
makes the run itself (named after the module), learns the plan from the ``Trainer`` at the
first logged step, and ends it from ``finalize``: ``"success"``/``"finished"`` complete it,
``"failed"`` fails it with the exception that ended the fit.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import Any

from mlops_hooks.plugins._support import lightning_support as support
from mlops_hooks.plugins._support.base import Adapter, missing_framework
from mlops_hooks.run import Emit, Run
from mlops_hooks.run.params import probe_git, resolve_group, send_params
from mlops_hooks.run.points import note_loss, numeric_values, send_point

try:
    from lightning.pytorch.loggers import Logger
    from lightning.pytorch.utilities import rank_zero_only
except ImportError as first:  # pragma: no cover - only the pytorch_lightning flavour
    try:
        from pytorch_lightning.loggers import Logger  # type: ignore[assignment]
        from pytorch_lightning.utilities import rank_zero_only
    except ImportError:
        raise missing_framework("PyTorch Lightning", "lightning", first) from first

__all__ = ["MLOpsLogger", "share_run"]


def _callback_run(trainer: Any) -> Run | None:
    """The active run of an ``MLOpsCallback`` of ``trainer``, if it has one."""
    for callback in getattr(trainer, "callbacks", None) or ():
        run = getattr(callback, "run", None) if isinstance(callback, Adapter) else None
        if isinstance(run, Run) and run.finished is None:
            return run
    return None


def share_run(trainer: Any, run: Run) -> None:
    """Make every ``MLOpsLogger`` of ``trainer`` log into ``run`` (``MLOpsCallback``'s).

    Called by the callback when training starts, so the logger shares the run even when
    Lightning never shows it the module (``enable_autolog_hparams=False``).
    """
    for logger in getattr(trainer, "loggers", None) or ():
        if isinstance(logger, MLOpsLogger):
            logger.adopt(run)


def _trainer_of(model: Any) -> Any:
    try:
        return model.trainer
    except Exception:  # a module not attached to a Trainer raises
        return None


class MLOpsLogger(Logger):
    """Stream what a ``LightningModule`` logs to the mlops-hooks dashboard and plugins.

    Args:
        name: The run's name; defaults to the ``LightningModule``'s class (alone) or the
            callback's run name (with ``MLOpsCallback``).
        run_id: The run's id when the logger makes the run; generated when omitted.
        group: The run's group; defaults to ``MLOPS_HOOKS_GROUP``.
        emit: Where the events of a run the logger makes go; defaults to the process's
            plugin manager.

    Raises:
        ValueError: ``name``, ``run_id`` or ``group`` is not a non-empty string.
        TypeError: ``emit`` is not callable.

    Example:
        >>> trainer = Trainer(max_epochs=5, logger=MLOpsLogger())  # doctest: +SKIP
    """

    def __init__(self, name: str | None = None, *, run_id: str | None = None,
                 group: str | None = None, emit: Emit | None = None) -> None:
        super().__init__()
        if emit is not None and not callable(emit):
            raise TypeError(f"emit must be callable, got {type(emit).__name__}")
        self._emit = emit
        for label, value in (("name", name), ("run_id", run_id)):
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ValueError(f"{label} must be a non-empty string or None, got {value!r}")
        self._name = name
        self._run_id = run_id
        self._group = resolve_group(group)
        self._run: Run | None = None
        self._owned = False  # the logger made the run (alone) and ends it
        self._trainer: Any = None
        self._planned = False
        self._pending: dict[str, Any] = {}
        probe_git()

    # ------------------------------------------------------------------ Logger's identity

    @property
    def name(self) -> str:
        """The run's name (what Lightning shows as the logger's name)."""
        if self._run is not None:
            return self._run.name
        return self._name or "mlops-hooks"

    @property
    def version(self) -> str:
        """The run's id (Lightning's version of a logger)."""
        return self._run.run_id if self._run is not None else (self._run_id or "")

    @property
    def experiment(self) -> Run | None:
        """The run the logger logs into (None before the fit starts)."""
        return self._run

    @property
    def shared(self) -> bool:
        """The logger logs into an ``MLOpsCallback``'s run (one run, not two)."""
        return self._run is not None and not self._owned

    # ------------------------------------------------------------------ the run

    def _resolve(self, model: Any = None) -> Run:
        if self._run is not None and self._run.finished is None:
            return self._run
        trainer = _trainer_of(model) if model is not None else self._trainer
        self._trainer = trainer
        run = _callback_run(trainer) if trainer is not None else None
        self._owned = run is None
        if run is None:
            default = type(model).__name__ if model is not None else "lightning"
            run = Run(self._name or default, run_id=self._run_id, emit=self._emit)
            run.start()
            run.stage("model_training")
            self._planned = False
        self._run = run
        if self._owned or self._pending:
            params, self._pending = self._pending, {}
            send_params(run, params, group=self._group, metadata=self._owned)
        return run

    def adopt(self, run: Run) -> None:
        """Log into ``run``, which an ``MLOpsCallback`` reports (see :func:`share_run`)."""
        if self._run is run or not run.active:
            return
        self._run, self._owned = run, False
        if self._pending:
            params, self._pending = self._pending, {}
            send_params(run, params, group=self._group, metadata=False)

    def _plan(self, run: Run) -> None:
        self._planned = True
        trainer = self._trainer
        if trainer is None or not getattr(trainer, "training", False):
            return
        try:
            total_steps, total_epochs, per_epoch = support.plan(trainer)
            run.set_totals(total_steps=total_steps, total_epochs=total_epochs,
                           steps_per_epoch=per_epoch)
        except Exception:  # no plan: the run stays open-ended
            return

    # ------------------------------------------------------------------ Logger's hooks

    @rank_zero_only
    def log_hyperparams(self, params: Mapping[str, Any] | argparse.Namespace, *args: Any,
                        **kwargs: Any) -> None:
        """Send ``params`` (nested mappings flattened with ``.``) as the run's parameters."""
        try:
            values = dict(vars(params) if isinstance(params, argparse.Namespace) else params)
            run = self._run
            if run is None or run.finished is not None:
                self._pending.update(values)  # sent when the run is known
                return
            send_params(run, values, group=self._group, metadata=False)
        except Exception as exc:
            sys.stderr.write(f"mlops-hooks: MLOpsLogger.log_hyperparams: {exc!r}\n")

    @rank_zero_only
    def log_graph(self, model: Any, input_array: Any = None) -> None:
        """Learn the ``Trainer`` (and an ``MLOpsCallback``'s run) from the module."""
        try:
            self._resolve(model)
        except Exception as exc:
            sys.stderr.write(f"mlops-hooks: MLOpsLogger.log_graph: {exc!r}\n")

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Send the logged numbers as one point of each metric's series at ``step``."""
        try:
            run = self._resolve()
            if self._owned and not self._planned:
                self._plan(run)
            numbers, _ = numeric_values(metrics)
            if self._owned:  # with the callback, its batch hook gives the run the loss
                note_loss(run, metrics)
            if numbers:
                send_point(run, run.steps if step is None else int(step), numbers,
                           advance=self._owned)
        except Exception as exc:
            sys.stderr.write(f"mlops-hooks: MLOpsLogger.log_metrics: {exc!r}\n")

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """End a run the logger made: completed, or failed when ``status`` is ``"failed"``."""
        run = self._run
        if run is None or not self._owned or run.finished is not None:
            return
        try:
            if status == "failed":
                error = sys.exc_info()[1]  # Lightning calls this while handling the exception
                run.fail(error or RuntimeError("the Lightning fit failed"))
            else:
                run.complete()
        except Exception as exc:
            sys.stderr.write(f"mlops-hooks: MLOpsLogger.finalize: {exc!r}\n")
