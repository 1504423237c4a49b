"""End to end, the production write path: a real dashboard that stops reading.

``mlops-hooks serve`` writes each subscriber's queued frames straight to its transport (the frame
sink). A client that never reads fills its socket; from then on the server keeps its events in
the subscriber's queue, where superseded state is coalesced, and closes it with 4008 once the
queue is over budget. These tests drive that with a real client whose socket is tiny and which
reads nothing, and wait on the server's own counters (``/metrics``), never on a duration.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from tests.live_server import LiveServer
from tests.server.live import (
    QUIET,
    TIMEOUT,
    never_reading,
    publish,
    publisher,
    recv_json,
    server_metric,
    subscriber,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def _activity(n: int, size: int = 0) -> dict[str, Any]:
    return {"type": "activity_update",
            "activity": {"id": f"a{n}", "title": f"event {n}", "description": "d" * size or None}}




class _Reader:
    """Reads ``ws`` in the background, keeping every message; :meth:`until` waits for a ``seq``."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.got: list[dict[str, Any]] = []
        self._new = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            while True:
                self.got.append(json.loads(await self.ws.recv()))
                self._new.set()
        finally:
            self._new.set()

    async def until(self, seq: int) -> list[dict[str, Any]]:
        """Everything received once an event with ``seq`` (or later) has arrived."""
        async with asyncio.timeout(60):
            while not (self.got and self.got[-1]["seq"] >= seq):
                if self._task.done():
                    self._task.result()  # raises what ended the reading
                self._new.clear()
                await self._new.wait()
        return self.got

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


def test_a_dashboard_behind_gets_the_newest_state_per_key_and_every_lifecycle_event(tmp_path):
    """Coalescing on the sink path: per run, per file, per model; milestones are exempt."""

    async def scenario(server: LiveServer) -> None:
        slow = await never_reading(server)
        try:
            assert (await recv_json(slow))["type"] == "snapshot"
            async with subscriber(server.ws_url) as fast, publisher(server.publish_url) as pub:
                await recv_json(fast)
                reader = _Reader(fast)
                acked: list[tuple[int, dict[str, Any]]] = []

                async def send(event: dict[str, Any]) -> None:
                    ack = await publish(pub, event)
                    assert ack["type"] == "ack", ack
                    acked.append((ack["seq"], event))

                # 1. Fill the slow dashboard's socket until the server holds events for it
                # (50 queued: more than a reader that keeps up ever has waiting).
                n = 0
                while server_metric(server, 'mlops_hooks_queue_depth{stat="max"}') < 50:
                    for _ in range(25):
                        await send(_activity(n, size=4000))
                        n += 1
                # 2. State and lifecycle events while it is behind.
                for i in range(1, 21):
                    await send({"type": "training_progress", "run_id": "r1", "progress": i,
                                "stage": "model_training"})
                    await send({"type": "upload_progress", "filename": "a.csv",
                                "bytes_uploaded": i, "total_bytes": 20})
                    await send({"type": "upload_progress", "filename": "b.csv",
                                "bytes_uploaded": 10 * i, "total_bytes": 200})
                    await send({"type": "prediction_volume", "model_id": "m1",
                                "total_predictions": i})
                    await send({"type": "prediction_volume", "model_id": "m2",
                                "total_predictions": 100 * i})
                    if i % 5 == 0:
                        await send({"type": "prediction_volume", "model_id": "m1",
                                    "total_predictions": i, "milestone_reached": i})
                    await send(_activity(1000 + i))
                fast_got = await reader.until(acked[-1][0])
                await reader.stop()
            # 3. The dashboard reads again: its queue drains in order.
            again = _Reader(slow)
            slow_got = await again.until(acked[-1][0])
            await again.stop()
        finally:
            await slow.close()

        seqs = [seq for seq, _ in acked]
        assert [m["seq"] for m in fast_got] == seqs  # the reader that kept up got everything
        got_seqs = [m["seq"] for m in slow_got]
        assert got_seqs == sorted(set(got_seqs))  # never a reordering, never a duplicate
        keyed = {"training_progress", "upload_progress"}
        lifecycle = [seq for seq, e in acked if e["type"] not in keyed and not (
            e["type"] == "prediction_volume" and "milestone_reached" not in e)]
        assert [s for s in got_seqs if s in set(lifecycle)] == lifecycle  # every one, in order
        state = [(m["type"], m.get("run_id") or m.get("filename") or m.get("model_id"),
                  m.get("progress", m.get("bytes_uploaded", m.get("total_predictions"))))
                 for m in slow_got if m["seq"] not in set(lifecycle)]
        assert state == [("training_progress", "r1", 20), ("upload_progress", "a.csv", 20),
                         ("upload_progress", "b.csv", 200), ("prediction_volume", "m1", 20),
                         ("prediction_volume", "m2", 2000)]
        milestones = [m["milestone_reached"] for m in slow_got
                      if m["type"] == "prediction_volume" and m.get("milestone_reached")]
        assert milestones == [5, 10, 15, 20]
        for kind in ("training_progress", "upload_progress", "prediction_volume"):
            assert server_metric(server, f'mlops_hooks_coalesced_total{{type="{kind}"}}') > 0

    with LiveServer(tmp_path, extra_args=list(QUIET)) as server:
        asyncio.run(scenario(server))


def test_the_server_closes_a_dashboard_that_stopped_reading_with_4008(tmp_path):
    """Nothing injected: the server's own budget closes it; the others get every event."""

    async def scenario(server: LiveServer) -> None:
        slow = await never_reading(server)
        try:
            assert (await recv_json(slow))["type"] == "snapshot"
            async with subscriber(server.ws_url) as fast, \
                    subscriber(f"{server.ws_url}?types=activity_update") as filtered, \
                    publisher(server.publish_url) as pub:
                for ws in (fast, filtered):
                    await recv_json(ws)
                readers = [_Reader(ws) for ws in (fast, filtered)]
                acked: list[int] = []
                n = 0
                while server_metric(server, "mlops_hooks_closed_slow_total") < 1:
                    for _ in range(25):  # a flood: the publisher is never held up
                        ack = await publish(pub, _activity(n, size=4000))
                        assert ack["type"] == "ack", ack
                        acked.append(ack["seq"])
                        n += 1
                for _ in range(50):  # life goes on for the others after the close
                    acked.append((await publish(pub, _activity(n)))["seq"])
                    n += 1
                for reader in readers:
                    got_all = await reader.until(acked[-1])
                    assert [m["seq"] for m in got_all] == acked  # all of them, in order
                    await reader.stop()
            # The dashboard reads again: what the kernel held, then the server's close frame.
            got: list[int] = []
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    got.append((await recv_json(slow, timeout=60))["seq"])
        finally:
            await slow.close()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4008
        reason = closed.value.rcvd.reason
        assert reason == f"slow consumer: reconnect with ?since={got[-1]}"  # its own position
        assert got == acked[:len(got)] and len(got) < len(acked)
        # Reconnecting where the reason says: more was missed than a replay may hold.
        async with subscriber(f"{server.ws_url}?since={got[-1]}") as again:
            fresh = await recv_json(again)
        assert fresh["type"] == "snapshot" and fresh["seq"] == acked[-1]
        health = httpx.get(server.http_url + "/healthz", timeout=TIMEOUT).json()
        assert health["seq"] == acked[-1]

    with LiveServer(tmp_path, extra_args=[*QUIET, "--queue-size", "256KB"]) as server:
        asyncio.run(scenario(server))
