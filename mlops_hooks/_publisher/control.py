"""Control messages the server sends down ``/ws/publish`` (docs/protocol.md, "Stopping a run").

``{"type": "control", "action": "stop", "run_id": ..., "request_id": ..., "requested_by": ...,
"source": ...}`` is not a reply (it answers no message of ours). The background thread hands it
here: the run is marked (:func:`mlops_hooks.run.control.request_stop`, which also re-arms a paused
adapter hook) and an ``activity_update`` acknowledging it joins the outgoing events (action
``stop_acknowledged``), so the server and every dashboard see that the training process has it.
Nothing here raises: a message this client does not understand is ignored.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from typing import Any

import msgspec

from mlops_hooks import events as ev
from mlops_hooks._publisher.mailbox import Mailbox
from mlops_hooks.formatting import iso_utc
from mlops_hooks.run import control

__all__ = ["ACKNOWLEDGED", "CONTROL", "Control", "notice"]

#: The ``type`` of a control message, and the ``action_type`` of the acknowledgement.
CONTROL = "control"
ACKNOWLEDGED = "stop_acknowledged"
_MAX_TEXT = 256


class Control(msgspec.Struct, kw_only=True):
    """A control message from the server."""

    type: str
    action: str
    run_id: str
    request_id: str | None = None
    requested_by: str = "anonymous"
    source: str | None = None


_decode = msgspec.json.Decoder(Control).decode


def notice(kind: str, data: bytes, mailbox: Mailbox) -> None:
    """Act on a message that is not a reply (a ``control`` message; others are ignored)."""
    if kind != CONTROL:
        return
    try:
        message = _decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return
    if message.action != "stop" or not message.run_id:
        return  # an action of a later server: not this client's to guess
    try:
        known = control.stop_requested(message.run_id[:_MAX_TEXT])
        request = control.request_stop(
            message.run_id[:_MAX_TEXT], request_id=_cut(message.request_id),
            requested_by=message.requested_by[:_MAX_TEXT], source=_cut(message.source))
        if known is None:  # a copy of a request already had (a fleet may route it twice)
            mailbox.inbox.append((acknowledgement(request), time.time()))
    except Exception:  # never end delivery over a control message
        return


def _cut(value: str | None) -> str | None:
    return value[:_MAX_TEXT] if value is not None else None


def acknowledgement(request: control.StopRequest) -> ev.ActivityUpdate:
    """The ``activity_update`` saying this process received ``request``."""
    stamp = iso_utc()
    metadata: dict[str, Any] = {"run_id": request.run_id, "request_id": request.request_id,
                                "requested_by": request.requested_by, "pid": os.getpid(),
                                "host": socket.gethostname()}
    return ev.ActivityUpdate(run_id=request.run_id, activity=ev.Activity(
        id=f"act_{stamp[:10].replace('-', '')}_{uuid.uuid4().hex[:10]}",
        title="Stop Request Received",
        description=f"Run {request.run_id} will stop at its next step (asked by "
                    f"{request.requested_by})",
        user="system", action_type=ACKNOWLEDGED, status="in_progress", timestamp=stamp,
        severity_level="info", duration=None, metadata=metadata))
