from __future__ import annotations

import pytest

from mlops_hooks.server.ops.monitor import check_stalls, sample_resources
from tests.server.conftest import progress

pytestmark = pytest.mark.timeout(30)


STALL_TIMEOUT = 60.0


def test_stalled_run_is_marked_and_alerted_once(make_client):
    # no background watchdog (stall_timeout=0): the test runs its passes at the times it picks
    client = make_client()
    core = client.app.state.core

    def watchdog_pass(at: float) -> list[str]:
        """A watchdog pass ``at`` seconds after the quiet run's last event."""
        now = core.state.runs["quiet"].seen_at + at
        return client.portal.call(check_stalls, core, now, STALL_TIMEOUT)

    client.post("/api/events", json=[
        progress("quiet", 40, model_name="net"),
        progress("done", 100), {"type": "training_completed", "run_id": "done"}])
    with client.websocket_connect("/ws?types=system_alert,activity_update") as sub:
        sub.receive_json()
        assert watchdog_pass(STALL_TIMEOUT - 0.5) == []  # not silent long enough yet
        assert watchdog_pass(STALL_TIMEOUT + 0.5) == ["quiet"]  # "done" is completed
        alert = sub.receive_json()
        activity = sub.receive_json()
        # long past the timeout, still silent: a second alert would be due now, if any
        assert watchdog_pass(10 * STALL_TIMEOUT) == []
        client.post("/api/events", json={"type": "activity_update",
                                         "activity": {"id": "marker", "title": "m"}})
        assert sub.receive_json()["activity"]["id"] == "marker"  # nothing came in between
    text = ("No event from run net (quiet) for 1m 0s: the training process may have been "
            "killed (SIGKILL, out of memory) or be hung")
    assert alert["type"] == "system_alert" and alert["run_id"] == "quiet"
    assert alert["alert"]["alert_type"] == "training_stalled"
    assert alert["alert"]["priority"] == "high" and alert["alert"]["message"] == text
    assert activity["run_id"] == "quiet" and activity["activity"]["description"] == text
    assert activity["activity"]["action_type"] == "training_stalled"
    assert activity["activity"]["metadata"] == {"run_id": "quiet", "model_name": "net",
                                                "silent_seconds": STALL_TIMEOUT + 0.5}
    runs = {r["run_id"]: r["status"] for r in client.get("/api/models").json()["runs"]}
    assert runs == {"quiet": "stalled", "done": "completed"}
    client.post("/api/events", json=progress("quiet", 45))
    runs = {r["run_id"]: r["status"] for r in client.get("/api/models").json()["runs"]}
    assert runs["quiet"] == "running"
    # a new silence is a new stall: alerted again, once
    assert watchdog_pass(STALL_TIMEOUT + 0.5) == ["quiet"]
    assert watchdog_pass(10 * STALL_TIMEOUT) == []


def test_system_metrics_are_sampled_with_state_and_request_timings(make_client):
    client = make_client(metrics_interval=0.1)
    client.post("/api/events", json={"type": "model_deployed", "model_name": "m",
                                     "model_accuracy": 0.8})
    client.get("/api/models")
    with client.websocket_connect("/ws?types=system_metrics") as sub:
        sub.receive_json()
        metrics = sub.receive_json()
    for field in ("cpu_percent", "memory_percent", "disk_percent", "current_health",
                  "active_connections", "current_accuracy", "model_accuracy",
                  "api_response_time_ms", "timestamp"):
        assert field in metrics, field
    assert metrics["active_connections"] == 1 and metrics["current_accuracy"] == 0.8
    assert 0 <= metrics["cpu_percent"] <= 100
    system = client.get("/api/monitoring/system").json()
    assert system["system"]["type"] == "system_metrics"


def test_sample_resources(tmp_path):
    sample = sample_resources(str(tmp_path))
    assert set(sample) == {"cpu_percent", "memory_percent", "disk_percent"}
    assert all(0 <= v <= 100 for v in sample.values())


def test_loop_lag_is_exported(make_client):
    client = make_client()
    text = client.get("/metrics").text
    assert "mlops_hooks_event_loop_lag_seconds " in text
