"""Helpers for end-to-end tests of several real servers: subscribers, publishers, waits.

Everything here talks to real ``mlops-hooks serve`` processes (``tests.live_server.LiveServer``)
over real sockets: ``websockets`` for ``/ws`` and ``/ws/publish``, ``httpx`` for REST.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import websockets
from websockets.asyncio.client import ClientConnection

from mlops_hooks import events as ev
from tests.live_server import LiveServer
from tests.redis_server import RedisServer


@contextlib.contextmanager
def running(*servers: LiveServer) -> Iterator[tuple[LiveServer, ...]]:
    """Start several servers at once (their imports overlap), stop them all afterwards."""
    try:
        with ThreadPoolExecutor(len(servers)) as pool:
            for future in [pool.submit(server.start) for server in servers]:
                future.result()
        yield servers
    finally:
        for server in servers:
            server.stop()


def fleet_args(redis: RedisServer) -> list[str]:
    """Server arguments for a fleet test: no metrics samples, stall alerts or alert rules, so
    every event a test sees is the test's own."""
    return ["--backend", redis.url, "--metrics-interval", "0", "--stall-timeout", "0",
            "--alert-set", "alerts.enabled=false"]


@contextlib.contextmanager
def two_servers(tmp_path: Path, redis: RedisServer) -> Iterator[tuple[LiveServer, LiveServer]]:
    """Servers ``a`` and ``b`` sharing ``redis``, started together and stopped afterwards."""
    args = fleet_args(redis)
    with running(LiveServer(tmp_path / "a", extra_args=args),
                 LiveServer(tmp_path / "b", extra_args=args)) as (a, b):
        yield a, b


def lifecycle_event(n: int, *, event_id: str | None = None, tag: str = "e") -> dict[str, Any]:
    """An ``activity_update`` (never coalesced, so every subscriber gets every one)."""
    event: dict[str, Any] = {
        "type": "activity_update",
        "activity": {"id": f"act_{tag}_{n}", "title": f"{tag} {n}", "description": "fleet test",
                     "user": "test", "action_type": "test", "status": "completed",
                     "timestamp": "2025-12-06T10:30:00.000Z"}}
    if event_id is not None:
        event["event_id"] = event_id
    return event


class Tap:
    """A real subscriber that records every message it receives, in a background task.

    Args:
        url: The ``/ws`` URL (with ``?since=`` etc. as needed).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.first: dict[str, Any] = {}
        self.messages: list[dict[str, Any]] = []
        self.closed: tuple[int | None, str | None] | None = None
        self._stack = contextlib.AsyncExitStack()
        self._ws: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Tap:
        self._ws = await self._stack.enter_async_context(
            websockets.connect(self.url, max_size=None, open_timeout=10))
        self.first = json.loads(await asyncio.wait_for(self._ws.recv(), 10))
        self._task = asyncio.get_running_loop().create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self._ws is not None
        try:
            async for message in self._ws:
                self.messages.append(json.loads(message))
        except websockets.ConnectionClosed:
            pass
        self.closed = (self._ws.close_code, self._ws.close_reason)

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    @property
    def events(self) -> list[dict[str, Any]]:
        """Received events (control messages left out), in arrival order."""
        return [m for m in self.messages if m.get("type") in ev.EVENT_CLASSES]

    @property
    def seqs(self) -> list[int]:
        return [int(m["seq"]) for m in self.events]

    async def ping(self, ping_id: str) -> None:
        """Send a ping; :meth:`wait` for its pong to prove the connection is served."""
        assert self._ws is not None
        await self._ws.send(json.dumps({"type": "ping", "id": ping_id}))

    async def wait(self, check: Callable[[Tap], bool], timeout: float = 20.0,
                   what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while not check(self):
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} not reached on {self.url}: {len(self.messages)} "
                                     f"messages, last {self.messages[-3:]}")
            if self._task is not None and self._task.done():
                raise AssertionError(f"subscriber {self.url} was closed: {self.closed}")
            await asyncio.sleep(0.02)

    async def wait_seq(self, seq: int, timeout: float = 20.0) -> None:
        await self.wait(lambda t: bool(t.seqs) and t.seqs[-1] >= seq, timeout, f"seq {seq}")


class WsPublisher:
    """A real ``/ws/publish`` connection: one event per message, one reply each."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._stack = contextlib.AsyncExitStack()
        self.ws: ClientConnection | None = None

    async def __aenter__(self) -> WsPublisher:
        self.ws = await self._stack.enter_async_context(
            websockets.connect(self.url, max_size=None, open_timeout=10))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def wait_closed(self) -> int | None:
        """Wait until the server closes the connection; its close code."""
        assert self.ws is not None
        await asyncio.wait_for(self.ws.wait_closed(), 20)
        return self.ws.close_code

    async def send(self, event: dict[str, Any] | str) -> dict[str, Any]:
        assert self.ws is not None
        await self.ws.send(event if isinstance(event, str) else json.dumps(event))
        reply: dict[str, Any] = json.loads(await asyncio.wait_for(self.ws.recv(), 20))
        return reply


async def post(client: httpx.AsyncClient, server: LiveServer,
               events: dict[str, Any] | list[dict[str, Any]]) -> httpx.Response:
    return await client.post(server.http_url + "/api/events", json=events, timeout=20)


def healthz(server: LiveServer) -> dict[str, Any]:
    data: dict[str, Any] = httpx.get(server.http_url + "/healthz", timeout=10).json()
    return data


def wait_until(check: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached in {timeout}s")
        time.sleep(0.05)


def wait_seq(servers: Iterable[LiveServer], seq: int, timeout: float = 20.0) -> None:
    """Wait until every server's state reflects ``seq``."""
    for server in servers:
        wait_until(lambda s=server: healthz(s)["seq"] >= seq, timeout,  # type: ignore[misc]
                   f"seq {seq} on {server.http_url}")


def assert_contiguous(seqs: list[int]) -> None:
    """Strictly increasing by one: no gap, no duplicate, no reordering."""
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs
