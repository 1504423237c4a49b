"""The English a run's events carry: progress messages, failure text, activity titles.

Also the checks of a run's arguments (:func:`check_stage`, :func:`check_fraction`,
:func:`check_stop_reason`) and the error each raises.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import cast

from mlops_hooks import events as ev
from mlops_hooks.formatting import to_float

__all__ = [
    "COMPLETED",
    "FAILED",
    "STARTED",
    "as_number",
    "carried_score",
    "check_fraction",
    "check_stage",
    "check_stop_reason",
    "completed_summary",
    "failure_text",
    "is_not_finite_now",
    "non_finite",
    "non_finite_name",
    "non_finite_text",
    "progress_message",
    "stopped_early_message",
]

#: Activity titles (and the spec's action types) of a run's start, completion and failure.
STARTED = ("Model Training Started", "training_start")
COMPLETED = ("Model Training Completed", "training_complete")
FAILED = ("Model Training Failed", "training_failed")
#: ``training_completed.message`` unless the caller gives one.
COMPLETED_MESSAGE = "Training completed successfully!"
#: Longest error text sent with ``training_failed`` (and shown in the activity feed).
MAX_ERROR = 2000
MAX_ACTIVITY_ERROR = 200
#: Epoch metrics carried into ``training_completed.validation_score``, first found wins.
SCORE_METRICS = ("val_score", "val_accuracy", "val_acc")


def progress_message(stage: ev.TrainingStage, percent: float | None, epoch: int | None,
                     total_epochs: int | None) -> str:
    """``'Training 42% complete - Epoch 3/10'``, ``'Validation'``, ``'Training - Epoch 2'``."""
    parts = []
    if percent is not None:
        label = "Training" if stage == "model_training" else ev.STAGE_TEXT[stage]
        parts.append(f"{label} {int(percent)}% complete")
    else:
        parts.append(ev.STAGE_TEXT[stage])
    if epoch is not None:
        parts.append(f"Epoch {epoch}/{total_epochs}" if total_epochs else f"Epoch {epoch}")
    return " - ".join(parts)


def failure_text(exc: BaseException, error_code: str) -> str:
    """The error as reported: the exception's text, prefixed with its type unless obvious."""
    text = str(exc).strip() or type(exc).__name__
    if type(exc).__name__ not in text and error_code not in ("INTERRUPTED",):
        text = f"{type(exc).__name__}: {text}"
    return text


def completed_summary(name: str, training_time: str, accuracy: float | None) -> str:
    """``'digits finished in 4m 23s with accuracy 0.973'``."""
    summary = f"{name} finished in {training_time}"
    if accuracy is not None:
        summary += f" with accuracy {accuracy:.3f}"
    return summary


def stopped_early_message(epochs_done: int, total_epochs: int | None, steps: int,
                          planned_steps: int | None) -> str:
    """``'Training stopped early at epoch 3/10'`` (or at a step when epochs are unknown)."""
    if total_epochs is not None:
        return f"Training stopped early at epoch {epochs_done}/{total_epochs}"
    return f"Training stopped early at step {steps}/{planned_steps}"


def as_number(loss: object) -> float | None:
    """``loss`` as a float, NaN and infinities included; None when it is not a number."""
    if loss is None:
        return None
    try:
        return float(loss)  # type: ignore[arg-type]
    except (TypeError, ValueError, RuntimeError):
        return None


def non_finite(loss: object) -> float | None:
    """``loss`` as a float if it is NaN or infinite, else None (also when not a number)."""
    value = as_number(loss)
    return None if value is None or math.isfinite(value) else value


def non_finite_name(loss: object) -> ev.LossNotFinite | None:
    """``"nan"``, ``"inf"`` or ``"-inf"`` when ``loss`` is such a number, else None."""
    value = non_finite(loss)
    if value is None:
        return None
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def is_not_finite_now(loss: object) -> bool:
    """Whether ``loss`` is NaN or infinite, when reading it costs no device synchronisation.

    A Python float, a NumPy value and a CPU tensor are read (a microsecond); anything else (a
    tensor on an accelerator: reading it would wait for the device) is not: False, and it is
    read when the next progress event is built.
    """
    if type(loss) is float:
        return not math.isfinite(loss)
    device = getattr(loss, "device", None)
    if device is None or getattr(device, "type", device) != "cpu":
        return False
    return non_finite(loss) is not None


def non_finite_text(loss: float, epoch: int | None, total_epochs: int | None) -> str:
    """Why a run that stopped on a NaN or infinite loss failed."""
    where = f" in epoch {epoch}/{total_epochs}" if epoch and total_epochs else (
        f" in epoch {epoch}" if epoch else "")
    return f"training stopped: the loss became non-finite ({loss}){where}"


def carried_score(metrics: Mapping[str, float]) -> float | None:
    """The last validation score among an epoch's metrics (:data:`SCORE_METRICS`), if any."""
    for name in SCORE_METRICS:
        if name in metrics:
            return metrics[name]
    return None


def check_stage(stage: str) -> ev.TrainingStage:
    """``stage`` if it is one of the spec's training stages.

    Raises:
        ValueError: It is not.
    """
    if stage not in ev.STAGE_TEXT:
        raise ValueError(f"stage must be one of {', '.join(ev.TRAINING_STAGES)}, "
                         f"got {stage!r}")
    return cast("ev.TrainingStage", stage)


def check_fraction(name: str, value: object) -> float | None:
    """``value`` (argument ``name``) as a float between 0 and 1, or None when it is None.

    Raises:
        ValueError: It is something else.
    """
    number = to_float(value)
    if value is not None and (number is None or not 0.0 <= number <= 1.0):
        raise ValueError(f"{name} must be a number between 0 and 1, got {value!r}")
    return number


#: What ``training_completed.stop_reason`` may be (docs/protocol.md; the event's own pattern).
STOP_REASON = re.compile(r"[a-z][a-z0-9_]{0,63}")


def check_stop_reason(reason: object) -> None:
    """Check a ``stop_reason`` given to ``Run.complete``: None or a lower-case name.

    Raises:
        ValueError: It is something else (the server would refuse the event).
    """
    if reason is not None and (not isinstance(reason, str) or not STOP_REASON.fullmatch(reason)):
        raise ValueError("stop_reason must be None or a lower-case name such as "
                         f"'early_stopping' ([a-z][a-z0-9_]*, at most 64), got {reason!r}")
