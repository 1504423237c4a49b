"""Run the broadcaster under uvicorn (what ``mlops-hooks serve`` does).

uvicorn handles SIGINT and SIGTERM: open connections are closed, then the app's lifespan ends,
which stops the background tasks and writes the remaining history to SQLite.

Before serving, what was built to start (modules, the app: it lives as long as the process) is
moved out of the cyclic garbage collector's reach (:func:`gc.freeze`). A full collection then
scans only what serving allocated: events held for a while, e.g. in a slow subscriber's queue
until it is closed with 4008, promote enough objects to the oldest generation to set one off,
and scanning the startup heap as well paused the event loop about 30 ms (every subscriber's
delivery with it).
"""

from __future__ import annotations

import gc
import ipaddress
import logging
import os
import sqlite3
import sys
from dataclasses import replace

import uvicorn

from mlops_hooks.protocol import MAX_MESSAGE_BYTES
from mlops_hooks.server.app import create_app
from mlops_hooks.server.config import ServerConfig
from mlops_hooks.server.transport import (
    AcceptErrors,
    FrameWebSocketProtocol,
    HttpProtocol,
    Limits,
    accept_batch,
    descriptor_budget,
    raise_descriptor_limit,
)

__all__ = ["check_database", "fit_budgets", "run"]

#: Open connections kept for plain HTTP requests (``/healthz``, REST) when the WebSocket
#: budgets are fitted under the cap on open connections.
HTTP_ROOM = 16


def check_database(path: str) -> str | None:
    """Why the history database cannot be used, or ``None`` when it can."""
    if path == ":memory:":
        return None
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        db = sqlite3.connect(path)
        try:
            db.execute("PRAGMA schema_version").fetchone()
        finally:
            db.close()
    except (OSError, sqlite3.Error) as exc:
        return f"cannot open the history database {path!r}: {exc}"
    return None


class _LostPeerWrites(logging.Filter):
    """Drops asyncio's ``socket.send() raised exception.`` lines.

    asyncio logs one for every write, past the fifth, to a connection that is already lost;
    the server learns of the loss at the event loop's next turn, so a client that vanishes
    during a burst (a killed dashboard or publisher) would otherwise fill the log with them.
    The lost connection itself is handled (its subscriber or publisher is removed).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep every other record."""
        return record.msg != "socket.send() raised exception."


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def fit_budgets(config: ServerConfig, max_open: int) -> ServerConfig:
    """``config`` with its WebSocket budgets lowered, when needed, to fit ``max_open``.

    Dashboards alone must never fill the open connections: the publishers' budget and
    :data:`HTTP_ROOM` stay free.
    """
    room = max(2, max_open - HTTP_ROOM)
    if config.max_connections + config.max_publishers <= room:
        return config
    publishers = min(config.max_publishers, max(1, room // 4))
    return replace(config, max_publishers=publishers,
                   max_connections=max(1, min(config.max_connections, room - publishers)))


def _serve_limits(config: ServerConfig) -> tuple[ServerConfig, Limits, int]:
    """Raise the descriptor limit; the fitted config, uvicorn's limits and its backlog."""
    descriptors = raise_descriptor_limit()
    max_open = descriptor_budget(descriptors, config.max_open_connections)
    fitted = fit_budgets(config, max_open)
    if fitted is not config or (config.max_open_connections or 0) > max_open:
        print(f"mlops-hooks: note: {descriptors} file descriptors allow {max_open} open "
              f"connections: serving at most {fitted.max_connections} dashboards and "
              f"{fitted.max_publishers} publishers", file=sys.stderr)
    limits = Limits(max_open=max_open, request_timeout=config.request_timeout,
                    linger=config.request_timeout)
    return fitted, limits, accept_batch(descriptors)


def run(config: ServerConfig, *, log_level: str = "warning", access_log: bool = False) -> int:
    """Serve until interrupted.

    Args:
        config: The server's settings.
        log_level: uvicorn's log level.
        access_log: Log every HTTP request.

    Returns:
        The process exit status (0 after a clean shutdown).
    """
    problem = check_database(config.db_path)
    if problem is not None:
        print(f"mlops-hooks serve: {problem}", file=sys.stderr)
        return 2
    config, limits, backlog = _serve_limits(config)
    try:
        app = create_app(config)
    except ValueError as exc:
        print(f"mlops-hooks serve: {exc}", file=sys.stderr)
        return 2
    server = uvicorn.Server(uvicorn.Config(
        app, host=config.host, port=config.port, lifespan="on", log_level=log_level,
        access_log=access_log, http=HttpProtocol, ws=FrameWebSocketProtocol,
        ws_per_message_deflate=False, ws_max_size=MAX_MESSAGE_BYTES,
        timeout_graceful_shutdown=5, server_header=False, proxy_headers=False,
        backlog=backlog))
    server.server_state = limits  # uvicorn hands it to every connection's protocol
    host = f"[{config.host}]" if ":" in config.host else config.host
    print(f"mlops-hooks: dashboard http://{host}:{config.port}/  ·  subscribe "
          f"ws://{host}:{config.port}/ws  ·  publish ws://{host}:{config.port}/ws/publish",
          file=sys.stderr)
    token = "required" if config.token else "not required"
    print(f"mlops-hooks: history {config.db_path}  ·  uploads {config.upload_path}  ·  "
          f"publisher token {token}  ·  backend {config.backend}", file=sys.stderr)
    if not _is_loopback(config.host) and not config.token:
        print("mlops-hooks: warning: listening beyond this machine without a publisher token; "
              "anyone who can reach it can publish events (set --token or MLOPS_HOOKS_TOKEN)",
              file=sys.stderr)
    sys.stderr.flush()
    logging.getLogger("asyncio").addFilter(_LostPeerWrites())
    logging.getLogger("asyncio").addFilter(AcceptErrors())
    gc.collect()
    gc.freeze()
    try:
        server.run()
    except KeyboardInterrupt:  # uvicorn re-raises the signal after its graceful shutdown
        return 0
    except SystemExit as exc:  # uvicorn exits when it cannot bind
        return int(exc.code) if isinstance(exc.code, int) else 1
    return 0 if server.started else 1
