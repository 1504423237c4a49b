"""The wire, as both ends see it: message types, limits, close codes and the replies.

The publisher (:mod:`mlops_hooks.publisher`) and the server (:mod:`mlops_hooks.server`) import
what they share from here; neither defines its own. ``docs/protocol.md`` is the prose version
and ``spec/websocket-api.md`` the contract for events themselves (:mod:`mlops_hooks.events`).
"""

from __future__ import annotations

import functools
import sys
from enum import IntEnum
from importlib import metadata
from typing import Any, Final, Literal

import msgspec

from mlops_hooks.formatting import iso_utc

__all__ = [
    "MAX_MESSAGE_BYTES",
    "PUBLISH_PATH",
    "SUBSCRIBE_PATH",
    "CloseCode",
    "ControlType",
    "Reply",
    "ack",
    "decode_reply",
    "error",
    "ping",
    "pong",
    "problem",
    "retryable",
    "slow_reason",
    "user_agent",
    "version",
]

#: Largest WebSocket message a client may send; the server closes with 1009 above it, and the
#: publisher drops a larger event before sending it.
MAX_MESSAGE_BYTES: Final = 64 * 1024
#: Where dashboards subscribe, and where publishers send events.
SUBSCRIBE_PATH: Final = "/ws"
PUBLISH_PATH: Final = "/ws/publish"

#: Messages that are not events: ``ping`` (client to server), ``pong``, ``ack`` and ``error``
#: (replies), ``snapshot`` and ``replay`` (what a subscriber receives before live events).
ControlType = Literal["ping", "pong", "ack", "error", "snapshot", "replay"]


class CloseCode(IntEnum):
    """WebSocket close codes the server sends (RFC 6455 plus one private code)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    #: A frame that breaks RFC 6455 (e.g. an unmasked or reserved-bit frame).
    PROTOCOL_ERROR = 1002
    #: A binary frame: the server takes JSON text only.
    UNSUPPORTED_DATA = 1003
    #: A text message that is not valid UTF-8.
    INVALID_DATA = 1007
    #: A refused handshake, on servers without the denial-response extension.
    POLICY_VIOLATION = 1008
    #: A message over :data:`MAX_MESSAGE_BYTES`.
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    #: The backend could not store an event: reconnect and resend from the refused one.
    TRY_AGAIN_LATER = 1013
    #: A subscriber fell too far behind: reconnect with ``?since=`` (see :func:`slow_reason`).
    SLOW_CONSUMER = 4008


#: Closes a publisher treats as the server meaning it (not an error).
CLEAN_CLOSES: Final = frozenset({CloseCode.NORMAL, CloseCode.GOING_AWAY,
                                 CloseCode.SERVICE_RESTART})

_encode = msgspec.json.Encoder().encode


class Reply(msgspec.Struct, kw_only=True):
    """One reply on ``/ws/publish``: ``ack``, ``error`` or ``pong`` (see :func:`ack` & co.)."""

    type: str
    seq: int | None = None
    event_id: str | None = None
    duplicate: bool = False
    error: str | None = None
    field: str | None = None
    retry: bool | None = None
    id: Any = None
    server_time: str | None = None


_reply_decoder = msgspec.json.Decoder(Reply)


def ack(seq: int, event_id: str | None, *, duplicate: bool = False) -> str:
    """The reply accepting an event (``duplicate: true`` for an ``event_id`` already known)."""
    reply: dict[str, Any] = {"type": "ack", "seq": seq, "event_id": event_id}
    if duplicate:
        reply["duplicate"] = True
    return _encode(reply).decode()


def error(message: str, field: str | None = None, event_id: Any = None, *,
          retry: bool = False) -> str:
    """An ``{"type": "error", ...}`` reply.

    Args:
        message: What is wrong.
        field: The event's field at fault (``""``: the whole message; ``None``: none).
        event_id: The ``event_id`` of the event it answers, when known.
        retry: Sending the same event again later can succeed (the server could not store
            it right now); ``False``: the event itself is wrong.

    Returns:
        The message as JSON text.
    """
    return _encode({"type": "error", "error": message, "field": field, "event_id": event_id,
                    "retry": retry}).decode()


def ping(ping_id: Any, runs: list[str] | None = None) -> bytes:
    """A client's ``{"type": "ping", "id": X}``; with ``runs``, a publisher's heartbeat."""
    if runs is None:
        return _encode({"type": "ping", "id": ping_id})
    return _encode({"type": "ping", "id": ping_id, "runs": runs})


def pong(ping_id: Any) -> str:
    """The reply to ``{"type": "ping", "id": X}``."""
    return _encode({"type": "pong", "id": ping_id, "server_time": iso_utc()}).decode()


def problem(message: str, **extra: Any) -> dict[str, Any]:
    """The JSON body of a refused HTTP request or WebSocket handshake."""
    return {"error": message, **extra}


def slow_reason(last_seq: int) -> str:
    """The reason sent with :attr:`CloseCode.SLOW_CONSUMER`."""
    return f"slow consumer: reconnect with ?since={last_seq}"


def decode_reply(data: str | bytes) -> Reply:
    """Decode a reply from the server.

    Raises:
        ValueError: The message is not a JSON object with a string ``type``.
    """
    try:
        return _reply_decoder.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        text = data if isinstance(data, str) else data.decode("utf-8", "replace")
        raise ValueError(f"unexpected message from the server ({exc}): {text[:200]!r}") \
            from None


def retryable(reply: Reply) -> bool:
    """Whether an ``error`` reply means "could not store it right now, send it again later".

    The server says so with ``retry: true``; servers older than that flag sent such errors
    with ``field: null``, and every other error named a field.
    """
    if reply.retry is not None:
        return reply.retry
    return reply.field is None


@functools.cache
def version() -> str:
    """This installation's version of mlops-hooks (looked up once, from its metadata).

    Looked up lazily: ``importlib.metadata`` scans every ``site-packages`` entry (about 0.4 ms
    in a large environment), which neither an import nor every ``/healthz`` probe should pay.
    """
    try:
        return metadata.version("mlops-hooks")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown"


def user_agent() -> str:
    """The ``User-Agent`` a publisher sends: ``mlops-hooks/<version> Python/<major.minor>``."""
    return f"mlops-hooks/{version()} Python/{sys.version_info[0]}.{sys.version_info[1]}"
