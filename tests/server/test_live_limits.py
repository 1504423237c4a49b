"""End to end, the limits at the socket: silent connections, the cap on open connections, and
the dashboards' and publishers' separate budgets (``mlops-hooks serve`` in a subprocess).

The flood runs the server under a 256-descriptor limit (``ulimit -n`` in the child) and opens
more connections than that, none of which sends a byte. Every wait is on a condition with a
generous deadline; no test measures how long anything took.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from tests.live_server import LiveServer
from tests.server.live import QUIET, TIMEOUT, publish, publisher, recv_json, subscriber

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]
TOKEN = "limits-token"
#: Descriptors the flooded server may open (soft and hard limit of its process).
DESCRIPTORS = 256
#: Connections of the flood: more than the server could ever hold open.
FLOOD = 400
DEADLINE = 60.0


class LimitedServer(LiveServer):
    """A server process started under ``ulimit -n DESCRIPTORS`` (soft and hard)."""

    def command(self) -> list[str]:
        return ["/bin/sh", "-c", f'ulimit -n {DESCRIPTORS} && exec "$@"', "sh",
                *super().command()]


def _until(check, what: str, deadline: float = DEADLINE):
    """Poll ``check()`` until it returns something truthy; fail naming ``what``."""
    end = time.monotonic() + deadline
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < end, f"never happened: {what}"
        time.sleep(0.1)


def _healthy(server: LiveServer) -> bool:
    try:
        return httpx.get(server.http_url + "/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _publishes(server: LiveServer) -> bool:
    async def attempt() -> bool:
        async with publisher(server.publish_url, TOKEN, open_timeout=5) as pub:
            ack = await publish(pub, {"type": "activity_update",
                                      "activity": {"id": "a1", "title": "still serving"}})
        return bool(ack["type"] == "ack")

    try:
        return asyncio.run(attempt())
    except (OSError, InvalidStatus, asyncio.TimeoutError, TimeoutError):
        return False


def _ended(sock: socket.socket) -> bool:
    """Read what the server sent; ``True`` once the connection has ended (EOF or reset)."""
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                return True
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


def _accept_lines(log: str) -> list[str]:
    return [line for line in log.splitlines()
            if "Too many open files" in line or "accept" in line.lower()]


def test_a_flood_of_silent_connections_is_shed_and_closed_and_the_server_recovers(tmp_path):
    server = LimitedServer(tmp_path, extra_args=[*QUIET, "--token", TOKEN,
                                                 "--request-timeout", "2"])
    with server:
        silent: list[socket.socket] = []
        try:
            for _ in range(FLOOD):
                sock = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
                sock.setblocking(False)
                silent.append(sock)
            # A client that sends its request head a byte at a time is no better.
            dribbler = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
            dribbler.setblocking(False)
            silent.append(dribbler)
            head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"

            def dribble() -> bool:
                try:
                    dribbler.send(head[:1])
                except OSError:
                    return True
                return _ended(dribbler)

            _until(dribble, "the server closes a request head that never ends")
            _until(lambda: _healthy(server), "/healthz answers during the flood")
            _until(lambda: _publishes(server), "an authenticated publisher publishes")
            # Every silent connection is closed by the server: shed, or timed out.
            _until(lambda: all(_ended(sock) for sock in silent),
                   "the server closes every silent connection")
        finally:
            for sock in silent:
                sock.close()
        assert _healthy(server)
        assert _publishes(server)
    log = server.log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]
    assert len(_accept_lines(log)) < 10, log[-3000:]


def test_the_descriptor_limit_is_raised_to_the_hard_limit(tmp_path):
    class SoftLimited(LiveServer):
        def command(self) -> list[str]:
            return ["/bin/sh", "-c", f'ulimit -Sn {DESCRIPTORS} && exec "$@"', "sh",
                    *super().command()]

    with SoftLimited(tmp_path, extra_args=list(QUIET)) as server:
        assert server.proc is not None
        limits = Path(f"/proc/{server.proc.pid}/limits").read_text()
    line = next(row for row in limits.splitlines() if row.startswith("Max open files"))
    soft, hard = line.split()[3:5]
    assert soft == hard != str(DESCRIPTORS), line


def test_dashboards_never_take_the_publishers_budget(tmp_path):
    """1,000 anonymous dashboards (the default budget) and publishers still connect."""
    dashboards = 1000

    async def scenario(server: LiveServer) -> None:
        opened = []
        try:
            for start in range(0, dashboards, 100):
                batch = await asyncio.gather(*[subscriber(server.ws_url, open_timeout=30)
                                               for _ in range(start, start + 100)])
                opened += batch
            with pytest.raises(InvalidStatus) as refused:
                await subscriber(server.ws_url)
            assert refused.value.response.status_code == 503
            body = json.loads(refused.value.response.body or b"{}")
            assert "dashboard connections" in body["error"]
            async with publisher(server.publish_url, TOKEN) as first, \
                    publisher(server.publish_url, TOKEN) as second:
                for pub in (first, second):
                    ack = await publish(pub, {"type": "activity_update",
                                              "activity": {"id": "a", "title": "t"}})
                    assert ack["type"] == "ack", ack
                with pytest.raises(InvalidStatus) as full:  # publishers have a budget too
                    await publisher(server.publish_url, TOKEN)
                assert full.value.response.status_code == 503
            snapshot = await recv_json(opened[0])
            assert snapshot["type"] == "snapshot"
        finally:
            await asyncio.gather(*[ws.close() for ws in opened], return_exceptions=True)

    with LiveServer(tmp_path, extra_args=[*QUIET, "--token", TOKEN,
                                          "--max-publishers", "2"]) as server:
        asyncio.run(scenario(server))


def test_a_request_body_may_take_long_while_it_moves_but_not_stall(tmp_path):
    """The deadline covers the request's head; in a body it is the longest pause."""
    body = json.dumps([{"type": "activity_update", "activity": {"id": f"b{i}", "title": "t"}}
                       for i in range(50)]).encode()
    pieces = [body[i:i + len(body) // 5 + 1] for i in range(0, len(body), len(body) // 5 + 1)]
    head = ("POST /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    with LiveServer(tmp_path, extra_args=[*QUIET, "--request-timeout", "1.5"]) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
            sock.sendall(head)
            for piece in pieces:  # five pauses of a third of the timeout: longer in all
                time.sleep(0.5)
                sock.sendall(piece)
            answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200"), answer
        with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
            sock.sendall(head + pieces[0])  # then nothing more
            sock.setblocking(False)
            _until(lambda: _ended(sock), "the server closes a request body that stalled")
        asyncio.run(_quiet_dashboard_stays(server))


async def _quiet_dashboard_stays(server: LiveServer) -> None:
    """An accepted WebSocket that never sends is a dashboard, not an incomplete request."""
    async with subscriber(server.ws_url) as ws, publisher(server.publish_url) as pub:
        assert (await recv_json(ws))["type"] == "snapshot"
        await asyncio.sleep(2)  # longer than the request timeout, without a byte sent
        ack = await publish(pub, {"type": "activity_update", "activity": {"id": "q", "title": "t"}})
        assert (await recv_json(ws))["seq"] == ack["seq"]
