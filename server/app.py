"""``create_app``: the Starlette application, its routes, middleware and lifespan."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mlops_hooks.manager import PluginManager, create_plugin_manager
from mlops_hooks.protocol import problem
from mlops_hooks.server.backends import Backend
from mlops_hooks.server.config import ServerConfig
from mlops_hooks.server.core import Core
from mlops_hooks.server.endpoints import control, files, pages, publish, rest, runs, subscribe
from mlops_hooks.server.ops import relaunch
from mlops_hooks.server.ops.monitor import background_tasks
from mlops_hooks.server.security import Denied

__all__ = ["create_app"]

_DEFAULT: Any = object()
#: Requests timed for ``api_response_time_ms`` (uploads are timed by their size, not the API).
_TIMED_PREFIXES = ("/api/models", "/api/monitoring", "/api/activity", "/api/events", "/api/runs",
                   "/api/groups",
                   "/healthz")
#: The page's Content-Security-Policy: its own scripts, styles and connections only, and no
#: framing (clickjacking). ``{ws}`` names the page's own WebSocket origins for browsers whose
#: ``'self'`` does not cover ``ws:``/``wss:``.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'{ws}; object-src 'none'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")
#: Headers on every HTTP response (the page, its static files and the API alike).
SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),  # the page's URL may carry ?token=
)
_PLAIN_HOST = re.compile(r"^[A-Za-z0-9.:\[\]-]{1,255}$")


def security_headers(host: str) -> list[tuple[bytes, bytes]]:
    """The headers :data:`SECURITY_HEADERS` plus the CSP for a request to ``host``."""
    ws = f" ws://{host} wss://{host}" if _PLAIN_HOST.match(host) else ""
    return [*SECURITY_HEADERS, (b"content-security-policy", CSP.format(ws=ws).encode())]


class GuardMiddleware:
    """Checks ``Host`` on every HTTP request, adds the security headers, times API requests.

    WebSockets check ``Host`` in their own handshake (to answer with a denial response).

    Args:
        app: The wrapped application.
        core: The server's parts.
    """

    def __init__(self, app: ASGIApp, core: Core) -> None:
        self.app = app
        self.core = core

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            self.core.guard.check_host(Headers(scope=scope))
        except Denied as denied:
            self.core.metrics.rejected["http_400_host"] += 1
            response = JSONResponse(problem(denied.message), status_code=denied.status,
                                    headers=dict((k.decode(), v.decode())
                                                 for k, v in SECURITY_HEADERS))
            await response(scope, receive, send)
            return
        extra = security_headers(Headers(scope=scope).get("host", ""))

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []),
                                      *(h for h in extra if h[0] not in names)]
            await send(message)

        started = time.perf_counter()
        await self.app(scope, receive, send_secured)
        if scope["path"].startswith(_TIMED_PREFIXES):
            self.core.api_times.append((time.perf_counter() - started) * 1000)


def create_app(config: ServerConfig | None = None, *, plugins: PluginManager | None = _DEFAULT,
               backend: Backend | None = None) -> Starlette:
    """Build the broadcaster application.

    Args:
        config: Settings (defaults: 127.0.0.1:8001, history under the user's data directory).
        plugins: Server-side plugin manager; by default the built-in and entry-point plugins
            of the ``server`` side. ``None`` calls no hooks.
        backend: A backend to use instead of the one ``config.backend`` names.

    Returns:
        The Starlette app; its lifespan opens history and starts the background tasks, so run
        it under an ASGI server with lifespan support (uvicorn, Starlette's TestClient).

    Raises:
        ValueError: ``config.backend`` names an unknown or unavailable backend.
    """
    config = config or ServerConfig()
    if plugins is _DEFAULT:
        plugins = create_plugin_manager("server")
    core = Core(config, plugins=plugins, backend=backend)
    relaunchers = relaunch.register(core)  # Retry/Retrain → mlops_relaunch_request

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await core.start(background_tasks)
        try:
            yield
        finally:
            await core.stop()
            relaunch.unregister(core, relaunchers)

    routes = [
        Route("/", rest.index, methods=["GET", "HEAD"]),
        Route("/runs", pages.runs_page, methods=["GET", "HEAD"]),
        Route("/runs/{run_id:path}", pages.run_page, methods=["GET", "HEAD"]),
        Route("/compare", pages.compare_page, methods=["GET", "HEAD"]),
        WebSocketRoute("/ws", subscribe.Subscribe()),
        WebSocketRoute("/ws/publish", publish.publish_ws),
        Route("/api/events", publish.post_events, methods=["POST"]),
        Route("/api/models", rest.models, methods=["GET"]),
        Route("/api/monitoring/system", rest.system, methods=["GET"]),
        Route("/api/activity", rest.activity, methods=["GET"]),
        Route("/api/runs", runs.runs, methods=["GET"]),
        Route("/api/runs/{run_id}", runs.run, methods=["GET"]),
        Route("/api/runs/{run_id}/metrics", runs.run_metrics, methods=["GET"]),
        Route("/api/groups/{group}", runs.group, methods=["GET"]),
        Route("/api/runs/{run_id}/stop", control.stop_run, methods=["POST"]),
        Route("/api/files", files.upload, methods=["POST"]),
        Route("/healthz", rest.healthz, methods=["GET"]),
        Route("/metrics", rest.metrics, methods=["GET"]),
        Mount("/static", StaticFiles(directory=rest.STATIC_DIR, check_dir=False), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan,
                    middleware=[Middleware(GuardMiddleware, core=core)])
    app.state.core = core
    return app
