"""Clients that vanish mid-burst leave nothing in the server's log: no traceback, no spam."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import httpx
import pytest

from tests.live_server import LiveServer
from tests.server.live import publisher, recv_json, subscriber

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]
BURST = 2000
NOISE = ("Traceback", "Exception in ASGI application", "socket.send() raised exception",
         "never retrieved", "destroyed but it is pending", "ClientDisconnected", "Error")


def _event(i: int, tag: str) -> str:
    return json.dumps({"type": "activity_update", "event_id": f"{tag}-{i}",
                       "activity": {"id": f"{tag}-{i}", "title": f"#{i}"}})


async def _burst_then(url: str, tag: str, leave: str) -> None:
    ws = await publisher(url, close_timeout=0.5)  # it reads no reply: the close cannot complete
    for i in range(BURST):
        await ws.send(_event(i, tag))
    if leave == "abort":  # the process died: no close frame, a reset
        ws.transport.abort()
    else:
        await ws.close()  # a clean close while most replies are still due


async def _idle(server: LiveServer) -> None:
    async with httpx.AsyncClient() as http:
        for _ in range(400):
            health = (await http.get(server.http_url + "/healthz")).json()
            if health["publishers"] == 0 and health["subscribers"] == 0:
                return
            await asyncio.sleep(0.025)
    raise AssertionError(f"connections never went away: {health}")


async def _upload_outcome(server: LiveServer) -> list[dict]:
    """The snapshot's uploads once every one of them has a validation."""
    for _ in range(200):
        async with subscriber(server.ws_url) as ws:
            uploads: list[dict] = (await recv_json(ws))["uploads"]
        if uploads and all(u["validation"] for u in uploads):
            return uploads
        await asyncio.sleep(0.05)
    raise AssertionError(f"the upload never ended: {uploads}")


def _abandon(server: LiveServer, path: str, content_type: str, start: bytes) -> None:
    """Announce a 1 MB body, send its start, then close the connection."""
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}"
                     "\r\nContent-Length: 1000000\r\n\r\n".encode() + start)
        time.sleep(0.2)  # the server is streaming the body


def test_publishers_and_subscribers_leaving_mid_burst_log_nothing(tmp_path):
    server = LiveServer(tmp_path, extra_args=["--metrics-interval", "0", "--stall-timeout", "0",
                                              "--upload-dir", str(tmp_path / "uploads")])

    async def scenario() -> None:
        watchers = []
        for _ in range(3):  # subscribers that vanish while events pour in
            ws = await subscriber(server.ws_url)
            assert (await recv_json(ws))["type"] == "snapshot"
            watchers.append(ws)
        for round_, leave in enumerate(("abort", "close", "abort", "close")):
            await _burst_then(server.publish_url, f"r{round_}", leave)
            if round_ == 1:
                for ws in watchers:
                    ws.transport.abort()
        await _idle(server)
        async with publisher(server.publish_url) as pub:  # the server still serves
            await pub.send(_event(0, "after"))
            assert (await recv_json(pub))["type"] == "ack"

    with server:
        asyncio.run(scenario())
        # an upload and a POST abandoned mid-body
        _abandon(server, "/api/files", "multipart/form-data; boundary=XyZ",
                 b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="cut.csv"\r\n'
                 b"Content-Type: text/csv\r\n\r\n" + b"a,b\n1,2\n" * 2000)
        _abandon(server, "/api/events", "application/json", b'[{"type": "activity_update", ')
        uploads = asyncio.run(_upload_outcome(server))
        (cut,) = uploads  # dashboards learn the upload ended: it does not hang at some percent
        assert cut["validation"]["status"] == "error", cut
        assert "interrupted" in cut["validation"]["error"]
        assert not list((tmp_path / "uploads").glob("*"))  # no partial file left behind
    log = server.log_path.read_text(errors="replace")
    found = [word for word in NOISE if word in log]
    assert not found, f"{found} in the server log:\n{log[-3000:]}"
