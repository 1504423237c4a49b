"""The snapshot stays small whatever the history (issue 22, item 3).

A run of 200 progress events with large metrics, 50 large activities and 50 large alerts: the
first frame of ``/ws`` stays under :data:`SNAPSHOT_MAX_BYTES`, so a ``websockets`` client with
its default 1 MiB ``max_size`` can subscribe; and the snapshot counts against the subscriber's
byte budget.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from mlops_hooks import events as ev
from mlops_hooks.server.ops.metrics import Metrics
from mlops_hooks.server.state.runs import CHART_METRICS
from mlops_hooks.server.state.summary import SNAPSHOT_MAX_BYTES
from mlops_hooks.server.stream.hub import Hub
from mlops_hooks.server.stream.record import control, make_record
from tests.live_server import LiveServer
from tests.server.live import QUIET

pytestmark = pytest.mark.timeout(120)

TEXT = "T" * 8192


def history() -> list[list[dict[str, Any]]]:
    """Batches of valid events (each under 64 KiB) that made a 10 MB snapshot before."""
    metrics = {f"metric_with_a_long_name_{i:03d}": i * 0.5 for i in range(250)}
    progress = [{"type": "training_progress", "run_id": "big-run", "stage": "model_training",
                 "progress": i / 2, "current_loss": 1 / (i + 1), "message": TEXT,
                 "metrics": {**metrics, "val_loss": 0.1, "accuracy": 0.5}} for i in range(200)]
    metadata = {f"k{i}": "m" * 200 for i in range(60)}
    activities = [{"type": "activity_update", "activity": {
        "id": f"act-{i}", "title": TEXT, "description": TEXT, "user": TEXT,
        "metadata": metadata}} for i in range(50)]
    alerts = [{"type": "system_alert", "alert": {
        "id": f"alert-{i}", "title": TEXT, "message": TEXT, "source": TEXT,
        "priority": "high", "actions": ["a" * 256] * 16}} for i in range(50)]
    events = progress + activities + alerts
    return [events[i:i + 20] for i in range(0, len(events), 20)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("snapshot"), extra_args=list(QUIET))
    with live:
        for batch in history():
            response = httpx.post(live.http_url + "/api/events", json=batch, timeout=30)
            assert response.status_code == 200, response.text
        yield live


def test_the_snapshot_is_bounded_and_a_1_mib_client_can_subscribe(server: LiveServer) -> None:
    async def first_frame(**options: Any) -> str | bytes:
        async with connect(server.ws_url, compression=None, **options) as ws:
            return await asyncio.wait_for(ws.recv(), 30)

    raw = asyncio.run(first_frame(max_size=None))  # measured without a client limit
    assert len(raw) < SNAPSHOT_MAX_BYTES <= 256 * 1024, len(raw)
    default = json.loads(asyncio.run(first_frame()))  # websockets' default max_size: 1 MiB
    assert default["type"] == "snapshot"

    (run,) = default["runs"]
    assert run["run_id"] == "big-run" and run["progress"]["progress"] == 99.5
    assert run["progress"]["truncated"] is True
    assert run["points"], "the newest run keeps its chart"
    assert all(set(p["metrics"]) <= set(CHART_METRICS) for p in run["points"])
    assert default["activity"] and default["activity"][0]["id"] == "act-49"
    assert default["activity"][0]["truncated"] is True
    assert default["alerts"] and default["alerts"][0]["id"] == "alert-49"
    # The whole entries are still on REST.
    full = httpx.get(server.http_url + "/api/activity", params={"limit": 1}, timeout=30).json()
    assert full["activity"][0]["title"] == TEXT


def test_the_snapshot_counts_against_the_subscribers_byte_budget() -> None:
    async def scenario() -> tuple[bool, bool]:
        hub = Hub(Metrics(), max_bytes=64 * 1024)
        snapshot = control(json.dumps({"type": "snapshot", "pad": "x" * 40_000}), "snapshot")
        event = make_record(ev.ActivityUpdate(activity=ev.Activity(id="a", title="y" * 8000)),
                            1)

        async def never(message: dict[str, Any]) -> None:
            await asyncio.Event().wait()

        counted, allowed = hub.add(never), hub.add(never)
        counted.prime([snapshot], 0, counted=True)
        allowed.prime([snapshot], 0)
        for _ in range(4):  # 32 KB of live events on top of the 40 KB snapshot
            hub.broadcast(event)
        slow = counted.slow, allowed.slow
        for sub in (counted, allowed):
            await hub.remove(sub)
        return slow

    assert asyncio.run(scenario()) == (True, False)
