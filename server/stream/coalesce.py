"""Coalescing: which events supersede older ones of the same key in a subscriber's queue."""

from __future__ import annotations

from mlops_hooks import events as ev

__all__ = ["coalesce_key"]


def coalesce_key(event: ev.Event) -> str | None:
    """The key under which ``event`` supersedes older events, or ``None`` if it never does.

    Superseded state: ``training_progress`` per run, ``system_metrics``, ``upload_progress`` per
    file and ``prediction_volume`` per model (unless it reports a milestone); a
    ``training_progress`` with ``loss_not_finite`` is news and never superseded. Everything else is
    a lifecycle event, always delivered and in order.
    """
    if isinstance(event, ev.TrainingProgress):
        if event.loss_not_finite is not None:
            return None
        return "training_progress\x00" + (event.run_id or event.model_name or "")
    if isinstance(event, ev.SystemMetrics):
        return "system_metrics"
    if isinstance(event, ev.UploadProgress):
        return "upload_progress\x00" + event.filename
    if isinstance(event, ev.PredictionVolume) and event.milestone_reached is None:
        return "prediction_volume\x00" + (event.model_id or "")
    return None
