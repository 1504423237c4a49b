"""End to end: a real server accepts a ``run_params`` event and broadcasts it to subscribers."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from tests.live_server import LiveServer
from tests.server.live import next_of, publish, publisher, recv_json, subscriber

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]
QUIET = ["--metrics-interval", "0", "--stall-timeout", "0"]

PARAMS = {"type": "run_params", "run_id": "r-16", "model_name": "SVC", "group": "GridSearchCV(SVC)",
          "params": {"C": 1.0, "kernel": "rbf", "grid.C": "[0.1, 1.0]"},
          "metadata": {"host": "box", "pid": 7, "python": "3.11.7", "frameworks": {},
                       "command": "python search.py", "git": None},
          "timestamp": "2025-12-06T10:30:00Z"}


def test_a_live_server_broadcasts_run_params_and_refuses_a_bad_one(tmp_path):
    async def scenario(server: LiveServer) -> None:
        async with subscriber(f"{server.ws_url}?types=run_params") as sub:
            snapshot = await recv_json(sub)
            assert snapshot["type"] == "snapshot"
            async with publisher(server.publish_url) as pub:
                ack = await publish(pub, PARAMS)
                assert ack == {"type": "ack", "seq": ack["seq"], "event_id": None}
                bad = await publish(pub, dict(PARAMS, params={"layers": [1, 2]}))
                assert bad["type"] == "error" and bad["field"] == "params.layers"
                assert bad["retry"] is False
            received = await next_of(sub, "run_params")
            assert received == dict(PARAMS, seq=ack["seq"])
        # the snapshot after it still builds (state keeps what it knows of the run)
        async with subscriber(server.ws_url) as sub:
            assert (await recv_json(sub))["type"] == "snapshot"
        response = httpx.post(f"{server.http_url}/api/events",
                              content=json.dumps(dict(PARAMS, run_id="r-17")),
                              headers={"Content-Type": "application/json"})
        assert response.status_code == 200, response.text
        assert response.json()["accepted"] == 1

    with LiveServer(tmp_path, extra_args=QUIET) as server:
        asyncio.run(scenario(server))
