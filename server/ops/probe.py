"""A loopback probe: real round trips through the server's own WebSocket and HTTP stacks.

The monitor reports ``ws_response_time_ms`` as the round trip of an application-level ping on
a WebSocket kept open to ``/ws/publish``, and makes one ``GET /healthz`` per sample so that
``api_response_time_ms`` (timed by the server for every API request) always has a fresh value.
The probe's connection carries a per-process secret header and is not counted as a publisher.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from contextlib import suppress
from typing import Any

import msgspec
from websockets.asyncio.client import ClientConnection, connect

from mlops_hooks import protocol

__all__ = ["PROBE_HEADER", "Probe"]

PROBE_HEADER = "x-mlops-hooks-probe"
_TIMEOUT = 2.0


def _loopback(host: str) -> str:
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


class Probe:
    """Measures the server from the inside, over loopback.

    Args:
        host: The host the server is bound to (wildcards become loopback).
        port: Its port.
        token: The publisher token, when the server has one.
    """

    def __init__(self, host: str, port: int, token: str | None) -> None:
        self.host = _loopback(host)
        self.port = port
        self.token = token
        self.secret = secrets.token_hex(16)
        self._ws: ClientConnection | None = None
        self._ids = itertools.count(1)

    @property
    def _netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    async def ws_round_trip(self) -> float | None:
        """Milliseconds for a ping/pong over ``/ws/publish``; ``None`` when it failed."""
        try:
            if self._ws is None:
                headers = {PROBE_HEADER: self.secret}
                if self.token:
                    headers["Authorization"] = f"Bearer {self.token}"
                self._ws = await asyncio.wait_for(connect(
                    f"ws://{self._netloc}/ws/publish", additional_headers=headers,
                    compression=None, open_timeout=_TIMEOUT, ping_interval=None), _TIMEOUT)
            ping_id = next(self._ids)
            started = time.perf_counter()
            await self._ws.send(protocol.ping(ping_id).decode())
            while True:
                reply: Any = msgspec.json.decode(await asyncio.wait_for(self._ws.recv(),
                                                                        _TIMEOUT))
                if reply.get("type") == "pong" and reply.get("id") == ping_id:
                    return (time.perf_counter() - started) * 1000
        except (OSError, TimeoutError, asyncio.TimeoutError, msgspec.DecodeError, Exception):
            await self.close()
            return None

    async def http_round_trip(self) -> float | None:
        """Milliseconds for ``GET /healthz``; ``None`` when it failed."""
        started = time.perf_counter()
        writer: asyncio.StreamWriter | None = None
        try:
            reader, stream = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), _TIMEOUT)
            writer = stream
            stream.write(f"GET /healthz HTTP/1.1\r\nHost: {self._netloc}\r\n"
                         "Connection: close\r\n\r\n".encode())
            await stream.drain()
            status = await asyncio.wait_for(reader.readline(), _TIMEOUT)
            await asyncio.wait_for(reader.read(), _TIMEOUT)
            if b" 200 " not in status:
                return None
            return (time.perf_counter() - started) * 1000
        except (OSError, TimeoutError, asyncio.TimeoutError):
            return None
        finally:
            if writer is not None:
                writer.close()
                with suppress(OSError):
                    await writer.wait_closed()

    async def close(self) -> None:
        """Close the probe's WebSocket."""
        ws, self._ws = self._ws, None
        if ws is not None:
            with suppress(Exception):
                await ws.close()
