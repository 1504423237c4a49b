"""What :mod:`mlops_hooks.plugins.transformers` needs besides the callback itself.

* :func:`find_trainer`: the ``Trainer`` running the callback (Transformers passes callbacks the
  arguments, the state and the model, never the trainer), read from the calling frames.
* :class:`StepGuard`: wraps a trainer's ``training_step`` and ``evaluate`` so an exception in
  them is reported at once (Transformers has no exception hook), then re-raised unchanged.
* :func:`stop_reason`: why a training that ended before its plan stopped.
* :func:`training_params`: the ``run_params`` of a training (``TrainingArguments``, the model).
* :func:`register`: the ``report_to`` name, added to Transformers' table of integrations.
"""

from __future__ import annotations

import enum
import math
import sys
from collections.abc import Callable, Mapping
from types import FrameType
from typing import Any

from mlops_hooks.formatting import to_float

__all__ = ["CONFIG_FIELDS", "REPORT_TO", "TRAINING_FIELDS", "StepGuard", "find_trainer",
           "numbers", "register", "stop_reason", "training_params"]

#: The name that enables the callback with ``TrainingArguments(report_to=[...])``.
REPORT_TO = "mlops_hooks"

#: ``TrainingArguments`` fields sent as parameters (those a run's result depends on).
TRAINING_FIELDS = ("learning_rate", "per_device_train_batch_size", "per_device_eval_batch_size",
                   "gradient_accumulation_steps", "num_train_epochs", "max_steps",
                   "warmup_steps", "warmup_ratio", "lr_scheduler_type", "weight_decay",
                   "max_grad_norm", "optim", "adam_beta1", "adam_beta2", "adam_epsilon",
                   "seed", "fp16", "bf16", "eval_strategy", "eval_steps", "logging_steps",
                   "save_strategy", "label_smoothing_factor")

#: Model configuration fields sent as ``model.<field>`` when the configuration has them.
CONFIG_FIELDS = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads",
                 "vocab_size", "max_position_embeddings", "num_labels", "dtype")


def find_trainer(depth: int = 8) -> Any:
    """The ``transformers.Trainer`` whose callback handler called the caller, or None.

    Looks for a ``self`` that is a ``Trainer`` in the calling frames (the training loop calls
    ``self.callback_handler.on_train_begin(...)``, which calls the callback).
    """
    from transformers import Trainer

    frame: FrameType | None = sys._getframe(1)
    for _ in range(depth):
        if frame is None:
            return None
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, Trainer):
            return candidate
        frame = frame.f_back
    return None


class StepGuard:
    """Report an exception of a trainer's step or evaluation, then let it go on unchanged.

    The wrappers are instance attributes of the trainer (its class is untouched); :meth:`remove`
    takes them away again (a method the instance had of its own is put back).

    Args:
        fail: Called with the exception (it never raises itself).
    """

    METHODS = ("training_step", "evaluate")

    def __init__(self, fail: Callable[[BaseException], None]) -> None:
        self._fail = fail
        self._trainer: Any = None
        self._own: dict[str, Any] = {}

    def install(self, trainer: Any) -> None:
        """Wrap ``trainer``'s methods (a guard installed elsewhere is removed first)."""
        self.remove()
        self._trainer = trainer
        for name in self.METHODS:
            if name in vars(trainer):
                self._own[name] = vars(trainer)[name]
            original = getattr(trainer, name)
            setattr(trainer, name, self._guarded(original))

    def remove(self) -> None:
        """Restore the trainer's methods."""
        trainer, self._trainer = self._trainer, None
        if trainer is None:
            return
        for name in self.METHODS:
            if name in self._own:
                setattr(trainer, name, self._own[name])
            else:
                vars(trainer).pop(name, None)
        self._own = {}

    def _guarded(self, method: Callable[..., Any]) -> Callable[..., Any]:
        fail = self._fail

        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                return method(*args, **kwargs)
            except BaseException as exc:
                fail(exc)
                raise

        guarded.__wrapped__ = method  # type: ignore[attr-defined]
        return guarded


def stop_reason(trainer: Any) -> str:
    """Why a training ended before its plan: ``early_stopping`` or ``callback``.

    ``early_stopping`` when one of the trainer's ``EarlyStoppingCallback`` ran out of patience;
    ``callback`` when another callback set ``control.should_training_stop``.
    """
    from transformers import EarlyStoppingCallback

    callbacks = getattr(getattr(trainer, "callback_handler", None), "callbacks", ())
    for callback in callbacks:
        if isinstance(callback, EarlyStoppingCallback) and (
                callback.early_stopping_patience_counter >= callback.early_stopping_patience):
            return "early_stopping"
    return "callback"


def _plain(value: Any) -> Any:
    """An enum as its value (``"linear"``), anything else as it is."""
    return value.value if isinstance(value, enum.Enum) else value


def training_params(args: Any, state: Any, model: Any) -> dict[str, Any]:
    """A training's parameters: :data:`TRAINING_FIELDS` of the arguments, the model's size.

    ``total_train_batch_size`` is the samples per optimizer step over every process
    (per-device size x gradient accumulation x world size); ``max_steps`` is the plan the
    trainer computed (also when epochs were given); ``model.class`` and ``model.parameters``
    describe the model, with :data:`CONFIG_FIELDS` of its configuration as ``model.<field>``.
    """
    captured: dict[str, Any] = {}
    for name in TRAINING_FIELDS:
        if hasattr(args, name):
            captured[name] = _plain(getattr(args, name))
    planned = getattr(state, "max_steps", None)
    if isinstance(planned, int) and planned > 0:
        captured["max_steps"] = planned
    per_step = getattr(state, "train_batch_size", None) or getattr(
        args, "per_device_train_batch_size", None)
    if isinstance(per_step, int):
        captured["total_train_batch_size"] = (per_step * args.gradient_accumulation_steps
                                              * max(1, int(getattr(args, "world_size", 1))))
    described: dict[str, Any] = {"class": type(model).__name__}
    count = getattr(model, "num_parameters", None)
    if callable(count):
        described["parameters"] = int(count())
    config = getattr(model, "config", None)
    for name in CONFIG_FIELDS:
        value = getattr(config, name, None)
        if value is not None:
            described[name] = str(value) if not isinstance(value, (int, float, str)) else value
    captured["model"] = described
    return captured


def numbers(logs: Mapping[str, Any]) -> dict[str, float]:
    """The finite numbers of a log (booleans and text left out)."""
    found: dict[str, float] = {}
    for key, value in logs.items():
        if isinstance(value, bool):
            continue
        number = to_float(value)
        if number is not None and math.isfinite(number):
            found[str(key)] = number
    return found


def register(callback: type) -> bool:
    """Make ``report_to=["mlops_hooks"]`` build ``callback``; True when it is registered.

    Transformers has no public way to add an integration: ``report_to`` names are looked up
    in ``transformers.integrations.integration_utils.INTEGRATION_TO_CALLBACK``, a module-level
    table (public name, undocumented as an extension point). One key is added to it. Nothing
    is enabled by that: ``report_to="all"`` uses Transformers' own fixed list of installed
    integrations, so the callback runs only where a script names it.
    """
    try:
        from transformers.integrations import integration_utils
    except ImportError:
        return False
    table = getattr(integration_utils, "INTEGRATION_TO_CALLBACK", None)
    if not isinstance(table, dict):
        return False
    table.setdefault(REPORT_TO, callback)
    return table[REPORT_TO] is callback
