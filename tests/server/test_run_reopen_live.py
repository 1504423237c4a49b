"""A new attempt of an ended run reopens it: a real server, real WebSocket clients, real SQLite.

One run id goes through started → failed → started (later) → progress → completed, published
over ``/ws/publish`` (each acknowledgement means written); ``/api/runs/{id}`` is read after
each step, a subscriber collects the ``run_state`` events, and ``/api/runs/{id}/metrics`` shows
one series across both attempts. Late events of an ended attempt (earlier timestamps) change
nothing. The second test does the same across restarts of the server (its SQLite history).
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.live_server import LiveServer
from tests.server.live import publish, publisher, recv_json, subscriber

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]
QUIET = ["--metrics-interval", "0", "--stall-timeout", "0"]
RUN = "resumed-1"
DEADLINE = 30.0


def _at(second: int) -> str:
    return f"2026-12-07T08:{second // 60:02d}:{second % 60:02d}Z"


def _start(at: int, run_id: str = RUN) -> dict[str, Any]:
    """What ``Run.start()`` sends first: the spec's ``training_start`` activity of the run."""
    return {"type": "activity_update", "run_id": run_id, "timestamp": _at(at),
            "activity": {"id": f"start-{run_id}-{at}", "title": "Model Training Started",
                         "description": "Training tiny", "action_type": "training_start",
                         "status": "in_progress", "severity_level": "info",
                         "metadata": {"run_id": run_id}}}


def _step(step: int, at: int, attempt: int, run_id: str = RUN) -> dict[str, Any]:
    return {"type": "training_progress", "run_id": run_id, "model_name": "tiny",
            "stage": "model_training", "progress": step * 5.0, "current_step": step,
            "current_loss": _loss(step, attempt), "timestamp": _at(at)}


def _loss(step: int, attempt: int) -> float:
    return round(1.0 / (step * attempt), 6)


def _failed(at: int, run_id: str = RUN) -> dict[str, Any]:
    return {"type": "training_failed", "run_id": run_id, "error": "RuntimeError: boom",
            "error_code": "TRAINING_ERROR", "timestamp": _at(at)}


def _completed(at: int) -> dict[str, Any]:
    return {"type": "training_completed", "run_id": RUN, "final_accuracy": 0.75,
            "timestamp": _at(at)}


#: The loss series both attempts make: the second resumed from its checkpoint at step 8
#: (steps 8-10 again, with its values: the later point wins) and went on to step 15.
SERIES = [[s, _loss(s, 1)] for s in range(1, 8)] + [[s, _loss(s, 2)] for s in range(8, 16)]


def _run(server: LiveServer) -> dict[str, Any]:
    response = httpx.get(f"{server.http_url}/api/runs/{RUN}", timeout=20)
    assert response.status_code == 200, response.text
    run: dict[str, Any] = response.json()["run"]
    return run


def _status(server: LiveServer) -> str:
    """The run's ``status`` (``unknown`` before its first progress: a start makes no run)."""
    response = httpx.get(f"{server.http_url}/api/runs/{RUN}", timeout=20)
    if response.status_code == 404:
        return "unknown"
    assert response.status_code == 200, response.text
    status: str = response.json()["run"]["status"]
    return status


def _series(server: LiveServer) -> list[list[Any]]:
    response = httpx.get(f"{server.http_url}/api/runs/{RUN}/metrics", timeout=20)
    assert response.status_code == 200, response.text
    series: list[list[Any]] = response.json()["series"]["loss"]
    return series


async def _send(server: LiveServer, events: list[dict[str, Any]]) -> list[str]:
    """Publish ``events`` in order; the run's status after each acknowledgement."""
    statuses = []
    async with publisher(server.publish_url) as pub:
        for event in events:
            reply = await publish(pub, event)
            assert reply["type"] == "ack", reply
            statuses.append(await asyncio.to_thread(_status, server))
    return statuses


