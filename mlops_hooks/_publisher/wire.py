"""Preparing an event for the wire (the replies are :mod:`mlops_hooks.protocol`'s).

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
from mlops_hooks.formatting import iso_utc
from mlops_hooks.protocol import MAX_MESSAGE_BYTES

__all__ = ["EventIds", "Invalid", "prepare"]


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
