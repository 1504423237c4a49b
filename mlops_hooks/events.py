"""Typed events for every message type of the WebSocket protocol.

One :class:`msgspec.Struct` per event type of ``spec/websocket-api.md``, tagged by the ``type``
field, plus the envelope fields every event may carry (``seq``, ``timestamp``, ``run_id`` and the
idempotency key ``event_id``). Field names, types and value sets are the spec's; a few optional
extension fields (documented on each class) carry what a live dashboard needs beyond the spec.

Decoding validates and raises :class:`EventError`, whose message names the field, what was
expected and what arrived. Encoding is msgspec's: fast, and exact for what was decoded.

Example:
    >>> from mlops_hooks.events import decode, encode
    >>> ev = decode(b'{"type": "training_progress", "progress": 65, "stage": "model_training"}')
    >>> ev.progress
    65
    >>> encode(ev)
    b'{"type":"training_progress","progress":65,"stage":"model_training"}'
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

import msgspec

from mlops_hooks._events.errors import EventError, check_metadata, explain
from mlops_hooks._events.extensions import (
    EXTENSION_CLASSES,
    Extension,
    HostMetrics,
    RunParams,
    RunState,
    RunStateName,
)
from mlops_hooks._events.fields import (
    ALERT_PRIORITIES,
    FILE_STATUSES,
    HEALTH_VALUES,
    MAX_ACTION,
    MAX_ACTIONS,
    MAX_INT,
    MAX_KEY,
    MAX_METADATA_BYTES,
    MAX_METADATA_DEPTH,
    MAX_METADATA_KEYS,
    MAX_METRICS,
    MAX_PARAM_TEXT,
    MAX_PARAMS,
    MODEL_STATUSES,
    STAGE_TEXT,
    TRAINING_STAGES,
    Actions,
    AlertPriority,
    Count,
    ErrorCode,
    Event,
    FileStatus,
    Fraction,
    Health,
    Key,
    Metadata,
    Metrics,
    ModelStatus,
    Name,
    NonNegative,
    Number,
    Params,
    ParamValue,
    Percent,
    Text,
    Timestamp,
    TrainingStage,
)

__all__ = [
    "ALERT_PRIORITIES", "ALL_EVENT_CLASSES", "EVENT_CLASSES", "EVENT_TYPES",
    "EXTENSION_CLASSES", "EXTENSION_TYPES", "FILE_STATUSES", "HEALTH_VALUES",
    "LIFECYCLE_TYPES", "MAX_ACTION", "MAX_ACTIONS", "MAX_INT", "MAX_KEY", "MAX_METADATA_BYTES",
    "MAX_METADATA_DEPTH", "MAX_METADATA_KEYS", "MAX_METRICS", "MAX_PARAMS", "MAX_PARAM_TEXT",
    "MODEL_STATUSES", "STAGE_TEXT", "TRAINING_STAGES", "Actions", "Activity", "ActivityUpdate",
    "Alert", "AlertPriority", "AnyEvent", "Count", "ErrorCode", "Event", "EventError",
    "FileStatus", "FileValidated", "Fraction", "Health", "HealthChange", "HostMetrics", "Key",
    "LossNotFinite", "Metadata", "Metrics", "ModelDeployed", "ModelStatus", "ModelStatusChange",
    "Name",
    "NonNegative", "Number", "ParamValue", "Params", "Percent", "PredictionVolume", "RunParams",
    "RunState", "RunStateName",
    "SystemAlert", "SystemMetrics", "Text", "Timestamp", "TrainingCompleted", "TrainingFailed",
    "TrainingProgress", "TrainingStage", "UploadProgress", "decode", "decode_many", "encode",
    "from_dict", "to_dict",
]

# --------------------------------------------------------------------------- live system status


class ModelDeployed(Event, tag="model_deployed", kw_only=True):
    """A new model was deployed to production."""

    model_name: Name
    model_version: Name | None = None
    model_accuracy: Fraction | None = None
    deployment_timestamp: Timestamp | None = None
    model_id: Name | None = None


class ModelStatusChange(Event, tag="model_status_change", kw_only=True):
    """A model's operational status changed (``active``, ``training``, ``error``, ``inactive``)."""

    status: ModelStatus
    model_id: Name
    health_score: Fraction | None = None
    last_prediction: Timestamp | None = None


class PredictionVolume(Event, tag="prediction_volume", kw_only=True):
    """Prediction totals, rate and milestones.

    Extension: ``model_id`` names the model the volume belongs to.
    """

    total_predictions: Count
    predictions_per_minute: NonNegative | None = None
    milestone_reached: Count | None = None
    message: Text | None = None
    model_id: Name | None = None


