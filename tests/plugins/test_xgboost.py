"""The XGBoost adapter with real ``xgboost.train`` and ``XGBClassifier`` fits."""

from __future__ import annotations

import pytest
import xgboost as xgb
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

from mlops_hooks.formatting import format_bytes
from mlops_hooks.plugins._support.boosting import SIZE_MIN_FIT, wants_size
from mlops_hooks.plugins.xgboost import MLOpsCallback
from tests.plugins.conftest import (
    assert_one_run,
    assert_progress_monotonic_to_100,
    assert_wire_valid,
)

pytestmark = pytest.mark.timeout(180)
PARAMS = {"objective": "binary:logistic", "eval_metric": ["logloss", "error"], "max_depth": 2,
          "nthread": 1}


@pytest.fixture(scope="module")
def cancer():
    x, y = load_breast_cancer(return_X_y=True)
    return train_test_split(x, y, test_size=0.25, stratify=y, random_state=0)


@pytest.fixture(scope="module")
def dmatrices(cancer):
    x_train, x_val, y_train, y_val = cancer
    return xgb.DMatrix(x_train, y_train), xgb.DMatrix(x_val, y_val)


def test_train_sends_every_round_and_its_eval_results(pm, recorder, dmatrices):
    train, val = dmatrices
    history: dict = {}
    callback = MLOpsCallback("cancer", emit=pm.dispatch, throttle=0, params={"seed": 1},
                             model_size=True)
    booster = xgb.train(PARAMS, train, num_boost_round=12, evals=[(train, "train"), (val, "val")],
                        evals_result=history, verbose_eval=False, callbacks=[callback])
    assert booster.num_boosted_rounds() == 12
    run_id = assert_one_run(recorder)
    assert_progress_monotonic_to_100(recorder)
    rounds = [e for e in recorder.progress() if e.metrics and e.stage == "model_training"]
    assert [e.current_step for e in rounds] == list(range(1, 13))
    assert {(e.total_steps, e.total_epochs) for e in recorder.progress()} == {(12, 12)}
    for i, event in enumerate(rounds):
        assert event.metrics == pytest.approx({f"{data}-{metric}": values[i]
                                               for data, by in history.items()
                                               for metric, values in by.items()})
        assert event.current_loss == pytest.approx(history["train"]["logloss"][i])
        assert event.current_accuracy == pytest.approx(1 - history["val"]["error"][i])
    assert recorder.stages() == ["data_preparation", "model_training", "finalization"]
    (done,) = recorder.of_type("training_completed")
    assert done.stop_reason is None and done.message == "Training completed successfully!"
    assert done.final_accuracy == pytest.approx(1 - history["val"]["error"][-1])
    assert done.validation_score == pytest.approx(history["val"]["error"][-1])
    assert done.model_size == format_bytes(len(booster.save_raw()))
    assert done.run_id == run_id
    (params, *_) = recorder.of_type("run_params")
    assert params.params["seed"] == 1 and params.params["num_boost_round"] == 12
    assert params.params["objective"] == "binary:logistic" and params.params["max_depth"] == 2
    assert {"xgboost", "xgboost-cpu"} & set(params.metadata["frameworks"])  # the CPU build too
    assert "update" not in vars(booster)  # the guards are gone
    assert_wire_valid(recorder)


def test_throttled_rounds_cost_a_clock_read_and_the_last_round_is_always_sent(pm, recorder,
                                                                             dmatrices):
    train, val = dmatrices
    history: dict = {}
    xgb.train(PARAMS, train, num_boost_round=12, evals=[(val, "val")], evals_result=history,
              verbose_eval=False, callbacks=[MLOpsCallback(emit=pm.dispatch, throttle=3600)])
    rounds = [e for e in recorder.progress() if e.metrics and e.stage == "model_training"]
    assert [e.current_step for e in rounds] == [12]
    assert rounds[0].metrics == pytest.approx({"val-logloss": history["val"]["logloss"][-1],
                                               "val-error": history["val"]["error"][-1]})
    assert_progress_monotonic_to_100(recorder)


