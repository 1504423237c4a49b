"""The vocabulary every event class is built from: value sets, field types and caps, the envelope.

Private to :mod:`mlops_hooks.events`, which re-exports every public name here; import them from
there.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

import msgspec

# --------------------------------------------------------------------------- value sets

ModelStatus = Literal["active", "training", "error", "inactive"]
TrainingStage = Literal[
    "data_preparation", "feature_engineering", "model_training", "validation", "finalization"
]
Health = Literal["healthy", "warning", "critical"]
AlertPriority = Literal["low", "medium", "high"]
FileStatus = Literal["success", "error"]

MODEL_STATUSES: tuple[str, ...] = get_args(ModelStatus)
TRAINING_STAGES: tuple[str, ...] = get_args(TrainingStage)
HEALTH_VALUES: tuple[str, ...] = get_args(Health)
ALERT_PRIORITIES: tuple[str, ...] = get_args(AlertPriority)
FILE_STATUSES: tuple[str, ...] = get_args(FileStatus)

#: Human-readable text for each training stage (the spec's ``current_stage``).
STAGE_TEXT: dict[str, str] = {
    "data_preparation": "Preparing data",
    "feature_engineering": "Engineering features",
    "model_training": "Training model",
    "validation": "Validating model",
    "finalization": "Finalizing model",
}

# --------------------------------------------------------------------------- field types

#: Largest integer an event may carry: JavaScript's ``Number.MAX_SAFE_INTEGER`` (a dashboard
#: reads it exactly); a count of 2**64 or a 30-digit number is refused.
MAX_INT = 2**53 - 1
#: Caps on nested values: keys of ``metrics``; keys, depth and encoded size of ``metadata``;
#: items and length of ``actions``.
MAX_METRICS, MAX_KEY = 256, 128
MAX_METADATA_KEYS, MAX_METADATA_DEPTH, MAX_METADATA_BYTES = 64, 6, 16 * 1024
MAX_ACTIONS, MAX_ACTION = 16, 256
# A real calendar shape: month 01-12, day 01-31, hour 00-23, minute and second 00-59 (60: leap).
_ISO = (r"^(?!0000)\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:"
        r"([0-5]\d|60)(\.\d+)?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)$")
Timestamp = Annotated[str, msgspec.Meta(pattern=_ISO, description="ISO-8601 date-time")]
Percent = Annotated[int, msgspec.Meta(ge=0, le=100)] | Annotated[float, msgspec.Meta(ge=0, le=100)]
Fraction = Annotated[int, msgspec.Meta(ge=0, le=1)] | Annotated[float, msgspec.Meta(ge=0, le=1)]
Count = Annotated[int, msgspec.Meta(ge=0, le=MAX_INT)]
NonNegative = Count | Annotated[float, msgspec.Meta(ge=0)]
Number = Annotated[int, msgspec.Meta(ge=-MAX_INT, le=MAX_INT)] | float
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=512)]
Text = Annotated[str, msgspec.Meta(max_length=8192)]
Key = Annotated[str, msgspec.Meta(max_length=MAX_KEY)]
Metrics = Annotated[dict[Key, Number], msgspec.Meta(max_length=MAX_METRICS)]
Metadata = Annotated[dict[Key, Any], msgspec.Meta(max_length=MAX_METADATA_KEYS)]
Actions = Annotated[list[Annotated[str, msgspec.Meta(max_length=MAX_ACTION)]],
                    msgspec.Meta(max_length=MAX_ACTIONS)]
ErrorCode = Annotated[str, msgspec.Meta(pattern=r"^[A-Z][A-Z0-9_]{0,63}$")]
#: Caps on a run's parameters (``run_params.params``): keys, key length, length of a text value.
MAX_PARAMS, MAX_PARAM_TEXT = 256, 1024
ParamValue = Annotated[str, msgspec.Meta(max_length=MAX_PARAM_TEXT)] | Number | bool | None
Params = Annotated[dict[Key, ParamValue], msgspec.Meta(max_length=MAX_PARAMS)]


class Event(
    msgspec.Struct,
    tag_field="type",
    kw_only=True,
    omit_defaults=True,
    forbid_unknown_fields=True,
):
    """Base of every event: the envelope fields of DESIGN.md.

    Attributes:
        seq: Position in the server's stream, assigned by the server (strictly increasing).
        timestamp: ISO-8601 UTC time the event happened; filled in when absent.
        run_id: The training run an event belongs to (training events).
        event_id: Idempotency key: a re-sent event with the same key is accepted once.
    """

    seq: Count | None = None
    timestamp: Timestamp | None = None
    run_id: Name | None = None
    event_id: Name | None = None

    @property
    def type(self) -> str:
        """The event type, as on the wire (``"training_progress"``, ...)."""
        return self.__struct_config__.tag  # type: ignore[return-value]
