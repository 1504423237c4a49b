"""After a server restart on the same SQLite history, live runs are crashed unless carried.

Two real ``mlops-hooks serve`` processes, one after the other, on the same ``--db`` file
(``tests/live_server.py``). Two ``track()`` loops publish to the first; it stops; one loop is
SIGKILLed while no server runs (so no server sees its connection close), the other keeps
stepping and reconnects. The second server reads both runs as ``running`` from the history:
the vanished one must become ``crashed`` once its time to come back is over, the reconnected
one must stay live. Every wait is on a condition with a deadline.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import pytest

from tests.live_server import LiveServer
from tests.server.live import recv_json, server_metric, subscriber
from tests.server.test_run_states_live import (
    FLAGS,
    LIVE,
    LOOP,
    _listed,
    _process,
    _run,
    _state,
    _until,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_a_run_left_live_by_a_restart_is_crashed_and_a_reconnected_one_stays_live(tmp_path):
    (tmp_path / "gone").mkdir()
    (tmp_path / "back").mkdir()
    # runs left live wait 15 s + the grace for their publishers, not the default 30 s: the
    # one coming back reconnects within its 10 s backoff cap
    server = LiveServer(tmp_path / "server", extra_args=[*FLAGS, "--heartbeat-timeout", "15"],
                        startup_timeout=60)

    async def scenario() -> tuple[dict[str, Any], dict[str, Any], list[str]]:
        server.start()
        first_pid = server.proc.pid if server.proc else None
        async with _process(server, LOOP, "loop", tmp_path / "gone", "restart-gone") as gone, \
                _process(server, LOOP, "loop", tmp_path / "back", "restart-back") as back:
            await _until(lambda: (tmp_path / "gone" / "stepping").exists()
                         and (tmp_path / "back" / "stepping").exists()
                         and server_metric(server, "mlops_hooks_runs_carried") >= 2,
                         "both runs stepped and the heartbeats listed them")
            server.stop()  # a clean stop: the history on disk says both are running
            gone.send_signal(signal.SIGKILL)  # vanishes while no server is there to see it
            assert await gone.wait() == -signal.SIGKILL
            server.start()  # a second server process on the same SQLite file
            assert server.proc is not None and server.proc.pid != first_pid
            assert _run(server, "restart-gone")["status"] in LIVE  # read from the history
            async with subscriber(f"{server.ws_url}?types=run_state") as sub:
                assert (await recv_json(sub))["type"] == "snapshot"
                crashed = await _state(sub, "restart-gone", "crashed")
            # both runs were restored at the same moment with the same deadline, now past:
            # the one whose publisher came back is live and was never crashed
            assert back.returncode is None
            return crashed, _run(server, "restart-back"), _listed(server, "crashed")

    try:
        crashed, back, crashed_runs = asyncio.run(scenario())
    finally:
        server.stop()
    assert crashed["previous"] in LIVE
    assert "after the server restarted" in crashed["reason"]
    assert back["status"] in LIVE and back["ended_at"] is None
    assert crashed_runs == ["restart-gone"]
    assert _status_after(server, "restart-gone") == "crashed"


def _status_after(server: LiveServer, run_id: str) -> str:
    """The run's status as a third server process reads it from the history."""
    server.start()
    try:
        return str(_run(server, run_id)["status"])
    finally:
        server.stop()
