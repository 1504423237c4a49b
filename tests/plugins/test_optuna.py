"""The Optuna adapter with real studies training scikit-learn models on the digits."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import SGDClassifier
from sklearn.model_selection import train_test_split

from mlops_hooks.plugins.optuna import MLOpsCallback
from mlops_hooks.run import params as rp
from tests.plugins.conftest import assert_wire_valid

pytestmark = [pytest.mark.timeout(180),
              pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")]
optuna.logging.set_verbosity(optuna.logging.WARNING)
GOOD, BAD = 1e-4, 50.0  # SGD's alpha: a good model, and one that learns almost nothing


@pytest.fixture(autouse=True)
def _no_outside_group(monkeypatch):
    monkeypatch.delenv(rp.GROUP_ENV, raising=False)


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    return train_test_split(x / 16.0, y, test_size=0.25, stratify=y, random_state=0)


def _objective(digits, callback=None, epochs=4):
    x_train, x_val, y_train, y_val = digits

    def objective(trial):
        alpha = trial.suggest_float("alpha", 1e-6, 100.0, log=True)
        model = SGDClassifier(alpha=alpha, random_state=0)
        for epoch in range(epochs):
            model.partial_fit(x_train, y_train, classes=np.arange(10))
            score = float(model.score(x_val, y_val))
            trial.report(score, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return score

    if callback is None:
        return objective

    def live(trial):
        with callback.trial_run(trial):
            return objective(trial)

    return live


def _study(name, alphas):
    study = optuna.create_study(study_name=name, direction="maximize",
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=2,
                                                                   n_warmup_steps=0))
    for alpha in alphas:
        study.enqueue_trial({"alpha": alpha})
    return study


def _by_trial(recorder, kind):
    out = {}
    for event in recorder.of_type(kind):
        out.setdefault(event.model_name, []).append(event)
    return out


@pytest.mark.parametrize("live", [False, True], ids=["after-trial", "live"])
def test_each_trial_is_a_run_of_the_study_group_pruned_ones_marked(pm, recorder, digits,
                                                                    live):
    callback = MLOpsCallback(emit=pm.dispatch, throttle=0, steps_per_trial=4,
                             params={"dataset": "digits"})
    study = _study("sgd-study", [GOOD, GOOD, BAD, GOOD, BAD, GOOD])
    study.optimize(_objective(digits, callback if live else None), n_trials=6,
                   callbacks=[callback])
    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.PRUNED) == 2  # the two bad ones
    done = _by_trial(recorder, "training_completed")
    assert sorted(done) == [f"sgd-study #{n}" for n in range(6)]
    params = _by_trial(recorder, "run_params")
    best = -1.0
    for trial in study.trials:
        name = f"sgd-study #{trial.number}"
        (completed,) = done[name]
        sent = {k: v for e in params[name] for k, v in e.params.items()}
        assert sent == {"dataset": "digits", "trial": trial.number,
                        "alpha": trial.params["alpha"]}
        assert {(e.group, e.group_size) for e in params[name] if e.params} == {
            ("sgd-study", 6)}
        progress = [e for e in recorder.progress() if e.model_name == name]
        assert len({e.run_id for e in progress} | {completed.run_id}) == 1
        series = [(e.current_step, e.metrics["intermediate_value"]) for e in progress
                  if e.metrics and "intermediate_value" in e.metrics
                  and e.stage == "model_training" and "value" not in e.metrics]
        assert series == [(s + 1, v) for s, v in sorted(trial.intermediate_values.items())]
        final = progress[-1]
        if trial.state == optuna.trial.TrialState.PRUNED:
            assert completed.stop_reason == "pruned"
            assert completed.message == f"Trial {trial.number} pruned at step 0"
        else:
            assert completed.stop_reason is None
            assert completed.validation_score == pytest.approx(trial.value)
            assert final.metrics["value"] == pytest.approx(trial.value)
            best = max(best, trial.value)
        assert final.progress == 100
        assert final.metrics["best_value"] == pytest.approx(best)
    assert_wire_valid(recorder)


def test_threads_and_a_caught_failure(pm, recorder, digits):
    callback = MLOpsCallback("threads", emit=pm.dispatch)
    objective = _objective(digits, epochs=2)

    def failing(trial):
        if trial.number == 3:
            raise ValueError("trial 3 broke")
        return objective(trial)

    study = optuna.create_study(study_name="threaded", direction="maximize")
    study.optimize(failing, n_trials=6, n_jobs=2, callbacks=[callback], catch=(ValueError,))
    done = _by_trial(recorder, "training_completed")
    failed = _by_trial(recorder, "training_failed")
    assert sorted(done) == [f"threads #{n}" for n in (0, 1, 2, 4, 5)]
    assert list(failed) == ["threads #3"]
    assert "ended FAIL" in failed["threads #3"][0].error
    assert {e.group_size for e in recorder.of_type("run_params") if e.params} == {6}
    assert len({e.run_id for e in recorder.of_type("training_progress")}) == 6


def test_a_live_trial_that_raises_is_failed_with_its_error(pm, recorder, digits):
    callback = MLOpsCallback(emit=pm.dispatch, n_trials=10)
    error = ArithmeticError("diverged")

    def objective(trial):
        with callback.trial_run(trial) as run:
            assert run is not None and run.active
            trial.report(0.5, 0)
            raise error

    study = optuna.create_study(study_name="raising")
    with pytest.raises(ArithmeticError) as raised:
        study.optimize(objective, n_trials=3, callbacks=[callback])
    assert raised.value is error
    (failed,) = recorder.of_type("training_failed")
    assert failed.model_name == "raising #0" and "diverged" in failed.error
    assert {e.group_size for e in recorder.of_type("run_params") if e.params} == {10}
    assert "report" not in vars(study.trials[0]) and not recorder.of_type("training_completed")


def test_max_trials_callback_gives_the_group_size(pm, recorder, digits):
    callback = MLOpsCallback(emit=pm.dispatch)
    study = optuna.create_study(study_name="bounded", direction="maximize")
    study.optimize(_objective(digits, epochs=1), callbacks=[
        optuna.study.MaxTrialsCallback(2), callback], n_trials=None, timeout=60)
    assert {e.group_size for e in recorder.of_type("run_params") if e.params} == {2}


def test_a_broken_publisher_never_reaches_the_study(digits):
    def broken(event):
        raise OSError("publisher down")

    callback = MLOpsCallback(emit=broken)
    study = optuna.create_study(direction="maximize")
    with pytest.warns(RuntimeWarning, match="mlops-hooks"):
        study.optimize(_objective(digits, callback, epochs=1), n_trials=2,
                       callbacks=[callback])
    assert len(study.trials) == 2 and all(t.value is not None for t in study.trials)


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_trials must be an integer > 0 or None, got 0"):
        MLOpsCallback(n_trials=0)
    with pytest.raises(ValueError, match="steps_per_trial must be an integer > 0"):
        MLOpsCallback(steps_per_trial=True)
