"""Publishing: ``WS /ws/publish`` (one event per message, one reply each), ``POST /api/events``."""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress
from typing import TYPE_CHECKING, Any

import msgspec
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.websockets import WebSocket, WebSocketDisconnect

from mlops_hooks import events as ev
from mlops_hooks.protocol import MAX_MESSAGE_BYTES, CloseCode, problem
from mlops_hooks.server.config import MAX_BODY_BYTES
from mlops_hooks.server.endpoints._ws import deny, message_problem
from mlops_hooks.server.endpoints.rest import write_refused
from mlops_hooks.server.ingest import Outcome, client_refusal
from mlops_hooks.server.ops.controls import Link
from mlops_hooks.server.ops.probe import PROBE_HEADER
from mlops_hooks.server.security import Denied
from mlops_hooks.server.state.liveness import Carrier
from mlops_hooks.server.stream.frames import FrameSink, frame_sink
from mlops_hooks.server.stream.record import text_frame

if TYPE_CHECKING:
    from mlops_hooks.server.core import Core

__all__ = ["post_events", "publish_ws", "read_body"]

#: Messages of one ``/ws/publish`` connection in progress: a publisher pipelines its events;
#: they are handled in order without waiting for each other's Redis round trip, and one group
#: commit covers many acknowledgements.
PIPELINE = 256
#: Close code and reason after refusing an event the backend could not store (1013: try again
#: later); the messages received behind it were not handled.
REFUSED_CLOSE = (CloseCode.TRY_AGAIN_LATER,
                 "the server cannot store events right now: reconnect and resend from the "
                 "refused event")
_Handling = asyncio.Queue["asyncio.Task[Outcome | None] | None"]
log = logging.getLogger("mlops_hooks.server")
#: Seconds a ``POST /api/events`` refused with 503 (backend unavailable) is told to wait.
RETRY_AFTER = 1
#: ``POST /api/events`` hands the event loop back after this many events of one request, so a
#: 1 MiB body of ~37,000 small events never holds up other requests and connections.
YIELD_EVERY = 256
_raw_list = msgspec.json.Decoder(list[msgspec.Raw]).decode
#: What sending to a client that has left raises.
_GONE = (WebSocketDisconnect, OSError, RuntimeError)


class _Refusal:
    """Whether an event of this connection was refused because the backend could not store it.

    Set in the same step as the refusal (no wait in between), so every message whose handling
    starts later sees it: nothing received behind a refused event is stored before it.
    """

    __slots__ = ("refused",)

    def __init__(self) -> None:
        self.refused = False


async def _handle(core: Core, text: str, refusal: _Refusal, link: Link,
                  carrier: Carrier | None = None) -> Outcome | None:
    if refusal.refused:  # behind a refused event: not handled (the publisher resends it)
        return None
    reply = await core.ingest.handle_message(text, durable=False, carrier=carrier)
    if reply.retry:
        refusal.refused = True
    link.note(reply.run_id)  # the run this connection carries: where its Stop goes
    return reply


async def _next_batch(handling: _Handling, first: asyncio.Task[Outcome | None]
                      ) -> tuple[list[Outcome | BaseException], asyncio.Task[Outcome | None] | None,
                                 bool]:
    """``first``'s outcome and those of the tasks queued behind it that are already done.

    Returns:
        The outcomes in order (a reply, or what a task raised), the first task not done yet
        (``None``: none), and whether the end of the connection's messages was reached.
    """
    outcomes: list[Outcome | BaseException] = []
    task: asyncio.Task[Outcome | None] | None = first
    while task is not None:
        try:
            reply = await task
        except Exception as exc:  # a bug: reported by the caller, in its place in the order
            outcomes.append(exc)
        else:
            if reply is not None:
                outcomes.append(reply)
        try:
            task = handling.get_nowait()
        except asyncio.QueueEmpty:
            return outcomes, None, False
        if task is None:
            return outcomes, None, True
        if not task.done():
            return outcomes, task, False
    return outcomes, None, False  # pragma: no cover - the loop returns


