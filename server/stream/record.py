"""The stream's unit: a :class:`Record`, encoded once and shared by every subscriber.

A record carries an event's JSON text, its ASGI ``websocket.send`` message and its WebSocket
frame, all built once (:func:`make_record`, :func:`control`) and then shared, unchanged, by
every subscriber's queue and the replay ring. Backends make records; the hub delivers them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from mlops_hooks import events as ev
from mlops_hooks.server.stream.coalesce import coalesce_key

__all__ = ["Record", "control", "make_record", "text_frame"]


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
