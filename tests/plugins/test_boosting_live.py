"""The XGBoost, LightGBM and Optuna examples against a real server: runs, series, groups."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.examples.support import run_example, wait_until
from tests.live_server import LiveServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    workdir: Path = tmp_path_factory.mktemp("boosting-server")
    with LiveServer(workdir, extra_args=["--metrics-interval", "0",
                                         "--stall-timeout", "0"]) as live:
        yield live


def _runs(server: LiveServer, **query: str) -> list[dict]:
    response = httpx.get(server.http_url + "/api/runs", params=query, timeout=10)
    assert response.status_code == 200, response.text
    return list(response.json()["runs"])


def _finished(server: LiveServer, name: str) -> dict:
    def read() -> dict | None:
        runs = [r for r in _runs(server, q=name) if r["model_name"] == name]
        return runs[0] if runs and runs[0]["status"] != "running" else None

    run = wait_until(read)
    assert run, f"no finished run {name!r}"
    return dict(run)


def _series(server: LiveServer, run_id: str) -> dict[str, list]:
    response = httpx.get(f"{server.http_url}/api/runs/{run_id}/metrics", timeout=10)
    assert response.status_code == 200, response.text
    return dict(response.json()["series"])


def test_xgboost_example_reaches_the_server_with_its_eval_series(server):
    out = run_example("xgboost_train.py", "--rounds", "40", "--early-stopping", "0",
                      url=server.ws_url)
    assert out.stdout.startswith("40 rounds")
    run = _finished(server, "cancer-xgb (XGBoost example)")
    assert run["status"] == "completed" and run["progress"] == 100
    assert run["params"]["n_estimators"] == 40 and run["params"]["dataset"] == "breast_cancer"
    series = _series(server, run["run_id"])
    for key in ("validation_0-logloss", "validation_0-error", "loss"):
        assert [step for step, _ in series[key]] == list(range(1, 41)), key
    logloss = [value for _, value in series["validation_0-logloss"]]
    assert logloss[-1] < logloss[0]


def test_lightgbm_example_stops_early_on_the_server(server):
    out = run_example("lightgbm_train.py", "--rounds", "300", "--early-stopping", "5",
                      url=server.ws_url)
    best = int(out.stdout.split()[0])
    run = _finished(server, "digits-lgbm (LightGBM example)")
    assert run["status"] == "completed" and run["params"]["num_iterations"] == 300
    series = _series(server, run["run_id"])
    steps = [step for step, _ in series["valid-multi_logloss"]]
    assert steps == list(range(1, best + 6))  # the best iteration, then 5 without progress
    assert set(series) >= {"valid-multi_logloss", "valid-multi_error"}


def test_optuna_example_is_a_group_of_trial_runs(server):
    out = run_example("optuna_study.py", "--trials", "6", "--epochs", "4", url=server.ws_url)
    assert "pruned" in out.stdout
    group = "digits-sgd (Optuna example)"

    def all_done() -> list[dict] | None:
        runs = _runs(server, group=group)
        return runs if len(runs) == 6 and all(r["status"] != "running" for r in runs) else None

    runs = wait_until(all_done)
    assert runs, _runs(server, group=group)
    assert sorted(r["model_name"] for r in runs) == [f"{group} #{n}" for n in range(6)]
    assert {r["status"] for r in runs} == {"completed"}
    for run in runs:
        assert set(run["params"]) >= {"trial", "alpha", "loss"}
        series = _series(server, run["run_id"])
        assert series["intermediate_value"], run["model_name"]
        assert "best_value" in series
    assert _runs(server, q="digits-sgd") == runs
