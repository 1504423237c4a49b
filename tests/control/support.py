"""Helpers of the stop tests: a training subprocess streaming to a live server, and waits."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("stop_run.py")
TOKEN = "stop-test-token"
DEADLINE = 120.0
T = TypeVar("T")


def start_training(tmp_path: Path, url: str, framework: str, run_id: str, *,
                   token: str | None = TOKEN, epochs: int = 50,
                   step_sleep: float = 0.05) -> subprocess.Popen[bytes]:
    """The training script ``framework`` (lightning, keras, track) in a subprocess."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MLOPS_HOOKS_URL": url,
           "MLOPS_HOOKS_DISABLE": "console", "RUN_ID": run_id, "EPOCHS": str(epochs),
           "STEP_SLEEP": str(step_sleep), "KERAS_BACKEND": "torch",
           "MLOPS_HOOKS_SYSTEM_INTERVAL": "0"}
    env.pop("MLOPS_HOOKS_JSONL", None)
    if token is not None:
        env["MLOPS_HOOKS_TOKEN"] = token
    log = open(tmp_path / f"{run_id}.log", "wb")  # noqa: SIM115 - owned by the process
    proc = subprocess.Popen([sys.executable, str(SCRIPT), framework,
                             str(tmp_path / f"{run_id}.json")], env=env, cwd=tmp_path,
                            stdout=log, stderr=subprocess.STDOUT)
    log.close()
    return proc


def wait_for(what: str, check: Callable[[], T | None], timeout: float = DEADLINE) -> T:
    """Poll ``check`` until it returns something other than ``None``, or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def run_status(base: str, run_id: str, token: str | None = TOKEN) -> str | None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.get(f"{base}/api/runs/{run_id}", headers=headers, timeout=5)
    return response.json()["run"]["status"] if response.status_code == 200 else None


def wait_running(base: str, run_id: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Until the run is ``running`` on the server and has stepped a little."""
    def check() -> bool | None:
        if proc.poll() is not None:
            raise AssertionError(f"the training exited early:\n{log.read_text()[-3000:]}")
        return True if run_status(base, run_id) == "running" else None

    wait_for(f"run {run_id} to be running", check)


def completed_event(base: str, run_id: str, token: str | None = TOKEN) -> dict[str, Any]:
    """The run's ``training_completed`` as the server's state holds it."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    runs = httpx.get(f"{base}/api/models", headers=headers, timeout=5).json()["runs"]
    run = next(r for r in runs if r["run_id"] == run_id)
    assert run["completed"] is not None, run
    completed: dict[str, Any] = run["completed"]
    return completed


def activity(base: str, token: str | None = TOKEN) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = httpx.get(f"{base}/api/activity?limit=500", headers=headers, timeout=5).json()
    entries: list[dict[str, Any]] = body["activity"]
    return entries
