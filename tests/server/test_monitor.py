from __future__ import annotations

import pytest

from mlops_hooks.server.ops.monitor import sample_resources
from tests.server.conftest import progress

pytestmark = pytest.mark.timeout(30)


def test_stalled_run_is_marked_and_alerted_once(make_client):
    client = make_client(stall_timeout=0.3)
    client.post("/api/events", json=[
        progress("quiet", 40, model_name="net"),
        progress("done", 100), {"type": "training_completed", "run_id": "done"}])
    with client.websocket_connect("/ws?types=system_alert,activity_update") as sub:
        sub.receive_json()
        alert = sub.receive_json()
        activity = sub.receive_json()
        client.post("/api/events", json={"type": "activity_update",
                                         "activity": {"id": "marker", "title": "m"}})
        assert sub.receive_json()["activity"]["id"] == "marker"  # no second stall alert
    assert alert["type"] == "system_alert" and alert["run_id"] == "quiet"
    assert alert["alert"]["alert_type"] == "training_stalled"
    assert alert["alert"]["priority"] == "high" and "SIGKILL" in alert["alert"]["message"]
    assert activity["activity"]["action_type"] == "training_stalled"
    runs = {r["run_id"]: r["status"] for r in client.get("/api/models").json()["runs"]}
    assert runs == {"quiet": "stalled", "done": "completed"}
    client.post("/api/events", json=progress("quiet", 45))
    runs = {r["run_id"]: r["status"] for r in client.get("/api/models").json()["runs"]}
    assert runs["quiet"] == "running"


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
