"""Run an example script against a live server and read what arrived over the REST API."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def example_env(url: str | None, **extra: str) -> dict[str, str]:
    """The environment of an example: publishing to ``url`` (or not at all), nothing else."""
    # One intra-op thread: these models are tiny, and on a busy 2-core machine OpenMP's
    # spin-waiting threads make a smoke run ten times slower.
    env = dict(os.environ, KERAS_BACKEND="torch", PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    for name in ("MLOPS_HOOKS_URL", "MLOPS_HOOKS_TOKEN", "MLOPS_HOOKS_DISABLE",
                 "MLOPS_HOOKS_AUTO", "MLOPS_HOOKS_JSONL", "PYTHONPATH"):
        env.pop(name, None)
    if url is None:
        env["MLOPS_HOOKS_DISABLE"] = "publisher"
    else:
        env["MLOPS_HOOKS_URL"] = url
        env["MLOPS_HOOKS_FLUSH_TIMEOUT"] = "20"
    env.update(extra)
    return env


def run_example(script: str, *args: str, url: str | None, timeout: float = 180,
                env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``examples/<script>`` and fail with its output when it does not exit with 0."""
    process = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True,
        timeout=timeout, cwd=ROOT, env=dict(env) if env is not None else example_env(url))
    assert process.returncode == 0, (f"{script} exited with {process.returncode}\n"
                                     f"stdout:\n{process.stdout}\nstderr:\n{process.stderr}")
    assert "not delivered" not in process.stderr, process.stderr
    return process


def wait_until(read: Callable[[], Any], timeout: float = 15.0) -> Any:
    """Poll ``read()`` until it returns something truthy (the last value otherwise)."""
    deadline = time.monotonic() + timeout
    value = read()
    while not value and time.monotonic() < deadline:
        time.sleep(0.1)
        value = read()
    return value


def run_named(http_url: str, name: str) -> dict[str, Any] | None:
    """The server's state of the run called ``name`` (``GET /api/models``)."""
    runs = httpx.get(http_url + "/api/models", timeout=10).json()["runs"]
    return next((r for r in runs if r["model_name"] == name), None)


def finished_run(http_url: str, name: str) -> dict[str, Any]:
    """Wait for the run called ``name`` to be completed or failed, and return it."""
    run = wait_until(lambda: (r := run_named(http_url, name)) and r["status"] != "running" and r)
    assert run, f"no finished run {name!r} on the server"
    return dict(run)


def activity_for(http_url: str, run_id: str) -> list[str]:
    """Titles of the activity entries of one run, oldest first."""
    entries = httpx.get(http_url + "/api/activity?limit=500", timeout=10).json()["activity"]
    return [a["title"] for a in reversed(entries)
            if (a.get("metadata") or {}).get("run_id") == run_id]