async def _write(ws: WebSocket, sink: FrameSink | None, texts: list[str]) -> None:
    """Send ``texts``, in one write of frames where the connection takes them.

    Raises:
        WebSocketDisconnect: The client left.
    """
    if not texts:
        return
    if sink is None:
        for text in texts:
            await ws.send_text(text)
        return
    if not sink.ready() and not await sink.drained():
        raise WebSocketDisconnect(1006)
    sink.write(b"".join([text_frame(text.encode()) for text in texts]))


async def _send_replies(ws: WebSocket, handling: _Handling, core: Core,
                        sink: FrameSink | None = None) -> None:
    """Send each reply in order, once its event is stored; keep draining if the client left.

    The replies of the messages already handled go out together, after one wait for the
    commit that covers them all. After a refusal (``retry: true``) nothing more is sent: the
    connection is closed with :data:`REFUSED_CLOSE`, and the publisher resends from the
    refused event, in order.
    """
    sending = True
    task = await handling.get()
    while task is not None:
        outcomes, task, last = await _next_batch(handling, task)
        if sending and outcomes:
            sending = await _answer(ws, sink, core, outcomes)
        if last:
            return
        if task is None:
            task = await handling.get()


async def _answer(ws: WebSocket, sink: FrameSink | None, core: Core,
                  outcomes: list[Outcome | BaseException]) -> bool:
    """Send the replies of ``outcomes`` once stored; ``False`` when nothing more is to be sent."""
    await core.ingest.committed()  # one commit covers every event handled so far
    texts: list[str] = []
    try:
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                await _write(ws, sink, texts)
                log.error("mlops-hooks: handling a /ws/publish message failed",
                          exc_info=outcome)
                with suppress(Exception):
                    await ws.close(CloseCode.INTERNAL_ERROR, "internal error: reconnect and resend")
                return False
            texts.append(outcome.text)
            if outcome.retry:
                await _write(ws, sink, texts)
                await ws.close(*REFUSED_CLOSE)
                return False
        await _write(ws, sink, texts)
    except _GONE as exc:  # the client left with replies due: nothing to report
        log.debug("mlops-hooks: a publisher left with replies pending (%r)", exc)
        return False
    return True


async def publish_ws(ws: WebSocket) -> None:
    """The ``/ws/publish`` endpoint: every message gets exactly one reply, in order."""
    core: Core = ws.app.state.core
    probe = core.probe_secret is not None and ws.headers.get(PROBE_HEADER) == core.probe_secret
    try:
        core.guard.check_host(ws.headers)
        core.guard.check_origin(ws.headers)
        core.guard.check_publisher(ws.headers)
        if not probe:
            core.guard.check_capacity(core.publishers, publisher=True)
    except Denied as denied:
        core.metrics.rejected[f"handshake_{denied.status}"] += 1
        await deny(ws, denied)
        return
    await ws.accept()
    counted = 0 if probe else 1
    core.publishers += counted
    carrier = core.watch.connect()  # the runs its heartbeats list (liveness)
    loop = asyncio.get_running_loop()
    refusal = _Refusal()
    handling: _Handling = asyncio.Queue(PIPELINE)
    link = core.controls.attach(ws, frame_sink(ws.scope))  # Stop requests go down this socket
    writer = loop.create_task(_send_replies(ws, handling, core, link.sink))
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            problem = message_problem(message)
            if problem is not None:
                core.metrics.rejected["bad_frame"] += 1
                await handling.put(None)  # the replies already due go out before the close
                await writer
                with suppress(*_GONE):  # the client left, or the writer closed already
                    await ws.close(*problem)
                return
            # Tasks start in creation order and queue their event before their first wait, so
            # the stream order is the message order.
            await handling.put(loop.create_task(_handle(core, message["text"], refusal, link,
                                                        carrier)))
    finally:
        core.publishers -= counted
        core.watch.disconnect(carrier)
        core.controls.detach(link)
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
        while not handling.empty():  # messages whose reply can no longer be sent
            task = handling.get_nowait()
            if task is not None:
                await asyncio.gather(task, return_exceptions=True)


