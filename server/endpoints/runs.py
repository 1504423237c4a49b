"""Run history on REST: ``GET /api/runs``, ``/api/runs/{id}``, ``/metrics``, ``/api/groups/{g}``.

Every run the history database holds, not only those in memory; each read waits for the events
already accepted to be written, then runs on the store's reader thread (the event loop never
touches the disk). Reads need the subscriber token when one is set. Bad parameters get 400 with
``{"error": ..., "field": ...}``, an unknown run 404 with ``{"error": ...}``.
"""

from __future__ import annotations

import asyncio
import sqlite3
from functools import partial
from typing import TYPE_CHECKING, Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mlops_hooks.server.endpoints.rest import refused
from mlops_hooks.server.state import history
from mlops_hooks.server.state.runs import RUN_STATUSES

if TYPE_CHECKING:
    from mlops_hooks.server.core import Core

__all__ = ["MAX_KEYS", "MAX_LIMIT", "MAX_QUERY", "group", "run", "run_metrics", "runs"]

#: ``GET /api/runs?limit=``: at most this many runs per page (default 50).
MAX_LIMIT = 500
DEFAULT_LIMIT = 50
#: ``?keys=`` names at most this many series; without it, at most this many are returned.
MAX_KEYS = 64
#: Characters of ``?q=``, ``?group=``, a key and a ``run_id`` at most.
MAX_QUERY = 512
_encode = msgspec.json.Encoder().encode


class _BadParameter(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _json(body: Any) -> Response:
    return Response(_encode(body), media_type="application/json")


def _bad(field: str, message: str) -> Response:
    return JSONResponse({"error": message, "field": field}, status_code=400)


def _text(request: Request, name: str) -> str | None:
    value = request.query_params.get(name)
    if value is not None and len(value) > MAX_QUERY:
        raise _BadParameter(name, f"{name} must be at most {MAX_QUERY} characters")
    return value


async def _read(request: Request, read: Any) -> Any:
    core: Core = request.app.state.core
    return await asyncio.wrap_future(core.store.query(read))


def _unavailable(exc: sqlite3.Error) -> Response:
    return JSONResponse({"error": f"the run history cannot be read right now: {exc}"},
                        status_code=503)


def _not_found(run_id: str) -> Response:
    return JSONResponse({"error": f"no run {run_id[:MAX_QUERY]!r} in this server's history"},
                        status_code=404)


def _list_arguments(request: Request) -> dict[str, Any]:
    raw = request.query_params.get("limit", str(DEFAULT_LIMIT))
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        raise _BadParameter("limit", f"limit must be an integer from 1 to {MAX_LIMIT}, "
                                     f"got {raw[:64]!r}")
    statuses: tuple[str, ...] = ()
    status = _text(request, "status")
    if status:
        statuses = tuple(s.strip() for s in status.split(",") if s.strip())
        unknown = [s for s in statuses if s not in RUN_STATUSES]
        if unknown:
            raise _BadParameter("status", f"status {unknown[0][:64]!r} is not one of "
                                          f"{', '.join(RUN_STATUSES)}")
    cursor = _text(request, "cursor")
    try:
        position = history.decode_cursor(cursor) if cursor else None
    except ValueError as exc:
        raise _BadParameter("cursor", str(exc)) from None
    return {"statuses": statuses, "q": _text(request, "q") or None,
            "group": _text(request, "group") or None, "limit": limit, "cursor": position}


async def runs(request: Request) -> Response:
    """``GET /api/runs?status=&q=&group=&limit=50&cursor=``: runs, newest first, one page."""
    denied = refused(request)
    if denied is not None:
        return denied
    try:
        arguments = _list_arguments(request)
    except _BadParameter as exc:
        return _bad(exc.field, str(exc))
    try:
        return _json(await _read(request, partial(history.read_runs, **arguments)))
    except sqlite3.Error as exc:
        return _unavailable(exc)


async def run(request: Request) -> Response:
    """``GET /api/runs/{run_id}``: one run with its params, metadata and series keys."""
    denied = refused(request)
    if denied is not None:
        return denied
    run_id = request.path_params["run_id"]
    try:
        body = await _read(request, partial(history.read_run, run_id=run_id))
    except sqlite3.Error as exc:
        return _unavailable(exc)
    return _not_found(run_id) if body is None else _json(body)


async def run_metrics(request: Request) -> Response:
    """``GET /api/runs/{run_id}/metrics?keys=a,b``: the run's series, ``[step, value]`` lists."""
    denied = refused(request)
    if denied is not None:
        return denied
    run_id = request.path_params["run_id"]
    raw = request.query_params.get("keys")
    keys: list[str] | None = None
    if raw is not None:
        keys = list(dict.fromkeys(k for k in raw.split(",") if k))
        if len(keys) > MAX_KEYS:
            return _bad("keys", f"keys names at most {MAX_KEYS} series, got {len(keys)}")
        if any(len(k) > MAX_QUERY for k in keys):
            return _bad("keys", f"a key is at most {MAX_QUERY} characters")
    try:
        body = await _read(request, partial(history.read_series, run_id=run_id, keys=keys,
                                            max_keys=MAX_KEYS))
    except sqlite3.Error as exc:
        return _unavailable(exc)
    return _not_found(run_id) if body is None else _json(body)


async def group(request: Request) -> Response:
    """``GET /api/groups/{group}``: the group's runs by status, planned count, best so far."""
    denied = refused(request)
    if denied is not None:
        return denied
    name = request.path_params["group"]
    if len(name) > MAX_QUERY:
        return _bad("group", f"group must be at most {MAX_QUERY} characters")
    try:
        body = await _read(request, partial(history.read_group, group=name))
    except sqlite3.Error as exc:
        return _unavailable(exc)
    if body is None:
        return JSONResponse({"error": f"no run of group {name[:MAX_QUERY]!r} in this server's "
                                      "history"}, status_code=404)
    return _json(body)