# --------------------------------------------------------------------------- training

#: ``training_progress.loss_not_finite``: the loss JSON cannot carry (an extension).
LossNotFinite = Literal["nan", "inf", "-inf"]


class TrainingProgress(Event, tag="training_progress", kw_only=True):
    """Progress of a training run.

    ``progress`` is 0-100 over the whole run; it is absent for open-ended runs, which report
    epochs only. Extensions: ``model_name``, ``current_step``/``total_steps``,
    ``current_accuracy``, ``metrics`` (epoch metrics such as ``val_loss``, for charts) and
    ``loss_not_finite`` (``"nan"``, ``"inf"`` or ``"-inf"``: the loss is such a value, which JSON
    cannot carry, so ``current_loss`` is absent).
    """

    progress: Percent | None = None
    stage: TrainingStage
    current_stage: Text | None = None
    estimated_time_remaining: NonNegative | None = None
    current_epoch: Count | None = None
    total_epochs: Count | None = None
    current_loss: Number | None = None
    message: Text | None = None
    model_name: Name | None = None
    current_step: Count | None = None
    total_steps: Count | None = None
    current_accuracy: Fraction | None = None
    metrics: Metrics | None = None
    loss_not_finite: LossNotFinite | None = None


class TrainingCompleted(Event, tag="training_completed", kw_only=True):
    """A training run completed. Extensions: ``model_name``, ``stop_reason``.

    ``stop_reason`` says why a run ended before its plan: ``"requested"`` (stopped from the
    dashboard), ``"early_stopping"`` (the framework's early stopping), ``"pruned"`` (a sweep's
    pruner), or another short name; absent when the run ran its plan.
    """

    final_accuracy: Fraction | None = None
    training_time: Text | None = None
    validation_score: Number | None = None
    model_size: Text | None = None
    total_epochs: Count | None = None
    message: Text | None = None
    model_id: Name | None = None
    model_name: Name | None = None
    stop_reason: Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,63}$")] | None = None


class TrainingFailed(Event, tag="training_failed", kw_only=True):
    """A training run failed. Extension: ``model_name``."""

    error: Text
    error_code: ErrorCode
    stage_failed: TrainingStage | None = None
    progress_when_failed: Percent | None = None
    suggestions: Annotated[list[Text], msgspec.Meta(max_length=32)] = \
        msgspec.field(default_factory=list)
    model_name: Name | None = None


# --------------------------------------------------------------------------- real-time metrics


class SystemMetrics(Event, tag="system_metrics", kw_only=True):
    """Host and service metrics, sampled periodically."""

    current_accuracy: Fraction | None = None
    model_accuracy: Fraction | None = None
    predictions_per_minute: NonNegative | None = None
    prediction_rate: NonNegative | None = None
    current_health: Health | None = None
    cpu_percent: Percent | None = None
    memory_percent: Percent | None = None
    disk_percent: Percent | None = None
    active_connections: Count | None = None
    api_response_time_ms: NonNegative | None = None
    ws_response_time_ms: NonNegative | None = None


class HealthChange(Event, tag="health_change", kw_only=True):
    """Health moved between ``healthy``, ``warning`` and ``critical``."""

    current_health: Health
    previous_health: Health | None = None
    reason: Text | None = None
    metrics: Metrics | None = None
    recommended_action: Text | None = None


# --------------------------------------------------------------------------- files


class FileValidated(Event, tag="file_validated", kw_only=True):
    """An uploaded file was validated; ``error`` is present exactly when ``status`` is error."""

    status: FileStatus
    filename: Name
    file_path: Text | None = None
    rows: Count | None = None
    columns: Count | None = None
    file_size: Text | None = None
    target_column: Text | None = None
    summary: Text | None = None
    validation_time: NonNegative | None = None
    error: Text | None = None

    def __post_init__(self) -> None:
        if self.status == "error" and not self.error:
            raise ValueError("a non-empty `error` when status is 'error' - at `$.error`")
        if self.status == "success" and self.error is not None:
            raise ValueError("no `error` when status is 'success' - at `$.error`")


class UploadProgress(Event, tag="upload_progress", kw_only=True):
    """Bytes of a file upload received so far."""

    filename: Name
    bytes_uploaded: Count
    total_bytes: Count | None = None
    progress_percent: Percent | None = None
    upload_speed: Text | None = None
    estimated_time_remaining: NonNegative | None = None


# --------------------------------------------------------------------------- activity


