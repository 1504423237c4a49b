"""Stop from the dashboard ends a real XGBoost / LightGBM training streaming to a real server.

The training runs in a subprocess (``boosting_stop_run.py``) publishing to a ``mlops-hooks
serve`` subprocess started with ``--token``; ``POST /api/runs/{run_id}/stop`` travels back
over the run's publisher connection, and the training ends early as ``training_completed``
with ``stop_reason: "requested"``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.control.support import (
    ROOT,
    TOKEN,
    completed_event,
    run_status,
    wait_for,
    wait_running,
)
from tests.live_server import LiveServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
SCRIPT = Path(__file__).with_name("boosting_stop_run.py")
ROUNDS = 3000


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    with LiveServer(tmp_path / "server", extra_args=["--token", TOKEN]) as live:
        yield live


@pytest.mark.parametrize("framework", ["xgboost", "lightgbm"])
def test_a_boosting_run_stops_on_request(server: LiveServer, tmp_path: Path,
                                         framework: str) -> None:
    run_id, base = f"stop-{framework}", server.http_url
    log = tmp_path / f"{run_id}.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MLOPS_HOOKS_URL": server.publish_url,
           "MLOPS_HOOKS_DISABLE": "console", "MLOPS_HOOKS_TOKEN": TOKEN, "RUN_ID": run_id,
           "ROUNDS": str(ROUNDS), "MLOPS_HOOKS_SYSTEM_INTERVAL": "0"}
    env.pop("MLOPS_HOOKS_JSONL", None)
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, str(SCRIPT), framework,
                                 str(tmp_path / "result.json")], env=env, cwd=tmp_path,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_running(base, run_id, proc, log)
        answer = httpx.post(f"{base}/api/runs/{run_id}/stop",
                            headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
        assert answer.status_code == 202, answer.text
        assert answer.json()["delivered"] is True
        assert proc.wait(120) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["flushed"] is True
    assert 0 < result["rounds"] < ROUNDS  # stopped, not trained to its end
    assert wait_for("completion", lambda: run_status(base, run_id) == "completed" or None)
    completed = completed_event(base, run_id)
    assert completed["stop_reason"] == "requested"
    assert "stopped on request" in completed["message"]
    assert "by publisher-token from 127.0.0.1" in completed["message"]
