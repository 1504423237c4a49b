"""examples/transformers_train.py against a real server: the run, its params and its series."""

from __future__ import annotations

import httpx
import pytest

from tests.examples.support import finished_run, run_example, wait_until

pytestmark = pytest.mark.timeout(300)

NAME = "bert-tiny (Transformers example)"


def test_transformers_example_reaches_the_server_with_params_and_series(server):
    out = run_example("transformers_train.py", "--epochs", "2", url=server.ws_url)
    assert "validation accuracy" in out.stdout
    run = finished_run(server.http_url, NAME)
    assert run["status"] == "completed", run
    assert run["completed"]["model_id"] == "bert_tiny_hf"
    assert run["completed"]["final_accuracy"] >= 0.9  # eval_accuracy: the tiny BERT learns
    # 512 samples in batches of 16, 2 batches a step: 16 steps an epoch, 2 epochs
    assert run["progress"]["current_step"] == 32 and run["progress"]["total_steps"] == 32
    run_id = run["run_id"]
    detail = wait_until(lambda: httpx.get(f"{server.http_url}/api/runs/{run_id}",
                                          timeout=10).json()["run"]["params"])
    assert detail["gradient_accumulation_steps"] == 2
    assert detail["learning_rate"] == 3e-3 and detail["warmup_steps"] == 5
    assert detail["model.model_type"] == "bert" and detail["max_steps"] == 32
    series = httpx.get(f"{server.http_url}/api/runs/{run_id}/metrics", timeout=10).json()
    series = series["series"]
    assert {"loss", "learning_rate", "grad_norm", "eval_loss", "eval_accuracy"} <= set(series)
    assert {5, 10, 15, 20, 25, 30} <= {step for step, _ in series["learning_rate"]}  # logged
    assert next(step for step, _ in series["eval_loss"]) == 16  # the first epoch's evaluation


def test_report_to_enables_the_example_without_a_callback(server):
    run_example("transformers_train.py", "--epochs", "1", "--report-to", url=server.ws_url)
    run = finished_run(server.http_url, "BertForSequenceClassification")
    assert run["status"] == "completed" and run["progress"]["current_step"] == 16
