"""Helpers for end-to-end tests against a real ``mlops-hooks serve`` process."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

TIMEOUT = 10.0


async def recv_json(ws: ClientConnection, timeout: float = TIMEOUT) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), timeout))
    return data


async def next_of(ws: ClientConnection, kind: str, timeout: float = TIMEOUT) -> dict[str, Any]:
    """The next message of type ``kind`` (others are skipped)."""
    async with asyncio.timeout(timeout):
        while True:
            message = await recv_json(ws)
            if message["type"] == kind:
                return message


def subscriber(url: str, **kwargs: Any) -> Any:
    return connect(url, compression=None, **kwargs)


def publisher(url: str, token: str | None = None, **kwargs: Any) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    return connect(url, compression=None, additional_headers=headers, **kwargs)


async def publish(ws: ClientConnection, event: dict[str, Any] | str) -> dict[str, Any]:
    await ws.send(event if isinstance(event, str) else json.dumps(event))
    return await recv_json(ws)
