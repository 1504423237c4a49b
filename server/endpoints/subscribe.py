"""``WS /ws``: a snapshot (or a replay of what was missed), then live events in ``seq`` order.

Query parameters: ``since=SEQ`` (replay after a reconnect), ``types=a,b`` (filter by event
type), ``token=T`` (subscriber token). Client messages: ``{"type": "ping", "id": X}`` gets a
``pong``; anything else gets an ``error``; binary frames close with 1003, oversize with 1009
(:class:`mlops_hooks.protocol.CloseCode`).
"""

from __future__ import annotations

import asyncio
from contextlib import suppress
from typing import TYPE_CHECKING, Any

import msgspec
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from mlops_hooks import events as ev
from mlops_hooks import protocol
from mlops_hooks.server.endpoints._ws import deny, message_problem
from mlops_hooks.server.security import Denied
from mlops_hooks.server.stream.frames import FrameSink, frame_sink
from mlops_hooks.server.stream.hub import Subscriber
from mlops_hooks.server.stream.record import control

if TYPE_CHECKING:
    from mlops_hooks.server.core import Core

__all__ = ["Subscribe", "parse_subscription", "subscribe"]

_encode = msgspec.json.Encoder().encode
_decode_any = msgspec.json.Decoder().decode


def parse_subscription(query: Any) -> tuple[int | None, frozenset[str] | None]:
    """Read ``since`` and ``types`` from the query string.

    Raises:
        Denied: 400 naming the bad parameter and what it accepts.
    """
    since: int | None = None
    raw = query.get("since")
    if raw is not None and raw != "":
        try:
            since = int(raw)
        except ValueError:
            since = -1
        if since < 0:
            raise Denied(400, f"since must be a non-negative integer (a seq), got {raw!r}")
    types: frozenset[str] | None = None
    raw_types = query.get("types")
    if raw_types:
        names = [t.strip() for t in raw_types.split(",") if t.strip()]
        if not names:  # ",,," would be a subscription that can never receive an event
            raise Denied(400, f"types: no event type named in {raw_types!r}; name one or more "
                              f"of {', '.join(ev.ALL_EVENT_CLASSES)}, or leave types out for all")
        unknown = [t for t in names if t not in ev.ALL_EVENT_CLASSES]
        if unknown:
            raise Denied(400, f"types: unknown event type(s) {', '.join(map(repr, unknown))}; "
                              f"known: {', '.join(ev.ALL_EVENT_CLASSES)}")
        types = frozenset(names)
    return since, types


async def _prime(core: Core, sub: Subscriber, since: int | None,
                 types: frozenset[str] | None) -> None:
    upto = core.state.seq
    if since is not None and since <= upto:
        records = await core.backend.replay(since, upto)
        if records is not None:
            if types is not None:
                records = [r for r in records if r.type in types]
            records = sub.coalesce(records)
            size = sum(r.nbytes for r in records)
            if size <= core.hub.max_bytes // 2 and len(records) <= core.hub.max_events // 2:
                header = _encode({"type": "replay", "from": since + 1, "to": upto,
                                  "count": len(records)}).decode()
                sub.prime([control(header, "replay"), *records], since)
                return
    snapshot = _encode(core.state.snapshot(core.connections)).decode()
    # Bounded (state.summary), so it counts against the subscriber's byte budget.
    sub.prime([control(snapshot, "snapshot")], core.state.seq, counted=True)


async def _read(ws: WebSocket, sub: Subscriber, core: Core) -> tuple[int, str] | None:
    """Answer client messages until the client leaves (``None``) or breaks the rules."""
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return None
        problem = message_problem(message)
        if problem is not None:
            core.metrics.rejected["bad_frame"] += 1
            return problem
        try:
            data = _decode_any(message["text"])
        except (msgspec.DecodeError, RecursionError):  # not JSON, or nested past the limit
            data = None
        if isinstance(data, dict) and data.get("type") == "ping":
            sub.push(control(protocol.pong(data.get("id")), "pong"))
        else:
            core.metrics.rejected["bad_subscriber_message"] += 1
            sub.push(control(protocol.error(
                'subscribers may only send {"type": "ping", "id": ...}; '
                "events are published on /ws/publish or POST /api/events"), "error"))


class Subscribe:
    """The ``/ws`` endpoint as an ASGI app.

    Under ``mlops-hooks serve`` the hub writes each record's prebuilt frame to the connection's
    :class:`~mlops_hooks.server.stream.frames.FrameSink`; under another ASGI server it hands the
    record's prebuilt ASGI message to the connection's ``send``: no per-delivery wrapper
    objects either way, one shared frame and one shared dict per event.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one subscriber."""
        await subscribe(WebSocket(scope, receive=receive, send=send), send, frame_sink(scope))


async def subscribe(ws: WebSocket, send: Send, sink: FrameSink | None = None) -> None:
    """Serve one subscriber on ``ws``; events are written to ``sink``, else with ``send``."""
    core: Core = ws.app.state.core
    try:
        core.guard.check_host(ws.headers)
        core.guard.check_origin(ws.headers)
        core.guard.check_subscriber(ws.headers, ws.query_params)
        core.guard.check_capacity(len(core.hub))
        since, types = parse_subscription(ws.query_params)
    except Denied as denied:
        core.metrics.rejected[f"handshake_{denied.status}"] += 1
        await deny(ws, denied)
        return
    await ws.accept()
    sub = core.hub.add(send, types, sink)
    reader: asyncio.Task[tuple[int, str] | None] | None = None
    close: tuple[int, str] | None = None
    try:
        await _prime(core, sub, since, types)
        writer = sub.start()
        reader = asyncio.get_running_loop().create_task(_read(ws, sub, core))
        await asyncio.wait({writer, reader}, return_when=asyncio.FIRST_COMPLETED)
        if reader.done() and not reader.cancelled() and reader.exception() is None:
            close = reader.result()
    finally:
        if reader is not None and not reader.done():
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        elif reader is not None and not reader.cancelled():
            reader.exception()  # retrieved: a client that vanished mid-read
        await core.hub.remove(sub)
    if sub.slow:
        close = (protocol.CloseCode.SLOW_CONSUMER, protocol.slow_reason(sub.last_seq))
    if close is None:
        return
    if sink is not None:  # the close frame goes out now, behind what the client has not read
        sink.close(*close, core.config.slow_close_timeout)
        return
    with suppress(Exception):  # the client is gone or never reads again
        await asyncio.wait_for(ws.close(*close), core.config.slow_close_timeout)
