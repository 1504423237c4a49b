"""Run history on two real servers sharing one real Redis: the same runs and series on both."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from tests.redis.fleet import WsPublisher, two_servers, wait_seq, wait_until
from tests.redis_server import RedisServer

pytestmark = pytest.mark.timeout(120)


def _events() -> list[dict]:
    events: list[dict] = [{"type": "run_params", "run_id": "fleet-1", "model_name": "Net",
                           "group": "g", "params": {"lr": 0.1},
                           "timestamp": "2025-12-06T10:00:00Z"}]
    for n in range(2300):  # past the 2,000-point bound: compacted on both servers
        events.append({"type": "training_progress", "run_id": "fleet-1",
                       "stage": "model_training", "current_step": n,
                       "current_loss": ((n * 7919) % 1000) / 1000,
                       "metrics": {"val_loss": ((n * 104729) % 997) / 997},
                       "timestamp": "2025-12-06T10:01:00Z"})
    events.append({"type": "run_params", "run_id": "fleet-1", "params": {"best.lr": 0.05}})
    events.append({"type": "training_completed", "run_id": "fleet-1", "final_accuracy": 0.9,
                   "timestamp": "2025-12-06T10:30:00Z"})
    return events


def _publish(server, events: list[dict]) -> int:
    """Publish ``events`` to ``server`` over a real WebSocket, each acknowledged; the last seq."""
    async def send() -> int:
        async with WsPublisher(server.publish_url) as pub:
            last = 0
            for event in events:
                reply = await pub.send(event)
                assert reply["type"] == "ack", reply
                last = reply["seq"]
            return last
    return asyncio.run(send())


def test_two_servers_serve_identical_history(tmp_path: Path, redis_server: RedisServer) -> None:
    with two_servers(tmp_path, redis_server) as (a, b):
        wait_seq([a, b], _publish(a, _events()))

        def reads(server) -> list[dict]:
            with httpx.Client(base_url=server.http_url, timeout=20) as http:
                return [http.get(path).json() for path in (
                    "/api/runs", "/api/runs/fleet-1", "/api/runs/fleet-1/metrics")]

        on_a, on_b = reads(a), reads(b)
    assert on_a == on_b
    runs, detail, metrics = on_a
    assert [r["run_id"] for r in runs["runs"]] == ["fleet-1"]
    assert detail["run"]["params"] == {"lr": 0.1, "best.lr": 0.05}
    assert detail["run"]["status"] == "completed" and detail["run"]["group"] == "g"
    assert sorted(metrics["series"]) == ["loss", "val_loss"]
    for series in metrics["series"].values():
        assert len(series) < 2300 and series[-1][0] == 2299


def _reopen_events() -> list[dict]:
    def start(at: str) -> dict:
        return {"type": "activity_update", "run_id": "fleet-2", "timestamp": at,
                "activity": {"id": f"start-{at}", "title": "Model Training Started",
                             "action_type": "training_start", "status": "in_progress"}}

    def step(n: int, at: str) -> dict:
        return {"type": "training_progress", "run_id": "fleet-2", "stage": "model_training",
                "current_step": n, "current_loss": 1 / n, "timestamp": at}

    return [start("2026-12-07T08:00:00Z"), step(1, "2026-12-07T08:00:01Z"),
            {"type": "training_failed", "run_id": "fleet-2", "error": "KeyboardInterrupt",
             "error_code": "INTERRUPTED", "timestamp": "2026-12-07T08:00:02Z"},
            start("2026-12-07T08:00:03Z"), step(2, "2026-12-07T08:00:04Z")]


def test_a_reopened_run_is_running_on_every_server_with_one_run_state(
        tmp_path: Path, redis_server: RedisServer) -> None:
    with two_servers(tmp_path, redis_server) as (a, b):
        wait_seq([a, b], _publish(a, _reopen_events()))

        def states(server) -> list[tuple]:
            with connect(f"{server.ws_url}?since=0&types=run_state", open_timeout=10) as ws:
                replay = json.loads(ws.recv(timeout=10))
                events = [json.loads(ws.recv(timeout=10)) for _ in range(replay["count"])]
            return [(e["state"], e.get("previous"), e.get("reason"), e["seq"]) for e in events]

        # every server derives the reopening from the start; the fleet stores it once
        wait_until(lambda: len(states(a)) == 2, what="both run_state events")
        on_a, on_b = states(a), states(b)
        runs = [httpx.get(s.http_url + "/api/runs/fleet-2", timeout=20).json()["run"]
                for s in (a, b)]
    assert on_a == on_b
    assert [s[:3] for s in on_a] == [
        ("interrupted", "running", "INTERRUPTED: KeyboardInterrupt"),
        ("running", "interrupted", "a new attempt of the run started")]
    assert runs[0] == runs[1]
    assert (runs[0]["status"], runs[0]["ended_at"]) == ("running", None)