async def read_body(request: Request, limit: int) -> bytes | None:
    """The request body, or ``None`` as soon as it grows over ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _oversize_event(body: bytes) -> tuple[int, int] | None:
    """The index and size of the first event over :data:`MAX_MESSAGE_BYTES` in ``body``.

    ``None`` when none is (or when the body is not a JSON array of values: decoding it then
    reports the problem).
    """
    if body.lstrip()[:1] != b"[":
        return (0, len(body)) if len(body) > MAX_MESSAGE_BYTES else None
    if len(body) <= MAX_MESSAGE_BYTES:
        return None
    try:
        items = _raw_list(body)
    except (msgspec.DecodeError, RecursionError):
        return None
    for i, item in enumerate(items):
        if len(item) > MAX_MESSAGE_BYTES:
            return i, len(item)
    return None


def _error(status: int, error: str, headers: dict[str, str] | None = None,
           **extra: Any) -> JSONResponse:
    return JSONResponse(problem(error, **extra), status_code=status, headers=headers)


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/")
                                            and media.endswith("+json"))


async def post_events(request: Request) -> Response:
    """``POST /api/events``: one event or a JSON array; all or nothing."""
    core: Core = request.app.state.core
    denied = write_refused(request)
    if denied is not None:
        return denied
    content_type = request.headers.get("content-type", "")
    if not _is_json(content_type):
        core.metrics.rejected["http_415"] += 1
        return _error(415, "the body must be JSON: send 'Content-Type: application/json', got "
                           f"{content_type or 'no Content-Type'!r}")
    try:
        body = await read_body(request, MAX_BODY_BYTES)
    except ClientDisconnect:  # gone before the whole body arrived: nothing was accepted
        log.debug("mlops-hooks: a client disconnected while sending POST /api/events")
        return Response(status_code=400)  # nobody reads it
    if body is None:
        core.metrics.rejected["http_413"] += 1
        return _error(413, f"the body is over the {MAX_BODY_BYTES // 1024} KiB limit; send "
                           "fewer events per request")
    oversize = _oversize_event(body)
    if oversize is not None:
        core.metrics.rejected["http_413"] += 1
        return _error(413, f"event {oversize[0]} is {oversize[1]} bytes, over the "
                           f"{MAX_MESSAGE_BYTES // 1024} KiB limit of one event (the same as "
                           "on /ws/publish)", field="", index=oversize[0])
    try:
        events = ev.decode_many(body)
    except ev.EventError as exc:
        core.metrics.rejected["invalid_event"] += 1
        field, index = exc.field, 0
        if field.startswith("["):
            head, _, field = field.partition("]")
            index = int(head[1:])
            field = field.lstrip(".")
        return _error(400, str(exc), field=field, index=index)
    refused = next(((i, r) for i, r in enumerate(map(client_refusal, events)) if r), None)
    if refused is not None:
        core.metrics.rejected["invalid_event"] += 1
        return _error(400, refused[1], field="type", index=refused[0])
    seqs: list[int] = []
    duplicates: list[int] = []
    for i, event in enumerate(events):
        if i and i % YIELD_EVERY == 0:
            await asyncio.sleep(0)  # other requests and connections get their turn
        try:
            result = await core.ingest.submit(event, durable=False)
        except ConnectionError as exc:
            core.metrics.rejected["backend_unavailable"] += 1
            await core.ingest.committed()  # the seqs reported as accepted are on disk
            return _error(503, f"the server cannot accept events right now: {exc}",
                          {"Retry-After": str(RETRY_AFTER)}, seqs=seqs, index=i, retry=True)
        seqs.append(result.seq)
        if result.duplicate:
            duplicates.append(i)
    await core.ingest.committed()  # one commit for the whole request, before the answer
    return JSONResponse({"accepted": len(events) - len(duplicates), "seqs": seqs,
                         "duplicates": duplicates})
