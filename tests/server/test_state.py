from __future__ import annotations

import msgspec

from mlops_hooks import events as ev
from mlops_hooks.server.state import runs as runs_module
from mlops_hooks.server.state.runs import MAX_POINTS, RunState
from mlops_hooks.server.state.state import MAX_ACTIVITY, State


class Listener:
    def __init__(self) -> None:
        self.runs: list[dict] = []
        self.models: list[dict] = []
        self.activity: list[dict] = []
        self.deployments: list[dict] = []
        self.points: list[tuple] = []
        self.params: list[tuple] = []

    def run_changed(self, run, seq):
        self.runs.append(run)

    def model_changed(self, model, seq):
        self.models.append(model)

    def activity_added(self, activity, seq):
        self.activity.append(activity)

    def deployment_added(self, event, seq):
        self.deployments.append(event)

    def points_added(self, run_id, step, values):
        self.points.append((run_id, step, values))

    def params_added(self, run_id, params, metadata):
        self.params.append((run_id, params, metadata))


def apply(state: State, data: dict) -> None:
    event = ev.from_dict(data)
    event.seq = state.seq + 1
    event.timestamp = event.timestamp or "2025-12-06T10:30:00Z"
    state.apply(event, msgspec.json.decode(ev.encode(event)))


def test_model_lifecycle_and_listener():
    listener = Listener()
    state = State(listener)
    apply(state, {"type": "model_deployed", "model_name": "A", "model_id": "a",
                  "model_accuracy": 0.9})
    apply(state, {"type": "model_deployed", "model_name": "B", "model_id": "b"})
    apply(state, {"type": "model_status_change", "model_id": "b", "status": "inactive"})
    apply(state, {"type": "prediction_volume", "total_predictions": 100,
                  "predictions_per_minute": 5})
    models = {m["model_id"]: m for m in state.model_list()}
    assert models["a"]["total_predictions"] == 100  # the active model takes unnamed volume
    assert models["b"]["status"] == "inactive"
    assert models["a"]["deployment_timestamp"] == "2025-12-06T10:30:00Z"
    assert state.current_accuracy() == 0.9 and state.predictions_per_minute() == 5
    assert len(listener.deployments) == 2 and listener.models[-1]["model_id"] == "a"


def test_status_change_for_an_unknown_model_creates_it():
    state = State()
    apply(state, {"type": "model_status_change", "model_id": "ghost", "status": "error",
                  "health_score": 0.1})
    (model,) = state.model_list()
    assert model["model_name"] == "ghost" and model["status"] == "error"


def test_runs_statuses_and_terminal_status_sticks():
    state = State()
    apply(state, {"type": "training_progress", "run_id": "r", "stage": "model_training",
                  "progress": 10, "model_name": "net"})
    apply(state, {"type": "training_completed", "run_id": "r", "final_accuracy": 0.8})
    apply(state, {"type": "training_progress", "run_id": "r", "stage": "finalization",
                  "progress": 100})
    (run,) = state.run_list()
    assert run["status"] == "completed" and run["model_name"] == "net"
    assert run["progress"]["progress"] == 10
    apply(state, {"type": "training_progress", "stage": "validation", "model_name": "m2"})
    assert state.runs["m2"].status == "running"  # no run_id: grouped by model name


def test_watchdog_alert_marks_the_run_stalled_and_progress_revives_it():
    state = State()
    apply(state, {"type": "training_progress", "run_id": "r", "stage": "model_training"})
    apply(state, {"type": "system_alert", "run_id": "r",
                  "alert": {"id": "x", "title": "stalled", "alert_type": "training_stalled"}})
    assert state.runs["r"].status == "stalled"
    apply(state, {"type": "training_progress", "run_id": "r", "stage": "model_training"})
    assert state.runs["r"].status == "running"


