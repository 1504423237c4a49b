"""The run history pages: ``/runs``, ``/runs/{run_id}`` and ``/compare?runs=ID,ID``.

Each is a static HTML shell from the dashboard's files (like ``/``): it holds no data, so it is
public; its scripts read ``GET /api/runs...`` and ``WS /ws`` with the ``?token=`` of the page's
own URL. The middleware adds the same security headers as on every response.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response

from mlops_hooks.server.endpoints.rest import STATIC_DIR

__all__ = ["compare_page", "run_page", "runs_page"]


def _page(name: str) -> Response:
    page = STATIC_DIR / name
    if page.is_file():
        return FileResponse(page, headers={"Cache-Control": "no-cache"})
    return PlainTextResponse(f"the page {name} is missing from this installation",
                             status_code=404)


async def runs_page(request: Request) -> Response:
    """``GET /runs``: the runs table (``?group=NAME``: the group view)."""
    return _page("runs.html")


async def run_page(request: Request) -> Response:
    """``GET /runs/{run_id}``: one run, every series charted; the id is read by the page."""
    return _page("run.html")


async def compare_page(request: Request) -> Response:
    """``GET /compare?runs=ID,ID``: the same series of several runs overlaid."""
    return _page("compare.html")
