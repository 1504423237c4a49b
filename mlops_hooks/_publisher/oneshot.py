"""One event, acknowledged (``mlops-hooks emit``; :func:`mlops_hooks.publisher.deliver`)."""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

from mlops_hooks import events as ev

__all__ = ["Ack", "DeliveryError", "acknowledged"]


class Ack(NamedTuple):
    """The server's acknowledgement of one event sent by :func:`deliver`."""

    seq: int
    event_id: str
    duplicate: bool


class DeliveryError(Exception):
    """An event could not be delivered: the server is unreachable, or it rejected the event.

    Attributes:
        rejected: True when the server answered with an error (the event is invalid for it).
    """

    def __init__(self, message: str, *, rejected: bool = False) -> None:
        super().__init__(message)
        self.rejected = rejected


class _Sender(Protocol):
    """What :func:`acknowledged` needs of a publisher."""

    def publish(self, event: ev.Event) -> None: ...

    def flush(self, timeout: float | None = None) -> bool: ...

    def status(self) -> dict[str, Any]: ...

    def close(self, timeout: float | None = None) -> bool: ...


def acknowledged(publisher: _Sender, event: ev.Event, url: str, timeout: float) -> Ack:
    """Send ``event`` through ``publisher``, wait for the server's acknowledgement, close it.

    Args:
        publisher: A private publisher, closed before returning.
        event: The event.
        url: Where it sends (for the message of a failure).
        timeout: Seconds it waits (for the message of a failure).

    Returns:
        The acknowledgement: the event's ``seq`` on the server, its ``event_id``, and whether
        the server already knew it.

    Raises:
        DeliveryError: Not acknowledged within ``timeout`` (the message says why), or rejected.
    """
    try:
        publisher.publish(event)
        delivered = publisher.flush()
        status = publisher.status()
    finally:
        publisher.close(0)
    if status["rejected"] or status["invalid"]:
        reason = status["last_rejection"] or "the event is invalid"
        raise DeliveryError(f"the server rejected the event: {reason}", rejected=True)
    if not delivered or status["last_seq"] is None:
        why = status["last_error"] or "no acknowledgement"
        raise DeliveryError(f"no acknowledgement from {url} within {timeout:g}s ({why})")
    return Ack(status["last_seq"], status["last_event_id"], bool(status["duplicates"]))