async def _states_until(sub: Any, run_id: str, state: str) -> list[dict[str, Any]]:
    """The ``run_state`` events of every run until ``run_id`` reaches ``state``."""
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(DEADLINE):
        while True:
            message = await recv_json(sub, DEADLINE)
            if message.get("type") == "run_state":
                seen.append(message)
                if message["run_id"] == run_id and message["state"] == state:
                    return seen


def _mine(states: list[dict[str, Any]]) -> list[tuple[str, str | None, str | None]]:
    return [(s["state"], s.get("previous"), s.get("reason")) for s in states
            if s["run_id"] == RUN]


REOPENED = ("running", "failed", "a new attempt of the run started")


def test_a_failed_run_reopens_when_a_later_attempt_starts_and_late_events_do_not(tmp_path):
    with LiveServer(tmp_path, extra_args=QUIET) as server:
        async def scenario() -> None:
            async with subscriber(server.ws_url + "?types=run_state") as sub:
                first = [_start(0), *(_step(s, s, 1) for s in range(1, 11)), _failed(20)]
                assert await _send(server, first) == ["unknown", *["running"] * 10, "failed"]
                ended = _run(server)
                assert ended["ended_at"] == "2026-12-07T08:00:20.000Z"
                second = [_start(30), *(_step(s, 30 + s, 2) for s in range(8, 16)),
                          _completed(60)]
                assert await _send(server, second) == [
                    "running", *["running"] * 8, "completed"]
                states = await _states_until(sub, RUN, "finished")
                assert _mine(states) == [
                    ("failed", "running", "TRAINING_ERROR: RuntimeError: boom"), REOPENED,
                    ("finished", "running", "training completed")]
                done = _run(server)
                assert done["started_at"] == "2026-12-07T08:00:01.000Z"  # its first step
                assert done["ended_at"] == "2026-12-07T08:01:00.000Z"
                assert done["final_accuracy"] == 0.75
                assert _series(server) == SERIES
                late = [_start(50), _step(16, 55, 1),  # the ended attempt's, delivered late
                        _step(17, 90, 1)]  # after the end, but no new attempt started
                assert await _send(server, late) == ["completed"] * 3
                # a marker: another run's failure; every run_state before it has arrived
                assert await _send(server, [_step(1, 91, 1, "marker"), _failed(92, "marker")])
                after = await _states_until(sub, "marker", "failed")
                assert _mine(after) == []
            assert _series(server) == SERIES
            assert _run(server)["ended_at"] == "2026-12-07T08:01:00.000Z"

        asyncio.run(scenario())


def test_a_reopened_run_survives_server_restarts_in_its_sqlite_history(tmp_path):
    server = LiveServer(tmp_path, extra_args=QUIET)
    with server:
        first = [_start(0), *(_step(s, s, 1) for s in range(1, 11)), _failed(20)]
        assert asyncio.run(_send(server, first))[-1] == "failed"
    with server:  # restarted: the run is read back from the history, ended
        assert _run(server)["status"] == "failed"

        async def reopen() -> list[dict[str, Any]]:
            async with subscriber(server.ws_url + "?types=run_state") as sub:
                second = [_start(30), *(_step(s, 30 + s, 2) for s in range(8, 16))]
                assert await _send(server, second) == ["running"] * 9
                return await _states_until(sub, RUN, "running")

        assert _mine(asyncio.run(reopen())) == [REOPENED]
        server.kill()  # SIGKILL: what was acknowledged is in the database
        server.start()
        run = _run(server)
        assert (run["status"], run["ended_at"], run["final_accuracy"]) == ("running", None, None)
        assert run["started_at"] == "2026-12-07T08:00:01.000Z"
        assert _series(server) == SERIES
        listed = httpx.get(server.http_url + "/api/runs?status=running", timeout=20).json()
        assert [r["run_id"] for r in listed["runs"]] == [RUN]
        assert asyncio.run(_send(server, [_completed(60)])) == ["completed"]
    with server:
        run = _run(server)
        assert (run["status"], run["ended_at"]) == ("completed", "2026-12-07T08:01:00.000Z")
        assert _series(server) == SERIES
