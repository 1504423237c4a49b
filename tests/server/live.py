"""Helpers for end-to-end tests against a real ``mlops-hooks serve`` process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import warnings
from collections.abc import Iterator
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection as SyncConnection
from websockets.sync.client import connect as sync_connect

from tests.live_server import LiveServer

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import WebSocketDenialResponse

TIMEOUT = 10.0


def server_metric(server: LiveServer, name: str) -> float:
    """One sample of the server's ``/metrics`` (0 when absent)."""
    text = httpx.get(server.http_url + "/metrics", timeout=TIMEOUT).text
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def never_reading(server: LiveServer, **options: Any) -> ClientConnection:
    """A dashboard with a 4 KiB receive buffer that takes one message and then reads no more.

    ``options`` go to ``websockets``' ``connect`` (e.g. ``ping_interval=None``).
    """
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    return await connect(server.ws_url, sock=sock, max_queue=1, compression=None, **options)


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


# --------------------------------------------------------------------------- the TestClient's
# surface over a real server, so one test body runs on both paths: Starlette's TestClient (no
# socket: the ASGI ``send`` fallback) and ``mlops-hooks serve`` (the frame sink on a socket).

#: ``create_app`` config overrides and the ``serve`` flags that set them.
FLAGS = {"replay_size": "--replay-size", "queue_max_bytes": "--queue-size",
         "allowed_hosts": "--allowed-host", "token": "--token"}
QUIET = ("--metrics-interval", "0", "--stall-timeout", "0")


class LiveSession:
    """A ``websockets`` sync client with the methods tests call on a TestClient session."""

    def __init__(self, ws: SyncConnection) -> None:
        self.ws = ws

    def receive_text(self, timeout: float = TIMEOUT) -> str:
        message = self.ws.recv(timeout)
        assert isinstance(message, str), message
        return message

    def receive_json(self, timeout: float = TIMEOUT) -> Any:
        return json.loads(self.receive_text(timeout))

    def send_text(self, text: str) -> None:
        self.ws.send(text)

    def send_json(self, data: Any) -> None:
        self.ws.send(json.dumps(data))


class LiveClient:
    """What the subscribe tests use of Starlette's ``TestClient``, against a real server.

    Args:
        server: A started ``mlops-hooks serve`` process.
    """

    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.http = httpx.Client(base_url=server.http_url, timeout=TIMEOUT)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.post(path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.get(path, **kwargs)

    @contextlib.contextmanager
    def websocket_connect(self, path: str, headers: dict[str, str] | None = None,
                          ) -> Iterator[LiveSession]:
        """Open ``path`` on the server; a refused handshake raises what the TestClient raises."""
        url = f"ws://127.0.0.1:{self.server.port}{path}"
        try:
            ws = sync_connect(url, compression=None, additional_headers=headers,
                              open_timeout=TIMEOUT)
        except InvalidStatus as refused:
            response = refused.response
            denial = WebSocketDenialResponse(status_code=response.status_code,
                                             headers=list(response.headers.raw_items()),
                                             content=bytes(response.body or b""))
            denial.read()
            raise denial from None
        with ws:
            yield LiveSession(ws)

    def close(self) -> None:
        self.http.close()


def live_flags(overrides: dict[str, Any]) -> list[str]:
    """``serve`` flags for ``create_app`` config overrides (the ones live tests use)."""
    flags: list[str] = list(QUIET)
    for name, value in overrides.items():
        values = value if isinstance(value, tuple | list) else (value,)
        for item in values:
            flags += [FLAGS[name], str(item)]
    return flags