def test_chart_points_are_thinned_over_the_whole_run():
    run = RunState("r")
    for i in range(2000):
        run.on_progress({"seq": i + 1, "progress": i / 20, "current_loss": 1 / (i + 1)})
    assert len(run.points) <= MAX_POINTS
    assert run.points[0]["seq"] == 1 and run.points[-1]["seq"] == 2000
    seqs = [p["seq"] for p in run.points]
    assert seqs == sorted(seqs) and seqs[len(seqs) // 2] < 1400
    assert runs_module.RunState.from_dict(run.to_dict()).points == run.points


def test_activity_newest_first_bounded_and_deduplicated():
    listener = Listener()
    state = State(listener)
    for i in range(MAX_ACTIVITY + 20):
        apply(state, {"type": "activity_update", "activity": {"id": f"a{i}", "title": "t"}})
    apply(state, {"type": "activity_update", "activity": {"id": "a600", "title": "t2"}})
    ids = [a["id"] for a in state.activity]
    assert len(ids) == MAX_ACTIVITY and ids[0] == "a600" and ids.count("a600") == 1
    assert state.activity_view(2)["activity"][1]["id"] == f"a{MAX_ACTIVITY + 19}"


def test_alerts_auto_dismiss_after_a_minute(monkeypatch):
    state = State()
    apply(state, {"type": "system_alert", "alert": {"id": "keep", "title": "t"}})
    apply(state, {"type": "system_alert",
                  "alert": {"id": "brief", "title": "t", "auto_dismiss": True}})
    assert [a["id"] for a in state.open_alerts()] == ["brief", "keep"]
    import time as real_time

    later = real_time.monotonic() + 61
    monkeypatch.setattr("mlops_hooks.server.state.state.time.monotonic", lambda: later)
    assert [a["id"] for a in state.open_alerts()] == ["keep"]


def test_uploads_and_snapshot_shape():
    state = State()
    apply(state, {"type": "upload_progress", "filename": "d.csv", "bytes_uploaded": 5})
    apply(state, {"type": "file_validated", "filename": "d.csv", "status": "success",
                  "rows": 3})
    apply(state, {"type": "health_change", "current_health": "warning",
                  "previous_health": "healthy", "reason": "cpu"})
    snap = state.snapshot(connections=2)
    assert snap["uploads"][0]["validation"]["rows"] == 3
    assert snap["uploads"][0]["upload"]["bytes_uploaded"] == 5
    assert snap["health"]["reason"] == "cpu" and snap["connections"] == 2
    assert set(snap) == {"type", "seq", "server_time", "models", "runs", "system", "health",
                         "activity", "alerts", "uploads", "connections"}


def test_load_history():
    state = State()
    state.load(last_seq=42, runs=[{"run_id": "r", "status": "completed", "points": []}],
               models=[{"model_id": "m", "model_name": "M", "status": "active"}],
               activity=[{"id": "new"}, {"id": "old"}])
    assert state.seq == 42 and state.runs["r"].status == "completed"
    assert state.models["m"]["model_name"] == "M"
    assert [a["id"] for a in state.activity] == ["new", "old"]


def test_alert_and_activity_without_their_own_timestamp_take_the_events():
    state = State()
    apply(state, {"type": "system_alert", "alert": {"id": "a1", "title": "Hot"},
                  "timestamp": "2025-12-06T10:31:00Z"})
    apply(state, {"type": "activity_update", "activity": {"id": "x1", "title": "Did"},
                  "timestamp": "2025-12-06T10:32:00Z"})
    apply(state, {"type": "system_alert", "timestamp": "2025-12-06T10:33:00Z",
                  "alert": {"id": "a2", "title": "Own", "timestamp": "2025-12-06T09:00:00Z"}})
    assert [a["timestamp"] for a in state.open_alerts()] == ["2025-12-06T09:00:00Z",
                                                               "2025-12-06T10:31:00Z"]
    assert state.activity[0]["timestamp"] == "2025-12-06T10:32:00Z"
