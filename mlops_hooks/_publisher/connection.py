"""The publisher's connection, as the background thread sees it: pings, and what breaks it.

:data:`BROKEN` is every exception that ends a connection (the worker reconnects with backoff);
:func:`describe` says what happened in one line for warnings and ``status()``.
"""

from __future__ import annotations

from websockets.exceptions import ConnectionClosed, ConnectionClosedOK, InvalidStatus

from mlops_hooks.protocol import CLEAN_CLOSES

__all__ = ["BROKEN", "Ping", "ProtocolError", "Stalled", "Unavailable", "clean_close",
           "describe"]


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
