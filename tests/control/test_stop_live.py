"""Stop from the dashboard, end to end: real training processes, a real server, real HTTP.

A Lightning ``Trainer.fit``, a Keras ``fit`` and a ``track()`` loop stream to a ``mlops-hooks
serve`` subprocess started with ``--token``; ``POST /api/runs/{run_id}/stop`` travels back over
the run's own ``/ws/publish`` connection; each run ends as ``training_completed`` with
``stop_reason: "requested"`` after fewer epochs than planned, and the activity feed records who
asked, from where, and the training process's acknowledgement.
"""

from __future__ import annotations

import json
import re
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

EPOCHS = 50
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def server(tmp_path: Path):
    with LiveServer(tmp_path / "server", extra_args=["--token", TOKEN]) as live:
        yield live


def _stop_and_check(server: LiveServer, tmp_path: Path, framework: str) -> None:
    run_id = f"stop-{framework}"
    base = server.http_url
    proc = start_training(tmp_path, server.publish_url, framework, run_id, epochs=EPOCHS)
    try:
        wait_running(base, run_id, proc, tmp_path / f"{run_id}.log")
        stop = f"{base}/api/runs/{run_id}/stop"
        refused = httpx.post(stop, timeout=5)
        assert refused.status_code == 401, refused.text
        assert "publisher token" in refused.json()["error"]
        wrong = httpx.post(stop, headers={"Authorization": "Bearer nope"}, timeout=5)
        assert wrong.status_code == 401
        assert run_status(base, run_id) == "running"  # a refused request stops nothing
        answer = httpx.post(stop, headers=AUTH, timeout=5)
        assert answer.status_code == 202, answer.text
        body = answer.json()
        assert body["run_id"] == run_id and body["delivered"] is True
        assert body["requested_by"] == "publisher-token" and body["source"] == "127.0.0.1"
        assert proc.wait(120) == 0, (tmp_path / f"{run_id}.log").read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    result = json.loads((tmp_path / f"{run_id}.json").read_text())
    assert result["flushed"] is True
    assert result["epochs"] < EPOCHS  # stopped, not run to its end
    assert wait_for("completion", lambda: run_status(base, run_id) == "completed" or None)
    completed = completed_event(base, run_id)
    assert completed["stop_reason"] == "requested"
    assert "stopped on request" in completed["message"]
    where = re.search(rf"at epoch (\d+)/{EPOCHS} \(by publisher-token from 127\.0\.0\.1\)",
                      completed["message"])
    assert where is not None and int(where.group(1)) < EPOCHS, completed["message"]
    entries = activity(base)
    asked = [a for a in entries if a["action_type"] == "stop_requested"]
    assert len(asked) == 1
    assert asked[0]["user"] == "publisher-token"
    assert asked[0]["metadata"]["run_id"] == run_id
    assert asked[0]["metadata"]["source"] == "127.0.0.1"
    assert asked[0]["metadata"]["request_id"] == body["request_id"]
    acked = [a for a in entries if a["action_type"] == "stop_acknowledged"]
    assert [a["metadata"]["request_id"] for a in acked] == [body["request_id"]]
    again = httpx.post(f"{base}/api/runs/{run_id}/stop", headers=AUTH, timeout=5)
    assert again.status_code == 409
    assert again.json() == {"error": f"run {run_id!r} has already ended (completed): there is "
                                     "nothing to stop", "status": "completed"}


def test_a_lightning_run_stops_on_request(server: LiveServer, tmp_path: Path) -> None:
    _stop_and_check(server, tmp_path, "lightning")


def test_a_keras_run_stops_on_request(server: LiveServer, tmp_path: Path) -> None:
    _stop_and_check(server, tmp_path, "keras")


def test_a_track_loop_reads_the_flag_and_ends_without_an_exception(
        server: LiveServer, tmp_path: Path) -> None:
    _stop_and_check(server, tmp_path, "track")


def test_unknown_runs_and_bad_tokens_are_refused(server: LiveServer) -> None:
    base = server.http_url
    missing = httpx.post(f"{base}/api/runs/no-such-run/stop", headers=AUTH, timeout=5)
    assert missing.status_code == 404
    assert missing.json() == {"error": "no run 'no-such-run' in this server's history"}
    assert httpx.post(f"{base}/api/runs/no-such-run/stop", timeout=5).status_code == 401
    other_origin = httpx.post(f"{base}/api/runs/no-such-run/stop", timeout=5,
                              headers={**AUTH, "Origin": "http://evil.example"})
    assert other_origin.status_code == 403
    too_long = httpx.post(f"{base}/api/runs/{'x' * 600}/stop", headers=AUTH, timeout=5)
    assert too_long.status_code == 400 and too_long.json()["field"] == "run_id"
    assert httpx.get(f"{base}/api/runs/x/stop", headers=AUTH, timeout=5).status_code == 405


def test_without_a_server_token_the_request_is_anonymous(tmp_path: Path) -> None:
    with LiveServer(tmp_path / "server") as server:
        run_id = "stop-anonymous"
        proc = start_training(tmp_path, server.publish_url, "track", run_id, token=None)
        try:
            wait_running(server.http_url, run_id, proc, tmp_path / f"{run_id}.log")
            answer = httpx.post(f"{server.http_url}/api/runs/{run_id}/stop", timeout=5)
            assert answer.status_code == 202
            assert answer.json()["requested_by"] == "anonymous"
            assert proc.wait(120) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        completed = completed_event(server.http_url, run_id, token=None)
        assert completed["stop_reason"] == "requested"
        asked = [a for a in activity(server.http_url, token=None)
                 if a["action_type"] == "stop_requested"]
        assert asked[0]["user"] == "anonymous"
