"""A fleet server restarted on its SQLite history crashes only the live runs it carried.

Two real servers share a real Redis, each with its own SQLite history. A ``track()`` loop
publishes to server A and keeps stepping; another publishes to B and sleeps (no events, only
heartbeats to B). Both runs are live in A's history (A follows the shared stream). A stops, the
loop it carried is SIGKILLed while A is down, and A starts again on the same SQLite file: the
vanished run becomes ``crashed`` once its time to come back is over; B's sleeping run, which A
never carried and hears nothing from, stays live (A must not answer for it).
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.live_server import LiveServer
from tests.redis.fleet import fleet_args, running
from tests.redis_server import RedisServer
from tests.server.live import recv_json, server_metric, subscriber
from tests.server.test_run_states_live import (
    LIVE,
    LOOP,
    _listed,
    _process,
    _run,
    _state,
    _until,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _held(db: str) -> str | None:
    """The ``held_runs`` the server wrote to its history."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        row = conn.execute("SELECT value FROM meta WHERE key = 'held_runs'").fetchone()
    return None if row is None else str(row[0])


def test_a_restarted_fleet_server_crashes_only_the_runs_its_connections_carried(
        tmp_path: Path, redis_server: RedisServer) -> None:
    # 15 s without heartbeats (the publishers ping every 5 s), not the default 30 s
    args = [*fleet_args(redis_server), "--crash-grace", "1", "--stall-factor", "3",
            "--stall-floor", "1", "--heartbeat-timeout", "15"]
    a = LiveServer(tmp_path / "a", extra_args=args, startup_timeout=60)
    b = LiveServer(tmp_path / "b", extra_args=args, startup_timeout=60)
    for name in ("mine", "theirs"):
        (tmp_path / name).mkdir()

    async def scenario() -> tuple[dict[str, Any], str | None, list[dict[str, Any]]]:
        async with _process(a, LOOP, "loop", tmp_path / "mine", "fleet-mine") as mine, \
                _process(b, LOOP, "stall", tmp_path / "theirs", "fleet-theirs") as theirs:
            await _until(lambda: (tmp_path / "mine" / "stepping").exists()
                         and (tmp_path / "theirs" / "sleeping").exists()
                         and server_metric(a, "mlops_hooks_runs_carried") >= 1
                         and server_metric(b, "mlops_hooks_runs_carried") >= 1,
                         "both loops stepped and each server's heartbeats listed its run")
            await _until(lambda: _run(a, "fleet-theirs")["status"] in LIVE,
                         "A follows the stream: B's run is live in A's history too")
            a.stop()
            held = _held(a.db)
            mine.send_signal(signal.SIGKILL)  # vanishes while A, which carried it, is down
            assert await mine.wait() == -signal.SIGKILL
            a.start()  # a second server process on A's SQLite file
            assert _run(a, "fleet-theirs")["status"] in LIVE
            async with subscriber(f"{b.ws_url}?types=run_state") as sub:
                assert (await recv_json(sub))["type"] == "snapshot"
                crashed = await _state(sub, "fleet-mine", "crashed")
            await _until(lambda: _run(a, "fleet-mine")["status"] == "crashed",
                         "A applied the crash it raised")
            assert theirs.returncode is None  # asleep, still heartbeating to B
            return crashed, held, [_run(a, "fleet-theirs"), _run(b, "fleet-theirs")]

    with running(a, b):
        crashed, held, theirs = asyncio.run(scenario())
        crashed_on_a = _listed(a, "crashed")
    assert held == '["fleet-mine"]'  # what A answered for when it stopped
    assert crashed["previous"] in LIVE and "after the server restarted" in crashed["reason"]
    assert crashed_on_a == ["fleet-mine"]
    assert [run["status"] in LIVE for run in theirs] == [True, True]
