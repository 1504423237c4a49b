"""The backend seam: who numbers events, keeps the ordered stream and the idempotency space.

A backend receives every validated event (:meth:`Backend.publish`), gives it the next ``seq``
of the stream unless its ``event_id`` is already known, and hands each new :class:`Record` to the
``deliver`` callback it was started with, in ``seq`` order, on the event loop. The in-memory
backend does all of that in-process; a Redis backend does it in Redis so that several servers
share one stream (every server's ``deliver`` sees every record, and :attr:`Record.local` says
whether this server is the one that accepted it).

The rest of the server (state, hub, hooks) only consumes records through ``deliver`` and asks
the backend for missed records (:meth:`Backend.replay`).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from mlops_hooks import events as ev

__all__ = ["Backend", "Deliver", "Published", "Record", "coalesce_key", "control", "make_record",
           "text_frame"]


def text_frame(payload: bytes) -> bytes:
    """The server-to-client WebSocket frame carrying ``payload`` as one text message.

    RFC 6455: FIN set, opcode 1 (text), unmasked, no extension (the server never negotiates
    compression), so the bytes are the same for every subscriber.
    """
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    if size < 65536:
        return struct.pack("!BBH", 0x81, 126, size) + payload
    return struct.pack("!BBQ", 0x81, 127, size) + payload


@dataclass(slots=True)
class Record:
    """One message of the outgoing stream, encoded once and shared by every subscriber.

    Records are never changed once made (they are shared by every queue and the replay ring).

    Attributes:
        seq: Position in the stream (``0`` for control messages, which are never replayed).
        type: The message's ``type``.
        key: Coalescing key for superseded state (``None``: always delivered, in order).
        text: The JSON text sent on the wire.
        nbytes: Size of ``text`` in UTF-8 bytes (for queue budgets).
        event: The decoded event (``None`` for control messages).
        local: This server accepted the event (``False``: another server of a fleet did). The
            server-side plugin hooks run only for local records, so once per event in a fleet.
        message: The ASGI ``websocket.send`` message carrying ``text``, built once and handed
            to every subscriber's connection as it is.
        frame: The WebSocket frame carrying ``text`` (:func:`text_frame`), built once and
            written as it is to every connection that takes prebuilt frames.
    """

    seq: int
    type: str
    key: str | None
    text: str
    nbytes: int
    event: ev.Event | None = None
    local: bool = True
    message: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    frame: bytes = field(default=b"", compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.message:
            self.message = {"type": "websocket.send", "text": self.text}
        if not self.frame:
            self.frame = text_frame(self.text.encode())


@dataclass(frozen=True, slots=True)
class Published:
    """What :meth:`Backend.publish` did: the event's ``seq``, and whether it was a duplicate."""

    seq: int
    duplicate: bool = False


Deliver = Callable[[Record], None]


def coalesce_key(event: ev.Event) -> str | None:
    """The key under which ``event`` supersedes older events, or ``None`` if it never does.

    Superseded state: ``training_progress`` per run, ``system_metrics``, ``upload_progress`` per
    file and ``prediction_volume`` per model (unless it reports a milestone). Everything else is
    a lifecycle event, always delivered and in order.
    """
    if isinstance(event, ev.TrainingProgress):
        return "training_progress\x00" + (event.run_id or event.model_name or "")
    if isinstance(event, ev.SystemMetrics):
        return "system_metrics"
    if isinstance(event, ev.UploadProgress):
        return "upload_progress\x00" + event.filename
    if isinstance(event, ev.PredictionVolume) and event.milestone_reached is None:
        return "prediction_volume\x00" + (event.model_id or "")
    return None


def make_record(event: ev.Event, seq: int, *, local: bool = True) -> Record:
    """Stamp ``event`` with ``seq`` and encode it once.

    Args:
        event: A validated event (it is modified: its ``seq`` is set).
        seq: Its position in the stream.
        local: This server accepted it (see :attr:`Record.local`).

    Returns:
        The record every subscriber will receive.
    """
    event.seq = seq
    data = ev.encode(event)
    return Record(seq, event.type, coalesce_key(event), data.decode(), len(data), event, local,
                  {}, text_frame(data))


def control(text: str, kind: str) -> Record:
    """A control message (snapshot, replay, pong, error): never coalesced, never skipped."""
    data = text.encode()
    return Record(0, kind, None, text, len(data), None, True, {}, text_frame(data))


@runtime_checkable
class Backend(Protocol):
    """Sequencing, ordered stream, replay and idempotency for one server (or a fleet)."""

    name: str

    @property
    def last_seq(self) -> int:
        """The highest ``seq`` assigned so far."""
        ...

    async def start(
        self, deliver: Deliver, *, last_seq: int = 0, seen: Iterable[tuple[str, int]] = (),
        origin: str = "",
    ) -> None:
        """Start streaming records to ``deliver``.

        Args:
            deliver: Called once per new record, in ``seq`` order, on the event loop; must not
                block.
            last_seq: The highest ``seq`` known from history (numbering continues after it).
            seen: ``(event_id, seq)`` pairs known from history (idempotency survives restarts).
            origin: This server's identity, the same across its restarts (``""``: a new one
                per start). A shared backend marks the records this server published
                :attr:`Record.local`; an in-process backend publishes nothing else.
        """
        ...

    async def close(self) -> None:
        """Stop streaming and release resources."""
        ...

    async def publish(self, event: ev.Event) -> Published:
        """Sequence ``event`` (or recognise its ``event_id``) and stream it.

        Raises:
            ConnectionError: The backend cannot accept events right now.
        """
        ...

    async def replay(self, after: int, upto: int) -> list[Record] | None:
        """Records with ``after < seq <= upto``, in order; ``None`` if some are no longer kept."""
        ...

    def describe(self) -> dict[str, object]:
        """Facts for ``/healthz`` and ``/metrics`` (name, replay window, ...)."""
        ...
