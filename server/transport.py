"""uvicorn's protocols with the limits a hostile or careless client meets at the socket.

uvicorn serves the app; this module configures and subclasses it where its own knobs do not
reach (each addition says which knob falls short):

* **Incomplete requests.** uvicorn arms ``timeout_keep_alive`` only after a response, and
  disarms it at the first byte of the next request, so a connection that never sends a byte
  (or sends one a minute) stays open for ever. :class:`HttpProtocol` gives every request
  :attr:`Limits.request_timeout` seconds to arrive whole (request line and headers, which
  includes a WebSocket handshake's), and a request body as long between two reads.
* **Open connections.** ``limit_concurrency`` answers 503 to requests that arrive over the
  limit but accepts (and keeps) every connection, so silent ones still exhaust the process's
  file descriptors. :class:`HttpProtocol` counts every open TCP connection (HTTP and
  WebSocket); past :attr:`Limits.max_open` it closes the connection that has waited longest
  for its request (a real client sends its request at once) or, when none is waiting, the
  new one. :func:`descriptor_budget` keeps that cap below the descriptor limit.
* **Accept errors.** asyncio logs a traceback for every failed ``accept()`` of a batch
  (``EMFILE``); :class:`AcceptErrors` turns them into one line per :data:`REPORT_INTERVAL`.
* **Closes clients see.** :class:`FrameWebSocketProtocol` (uvicorn's ``websockets-sansio``
  protocol plus the frame sink) closes after a protocol error (1002, 1007, 1009) as RFC 6455
  asks: close frame, then EOF, then it reads and discards what the client still sends until
  the client's EOF (or :attr:`Limits.linger`), so the kernel never answers unread bytes with a
  reset. A refused handshake with the wrong ``Sec-WebSocket-Version`` names version 13.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState

from mlops_hooks.protocol import CloseCode
from mlops_hooks.server.stream.frames import EXTENSION, FrameSink

__all__ = ["BACKLOG", "REPORT_INTERVAL", "AcceptErrors", "FrameWebSocketProtocol",
           "HttpProtocol", "Limits", "accept_batch", "descriptor_budget", "raise_descriptor_limit"]

log = logging.getLogger("mlops_hooks.server")

#: Seconds between two log lines about the same kind of client misbehaviour.
REPORT_INTERVAL = 10.0
#: uvicorn's listen backlog, kept where descriptors are plenty (a short listen queue drops
#: connections under bursts). asyncio accepts up to the backlog per wake-up, so under a low
#: descriptor limit it is shortened and part of it kept free (:func:`descriptor_budget`).
BACKLOG = 2048
#: Descriptors kept free for everything but connections (history, uploads, Redis, psutil).
RESERVED_DESCRIPTORS = 64


class Throttle:
    """Lets one event through per :data:`REPORT_INTERVAL` and counts the ones held back."""

    __slots__ = ("_last", "held")

    def __init__(self) -> None:
        self._last = -REPORT_INTERVAL
        self.held = 0

    def ready(self) -> bool:
        """Whether to report now (``held`` then says how many were not reported since)."""
        now = time.monotonic()
        if now - self._last < REPORT_INTERVAL:
            self.held += 1
            return False
        self._last = now
        return True


class Limits(ServerState):
    """uvicorn's state shared by all connections, plus the limits its protocols apply.

    Args:
        max_open: Cap on open TCP connections (HTTP and WebSocket).
        request_timeout: Seconds for a request to arrive whole (and longest pause in a body).
        linger: Seconds to keep reading after a protocol-error close, for the client's EOF.
    """

    def __init__(self, *, max_open: int, request_timeout: float, linger: float) -> None:
        super().__init__()
        self.max_open = max_open
        self.request_timeout = request_timeout
        self.linger = linger
        #: Connections waiting for their request, oldest first (a dict keeps the order).
        self.waiting: dict[HttpProtocol, None] = {}
        self.shed_report = Throttle()
        self.invalid_report = Throttle()


class HttpProtocol(H11Protocol):
    """uvicorn's h11 protocol with a request deadline and the cap on open connections."""

    _deadline: asyncio.TimerHandle | None = None
    #: The request scope current when the deadline was armed: a new one means the head arrived.
    _awaited: Any = None
    #: Whether requests are watched (not after the hand-over to the WebSocket protocol).
    _watching = False

    @property
    def _limits(self) -> Limits | None:
        state = self.server_state
        return state if isinstance(state, Limits) else None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Admit the connection (shedding one when over the cap) and start its deadline."""
        super().connection_made(transport)
        limits = self._limits
        if limits is None:
            return
        if len(self.connections) > limits.max_open:
            oldest = next(iter(limits.waiting), None)
            if limits.shed_report.ready():
                log.warning("mlops-hooks: %d connections open (the cap); closing the ones "
                            "waiting longest for their request (%d since the last report)",
                            limits.max_open, limits.shed_report.held + 1)
                limits.shed_report.held = 0
            if oldest is None:
                transport.close()
                return
            oldest._give_up()
        self._await_request()

    def _await_request(self) -> None:
        limits = self._limits
        if limits is None or self.transport.is_closing():
            return
        limits.waiting[self] = None
        self._awaited = self.scope
        self._watching = True
        self._arm(limits.request_timeout)

    def _arm(self, delay: float) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = self.loop.call_later(delay, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        limits = self._limits
        if limits is not None:
            limits.waiting.pop(self, None)

    def _give_up(self) -> None:
        self._disarm()
        self.transport.close()

    def _expired(self) -> None:
        """The deadline passed: close unless the request (or its body) is moving."""
        self._deadline = None
        limits = self._limits
        if limits is None or not self._watching or self.transport.is_closing():
            return
        if self.scope is not self._awaited and self.conn.their_state is h11.SEND_BODY \
                and self.flow.read_paused:
            self._arm(limits.request_timeout)  # the app is not reading: not the client's fault
            return
        if self.scope is self._awaited or self.conn.their_state is h11.SEND_BODY:
            self._give_up()

    def data_received(self, data: bytes) -> None:
        """Feed h11; the deadline ends with the request's head and restarts per body read."""
        super().data_received(data)
        limits = self._limits
        if limits is None or not self._watching or self.transport.is_closing():
            return
        if self.scope is not self._awaited:  # the head has arrived
            limits.waiting.pop(self, None)
            if self.conn.their_state is h11.SEND_BODY:
                self._arm(limits.request_timeout)
            elif self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

    def on_response_complete(self) -> None:
        """Wait for the next request on a kept-alive connection, under the same deadline."""
        self._disarm()
        self._awaited = self.scope
        super().on_response_complete()
        if self.scope is self._awaited:
            self._await_request()

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        """Hand over to the WebSocket protocol: the request has arrived whole."""
        self._disarm()
        self._watching = False
        super().handle_websocket_upgrade(event)

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the connection."""
        self._disarm()
        super().connection_lost(exc)


class FrameWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's ``websockets-sansio`` protocol that offers a :class:`FrameSink` and closes cleanly.

    The sink is offered when no WebSocket extension was negotiated (frames are then the same
    for every connection) and uvicorn does write flow control (its ``writable`` event, since
    0.52.1); otherwise the app is served through ``send`` alone.
    """

    def __init__(self, config: Any, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._limits = server_state if isinstance(server_state, Limits) else None
        self._discarding = False

    def handle_connect(self, event: Any) -> None:
        """Accept the handshake as uvicorn does, then offer the sink.

        A refusal for a ``Sec-WebSocket-Version`` other than 13 carries
        ``Sec-WebSocket-Version: 13`` (RFC 6455, 4.4): the response is written here, before
        uvicorn's, which websockets would send without it.
        """
        if event.headers.get("Sec-WebSocket-Version") not in (None, "13"):
            response = self.conn.accept(event)
            if response.status_code != 101:
                response.headers["Sec-WebSocket-Version"] = "13"
                self.request = event
                self.response = response
                self.handshake_initiated = self.handshake_complete = self.close_sent = True
                self.conn.send_response(response)
                self.transport.write(b"".join(self.conn.data_to_send()))
                self.transport.close()
                return
        super().handle_connect(event)
        scope: Any = getattr(self, "scope", None)
        if scope is not None and self.response.status_code == 101 and \
                not self.conn.extensions and \
                isinstance(getattr(self, "writable", None), asyncio.Event):
            scope["extensions"][EXTENSION] = {"sink": FrameSink(self)}

    def data_received(self, data: bytes) -> None:
        """Feed the connection, or discard what follows a protocol-error close."""
        if not self._discarding:
            super().data_received(data)

    def send_receive_event_to_app(self) -> None:
        """Hand a whole message to the app; invalid UTF-8 fails the connection with 1007.

        uvicorn logs a traceback for each such message; this logs one line per
        :data:`REPORT_INTERVAL` (with how many were held back).
        """
        if self.curr_msg_data_type != "text" or self.close_sent:
            super().send_receive_event_to_app()
            return
        data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
        self.frames = []
        try:
            text = data.decode()
        except UnicodeDecodeError as exc:
            state = self._limits
            if state is None or state.invalid_report.ready():
                held = state.invalid_report.held if state is not None else 0
                log.warning("mlops-hooks: closed a WebSocket from %s with 1007: invalid UTF-8 "
                            "at byte %d (%d more since the last report)",
                            self.client[0] if self.client else "?", exc.start, held)
                if state is not None:
                    state.invalid_report.held = 0
            self.conn.fail(CloseCode.INVALID_DATA, "invalid UTF-8 in a text message")
            self.handle_parser_exception()
            return
        message: Any = {"type": "websocket.receive", "text": text}
        self.queue.put_nowait(message)
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    def handle_parser_exception(self) -> None:
        """Close after a protocol error without a reset.

        The close frame and EOF go out; what the client still sends is read and discarded
        until its EOF, then the connection closes (after :attr:`Limits.linger` seconds at
        the latest). uvicorn closes at once, so the client's unread bytes made the kernel
        send a reset, and clients reported 1006 or ``ConnectionResetError`` instead of the code.
        """
        close = self.conn.close_sent
        code, reason = (close.code, close.reason) if close is not None else (1006, "")
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        output = self.conn.data_to_send()
        self.transport.write(b"".join(output))
        self.close_sent = True
        self._discarding = True
        self.stop_keepalive()
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        if self.conn.eof_sent and self.transport.can_write_eof():
            self.transport.write_eof()
        if self.close_timer is not None:
            self.close_timer.cancel()
        state = self._limits
        linger = state.linger if state is not None else self.close_timeout
        self.close_timer = self.loop.call_later(linger, self.transport.close)



class AcceptErrors(logging.Filter):
    """One short line per :data:`REPORT_INTERVAL` for asyncio's failed ``accept()`` records.

    asyncio reports each failure of a batch of accepts with a traceback (``EMFILE`` once the
    descriptors run out) and retries a second later, so a flood of connections wrote
    megabytes of identical tracebacks per second. The connections themselves are what
    :class:`HttpProtocol` bounds; this keeps the log readable if the limit is reached anyway
    (e.g. descriptors taken by something else in the process).
    """

    def __init__(self) -> None:
        super().__init__()
        self._throttle = Throttle()

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep other records; rewrite or drop the accept errors."""
        if not str(record.msg).startswith("socket.accept() out of system resource"):
            return True
        if not self._throttle.ready():
            return False
        error = record.exc_info[1] if record.exc_info else None
        record.msg = ("mlops-hooks: cannot accept connections: %s (%d more since the last "
                      "report); lower --max-open-connections or raise the descriptor limit")
        record.args = (error, self._throttle.held)
        record.exc_info = None
        record.exc_text = None
        self._throttle.held = 0
        return True


def raise_descriptor_limit() -> int | None:
    """Raise this process's soft limit on open files to the hard limit, as servers do.

    Returns:
        The soft limit now in force, or ``None`` where the platform has none (Windows).
    """
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return None if soft == resource.RLIM_INFINITY else soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):  # pragma: no cover - e.g. macOS caps below the hard limit
        return soft
    return target


def _descriptors_in_use() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:  # pragma: no cover - no /proc (macOS)
        return 32


def accept_batch(limit: int | None) -> int:
    """The listen backlog (asyncio's accept batch) for a descriptor ``limit``."""
    return BACKLOG if limit is None else min(BACKLOG, max(128, limit // 4))


def descriptor_budget(limit: int | None, requested: int | None) -> int:
    """The cap on open connections: ``requested``, kept below the descriptor ``limit``.

    What the process holds already, :data:`RESERVED_DESCRIPTORS` and part of an accept
    batch (:func:`accept_batch`, at most a quarter of the limit) stay free.

    Args:
        limit: The soft descriptor limit (``None``: no limit known).
        requested: The configured cap (``None``: as many as the limit allows).
    """
    if limit is None:
        return requested if requested is not None else 10_000
    batch = min(accept_batch(limit), limit // 4)
    room = max(1, limit - _descriptors_in_use() - RESERVED_DESCRIPTORS - batch)
    return room if requested is None else min(requested, room)

