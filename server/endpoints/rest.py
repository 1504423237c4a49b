"""The REST fallback (models, system, activity), operations (healthz, metrics) and the page.

With a subscriber token every read needs it (``?token=`` or a Bearer header; the publisher
token works too): the REST fallback and ``/metrics`` answer 401 without it, and ``/healthz``
says only whether the server is up (``{"status": ...}``), for load balancers and probes.
The page and its static files are public: they hold no data.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
)

from mlops_hooks import protocol
from mlops_hooks.server.security import Denied

if TYPE_CHECKING:
    from mlops_hooks.server.core import Core

__all__ = ["STATIC_DIR", "activity", "healthz", "index", "metrics", "models", "refused", "system",
           "write_refused"]

#: The dashboard's files (package data, written by the dashboard's own issue).
STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
MAX_ACTIVITY_LIMIT = 500

_MISSING_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>mlops-hooks</title></head>
<body>
<h1>mlops-hooks server is running</h1>
<p>The dashboard page is missing from this installation
(<code>mlops_hooks/server/static/index.html</code>).</p>
<p>The server works without it: subscribe on <code>/ws</code>, publish on
<code>/ws/publish</code> or <code>POST /api/events</code>, read
<a href="/api/models">/api/models</a>, <a href="/api/monitoring/system">/api/monitoring/system</a>,
<a href="/api/activity">/api/activity</a>, <a href="/healthz">/healthz</a> and
<a href="/metrics">/metrics</a>.</p>
</body></html>
"""


def _core(request: Request) -> Core:
    core: Core = request.app.state.core
    return core


async def index(request: Request) -> Response:
    """``GET /``: the dashboard, or a page saying it is missing."""
    page = STATIC_DIR / "index.html"
    if page.is_file():
        return FileResponse(page, headers={"Cache-Control": "no-cache"})
    return HTMLResponse(_MISSING_PAGE)


def refused(request: Request) -> Response | None:
    """The 401 answering a read without the subscriber token (``None``: the read may go on)."""
    core = _core(request)
    try:
        core.guard.check_subscriber(request.headers, request.query_params)
    except Denied as denied:
        core.metrics.rejected[f"http_{denied.status}"] += 1
        return JSONResponse(protocol.problem(denied.message), status_code=denied.status,
                            headers={"WWW-Authenticate": "Bearer"})
    return None


def write_refused(request: Request) -> Response | None:
    """The 401/403 answering a write without the publisher token or from a foreign origin.

    ``None``: the write may go on.
    """
    core = _core(request)
    try:
        core.guard.check_origin(request.headers)
        core.guard.check_publisher(request.headers)
    except Denied as denied:
        core.metrics.rejected[f"http_{denied.status}"] += 1
        return JSONResponse(protocol.problem(denied.message), status_code=denied.status,
                            headers={"WWW-Authenticate": "Bearer"} if denied.status == 401
                            else None)
    return None


async def models(request: Request) -> Response:
    """``GET /api/models``."""
    return refused(request) or JSONResponse(_core(request).state.models_view())


async def system(request: Request) -> Response:
    """``GET /api/monitoring/system``."""
    core = _core(request)
    return refused(request) or JSONResponse(core.state.system_view(core.connections))


async def activity(request: Request) -> Response:
    """``GET /api/activity?limit=50`` (1-500)."""
    denied = refused(request)
    if denied is not None:
        return denied
    raw = request.query_params.get("limit", "50")
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_ACTIVITY_LIMIT:
        return JSONResponse(
            {"error": f"limit must be an integer from 1 to {MAX_ACTIVITY_LIMIT}, got {raw!r}",
             "field": "limit"}, status_code=400)
    return JSONResponse(_core(request).state.activity_view(limit))


async def healthz(request: Request) -> Response:
    """``GET /healthz``: liveness plus the stream position, backend facts and connection counts.

    ``status`` is ``degraded`` while the backend cannot accept events (Redis unreachable): the
    server still serves its subscribers, publishers get 503 / an error reply and resend later.
    Without the subscriber token (when one is set) only ``status`` is answered.
    """
    core = _core(request)
    info = core.backend.describe()
    status = "ok" if info.get("connected", True) else "degraded"
    try:
        core.guard.check_subscriber(request.headers, request.query_params)
    except Denied:  # liveness only; not counted as a refusal (probes poll it)
        return JSONResponse({"status": status})
    return JSONResponse({
        "status": status,
        "seq": core.state.seq,
        "backend": core.backend.name,
        "replay_from": info.get("replay_from"),
        "backend_info": info,
        "subscribers": len(core.hub),
        "publishers": core.publishers,
        "uptime_s": round(time.time() - core.started_at, 1),
        "version": protocol.version(),
        "auth": {"publisher_token": core.config.token is not None,
                 "subscriber_token": core.config.subscriber_token is not None},
    })


async def metrics(request: Request) -> Response:
    """``GET /metrics`` in the Prometheus text format (a read: subscriber token when set)."""
    return refused(request) or PlainTextResponse(_core(request).metrics.render(),
                             media_type="text/plain; version=0.0.4; charset=utf-8")
