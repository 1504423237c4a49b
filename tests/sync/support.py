"""Helpers of the sync tests: run ``mlops-hooks sync`` as a user would, read a server back."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def sync_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "mlops_hooks", "sync", *args]


def run_sync(*args: str, env: dict[str, str] | None = None,
             timeout: float = 120) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "PYTHONPATH": str(ROOT), "MLOPS_HOOKS_DISABLE": "", **(env or {})}
    if "MLOPS_HOOKS_TOKEN" not in (env or {}):
        full.pop("MLOPS_HOOKS_TOKEN", None)  # the token comes from the test, if at all
    return subprocess.run(sync_command(*args), env=full, capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def counter(base: str, name: str, kind: str | None = None) -> float:
    """A counter of the server's ``/metrics`` (by event type when ``kind`` is given)."""
    text = httpx.get(base + "/metrics").text
    label = f'{{type="{kind}"}}' if kind else ""
    match = re.search(rf"^{name}{re.escape(label)} ([0-9.e+]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def history(base: str, run_id: str) -> tuple[dict, dict, dict]:
    """The run as ``/api/runs`` lists it, ``/api/runs/{id}`` and its metric series."""
    listed = {r["run_id"]: r for r in httpx.get(base + "/api/runs").json()["runs"]}
    return (listed[run_id], httpx.get(f"{base}/api/runs/{run_id}").json(),
            httpx.get(f"{base}/api/runs/{run_id}/metrics").json())
