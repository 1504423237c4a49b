"""End to end: replay handoff, slow subscribers, restarts (each on its own server process)."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.live_server import LiveServer
from tests.server.live import publish, publisher, recv_json, subscriber

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]
QUIET = ["--metrics-interval", "0", "--stall-timeout", "0"]


def _activity(n: int, size: int = 0) -> dict:
    return {"type": "activity_update",
            "activity": {"id": f"a{n}", "title": f"event {n}", "description": "d" * size or None}}


def test_reconnecting_with_since_has_no_gap_and_no_duplicate(tmp_path):
    total = 600

    async def scenario(server: LiveServer) -> None:
        acked: list[int] = []

        async def produce() -> None:
            async with publisher(server.publish_url) as pub:
                for i in range(total):
                    acked.append((await publish(pub, _activity(i)))["seq"])
                    if i % 20 == 0:
                        await asyncio.sleep(0.002)

        producer = asyncio.create_task(produce())
        received: list[int] = []
        async with subscriber(server.ws_url) as sub:
            start = (await recv_json(sub))["seq"]
            for _ in range(30):
                received.append((await recv_json(sub))["seq"])
        reconnects = 0
        while received[-1] < total:  # the server holds only this test's events: seq 1..total
            async with subscriber(f"{server.ws_url}?since={received[-1]}") as sub:
                reconnects += 1
                header = await recv_json(sub)
                assert header["type"] == "replay", header
                assert header["from"] == received[-1] + 1
                for _ in range(header["count"] + 40):
                    received.append((await recv_json(sub))["seq"])
                    if received[-1] == total:
                        break
        await producer
        assert reconnects >= 3
        assert received == list(range(start + 1, acked[-1] + 1))  # no gap, no duplicate
        assert acked == received[-len(acked):]

    with LiveServer(tmp_path, extra_args=QUIET) as server:
        asyncio.run(scenario(server))


def _tiny_socket(port: int) -> socket.socket:
    """A client socket with a small receive buffer, so a non-reader backs up fast."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    return sock


def test_a_never_reading_subscriber_does_not_delay_others_and_is_closed_4008(tmp_path):
    count = 1500

    async def scenario(server: LiveServer) -> None:
        slow = await connect(server.ws_url, sock=_tiny_socket(server.port), max_queue=1,
                             compression=None)
        try:
            async with subscriber(server.ws_url) as fast, publisher(server.publish_url) as pub:
                await recv_json(fast)

                async def read_fast() -> list[int]:
                    return [(await recv_json(fast))["seq"] for _ in range(count)]

                reader = asyncio.create_task(read_fast())
                for i in range(count):  # the publisher is never held up ...
                    assert (await publish(pub, _activity(i, size=4000)))["type"] == "ack"
                assert await reader == list(range(1, count + 1))  # ... nor the fast reader
            metrics = httpx.get(server.http_url + "/metrics").text
            assert "mlops_hooks_closed_slow_total 1" in metrics
            # Reading now drains what the kernel buffered, then the close frame arrives.
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await asyncio.wait_for(slow.recv(), 10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4008
            assert "reconnect with ?since=" in closed.value.rcvd.reason
        finally:
            await slow.close()
        health = httpx.get(server.http_url + "/healthz").json()
        assert health["subscribers"] == 0 and health["seq"] == count

    with LiveServer(tmp_path, extra_args=[*QUIET, "--queue-size", "256KB"]) as server:
        asyncio.run(scenario(server))


def test_restart_keeps_history_and_seq(tmp_path):
    async def fill(server: LiveServer) -> int:
        async with publisher(server.publish_url) as pub:
            for event in (
                {"type": "model_deployed", "model_name": "Churn", "model_id": "churn_v1",
                 "model_accuracy": 0.93},
                {"type": "training_progress", "run_id": "r-keep", "stage": "model_training",
                 "progress": 50, "current_epoch": 5, "total_epochs": 10, "current_loss": 0.2},
                {"type": "training_completed", "run_id": "r-keep", "final_accuracy": 0.95},
                _activity(1) | {"event_id": "once"},
            ):
                last = (await publish(pub, event))["seq"]
        return last

    async def after(server: LiveServer, last: int) -> int:
        async with subscriber(server.ws_url) as sub:
            snap = await recv_json(sub)
        assert snap["seq"] == last
        assert [m["model_id"] for m in snap["models"]] == ["churn_v1"]
        (run,) = snap["runs"]
        assert run["run_id"] == "r-keep"
        assert run["status"] == "completed" and run["points"][0]["loss"] == 0.2
        assert [a["id"] for a in snap["activity"]] == ["a1"]
        async with publisher(server.publish_url) as pub:
            again = await publish(pub, _activity(1) | {"event_id": "once"})
            assert again["duplicate"] is True and again["seq"] == last
            fresh = await publish(pub, _activity(2) | {"event_id": "fresh"})
            assert fresh["seq"] == last + 1  # numbering continues after the restart
        return int(fresh["seq"])

    async def resend_fresh(server: LiveServer) -> dict:
        async with publisher(server.publish_url) as pub:
            return await publish(pub, _activity(2) | {"event_id": "fresh"})

    server = LiveServer(tmp_path, extra_args=QUIET)
    with server:
        last = asyncio.run(fill(server))
    with server:  # stopped with SIGINT, started again on the same database
        acked = asyncio.run(after(server, last))
        server.kill()  # SIGKILL at once after the ack: no shutdown, no batch flush after it
        server.start()
        # an ack promises the event is written: it survives the kill, with its seq and its id
        assert httpx.get(server.http_url + "/healthz").json()["seq"] == acked
        models = httpx.get(server.http_url + "/api/models").json()
        assert models["seq"] == acked
        assert [(r["run_id"], r["status"]) for r in models["runs"]] == [("r-keep", "completed")]
        activity = httpx.get(server.http_url + "/api/activity").json()
        assert activity["seq"] == acked and [a["id"] for a in activity["activity"]] == ["a2", "a1"]
        again = asyncio.run(resend_fresh(server))
        assert again == {"type": "ack", "seq": acked, "event_id": "fresh", "duplicate": True}