class _Clock(xgb.callback.TrainingCallback):
    """Moves the adapter's and the run's clock one second a round (before the adapter)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        super().__init__()
        self.now = 0.0
        monkeypatch.setattr("mlops_hooks.plugins.xgboost._now", lambda: self.now)
        monkeypatch.setattr("mlops_hooks.run.lifecycle._perf", lambda: self.now)

    def after_iteration(self, model, epoch, evals_log) -> bool:
        self.now += 1.0
        return False


def test_a_round_is_sent_once_per_throttle_and_the_rounds_between_are_counted(
        pm, recorder, dmatrices, monkeypatch):
    train, val = dmatrices
    history: dict = {}
    clock = _Clock(monkeypatch)
    xgb.train(PARAMS, train, num_boost_round=10, evals=[(val, "val")], evals_result=history,
              verbose_eval=False,
              callbacks=[clock, MLOpsCallback(emit=pm.dispatch, throttle=2.5)])
    rounds = [e for e in recorder.progress() if e.metrics and e.stage == "model_training"]
    # started at 0 s, a round a second: due at 3 s, 6 s, 9 s; the last round always
    assert [e.current_step for e in rounds] == [3, 6, 9, 10]
    for event in rounds:
        assert event.metrics["val-logloss"] == pytest.approx(
            history["val"]["logloss"][event.current_step - 1])
    assert_progress_monotonic_to_100(recorder)


class _StopAt(xgb.callback.TrainingCallback):
    """Asks the adapter's run to stop, as the dashboard's Stop button does, after a round."""

    def __init__(self, adapter: MLOpsCallback, round_: int) -> None:
        super().__init__()
        self.adapter, self.round = adapter, round_

    def after_iteration(self, model, epoch, evals_log) -> bool:
        if epoch == self.round:
            self.adapter.run.stop()
        return False


@pytest.mark.parametrize("evals", [True, False], ids=["evals", "no-evals"])
def test_a_stop_request_ends_the_fit_within_the_stop_poll_as_requested(
        pm, recorder, dmatrices, monkeypatch, evals):
    train, val = dmatrices
    clock = _Clock(monkeypatch)  # a round a second: the 0.25 s poll reads the flag every round
    adapter = MLOpsCallback(emit=pm.dispatch, throttle=3600)  # no event between start and end
    booster = xgb.train(PARAMS, train, num_boost_round=50, evals=[(val, "val")] if evals else [],
                        verbose_eval=False, callbacks=[clock, _StopAt(adapter, 4), adapter])
    assert booster.num_boosted_rounds() == 5  # asked after round 5: XGBoost stopped there
    (done,) = recorder.of_type("training_completed")
    assert done.stop_reason == "requested" and "on request" in done.message
    assert recorder.progress()[-1].current_step == 5
    assert_wire_valid(recorder)


def test_early_stopping_sends_the_throttled_last_round(pm, recorder, cancer):
    x_train, x_val, y_train, y_val = cancer
    model = xgb.XGBClassifier(n_estimators=300, learning_rate=0.6, max_depth=3, n_jobs=1,
                              early_stopping_rounds=3, eval_metric="logloss",
                              callbacks=[MLOpsCallback(emit=pm.dispatch, throttle=3600)])
    model.fit(x_train, y_train, eval_set=[(x_val, y_val)], verbose=False)
    rounds = model.get_booster().num_boosted_rounds()
    sent = [e.current_step for e in recorder.progress() if e.metrics]
    assert sent[0] == rounds and set(sent) == {rounds}
    (done,) = recorder.of_type("training_completed")
    assert done.stop_reason == "early_stopping"


def test_rounds_without_evals_are_steps_only(pm, recorder, dmatrices):
    train, _ = dmatrices
    xgb.train(PARAMS, train, num_boost_round=7,
              callbacks=[MLOpsCallback(emit=pm.dispatch, throttle=0, model_size=False)])
    assert_progress_monotonic_to_100(recorder)
    steps = [e.current_step for e in recorder.progress()]
    assert steps == sorted(steps) and steps[-1] == 7
    assert {e.total_epochs for e in recorder.progress()} == {None}
    assert not any(e.metrics for e in recorder.progress())
    (done,) = recorder.of_type("training_completed")
    assert done.stop_reason is None and recorder.progress()[0].model_name == "xgboost"
    assert done.model_size is None  # model_size=False


def test_sklearn_wrapper_early_stopping_completes_early(pm, recorder, cancer):
    x_train, x_val, y_train, y_val = cancer
    model = xgb.XGBClassifier(n_estimators=300, learning_rate=0.6, max_depth=3, n_jobs=1,
                              early_stopping_rounds=3, eval_metric="logloss",
                              callbacks=[MLOpsCallback(emit=pm.dispatch, throttle=0)])
    model.fit(x_train, y_train, eval_set=[(x_val, y_val)], verbose=False)
    rounds = model.get_booster().num_boosted_rounds()
    assert rounds < 300
    assert_progress_monotonic_to_100(recorder)
    last = recorder.progress()[-1]
    assert (last.current_step, last.total_steps, last.model_name) == (rounds, 300,
                                                                      "XGBClassifier")
    (done,) = recorder.of_type("training_completed")
    assert done.stop_reason == "early_stopping"
    assert done.message == f"Training stopped early at epoch {rounds}/300"
    assert done.validation_score == pytest.approx(model.best_score)
    (params, *_) = recorder.of_type("run_params")
    assert params.params["n_estimators"] == 300 and params.params["early_stopping_rounds"] == 3
    assert "callbacks" not in params.params
    assert_wire_valid(recorder)


class Boom(RuntimeError):
    pass


def test_a_custom_objective_that_raises_fails_the_run_and_propagates(pm, recorder, dmatrices):
    train, val = dmatrices
    error = Boom("objective exploded")
    calls = []

    def objective(predt, dtrain):
        calls.append(1)
        if len(calls) == 4:
            raise error
        grad = predt - dtrain.get_label()
        return grad, predt * 0 + 1.0

    callback = MLOpsCallback(emit=pm.dispatch, throttle=0)
    with pytest.raises(Boom) as raised:
        xgb.train({"nthread": 1}, train, num_boost_round=10, obj=objective,
                  evals=[(val, "val")], verbose_eval=False, callbacks=[callback])
    assert raised.value is error
    (failed,) = recorder.of_type("training_failed")
    assert failed.progress_when_failed == 30.0 and failed.stage_failed == "model_training"
    assert "objective exploded" in failed.error
    assert not recorder.of_type("training_completed")
    # the same callback reports the next training as a new run
    xgb.train(PARAMS, train, num_boost_round=3, callbacks=[callback])
    assert len(recorder.of_type("training_completed")) == 1
    assert callback.run is not None and callback.run.finished == "completed"


def test_a_custom_metric_that_raises_fails_the_run(pm, recorder, dmatrices):
    train, val = dmatrices

    def metric(predt, dmatrix):
        raise ValueError("bad metric")

    with pytest.raises(ValueError, match="bad metric"):
        xgb.train(PARAMS, train, num_boost_round=5, evals=[(val, "val")],
                  custom_metric=metric, verbose_eval=False,
                  callbacks=[MLOpsCallback(emit=pm.dispatch)])
    (failed,) = recorder.of_type("training_failed")
    assert failed.progress_when_failed == 0.0 and failed.error_code == "INVALID_VALUE"


def test_a_broken_publisher_never_reaches_training(dmatrices):
    train, val = dmatrices

    def broken(event):
        raise OSError("publisher down")

    with pytest.warns(RuntimeWarning, match="mlops-hooks"):
        booster = xgb.train(PARAMS, train, num_boost_round=4, evals=[(val, "val")],
                            verbose_eval=False, callbacks=[MLOpsCallback(emit=broken)])
    assert booster.num_boosted_rounds() == 4


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_boost_round must be an integer > 0 or None"):
        MLOpsCallback(num_boost_round=0)
    with pytest.raises(ValueError, match="throttle"):
        MLOpsCallback(throttle=-1)
    with pytest.raises(TypeError, match="params must be a mapping"):
        MLOpsCallback(params=[1])


def test_a_fitted_wrapper_with_the_callback_pickles_and_clones(pm, recorder, cancer):
    import copy
    import pickle

    from sklearn.base import clone

    x_train, x_val, y_train, _ = cancer
    callback = MLOpsCallback(emit=pm.dispatch, throttle=0)
    model = xgb.XGBClassifier(n_estimators=3, n_jobs=1, callbacks=[callback])
    model.fit(x_train, y_train)
    restored = pickle.loads(pickle.dumps(model))  # pm.dispatch is left out of the pickle
    assert (restored.predict(x_val) == model.predict(x_val)).all()
    (copied,) = restored.callbacks
    assert copied.run is None and copied.emit is None
    cloned = clone(model)  # a deep copy: the same emit, no run
    assert cloned.callbacks[0].run is None and cloned.callbacks[0].emit == pm.dispatch
    cloned.fit(x_train, y_train)
    assert len(recorder.of_type("training_completed")) == 2
    assert copy.deepcopy(callback).run is None and callback.run is not None


def test_model_size_by_default_only_after_a_fit_long_enough_to_hide_it(pm, recorder, dmatrices,
                                                                       monkeypatch):
    """``model_size=None``: serialized after fits of a second or more (there it is < 1%)."""
    train, _ = dmatrices
    xgb.train(PARAMS, train, num_boost_round=3, callbacks=[MLOpsCallback(emit=pm.dispatch)])
    (short,) = recorder.of_type("training_completed")
    assert short.model_size is None  # a fit of milliseconds: the size would cost a few percent
    # a fit as long as the threshold (lowered to this fit's milliseconds) is measured
    monkeypatch.setattr("mlops_hooks.plugins._support.boosting.SIZE_MIN_FIT", 0.0)
    booster = xgb.train(PARAMS, train, num_boost_round=3,
                        callbacks=[MLOpsCallback(emit=pm.dispatch)])
    (_, long) = recorder.of_type("training_completed")
    assert long.model_size == format_bytes(len(booster.save_raw()))
    monkeypatch.undo()
    assert wants_size(None, 0.999) is False and wants_size(None, SIZE_MIN_FIT) is True
    assert wants_size(True, 0.0) is True and wants_size(False, 99.0) is False
    with pytest.raises(TypeError, match="model_size must be True, False or None, got 1"):
        MLOpsCallback(model_size=1)  # type: ignore[arg-type]
