"""The publisher's connection, as the background thread sees it: pings, and what breaks it.

:func:`open_connection` opens it without reading the clock; :data:`BROKEN` is every exception
that ends a connection (the worker reconnects with backoff); :func:`describe` says what happened
in one line for warnings and ``status()``.
"""

from __future__ import annotations

import ssl
from typing import Any, cast

from websockets.exceptions import ConnectionClosed, ConnectionClosedOK, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from mlops_hooks._publisher.config import Settings, is_loopback
from mlops_hooks.protocol import CLEAN_CLOSES, user_agent

__all__ = ["BROKEN", "Ping", "ProtocolError", "Stalled", "Unavailable", "clean_close",
           "describe", "open_connection"]


def open_connection(settings: Settings) -> Any:
    """Open the connection (a context manager), bounded without reading ``time.monotonic``.

    websockets turns ``open_timeout`` into a deadline it reads the clock for, so a test that
    patches ``time.monotonic`` with a fixed sequence of values would see this thread take some.
    Each step gets ``settings.open_timeout`` on its own instead: the TCP connect (the socket's
    timeout), the TLS handshake (:class:`_BoundedTLS`) and the HTTP upgrade
    (:class:`_BoundedHandshake`). A proxy's reply (a proxy set for a remote server) is read
    without a bound.
    """
    timeout = settings.open_timeout
    handshake = type("_Handshake", (_BoundedHandshake,), {"timeout": timeout})
    options: dict[str, Any] = {}
    if settings.url.startswith("wss:"):
        tls = _BoundedTLS(ssl.PROTOCOL_TLS_CLIENT)
        tls.load_default_certs()
        tls.timeout = timeout
        options["ssl"] = tls
    headers = {"Authorization": f"Bearer {settings.token}"} if settings.token else None
    return connect(
        settings.url, additional_headers=headers, open_timeout=None, timeout=timeout,
        ping_interval=None, ping_timeout=None, close_timeout=1.0, compression=None,
        proxy=None if is_loopback(settings.url) else True, user_agent_header=user_agent(),
        create_connection=cast(type[ClientConnection], handshake), **options,
    )


class _BoundedHandshake(ClientConnection):
    """Waits ``timeout`` seconds for the HTTP upgrade (an event wait: no clock read)."""

    timeout = 5.0

    def handshake(self, *args: Any, **kwargs: Any) -> None:
        kwargs["timeout"] = self.timeout
        super().handshake(*args[:2], **kwargs)


class _BoundedTLS(ssl.SSLContext):
    """The default client context, with the TLS handshake bounded by the socket's timeout."""

    timeout = 5.0

    def wrap_socket(self, sock: Any, *args: Any, **kwargs: Any) -> Any:
        sock.settimeout(self.timeout)  # websockets clears it once the handshake is done
        return super().wrap_socket(sock, *args, **kwargs)


class Ping:
    __slots__ = ("id", "sent_at")

    def __init__(self, ping_id: int, sent_at: float) -> None:
        self.id = ping_id
        self.sent_at = sent_at


class ProtocolError(Exception):
    """The server's replies do not follow docs/protocol.md."""


class Stalled(Exception):
    """No reply for longer than ``reply_timeout``."""


class Unavailable(Exception):
    """The server could not take an event right now (an error reply with ``retry: true``).

    Seen when its backend is down; the event is kept and sent again after a reconnect.
    """


BROKEN = (ConnectionClosed, OSError, TimeoutError, ProtocolError, Stalled, Unavailable,
           ValueError)


def clean_close(exc: BaseException) -> bool:
    """A close the server meant (normal, going away, restarting): not an error."""
    if isinstance(exc, ConnectionClosedOK):
        return True
    rcvd = exc.rcvd if isinstance(exc, ConnectionClosed) else None
    return rcvd is not None and rcvd.code in CLEAN_CLOSES


def describe(exc: BaseException) -> str:
    """A one-line account of a connection problem."""
    if isinstance(exc, InvalidStatus):
        code = exc.response.status_code
        hint = " (check MLOPS_HOOKS_TOKEN)" if code in (401, 403) else ""
        return f"the server refused the handshake with HTTP {code}{hint}"
    if isinstance(exc, ConnectionClosed):
        rcvd = exc.rcvd
        if rcvd is None:
            return "connection lost without a close frame"
        reason = f": {rcvd.reason}" if rcvd.reason else ""
        return f"connection closed by the server (code {rcvd.code}{reason})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the server running?)"
    if isinstance(exc, Unavailable):
        return str(exc)
    if isinstance(exc, TimeoutError):
        return f"timed out{': ' + str(exc) if str(exc) else ''}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
