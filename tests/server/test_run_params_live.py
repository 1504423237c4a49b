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


GROUPED = """
import sys
import mlops_hooks
for i, outcome in enumerate(sys.argv[1:]):
    try:
        with mlops_hooks.track(f"trial-{i}", total_epochs=1, group="study-e2e",
                               run_id=f"trial-{i}") as run:
            run.epoch_end(0, metrics={"val_loss": 1.0 / (i + 1)})
            if outcome == "fail":
                raise RuntimeError("diverged")
            run.complete(final_accuracy=0.5 + i / 10)
    except RuntimeError:
        pass
"""


def test_tracked_runs_with_a_planned_group_size_make_the_group_endpoint(tmp_path):
    """MLOPS_HOOKS_GROUP_SIZE in a real training process; GET /api/groups/... with httpx."""
    env = {**os.environ, "MLOPS_HOOKS_DISABLE": "console", "MLOPS_HOOKS_FLUSH_TIMEOUT": "30",
           "PYTHONPATH": str(REPO), "MLOPS_HOOKS_GROUP_SIZE": "5"}
    env.pop(GROUP_ENV, None)
    with LiveServer(tmp_path, extra_args=QUIET) as server:
        env["MLOPS_HOOKS_URL"] = server.ws_url
        done = subprocess.run([sys.executable, "-c", GROUPED, "ok", "fail", "ok"], env=env,
                              cwd=str(REPO), capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        body = httpx.get(f"{server.http_url}/api/groups/study-e2e", timeout=10).json()
        runs = httpx.get(f"{server.http_url}/api/runs", params={"group": "study-e2e"},
                         timeout=10).json()["runs"]
        bad = subprocess.run([sys.executable, "-c", GROUPED, "ok"],
                             env={**env, "MLOPS_HOOKS_GROUP_SIZE": "five"}, cwd=str(REPO),
                             capture_output=True, text=True, timeout=60)
    assert body == {"group": "study-e2e", "runs": 3, "planned": 5,
                    "counts": {"running": 0, "stalled": 0, "completed": 2, "failed": 1},
                    "best": {"run_id": "trial-2", "model_name": "trial-2",
                             "final_accuracy": 0.7}}
    assert sorted((r["run_id"], r["status"], r["group_size"]) for r in runs) == [
        ("trial-0", "completed", 5), ("trial-1", "failed", 5), ("trial-2", "completed", 5)]
    assert bad.returncode != 0
    assert "MLOPS_HOOKS_GROUP_SIZE must be a positive integer" in bad.stderr
    assert "'five'" in bad.stderr
