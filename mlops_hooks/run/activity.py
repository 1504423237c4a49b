"""Activity-feed entries: who acted, and the ``activity_update`` a run or a deployment sends."""

from __future__ import annotations

import getpass
import os
import uuid
from typing import Any

from mlops_hooks import events as ev
from mlops_hooks.formatting import iso_utc

__all__ = ["activity", "actor", "run_activity"]


def actor() -> str:
    """The login name shown as an entry's ``user`` (``"system"`` when there is none)."""
    try:
        return getpass.getuser()
    except Exception:  # no login name (containers): the spec's default actor
        return "system"


def activity(title: str, description: str, action: str, status: str, severity: str, *,
             duration: float | None, metadata: dict[str, Any],
             stamp: str | None = None) -> ev.Activity:
    """One activity-feed entry, with a fresh id and the current user.

    Args:
        title: The entry's title (``"Model Training Started"``).
        description: One line saying what happened.
        action: The spec's ``action_type``.
        status: The spec's ``status``.
        severity: The spec's ``severity_level``.
        duration: Seconds the action took, if it is over.
        metadata: Extra facts (model name, run id, ...).
        stamp: Its ISO-8601 time; now when omitted.
    """
    stamp = stamp or iso_utc()
    return ev.Activity(
        id=f"act_{stamp[:10].replace('-', '')}_{uuid.uuid4().hex[:10]}",
        title=title,
        description=description,
        user=actor(),
        action_type=action,
        status=status,
        timestamp=stamp,
        severity_level=severity,
        duration=round(duration, 3) if duration is not None else None,
        metadata=metadata,
    )


def run_activity(run_id: str, name: str, title: str, description: str, action: str,
                 status: str, severity: str, duration: float | None) -> ev.ActivityUpdate:
    """The ``activity_update`` of a training run's start, completion or failure."""
    return ev.ActivityUpdate(
        run_id=run_id,
        activity=activity(title, description, action, status, severity, duration=duration,
                          metadata={"model_name": name, "run_id": run_id, "pid": os.getpid()}),
    )
