"""Each example script runs against a real server, and its events arrive there."""

from __future__ import annotations

import httpx
import pytest

from tests.examples.support import activity_for, finished_run, run_example, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def assert_completed_run(http_url: str, name: str, model_id: str, epochs: int | None,
                         min_accuracy: float) -> dict:
    run = finished_run(http_url, name)
    assert run["status"] == "completed", run
    done = run["completed"]
    assert done["model_id"] == model_id and done["final_accuracy"] >= min_accuracy
    if epochs is not None:
        assert done["total_epochs"] == epochs
    assert run["progress"]["progress"] == 100 and run["progress"]["stage"] == "finalization"
    assert run["points"], "no chart points: no training_progress arrived"
    assert activity_for(http_url, run["run_id"]) == ["Model Training Started",
                                                     "Model Training Completed"]
    return run


def test_lightning_example(server):
    out = run_example("lightning_digits.py", "--epochs", "2", url=server.ws_url)
    assert "validation accuracy" in out.stdout
    run = assert_completed_run(server.http_url, "digits-mlp (Lightning example)",
                               "digits_mlp_pl", 2, 0.5)
    assert {p["epoch"] for p in run["points"]} == {None, 1, 2}  # None: before epoch 1 began
    assert any(p["loss"] is not None for p in run["points"])


def test_keras_example(server):
    out = run_example("keras_digits.py", "--epochs", "2", url=server.ws_url)
    assert "validation accuracy" in out.stdout
    assert_completed_run(server.http_url, "digits-dense (Keras example)", "digits_dense_keras",
                         2, 0.5)


def test_sklearn_gridsearch_example(server):
    out = run_example("sklearn_gridsearch.py", "--cv", "2", "--grid", "0.1", "1",
                      "--n-jobs", "2", url=server.ws_url)
    assert "best {'logisticregression__C'" in out.stdout
    run = assert_completed_run(server.http_url, "digits-logreg (scikit-learn example)",
                               "digits_logreg_sklearn", None, 0.9)
    assert run["progress"]["current_step"] == 5  # 2 values x 2 folds, then the refit


def test_pytorch_loop_example(server):
    out = run_example("pytorch_loop.py", "--epochs", "2", url=server.ws_url)
    assert "validation accuracy" in out.stdout
    run = assert_completed_run(server.http_url, "digits-mlp (PyTorch loop example)",
                               "digits_mlp_torch", 2, 0.5)
    params = 64 * 128 + 128 + 128 * 10 + 10  # the example's Linear(64, 128), Linear(128, 10)
    assert run["completed"]["model_size"] == f"{params * 4 / 1024:.1f}KB"  # float32
    assert [p["epoch"] for p in run["points"] if p["accuracy"] is not None][-1] == 2


def test_serving_example(server):
    out = run_example("serving.py", "--requests", "1200", "--rate", "5000",
                      url=server.ws_url)
    assert "served 1200 requests (12 failed)" in out.stdout

    def model():
        models = httpx.get(server.http_url + "/api/models", timeout=10).json()["models"]
        found = [m for m in models if m["model_id"] == "digits_logreg_serving_example"]
        return found and found[0]["status"] == "inactive" and found[0]

    state = wait_until(model)
    assert state, "the deployment or its final status did not arrive"
    assert state["model_name"] == "Digits Classifier (serving example)"
    assert state["model_version"] == "v1.0" and state["model_accuracy"] > 0.9
    assert state["total_predictions"] == 1200 and state["milestone_reached"] == 1000
    titles = [a["title"] for a in
              httpx.get(server.http_url + "/api/activity", timeout=10).json()["activity"]]
    assert "Model Deployed" in titles
