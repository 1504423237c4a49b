"""Baseline servers for ``fanout.py``, run as ``python _fanout_apps.py naive|broadcaster PORT``.

Both speak the benchmark's tiny protocol: subscribers connect to ``/ws`` and receive every
published text; a publisher sends texts to ``/ws/publish`` and gets ``{"type": "ack"}`` for
each. They run under the same uvicorn settings as ``mlops-hooks serve``.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import uvicorn
from broadcaster import Broadcast
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

ACK = '{"type":"ack"}'


def naive_app() -> Starlette:
    """The textbook loop: ``for ws in clients: await ws.send_text(...)`` inside the publisher."""
    clients: set[WebSocket] = set()

    async def subscribe(ws: WebSocket) -> None:
        await ws.accept()
        clients.add(ws)
        try:
            while True:
                await ws.receive_text()
        except WebSocketDisconnect:
            pass
        finally:
            clients.discard(ws)

    async def publish(ws: WebSocket) -> None:
        await ws.accept()
        try:
            while True:
                text = await ws.receive_text()
                for client in list(clients):
                    try:
                        await client.send_text(text)
                    except Exception:
                        clients.discard(client)
                await ws.send_text(ACK)
        except WebSocketDisconnect:
            pass

    return Starlette(routes=[WebSocketRoute("/ws", subscribe),
                             WebSocketRoute("/ws/publish", publish)])


def broadcaster_app() -> Starlette:
    """encode/broadcaster's memory backend: one unbounded queue per subscriber."""
    broadcast = Broadcast("memory://")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await broadcast.connect()
        yield
        await broadcast.disconnect()

    async def subscribe(ws: WebSocket) -> None:
        await ws.accept()

        async def drain_client() -> None:
            with suppress(WebSocketDisconnect):
                while True:
                    await ws.receive_text()

        reader = asyncio.create_task(drain_client())
        try:
            async with broadcast.subscribe("events") as subscriber:
                async for event in subscriber:  # type: ignore[union-attr]
                    if reader.done():
                        break
                    await ws.send_text(event.message)
        except Exception:
            pass
        finally:
            reader.cancel()

    async def publish(ws: WebSocket) -> None:
        await ws.accept()
        try:
            while True:
                text = await ws.receive_text()
                await broadcast.publish("events", text)
                await ws.send_text(ACK)
        except WebSocketDisconnect:
            pass

    return Starlette(routes=[WebSocketRoute("/ws", subscribe),
                             WebSocketRoute("/ws/publish", publish)], lifespan=lifespan)


def main() -> None:
    kind, port = sys.argv[1], int(sys.argv[2])
    app = naive_app() if kind == "naive" else broadcaster_app()
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", ws="websockets-sansio",
                ws_per_message_deflate=False, ws_max_size=64 * 1024, lifespan="on")


if __name__ == "__main__":
    main()