class Activity(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One entry of the activity feed (every field is always encoded, ``null`` included)."""

    id: Name
    title: Text
    description: Text | None = None
    user: Text | None = None
    action_type: Text | None = None
    status: Text | None = None
    timestamp: Timestamp | None = None
    severity_level: Text | None = None
    duration: NonNegative | None = None
    metadata: Metadata | None = None


class Alert(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One system alert; ``priority`` is ``low``, ``medium`` or ``high``."""

    id: Name
    title: Text
    message: Text | None = None
    alert_type: Text | None = None
    priority: AlertPriority = "medium"
    source: Text | None = None
    timestamp: Timestamp | None = None
    auto_dismiss: bool = False
    actions: Actions = msgspec.field(default_factory=list)


class ActivityUpdate(Event, tag="activity_update", kw_only=True):
    """A new entry for the activity feed."""

    activity: Activity


class SystemAlert(Event, tag="system_alert", kw_only=True):
    """An important notification with a priority and suggested actions.

    Extension: ``clears`` names the ``alert.id`` of an earlier alert this one closes (the alert
    rules' clearing alerts, docs/protocol.md); absent on an alert that closes nothing.
    """

    alert: Alert
    clears: Name | None = None


# --------------------------------------------------------------------------- registry

SpecEvent = (
    ModelDeployed
    | ModelStatusChange
    | PredictionVolume
    | TrainingProgress
    | TrainingCompleted
    | TrainingFailed
    | SystemMetrics
    | HealthChange
    | FileValidated
    | UploadProgress
    | ActivityUpdate
    | SystemAlert
)
#: Every event class a decoder accepts: the spec's twelve and the extensions.
AnyEvent = SpecEvent | Extension

#: Every event class of the spec by its wire ``type``, in the spec's order.
EVENT_CLASSES: dict[str, type[Event]] = {
    cls.__struct_config__.tag: cls
    for cls in get_args(SpecEvent)
}
EVENT_TYPES: tuple[str, ...] = tuple(EVENT_CLASSES)
EXTENSION_TYPES: tuple[str, ...] = tuple(EXTENSION_CLASSES)
#: Every event class by its wire ``type``: the spec's, then the extensions.
ALL_EVENT_CLASSES: dict[str, type[Event]] = {**EVENT_CLASSES, **EXTENSION_CLASSES}

#: Event types that must always be delivered, in order (never coalesced or dropped).
LIFECYCLE_TYPES: frozenset[str] = frozenset(
    {
        "model_deployed",
        "model_status_change",
        "training_completed",
        "training_failed",
        "health_change",
        "file_validated",
        "activity_update",
        "system_alert",
        "run_params",
        "run_state",
    }
)

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(AnyEvent)
_many_decoder = msgspec.json.Decoder(list[AnyEvent])


def encode(event: Event) -> bytes:
    """Encode one event to JSON bytes (fields left at their default are omitted)."""
    return _encoder.encode(event)


def decode(data: bytes | str) -> AnyEvent:
    """Decode and validate one event from JSON.

    Raises:
        EventError: The JSON is malformed or the event is invalid; the message names the field,
            what was expected and what arrived.
    """
    try:
        event: AnyEvent = _decoder.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError,
            UnicodeDecodeError) as exc:
        raise explain(exc, data, ALL_EVENT_CLASSES) from None
    _check_nested(event)
    return event


def _check_nested(event: Event, where: str = "") -> None:
    check_metadata(event, where, MAX_METADATA_DEPTH, MAX_METADATA_BYTES)


def decode_many(data: bytes | str) -> list[AnyEvent]:
    """Decode one event or a JSON array of events.

    Raises:
        EventError: As :func:`decode`; for arrays the field path starts with the index.
    """
    stripped = data.lstrip()
    if stripped[:1] not in (b"[", "["):
        return [decode(data)]
    try:
        events = _many_decoder.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError,
            UnicodeDecodeError) as exc:
        raise explain(exc, data, ALL_EVENT_CLASSES) from None
    for i, event in enumerate(events):
        _check_nested(event, f"[{i}].")
    return events


def from_dict(data: Any) -> AnyEvent:
    """Build and validate an event from a ``dict`` shaped like the wire format.

    Raises:
        EventError: As :func:`decode`.
    """
    if isinstance(data, Event):
        return data  # type: ignore[return-value]
    try:
        event: AnyEvent = msgspec.convert(data, AnyEvent)
    except (msgspec.ValidationError, RecursionError) as exc:
        raise explain(exc, data, ALL_EVENT_CLASSES) from None
    _check_nested(event)
    return event


def to_dict(event: Event) -> dict[str, Any]:
    """Return the wire form of ``event`` as a ``dict`` (same fields as :func:`encode`)."""
    result: dict[str, Any] = msgspec.json.decode(_encoder.encode(event))
    return result
