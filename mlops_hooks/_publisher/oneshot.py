"""Send one event and wait for its acknowledgement (``mlops-hooks emit``)."""

from __future__ import annotations

from typing import NamedTuple

from mlops_hooks import events as ev

__all__ = ["Ack", "DeliveryError", "deliver"]


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


def deliver(event: ev.Event, *, url: str | None = None, token: str | None = None,
            timeout: float | None = None) -> Ack:
    """Send one event through the publisher and wait for the server's acknowledgement.

    The event takes the same path as ``emit()`` (queue, background thread, WebSocket), on a
    private publisher that is closed before returning; this is what ``mlops-hooks emit`` does.

    Args:
        event: The event.
        url: The server; defaults to ``MLOPS_HOOKS_URL``, else ``ws://127.0.0.1:8001/ws``.
        token: Bearer token; defaults to ``MLOPS_HOOKS_TOKEN``.
        timeout: Seconds to wait; defaults to ``MLOPS_HOOKS_FLUSH_TIMEOUT``, else 5.

    Returns:
        The acknowledgement: the event's ``seq`` on the server, its ``event_id``, and whether
        the server already knew it.

    Raises:
        DeliveryError: Not acknowledged within ``timeout`` (the message says why), or rejected.
        ValueError: A setting is invalid (``url``, ``timeout``, an environment variable).
    """
    from mlops_hooks.publisher import Publisher

    publisher = Publisher(url, token=token, flush_timeout=timeout, backoff_cap=0.5)
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
        raise DeliveryError(f"no acknowledgement from {publisher.settings.url} within "
                            f"{publisher.settings.flush_timeout:g}s ({why})")
    return Ack(status["last_seq"], status["last_event_id"], bool(status["duplicates"]))
