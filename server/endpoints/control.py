"""``POST /api/runs/{run_id}/stop``: ask a live run to stop, over its publisher's own socket.

The request is a write: it needs the publisher token when the server has one (401 otherwise),
and a browser's ``Origin`` must be allowed (403). The run must be in the history (404) and not
ended (409). The server sends ``{"type": "control", "action": "stop", ...}`` down the
``/ws/publish`` connection that carries the run (or keeps it until the publisher reconnects)
and records who asked and from where in the activity feed (``action_type: "stop_requested"``).
The answer is 202: the run stops at its next step boundary and ends as ``training_completed``
with ``stop_reason: "requested"``, which every dashboard receives on its stream.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import uuid
from functools import partial
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mlops_hooks import events as ev
from mlops_hooks.formatting import iso_utc
from mlops_hooks.protocol import problem
from mlops_hooks.server.endpoints.rest import write_refused
from mlops_hooks.server.ops.controls import STOP_REQUESTED, stop_message
from mlops_hooks.server.state import history

if TYPE_CHECKING:
    from mlops_hooks.server.core import Core

__all__ = ["ANONYMOUS", "LIVE_STATUSES", "TOKEN_IDENTITY", "stop_run"]

log = logging.getLogger("mlops_hooks.server")
#: Who asked, as recorded: the server knows one publisher token, so a request that presented it
#: is ``TOKEN_IDENTITY``; on a server without a token, ``ANONYMOUS``.
TOKEN_IDENTITY = "publisher-token"
ANONYMOUS = "anonymous"
#: Run statuses that can still be stopped; any other status has ended (409).
LIVE_STATUSES = frozenset({"running", "stalled"})
_MAX_RUN_ID = 512


def _error(code: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse(problem(message, **extra), status_code=code)


async def stop_run(request: Request) -> Response:
    """``POST /api/runs/{run_id}/stop`` → 202 ``{"run_id", "request_id", "delivered", ...}``."""
    core: Core = request.app.state.core
    denied = write_refused(request)
    if denied is not None:
        return denied
    run_id = request.path_params["run_id"]
    if len(run_id) > _MAX_RUN_ID:
        return _error(400, f"run_id must be at most {_MAX_RUN_ID} characters", field="run_id")
    try:
        found = await asyncio.wrap_future(core.store.query(partial(history.read_run,
                                                                   run_id=run_id)))
    except sqlite3.Error as exc:
        return _error(503, f"the run history cannot be read right now: {exc}")
    if found is None:
        return _error(404, f"no run {run_id!r} in this server's history")
    status = found["run"]["status"]
    if status not in LIVE_STATUSES:
        core.controls.ended(run_id)
        return _error(409, f"run {run_id!r} has already ended ({status}): there is nothing to "
                           "stop", status=status)
    requested_by = TOKEN_IDENTITY if core.config.token else ANONYMOUS
    source = request.client.host if request.client is not None else None
    request_id = f"stop_{uuid.uuid4().hex[:16]}"
    delivered = core.controls.send(run_id, stop_message(run_id, request_id, requested_by,
                                                        source))
    audit = _audit(run_id, found["run"].get("model_name"), request_id, requested_by, source,
                   delivered)
    try:
        await core.ingest.submit(audit)
    except ConnectionError as exc:  # the request went out; only its feed entry is missing
        log.warning("mlops-hooks: the audit entry of stop request %s was not stored: %s",
                    request_id, exc)
    return JSONResponse({"run_id": run_id, "request_id": request_id, "delivered": delivered,
                         "requested_by": requested_by, "source": source}, status_code=202)


def _audit(run_id: str, name: str | None, request_id: str, requested_by: str,
           source: str | None, delivered: bool) -> ev.ActivityUpdate:
    """The activity entry recording a stop request: who asked, from where, for which run."""
    stamp = iso_utc()
    label = f"{name} ({run_id})" if name and name != run_id else run_id
    where = f" from {source}" if source else ""
    how = "sent to its training process" if delivered else \
        "waiting for its training process to reconnect"
    return ev.ActivityUpdate(run_id=run_id, event_id=f"stop-request:{request_id}",
                             activity=ev.Activity(
        id=f"act_{stamp[:10].replace('-', '')}_{uuid.uuid4().hex[:10]}",
        title="Stop Requested", description=f"Stop of run {label} requested by {requested_by}"
                                            f"{where}; {how}",
        user=requested_by, action_type=STOP_REQUESTED, status="requested", timestamp=stamp,
        severity_level="warning", duration=None,
        metadata={"run_id": run_id, "model_name": name, "request_id": request_id,
                  "requested_by": requested_by, "source": source, "delivered": delivered}))
