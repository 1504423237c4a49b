"""Stop in a fleet: the POST reaches one server, the run's publisher is connected to another.

Two real servers share a real Redis; a real ``track()`` loop publishes to server ``a``;
``POST /api/runs/{run_id}/stop`` goes to server ``b``, which does not hold the run's connection.
The request's audit entry travels the shared stream; ``a`` sends the stop down the run's socket
and the run ends as completed with ``stop_reason: "requested"``, acknowledged once.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.control.support import (
    TOKEN,
    activity,
    completed_event,
    run_status,
    start_training,
    wait_for,
    wait_running,
)
from tests.live_server import LiveServer
from tests.redis.fleet import fleet_args, running
from tests.redis_server import RedisServer

pytestmark = pytest.mark.timeout(300)


def test_a_stop_posted_to_another_server_of_the_fleet_reaches_the_run(
        tmp_path: Path, redis_server: RedisServer) -> None:
    args = [*fleet_args(redis_server), "--token", TOKEN]
    with running(LiveServer(tmp_path / "a", extra_args=args),
                 LiveServer(tmp_path / "b", extra_args=args)) as (a, b):
        run_id = "fleet-stop"
        proc = start_training(tmp_path, a.publish_url, "track", run_id, epochs=50)
        try:
            wait_running(b.http_url, run_id, proc, tmp_path / f"{run_id}.log")
            answer = httpx.post(f"{b.http_url}/api/runs/{run_id}/stop", timeout=5,
                                headers={"Authorization": f"Bearer {TOKEN}"})
            assert answer.status_code == 202, answer.text
            assert answer.json()["delivered"] is False  # b does not hold the run's socket
            assert proc.wait(120) == 0, (tmp_path / f"{run_id}.log").read_text()[-3000:]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert json.loads((tmp_path / f"{run_id}.json").read_text())["epochs"] < 50
        for server in (a, b):
            wait_for("the completion on every server",
                     lambda s=server: run_status(s.http_url, run_id) == "completed" or None)
            assert completed_event(server.http_url, run_id)["stop_reason"] == "requested"
        entries = activity(b.http_url)
        asked = [e for e in entries if e["action_type"] == "stop_requested"]
        acked = [e for e in entries if e["action_type"] == "stop_acknowledged"]
        assert len(asked) == 1 and asked[0]["metadata"]["delivered"] is False
        assert [e["metadata"]["request_id"] for e in acked] == [answer.json()["request_id"]]
