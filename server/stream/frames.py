"""A way to write prebuilt frames to a connection of uvicorn's sans-I/O WebSocket protocol.

Every subscriber receives the same bytes for an event: the server never negotiates compression,
so the frame (:attr:`~mlops_hooks.server.stream.record.Record.frame`) is built once per event.
:class:`mlops_hooks.server.transport.FrameWebSocketProtocol` offers each accepted connection's
:class:`FrameSink` to the app as the ASGI extension :data:`EXTENSION`
(``scope["extensions"]["mlops_hooks.frames"]["sink"]``); the hub then writes queued frames to
the transport synchronously, several per write, instead of one awaited ASGI ``websocket.send``
(and one ``send()`` system call) per message and subscriber.
Under any other ASGI server the extension is absent and the hub uses ``send`` as usual.

Flow control is uvicorn's: :meth:`FrameSink.ready` is false while the transport's buffer is over
its high-water mark (the protocol's ``writable`` event is clear), so messages wait in the
subscriber's bounded queue, where coalescing and the 4008 budget apply, not in the transport.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState
from websockets.protocol import State

__all__ = ["EXTENSION", "FrameSink", "frame_sink"]

#: Name of the ASGI extension carrying a connection's :class:`FrameSink`.
EXTENSION = "mlops_hooks.frames"


class FrameSink:
    """Writes complete WebSocket frames to one accepted connection, without waiting.

    Args:
        protocol: The connection's uvicorn protocol.
    """

    __slots__ = ("_protocol",)

    def __init__(self, protocol: WebSocketsSansIOProtocol) -> None:
        self._protocol = protocol

    def ready(self) -> bool:
        """The connection is open and its transport takes more data now."""
        protocol = self._protocol
        return (protocol.writable.is_set() and protocol.conn.state is State.OPEN
                and not protocol.close_sent and not protocol.transport.is_closing())

    def write(self, data: bytes) -> None:
        """Write whole frames (call only when :meth:`ready`)."""
        self._protocol.transport.write(data)

    async def drained(self) -> bool:
        """Wait until the transport takes data again; ``False`` once the connection is closing."""
        await self._protocol.writable.wait()
        return self.ready()

    def close(self, code: int, reason: str, grace: float) -> None:
        """Close the connection now, whether or not the client reads.

        The close frame goes behind what the transport holds, without waiting for it to
        drain (an awaited ASGI ``websocket.close`` waits, so a client that had stopped reading
        never got the code): a client that reads again within ``grace`` seconds receives the
        rest of its data, then the close frame. The connection ends when the client answers
        the close; ``grace`` seconds later it is aborted if the client still has data to read
        (freeing it), or closed.

        Args:
            code: The close code.
            reason: The close reason.
            grace: Seconds before the connection is aborted.
        """
        protocol = self._protocol
        if protocol.close_sent or protocol.transport.is_closing():
            return
        try:
            protocol.conn.send_close(code, reason)
        except InvalidState:  # pragma: no cover - the connection is already closing
            return
        protocol.stop_keepalive()
        protocol.queue.put_nowait({"type": "websocket.disconnect", "code": code,
                                   "reason": reason})
        protocol.transport.write(b"".join(protocol.conn.data_to_send()))
        protocol.close_sent = True
        if protocol.read_paused:  # read the client's answer to the close
            protocol.read_paused = False
            protocol.transport.resume_reading()
        if protocol.close_timer is not None:
            protocol.close_timer.cancel()
        protocol.close_timer = protocol.loop.call_later(grace, _expire, protocol.transport)


def _expire(transport: Any) -> None:
    """End a closed connection whose client did not answer: gracefully if all was read."""
    if transport.get_write_buffer_size():
        transport.abort()  # a close() would wait for the client to read it all, for ever
    else:
        transport.close()


def frame_sink(scope: Any) -> FrameSink | None:
    """The connection's :class:`FrameSink`, when the server offers one."""
    extension = scope.get("extensions", {}).get(EXTENSION)
    sink = extension.get("sink") if isinstance(extension, dict) else None
    return sink if isinstance(sink, FrameSink) else None

