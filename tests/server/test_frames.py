"""Prebuilt frames and the uvicorn protocol offering a frame sink (in-process, fake transport)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import uvicorn
from uvicorn.server import ServerState
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.uri import parse_uri

from mlops_hooks.server.stream.frames import EXTENSION, FrameSink, frame_sink
from mlops_hooks.server.stream.record import control, text_frame
from mlops_hooks.server.transport import FrameWebSocketProtocol


@pytest.mark.parametrize("size", [0, 1, 125, 126, 1000, 65535, 65536, 200_000])
def test_text_frame_is_what_websockets_would_send(size):
    payload = b"x" * size
    assert text_frame(payload) == Frame(Opcode.TEXT, payload).serialize(mask=False, extensions=[])


def test_records_carry_their_frame():
    record = control('{"type":"pong","id":"é"}', "pong")
    assert record.frame == text_frame(record.text.encode())
    assert record.message == {"type": "websocket.send", "text": record.text}


class Transport(asyncio.Transport):
    """Collects what the protocol writes; reports the buffer full on demand."""

    def __init__(self) -> None:
        super().__init__()
        self.data = bytearray()
        self.closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8001), "peername": ("127.0.0.1", 50000)}.get(
            name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.data += data

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def _connect(app: Any, deflate: bool = False) -> tuple[Any, Transport, ClientProtocol]:
    config = uvicorn.Config(app, ws=FrameWebSocketProtocol, ws_per_message_deflate=deflate,
                            lifespan="off", log_level="error")
    config.load()
    protocol = FrameWebSocketProtocol(config, ServerState(), {})
    transport = Transport()
    protocol.connection_made(transport)
    client = ClientProtocol(parse_uri("ws://127.0.0.1:8001/ws"))
    request = client.connect()
    if deflate:
        request.headers["Sec-WebSocket-Extensions"] = "permessage-deflate"
    client.send_request(request)
    protocol.data_received(b"".join(client.data_to_send()))
    return protocol, transport, client


async def _until(check: Any, timeout: float = 30.0) -> None:
    """Let the protocol's tasks run until ``check()`` holds (however slowly the loop runs)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.001)


def test_the_protocol_offers_a_sink_that_writes_frames_and_follows_flow_control():
    seen: dict[str, Any] = {}
    done = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        sink = frame_sink(scope)
        seen["sink"] = sink
        assert isinstance(sink, FrameSink)
        assert sink.ready()
        sink.write(text_frame(b'{"n":1}') + text_frame(b'{"n":2}'))
        await done.wait()

    async def scenario() -> None:
        protocol, transport, client = _connect(app)
        await _until(lambda: "sink" in seen)  # the app wrote its frames in the same step
        client.receive_data(bytes(transport.data))
        events = client.events_received()
        assert [e.data for e in events[1:]] == [b'{"n":1}', b'{"n":2}']  # after the response
        sink = seen["sink"]
        protocol.pause_writing()  # the transport's buffer passed its high-water mark
        assert not sink.ready()
        waiter = asyncio.ensure_future(sink.drained())
        await asyncio.sleep(0)
        assert not waiter.done()
        protocol.resume_writing()
        assert await waiter is True and sink.ready()
        protocol.connection_lost(None)  # a lost connection: the sink stops taking frames
        assert not sink.ready() and await sink.drained() is False
        done.set()
        await asyncio.sleep(0.01)

    asyncio.run(scenario())


def test_no_sink_when_compression_is_negotiated():
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        seen["extensions"] = dict(scope["extensions"])

    async def scenario() -> None:
        _connect(app, deflate=True)
        await _until(lambda: "extensions" in seen)

    asyncio.run(scenario())
    assert EXTENSION not in seen["extensions"]
    assert frame_sink({"extensions": {EXTENSION: {"sink": object()}}}) is None
    assert frame_sink({"type": "websocket"}) is None
