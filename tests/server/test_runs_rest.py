"""``GET /api/runs``, ``/api/runs/{run_id}`` and ``/metrics`` on the app (TestClient)."""

from __future__ import annotations

import pytest

from mlops_hooks.server.endpoints.runs import MAX_KEYS
from mlops_hooks.server.state.summary import SNAPSHOT_MAX_BYTES
from tests.server.conftest import progress

META = {"host": "box", "pid": 7, "python": "3.11.7", "frameworks": {"torch": "2.5.1"},
        "command": "python train.py", "git": {"commit": "abc123", "dirty": False}}


def params(run_id: str, values: dict, **extra) -> dict:
    return {"type": "run_params", "run_id": run_id, "params": values, **extra}


def step(run_id: str, n: int, minute: int = 30, **extra) -> dict:
    return progress(run_id, 50, current_step=n, timestamp=f"2025-12-06T10:{minute:02d}:00Z",
                    **extra)


def post(client, events) -> None:
    response = client.post("/api/events", json=events)
    assert response.status_code == 200, response.text


def test_a_run_with_params_series_and_outcome(client):
    post(client, [
        params("r1", {"lr": 0.01, "optimizer": "adam", "layers": 3}, model_name="Net",
               group="sweep-1", metadata=META, timestamp="2025-12-06T10:00:00Z"),
        step("r1", 0, 1, current_loss=2.0, current_accuracy=0.1, metrics={"val_loss": 2.5}),
        step("r1", 10, 2, current_loss=1.0, current_accuracy=0.5),
        step("r1", 20, 3, current_loss=0.5, metrics={"val_loss": 0.7, "lr": 0.001}),
        progress("r1", 60, timestamp="2025-12-06T10:04:00Z", current_loss=9.9),  # no step: no point
        # sent again at the end: params merge (later keys win), metadata keeps its first values
        params("r1", {"lr": 0.02, "best.C": 1.0},
               metadata={"host": "other", "extra": "kept"}, timestamp="2025-12-06T10:05:00Z"),
        {"type": "training_completed", "run_id": "r1", "final_accuracy": 0.93,
         "timestamp": "2025-12-06T10:10:00Z"},
    ])
    run = {"run_id": "r1", "model_name": "Net", "status": "completed",
           "started_at": "2025-12-06T10:00:00.000Z", "ended_at": "2025-12-06T10:10:00.000Z",
           "progress": 100.0, "final_accuracy": 0.93,
           "params": {"lr": 0.02, "optimizer": "adam", "layers": 3, "best.C": 1.0},
           "group": "sweep-1", "group_size": None,
           "last_metrics": {"accuracy": 0.5, "loss": 0.5, "lr": 0.001, "val_loss": 0.7},
           "duration_s": 600.0}
    assert client.get("/api/runs").json() == {"runs": [run], "next_cursor": None}
    detail = client.get("/api/runs/r1").json()
    assert detail == {"run": {**run, "metadata": {**META, "extra": "kept"},
                              "series_keys": ["accuracy", "loss", "lr", "val_loss"],
                              "last_step": 20}}
    assert client.get("/api/runs/r1/metrics").json() == {"run_id": "r1", "series": {
        "accuracy": [[0, 0.1], [10, 0.5]],
        "loss": [[0, 2.0], [10, 1.0], [20, 0.5]],
        "lr": [[20, 0.001]],
        "val_loss": [[0, 2.5], [20, 0.7]],
    }}
    assert client.get("/api/runs/r1/metrics?keys=loss,nope").json() == {
        "run_id": "r1", "series": {"loss": [[0, 2.0], [10, 1.0], [20, 0.5]]}}


def test_the_step_is_the_epoch_without_a_step_and_a_repeated_step_keeps_the_last_value(client):
    post(client, [progress("e", 10, current_epoch=1, current_loss=3.0),
                  progress("e", 20, current_epoch=1, current_loss=2.0),
                  progress("e", 30, current_epoch=2, current_loss=1.0),
                  progress("e", 40, current_epoch=3, current_step=300, current_loss=0.5)])
    assert client.get("/api/runs/e/metrics").json()["series"] == {
        "loss": [[1, 2.0], [2, 1.0], [300, 0.5]]}
    run = client.get("/api/runs/e").json()["run"]
    assert run["progress"] == 40.0 and run["status"] == "running" and run["params"] == {}


