"""One training run as the server sees it: status, last progress, outcome and chart points."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

__all__ = ["CHART_METRICS", "FAILED_STATUS", "MAX_POINTS", "RUN_STATUSES", "RunState",
           "failed_status", "normal_time", "series_point", "state_name"]

#: Chart points kept per run; older points are thinned so the chart spans the whole run.
MAX_POINTS = 200
RUN_STATUSES = ("running", "completed", "failed", "stalled", "interrupted", "killed", "crashed")
#: The ``metrics`` a chart point keeps (what the page's chart draws), not the whole dict.
CHART_METRICS = ("val_loss", "val_accuracy", "val_acc", "accuracy", "acc")
_TERMINAL = ("completed", "failed", "interrupted", "killed")
#: A ``training_failed`` ``error_code`` that names how the run ended (mlops_hooks.failures).
FAILED_STATUS = {"INTERRUPTED": "interrupted", "TERMINATED": "killed"}
#: ``run_state`` names that differ from the run's ``status`` (the spec's ``completed``).
_STATUS_OF_STATE = {"finished": "completed"}


def normal_time(timestamp: Any) -> str | None:
    """``timestamp`` as ISO-8601 UTC with milliseconds and ``Z`` (so text order is time order).

    ``None`` when it is not an ISO-8601 time.
    """
    if not isinstance(timestamp, str):
        return None
    try:
        moment = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    stamp = moment.astimezone(timezone.utc).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def series_point(data: dict[str, Any]) -> tuple[int, dict[str, float]] | None:
    """The series values one ``training_progress`` adds, and their step (docs/protocol.md).

    The step is ``current_step``, else ``current_epoch`` (no point without either); series
    ``loss`` is ``current_loss``, ``accuracy`` is ``current_accuracy``, and each key of
    ``metrics`` is a series of its own (a ``metrics`` key wins over the two named before it).

    Returns:
        ``(step, {key: value})``, or ``None`` when the event has no step or no value.
    """
    step = data.get("current_step")
    if step is None:
        step = data.get("current_epoch")
    if not isinstance(step, int) or isinstance(step, bool):
        return None
    values: dict[str, float] = {}
    for key, field in (("loss", "current_loss"), ("accuracy", "current_accuracy")):
        value = data.get(field)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            values[key] = value
    metrics = data.get("metrics")
    if isinstance(metrics, dict):
        for key, value in metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                values[str(key)] = value
    return (step, values) if values else None


def failed_status(error_code: Any, error: Any) -> str:
    """The status of a run ended by ``training_failed``.

    ``interrupted`` (Ctrl-C), ``killed`` (SIGTERM: ``TERMINATED`` with an error naming it, as
    :mod:`mlops_hooks.failures` reports it) or ``failed`` (anything else, ``SystemExit`` too).
    """
    status = FAILED_STATUS.get(str(error_code), "failed")
    if status == "killed" and "SIGTERM" not in str(error or ""):
        return "failed"
    return status


def state_name(status: str) -> str:
    """The ``run_state`` name of a run ``status`` (``completed`` is ``finished``)."""
    return "finished" if status == "completed" else status


def _chart_metrics(metrics: Any) -> dict[str, Any] | None:
    if not isinstance(metrics, dict):
        return None
    kept = {k: metrics[k] for k in CHART_METRICS if k in metrics}
    return kept or None


class RunState:
    """A run's current state (``RunState`` of docs/protocol.md).

    Points are thinned, not truncated: every ``stride``-th progress event is kept and the
    newest one is always the last point; when more than :data:`MAX_POINTS` are kept, every
    second point goes and the stride doubles. A long run keeps a chart of its whole history.

    Args:
        run_id: The run's id.
        model_name: What is being trained, when known.
    """

    __slots__ = ("_count", "_stride", "_tail", "completed", "ended_at", "failed", "group",
                 "group_size", "model_name", "points", "progress", "run_id", "seen_at",
                 "started_at", "status", "updated")

    def __init__(self, run_id: str, model_name: str | None = None) -> None:
        self.run_id = run_id
        self.model_name = model_name
        self.status = "running"
        self.progress: dict[str, Any] | None = None
        self.completed: dict[str, Any] | None = None
        self.failed: dict[str, Any] | None = None
        self.points: list[dict[str, Any]] = []
        self.updated: str | None = None
        #: Time of the run's first event, and of its ``training_completed``/``failed``.
        self.started_at: str | None = None
        self.ended_at: str | None = None
        #: The sweep or study the run belongs to (``run_params``'s ``group``).
        self.group: str | None = None
        #: How many runs its group plans (``run_params``'s ``group_size``), when known.
        self.group_size: int | None = None
        self.seen_at = time.monotonic()
        self._count = 0
        self._stride = 1
        self._tail = False

    @property
    def finished(self) -> bool:
        """Whether the run ended (completed, failed, interrupted or killed; not crashed)."""
        return self.status in _TERMINAL

    def touch(self, timestamp: str | None) -> None:
        """Note that an event of this run arrived now."""
        self.seen_at = time.monotonic()
        if timestamp:
            self.updated = timestamp
            if self.started_at is None:
                self.started_at = normal_time(timestamp)

    def on_progress(self, data: dict[str, Any]) -> None:
        """Apply a ``training_progress`` event (its wire dict)."""
        if data.get("model_name"):
            self.model_name = data["model_name"]
        self.progress = data
        if self.status in ("stalled", "crashed"):  # steps resumed; a crash was a false alarm
            self.status = "running"
            self.ended_at = None
        self._add_point({
            "seq": data.get("seq"),
            "progress": data.get("progress"),
            "epoch": data.get("current_epoch"),
            "step": data.get("current_step"),
            "loss": data.get("current_loss"),
            "accuracy": data.get("current_accuracy"),
            "metrics": _chart_metrics(data.get("metrics")),
        })

    def on_completed(self, data: dict[str, Any]) -> None:
        """Apply a ``training_completed`` event."""
        if data.get("model_name"):
            self.model_name = data["model_name"]
        self.completed = data
        self.status = "completed"
        self.ended_at = normal_time(data.get("timestamp"))

    def on_failed(self, data: dict[str, Any]) -> None:
        """Apply a ``training_failed`` event."""
        if data.get("model_name"):
            self.model_name = data["model_name"]
        self.failed = data
        self.status = failed_status(data.get("error_code"), data.get("error"))
        self.ended_at = normal_time(data.get("timestamp"))

    def reopen(self, timestamp: Any) -> bool:
        """A new attempt of this run started at ``timestamp``; returns whether the run reopened.

        Only an ended (or crashed) run whose ``ended_at`` is before ``timestamp`` reopens: a
        late start of the process that ended it carries an earlier time and changes nothing.
        The run is ``running`` again without its end (``completed``, ``failed``,
        ``ended_at``); its start, progress, points and group stay, and the new attempt's
        events add to them.
        """
        started = normal_time(timestamp)
        if not (self.finished or self.status == "crashed") or self.ended_at is None \
                or started is None or started <= self.ended_at:
            return False
        self.status = "running"
        self.completed = self.failed = self.ended_at = None
        return True

    def on_params(self, data: dict[str, Any]) -> None:
        """Apply a ``run_params`` event: model name, group and group size (params: history)."""
        if data.get("model_name"):
            self.model_name = data["model_name"]
        if isinstance(data.get("group"), str):
            self.group = data["group"]
        self.group_size = _size(data.get("group_size")) or self.group_size

    def on_state(self, data: dict[str, Any]) -> bool:
        """Apply a ``run_state`` event; returns whether the status changed.

        An ended run keeps its end (a late ``crashed`` or ``stalled`` raised while its last
        events were on their way changes nothing), only a running run can stall, and
        ``crashed`` sets ``ended_at``.
        """
        status = _STATUS_OF_STATE.get(str(data.get("state")), str(data.get("state")))
        if status not in RUN_STATUSES or status == self.status or self.finished or (
                status == "stalled" and self.status != "running"):  # a late stall of a crash
            return False
        self.status = status
        self.ended_at = normal_time(data.get("timestamp")) if status == "crashed" else None
        return True

    def mark_stalled(self) -> bool:
        """Mark a running run as stalled; returns whether it changed."""
        if self.status != "running":
            return False
        self.status = "stalled"
        return True

    def _add_point(self, point: dict[str, Any]) -> None:
        self._count += 1
        if self._tail:
            self.points.pop()
        self.points.append(point)
        self._tail = self._count % self._stride != 0
        if len(self.points) > MAX_POINTS:
            kept = self.points[:-1] if self._tail else self.points
            thinned = kept[::2]
            if self._tail:
                thinned.append(self.points[-1])
            self.points = thinned
            self._stride *= 2

    def to_dict(self) -> dict[str, Any]:
        """The run as docs/protocol.md's ``RunState``."""
        return {
            "run_id": self.run_id,
            "model_name": self.model_name,
            "status": self.status,
            "progress": self.progress,
            "completed": self.completed,
            "failed": self.failed,
            "points": list(self.points),
            "updated": self.updated,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "group": self.group,
            "group_size": self.group_size,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunState:
        """Rebuild a run from :meth:`to_dict` output (history)."""
        run = cls(str(data["run_id"]), data.get("model_name"))
        status = data.get("status")
        run.status = status if status in RUN_STATUSES else "running"
        run.progress = data.get("progress")
        run.completed = data.get("completed")
        run.failed = data.get("failed")
        run.points = [{**p, "metrics": _chart_metrics(p.get("metrics"))}
                      for p in list(data.get("points") or [])[-MAX_POINTS:]
                      if isinstance(p, dict)]
        run.updated = data.get("updated")
        run.started_at = normal_time(data.get("started_at"))
        run.ended_at = normal_time(data.get("ended_at"))
        group = data.get("group")
        run.group = group if isinstance(group, str) else None
        run.group_size = _size(data.get("group_size"))
        run._count = len(run.points)
        return run


def _size(value: Any) -> int | None:
    """A ``group_size``: a positive integer, else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None
