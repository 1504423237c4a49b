from __future__ import annotations

import time

from mlops_hooks import protocol
from mlops_hooks.server.endpoints import rest
from tests.server.conftest import activity, progress
from tests.timestamps import assert_iso_utc_between


def test_models_runs_and_their_seq(client):
    client.post("/api/events", json=[
        {"type": "model_deployed", "model_name": "Customer Predictor v3.2", "model_version": "v3.2",
         "model_accuracy": 0.973, "model_id": "cp_v32"},
        {"type": "model_status_change", "status": "error", "model_id": "cp_v32",
         "health_score": 0.4},
        {"type": "prediction_volume", "total_predictions": 5247, "predictions_per_minute": 42,
         "milestone_reached": 5000},
        progress("r1", 40), {"type": "training_completed", "run_id": "r1",
                             "final_accuracy": 0.96},
        progress("r2", 10), {"type": "training_failed", "run_id": "r2", "error": "OOM",
                             "error_code": "MEMORY_ERROR"},
    ])
    body = client.get("/api/models").json()
    assert body["seq"] == 9  # 7 events and the server's run_state of each run's end
    model = body["models"][0]
    assert model["status"] == "error" and model["health_score"] == 0.4
    assert model["total_predictions"] == 5247 and model["milestone_reached"] == 5000
    runs = {r["run_id"]: r for r in body["runs"]}
    assert runs["r1"]["status"] == "completed" and runs["r1"]["completed"]["final_accuracy"] == 0.96
    assert runs["r2"]["status"] == "failed" and runs["r2"]["failed"]["error_code"] == "MEMORY_ERROR"
    assert runs["r1"]["progress"]["progress"] == 40 and len(runs["r1"]["points"]) == 1


def test_system_view(client):
    client.post("/api/events", json=[
        {"type": "system_metrics", "cpu_percent": 45.2, "current_health": "healthy"},
        {"type": "health_change", "current_health": "warning", "previous_health": "healthy",
         "reason": "High CPU usage detected", "recommended_action": "Scale"},
        {"type": "system_alert", "alert": {"id": "a1", "title": "High Memory Usage"}},
    ])
    body = client.get("/api/monitoring/system").json()
    assert body["seq"] == 3
    assert body["system"]["cpu_percent"] == 45.2
    assert body["health"]["current_health"] == "warning"
    assert body["health"]["reason"] == "High CPU usage detected"
    assert [a["id"] for a in body["alerts"]] == ["a1"]
    assert body["connections"] == 0


def test_activity_newest_first_with_limit(client):
    client.post("/api/events", json=[activity(i) for i in range(10)])
    body = client.get("/api/activity?limit=3").json()
    assert body["seq"] == 10
    assert [a["id"] for a in body["activity"]] == ["act_9", "act_8", "act_7"]
    assert len(client.get("/api/activity").json()["activity"]) == 10


def test_activity_limit_is_checked(client):
    for bad in ("0", "501", "x"):
        response = client.get(f"/api/activity?limit={bad}")
        assert response.status_code == 400
        assert response.json()["field"] == "limit" and "1 to 500" in response.json()["error"]


def test_healthz_and_metrics(client):
    client.post("/api/events", json=[progress(), progress(), activity(1)])
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["seq"] == 3 and health["backend"] == "memory"
    text = client.get("/metrics").text
    assert 'mlops_hooks_events_in_total{type="training_progress"} 2' in text
    for name in ("mlops_hooks_events_out_total", "mlops_hooks_coalesced_total",
                 "mlops_hooks_dropped_total", "mlops_hooks_closed_slow_total",
                 "mlops_hooks_queue_depth", "mlops_hooks_event_loop_lag_seconds",
                 "mlops_hooks_connections", "mlops_hooks_subscribers"):
        assert f"# TYPE {name} " in text


def test_index_serves_the_dashboard_or_says_it_is_missing(client, monkeypatch, tmp_path):
    response = client.get("/")
    assert response.status_code == 200 and "text/html" in response.headers["content-type"]
    monkeypatch.setattr(rest, "STATIC_DIR", tmp_path / "empty")
    missing = client.get("/")
    assert "dashboard page is missing" in missing.text


def test_alert_and_activity_posted_without_a_timestamp_get_the_servers(client):
    before = time.time()
    client.post("/api/events", json=[
        {"type": "system_alert", "alert": {"id": "a1", "title": "High Memory Usage"}},
        activity(1),
    ])
    after = time.time()
    (alert,) = client.get("/api/monitoring/system").json()["alerts"]
    (entry,) = client.get("/api/activity").json()["activity"]
    with client.websocket_connect("/ws") as sub:
        snapshot = sub.receive_json()
    assert (alert["id"], entry["id"]) == ("a1", "act_1")
    assert snapshot["alerts"] == [alert] and snapshot["activity"] == [entry]
    for item in (alert, entry):
        assert_iso_utc_between(item["timestamp"], before, after)


def test_healthz_looks_the_version_up_once_not_on_every_probe(client, monkeypatch):
    looked_up = []

    def version(name):
        looked_up.append(name)
        return "9.9.9"

    monkeypatch.setattr(protocol.metadata, "version", version)
    protocol.version.cache_clear()
    try:
        assert [client.get("/healthz").json()["version"] for _ in range(3)] == ["9.9.9"] * 3
    finally:
        protocol.version.cache_clear()
    assert looked_up == ["mlops-hooks"]
