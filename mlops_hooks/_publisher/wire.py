"""What goes on the wire: preparing an event, and reading the server's replies.

An event is prepared once, in the background thread, the first time it is sent: a copy gets the
enqueue time as ``timestamp`` when it has none and the process-unique ``event_id``, is encoded,
and the bytes are decoded again, which runs every check of :mod:`mlops_hooks.events` (a struct
built in Python is not validated on construction). The validated bytes are kept, so a resend
after a reconnect is byte-for-byte the same message with the same idempotency key.
"""

from __future__ import annotations

import itertools
import os
import secrets
from typing import Any

import msgspec

from mlops_hooks import events as ev
from mlops_hooks._format import iso_utc

__all__ = ["MAX_MESSAGE_BYTES", "EventIds", "Invalid", "Reply", "decode_reply", "prepare",
           "retryable"]

#: The server closes a publish connection on a message larger than this (docs/protocol.md).
MAX_MESSAGE_BYTES = 64 * 1024


class Invalid(Exception):
    """An event that must not be sent; the message says why and names the field.

    Attributes:
        key: What identifies the kind of problem (event type and field), for de-duplicated
            warnings.
    """

    def __init__(self, message: str, key: str) -> None:
        super().__init__(message)
        self.key = key


class EventIds:
    """Idempotency keys: a random per-process prefix and a counter (``"3f9a1c2b7d4e-17"``)."""

    def __init__(self) -> None:
        self.prefix = f"{os.getpid():x}{secrets.token_hex(6)}"
        self._counter = itertools.count(1)

    def next(self) -> str:
        """A key no other event of any process will carry."""
        return f"{self.prefix}-{next(self._counter)}"


def prepare(event: ev.Event, enqueued: float, ids: EventIds) -> tuple[bytes, str]:
    """Stamp, identify, validate and encode ``event``.

    Args:
        event: The event as emitted (not modified).
        enqueued: ``time.time()`` at emission, used as ``timestamp`` when it has none.
        ids: The process's idempotency keys (used when the event has no ``event_id``).

    Returns:
        The wire bytes and the event's ``event_id``.

    Raises:
        Invalid: The event fails validation, cannot be encoded or is over the size limit.
    """
    changes: dict[str, Any] = {}
    if event.timestamp is None:
        changes["timestamp"] = iso_utc(enqueued)
    event_id = event.event_id
    if event_id is None:
        event_id = changes["event_id"] = ids.next()
    stamped = msgspec.structs.replace(event, **changes) if changes else event
    try:
        payload = ev.encode(stamped)
    except (TypeError, ValueError, OverflowError) as exc:
        raise Invalid(f"{event.type}: cannot be encoded as JSON: {exc}",
                      f"{event.type}:encode") from None
    try:
        ev.decode(payload)
    except ev.EventError as exc:
        raise Invalid(str(exc), f"{exc.event_type or event.type}:{exc.field}") from None
    if len(payload) > MAX_MESSAGE_BYTES:
        raise Invalid(
            f"{event.type}: {len(payload)} bytes encoded, over the server's "
            f"{MAX_MESSAGE_BYTES}-byte message limit", f"{event.type}:size")
    return payload, event_id


class Reply(msgspec.Struct, kw_only=True):
    """One message from ``/ws/publish``: ``ack``, ``error`` or ``pong``."""

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

    The server says so with ``retry: true`` (docs/protocol.md); servers older than that flag
    sent such errors with ``field: null``, and every other error named a field.
    """
    if reply.retry is not None:
        return reply.retry
    return reply.field is None
