"""Retry/Retrain that do something: ``mlops_relaunch_request`` and the built-in launcher.

A real server subprocess; the failed run and the dashboard's Retry request are real events
through ``POST /api/events`` (exactly what the dashboard's buttons send); the "training" command
is a tiny script that writes a marker file. The launcher starts it only on a server started
with ``--allow-relaunch`` (which refuses to start without ``--token``).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlops_hooks.run.params import run_metadata
from tests.control.support import TOKEN, activity, wait_for
from tests.live_server import LiveServer

pytestmark = pytest.mark.timeout(180)

MARKER_SCRIPT = Path(__file__).with_name("relaunch_marker.py")
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _failed_run(run_id: str, workdir: Path, marker: Path, *,
                host: str | None = None) -> list[dict[str, Any]]:
    metadata = {"host": host or socket.gethostname(), "pid": 1, "python": "3",
                "command": f"{MARKER_SCRIPT} {marker}", "cwd": str(workdir),
                "executable": sys.executable}
    return [
        {"type": "training_progress", "run_id": run_id, "model_name": "digits",
         "stage": "model_training", "progress": 30},
        {"type": "run_params", "run_id": run_id, "model_name": "digits", "params": {"lr": 0.1},
         "metadata": metadata},
        {"type": "training_failed", "run_id": run_id, "model_name": "digits",
         "error": "boom", "error_code": "MEMORY_ERROR"},
    ]


def _request(action: str, **metadata: Any) -> dict[str, Any]:
    return {"type": "activity_update", "activity": {
        "id": f"ui_{action}_{metadata.get('run_id') or metadata.get('model_name')}",
        "title": "Retry requested", "user": "dashboard", "action_type": action,
        "status": "requested", "metadata": metadata}}


def _post(server: LiveServer, *events: dict[str, Any]) -> None:
    response = httpx.post(server.http_url + "/api/events", json=list(events), headers=AUTH,
                          timeout=10)
    assert response.status_code == 200, response.text


def _outcome(server: LiveServer, run_id: str) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        return next((a for a in activity(server.http_url)
                     if a["action_type"].startswith("relaunch_")
                     and a["metadata"].get("run_id") == run_id), None)

    return wait_for(f"the relaunch outcome of {run_id}", found, timeout=60)


def test_retry_re_runs_the_captured_command_in_its_directory(tmp_path: Path) -> None:
    workdir = tmp_path / "project"
    workdir.mkdir()
    marker = tmp_path / "marker.json"
    with LiveServer(tmp_path / "server", extra_args=["--token", TOKEN, "--allow-relaunch",
                                                     "--metrics-interval", "0"]) as server:
        _post(server, *_failed_run("r-retry", workdir, marker))
        _post(server, _request("retry_requested", run_id="r-retry", model_name="digits"))
        outcome = _outcome(server, "r-retry")
        assert outcome["action_type"] == "relaunch_started", outcome
        assert outcome["metadata"]["launcher"] == "command"
        assert outcome["metadata"]["cwd"] == str(workdir)
        written = wait_for("the marker file", lambda: (marker.exists() and marker.stat().st_size
                           and json.loads(marker.read_text())) or None, timeout=60)
        assert written["cwd"] == str(workdir)
        assert written["argv"] == [str(marker)]
        assert written["executable"] == sys.executable
        assert written["relaunch_of"] == "r-retry"
        assert written["url"] == f"ws://127.0.0.1:{server.port}/ws/publish"
        assert written["token"] == TOKEN
        # Retrain names a model: its newest run is started again.
        marker.unlink()
        _post(server, _request("retrain_requested", model_name="digits"))
        wait_for("the retrain's marker file", lambda: marker.exists() or None, timeout=60)


def test_without_allow_relaunch_nothing_runs_and_the_feed_says_why(tmp_path: Path) -> None:
    marker = tmp_path / "marker.json"
    with LiveServer(tmp_path / "server", extra_args=["--token", TOKEN]) as server:
        _post(server, *_failed_run("r-off", tmp_path, marker))
        _post(server, _request("retry_requested", run_id="r-off"))
        outcome = _outcome(server, "r-off")
        assert outcome["action_type"] == "relaunch_unavailable"
        assert "--allow-relaunch" in outcome["description"]
        refused = httpx.post(server.http_url + "/api/events", timeout=10,
                             json=_request("retry_requested", run_id="r-off"))
        assert refused.status_code == 401  # requests need the publisher token
    assert not marker.exists()


def test_the_launcher_refuses_a_run_of_another_machine(tmp_path: Path) -> None:
    marker = tmp_path / "marker.json"
    with LiveServer(tmp_path / "server",
                    extra_args=["--token", TOKEN, "--allow-relaunch"]) as server:
        _post(server, *_failed_run("r-far", tmp_path, marker, host="elsewhere.example"))
        _post(server, _request("retry_requested", run_id="r-far"))
        outcome = _outcome(server, "r-far")
        assert outcome["action_type"] == "relaunch_refused"
        assert "ran on 'elsewhere.example', not on this server's machine" in \
            outcome["description"]
    assert not marker.exists()


def test_allow_relaunch_without_a_token_refuses_to_start(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "mlops_hooks", "serve", "--allow-relaunch",
                           "--port", "0", "--db", str(tmp_path / "db.sqlite3")],
                          capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in os.environ.items()
                               if k != "MLOPS_HOOKS_TOKEN"})
    assert done.returncode == 2
    assert "--allow-relaunch) needs a publisher token (--token)" in done.stderr


def test_the_run_metadata_names_the_interpreter_and_the_working_directory() -> None:
    metadata = run_metadata()
    assert metadata["cwd"] == str(Path.cwd())
    assert metadata["executable"] == sys.executable