def test_events_without_a_run_id_make_no_series(client):
    post(client, [{"type": "training_progress", "stage": "model_training", "progress": 5,
                   "model_name": "anon", "current_step": 1, "current_loss": 1.0}])
    assert client.get("/api/runs/anon/metrics").json() == {"run_id": "anon", "series": {}}


def test_newest_first_filters_and_cursor(client):
    events = []
    for i in range(12):
        run_id = f"run-{i:02d}"
        events.append(params(run_id, {"i": i}, model_name="ResNet" if i % 2 else "BERT",
                             group="g-odd" if i % 2 else "g-even",
                             timestamp=f"2025-12-06T10:{i:02d}:00Z"))
    events.append(params("run-tie", {}, timestamp="2025-12-06T10:11:00Z"))  # same start as 11
    events.append({"type": "training_failed", "run_id": "run-03", "error": "OOM",
                   "error_code": "MEMORY_ERROR", "timestamp": "2025-12-06T11:00:00Z"})
    events.append({"type": "training_completed", "run_id": "run-04",
                   "timestamp": "2025-12-06T11:00:00Z"})
    post(client, events)
    ids = [r["run_id"] for r in client.get("/api/runs").json()["runs"]]
    assert ids == ["run-tie", "run-11"] + [f"run-{i:02d}" for i in range(10, -1, -1)]

    def listing(query: str) -> list[str]:
        body = client.get("/api/runs?" + query).json()
        return [r["run_id"] for r in body["runs"]]

    assert listing("status=failed") == ["run-03"]
    assert listing("status=failed,completed") == ["run-04", "run-03"]
    assert listing("group=g-odd&limit=3") == ["run-11", "run-09", "run-07"]
    assert listing("q=resnet&group=g-odd") == listing("group=g-odd")
    assert listing("q=RUN-1") == ["run-11", "run-10"]
    assert listing("q=bert&status=running") == ["run-10", "run-08", "run-06", "run-02",
                                                "run-00"]
    seen, cursor, pages = [], None, 0
    while True:
        body = client.get("/api/runs?limit=5" + (f"&cursor={cursor}" if cursor else "")).json()
        seen += [r["run_id"] for r in body["runs"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == ids and pages == 3
    first = client.get("/api/runs?group=g-even&limit=2").json()
    rest = client.get(f"/api/runs?group=g-even&cursor={first['next_cursor']}").json()
    assert [r["run_id"] for r in first["runs"] + rest["runs"]] == [
        "run-10", "run-08", "run-06", "run-04", "run-02", "run-00"]


@pytest.mark.parametrize(("query", "field", "words"), [
    ("limit=0", "limit", "1 to 500"), ("limit=501", "limit", "1 to 500"),
    ("limit=x", "limit", "1 to 500"), ("status=done", "status", "'done' is not one of"),
    ("cursor=zzz", "cursor", "not a next_cursor"), ("q=" + "x" * 513, "q", "512 characters"),
])
def test_bad_listing_parameters_are_400_naming_them(client, query, field, words):
    response = client.get("/api/runs?" + query)
    assert response.status_code == 400
    assert response.json()["field"] == field and words in response.json()["error"]


def test_unknown_runs_are_404_and_keys_are_capped(client):
    post(client, [step("r", 1, current_loss=1.0)])
    for path in ("/api/runs/nope", "/api/runs/nope/metrics"):
        response = client.get(path)
        assert response.status_code == 404
        assert response.json() == {"error": "no run 'nope' in this server's history"}
    keys = ",".join(f"k{i}" for i in range(MAX_KEYS + 1))
    response = client.get(f"/api/runs/r/metrics?keys={keys}")
    assert response.status_code == 400 and response.json()["field"] == "keys"
    assert client.get("/api/runs/r/metrics?keys=" + ",".join(
        f"k{i}" for i in range(MAX_KEYS))).json() == {"run_id": "r", "series": {}}


def test_without_keys_at_most_64_series_are_returned(client):
    post(client, [step("wide", 1, metrics={f"m{i:03d}": i for i in range(100)})])
    body = client.get("/api/runs/wide/metrics").json()
    assert body["truncated"] is True
    assert list(body["series"]) == [f"m{i:03d}" for i in range(MAX_KEYS)]
    assert len(client.get("/api/runs/wide").json()["run"]["series_keys"]) == 100


def test_every_read_needs_the_subscriber_token(make_client):
    client = make_client(subscriber_token="sub-secret")
    post(client, [step("r", 1, current_loss=1.0)])
    for path in ("/api/runs", "/api/runs/r", "/api/runs/r/metrics", "/api/runs/nope",
                 "/api/groups/g"):
        response = client.get(path)
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"] == "Bearer"
        assert "subscriber token" in response.json()["error"]
        assert client.get(path, params={"token": "wrong"}).status_code == 401
    assert client.get("/api/runs/r", params={"token": "sub-secret"}).status_code == 200
    assert client.get("/api/runs/r/metrics",
                      headers={"Authorization": "Bearer sub-secret"}).json()["series"] == {
        "loss": [[1, 1.0]]}


def test_the_snapshot_keeps_summaries_not_series_or_params(client):
    post(client, [params("big", {f"p{i}": "v" * 200 for i in range(256)}, group="g",
                         metadata=META)]
         + [step("big", i, metrics={f"m{k}": k for k in range(200)}) for i in range(50)])
    with client.websocket_connect("/ws") as ws:
        text = ws.receive_text()
    assert len(text.encode()) < SNAPSHOT_MAX_BYTES
    import json

    run = json.loads(text)["runs"][-1]
    assert run["run_id"] == "big" and run["group"] == "g"
    assert "params" not in run and "metadata" not in run and "series" not in run
    assert run["started_at"] is not None


def test_runs_evicted_from_memory_keep_their_history(client):
    from mlops_hooks.server.state.state import MAX_RUNS

    post(client, [params("first", {"a": 1}, group="g", timestamp="2025-12-06T09:00:00Z"),
                  step("first", 1, 0, current_loss=1.0)])
    post(client, [step(f"other-{i}", 1) for i in range(MAX_RUNS + 5)])
    post(client, [step("first", 2, 40, current_loss=0.5)])  # back in memory, as a new run
    run = client.get("/api/runs/first").json()["run"]
    assert run["params"] == {"a": 1} and run["group"] == "g"
    assert run["started_at"] == "2025-12-06T09:00:00.000Z"
    assert client.get("/api/runs/first/metrics").json()["series"] == {
        "loss": [[1, 1.0], [2, 0.5]]}
    assert len(client.get("/api/runs?limit=500").json()["runs"]) == MAX_RUNS + 6


def test_a_group_counts_its_runs_by_status_with_the_planned_count_and_the_best(client):
    post(client, [
        params("g1", {"lr": 0.1}, group="sweep", group_size=4, timestamp="2025-12-06T10:00:00Z"),
        {"type": "training_completed", "run_id": "g1", "final_accuracy": 0.7},
        params("g2", {"lr": 0.01}, group="sweep", group_size=6, timestamp="2025-12-06T10:01:00Z"),
        {"type": "training_completed", "run_id": "g2", "final_accuracy": 0.9},
        params("g3", {"lr": 1.0}, group="sweep", timestamp="2025-12-06T10:02:00Z"),
        {"type": "training_failed", "run_id": "g3", "error": "nan", "error_code": "NAN_LOSS"},
        params("g4", {"lr": 0.5}, group="sweep", timestamp="2025-12-06T10:03:00Z"),
        step("g4", 1, current_loss=1.0),
        params("other", {"lr": 0.2}, group="else", group_size=2, timestamp="2025-12-06T10:04:00Z"),
        {"type": "training_completed", "run_id": "other", "final_accuracy": 0.99},
    ])
    # planned: the newest run's group_size that has one (g2's 6: a study re-planned)
    assert client.get("/api/groups/sweep").json() == {
        "group": "sweep", "runs": 4, "planned": 6,
        "counts": {"running": 1, "stalled": 0, "completed": 2, "failed": 1},
        "best": {"run_id": "g2", "model_name": None, "final_accuracy": 0.9}}
    assert [r["group_size"] for r in client.get("/api/runs?group=sweep").json()["runs"]] == [
        None, None, 6, 4]
    unplanned = client.get("/api/groups/else").json()
    assert unplanned["planned"] == 2 and unplanned["runs"] == 1
    missing = client.get("/api/groups/nope")
    assert missing.status_code == 404 and "nope" in missing.json()["error"]
    long = client.get("/api/groups/" + "x" * 600)
    assert long.status_code == 400 and long.json()["field"] == "group"
