"""End to end: a real server accepts a ``run_params`` event and broadcasts it to subscribers."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from mlops_hooks.run.params import GROUP_ENV
from tests.live_server import LiveServer
from tests.server.live import next_of, publish, publisher, recv_json, subscriber

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]
QUIET = ["--metrics-interval", "0", "--stall-timeout", "0"]
REPO = Path(__file__).resolve().parents[2]

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


TRACKED = """
import mlops_hooks
with mlops_hooks.track("e2e", total_epochs=1, params={"lr": 0.1, "opt": {"name": "sgd"}},
                       group="e2e-sweep", run_id="run-e2e") as run:
    run.epoch_end(0, metrics={"val_loss": 0.25})
"""


def test_a_tracked_run_publishes_its_params_to_a_live_server(tmp_path):
    async def scenario(server: LiveServer) -> list[dict]:
        env = {**os.environ, "MLOPS_HOOKS_URL": server.ws_url, "MLOPS_HOOKS_DISABLE": "console",
               "MLOPS_HOOKS_FLUSH_TIMEOUT": "30", "PYTHONPATH": str(REPO)}
        env.pop(GROUP_ENV, None)
        received: list[dict] = []
        async with subscriber(f"{server.ws_url}?types=run_params,training_completed") as sub:
            assert (await recv_json(sub))["type"] == "snapshot"
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-c", TRACKED, env=env, cwd=str(REPO))
            assert await process.wait() == 0
            while not received or received[-1]["type"] != "training_completed":
                received.append(await recv_json(sub))
            # the git commit follows in a second run_params when it was not known at start
            with_git = [m for m in received if "git" in (m.get("metadata") or {})]
            if not with_git:
                received.append(await next_of(sub, "run_params"))
        return received

    with LiveServer(tmp_path, extra_args=QUIET) as server:
        received = asyncio.run(scenario(server))
    first = received[0]
    assert first["type"] == "run_params"
    assert (first["run_id"], first["model_name"], first["group"], first["params"]) == (
        "run-e2e", "e2e", "e2e-sweep", {"lr": 0.1, "opt.name": "sgd"})
    assert set(first["metadata"]) >= {"host", "pid", "python", "frameworks", "command"}
    assert first["metadata"]["command"] == "-c"
    git = next(m["metadata"]["git"] for m in received
               if m["type"] == "run_params" and "git" in m["metadata"])
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                          text=True, check=True).stdout.strip()
    assert git["commit"] == head and isinstance(git["dirty"], bool)
