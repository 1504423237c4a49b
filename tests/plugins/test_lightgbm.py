"""The LightGBM adapter with real ``lightgbm.train`` and ``LGBMClassifier`` fits."""

from __future__ import annotations

import lightgbm as lgb
import pytest
from lightgbm import basic
from sklearn.datasets import load_breast_cancer, make_classification
from sklearn.model_selection import train_test_split

from mlops_hooks.formatting import format_bytes
from mlops_hooks.plugins.lightgbm import MLOpsCallback, _booster_bytes
from tests.plugins.conftest import (
    assert_one_run,
    assert_progress_monotonic_to_100,
    assert_wire_valid,
)

pytestmark = pytest.mark.timeout(180)
PARAMS = {"objective": "binary", "metric": ["binary_logloss", "binary_error"],
          "num_leaves": 7, "learning_rate": 0.3, "num_threads": 1, "verbose": -1}


@pytest.fixture(scope="module")
def cancer():
    x, y = load_breast_cancer(return_X_y=True)
    return train_test_split(x, y, test_size=0.25, stratify=y, random_state=0)


def _sets(cancer):
    x_train, x_val, y_train, y_val = cancer
    train = lgb.Dataset(x_train, y_train, free_raw_data=False)
    return train, lgb.Dataset(x_val, y_val, reference=train)


def test_train_sends_every_iteration_and_its_eval_results(pm, recorder, cancer):
    train, val = _sets(cancer)
    history: dict = {}
    callback = MLOpsCallback("cancer", emit=pm.dispatch, throttle=0, params={"seed": 1},
                             model_size=True)
    booster = lgb.train(PARAMS, train, num_boost_round=15, valid_sets=[train, val],
                        valid_names=["train", "val"],
                        callbacks=[lgb.record_evaluation(history), callback])
    assert booster.current_iteration() == 15
    run_id = assert_one_run(recorder)
    assert_progress_monotonic_to_100(recorder)
    rounds = [e for e in recorder.progress() if e.metrics and e.stage == "model_training"]
    assert [e.current_step for e in rounds] == list(range(1, 16))
    assert {(e.total_steps, e.total_epochs) for e in recorder.progress()} == {(15, 15)}
    for i, event in enumerate(rounds):
        assert event.metrics == pytest.approx({f"{data}-{metric}": values[i]
                                               for data, by in history.items()
                                               for metric, values in by.items()})
        assert event.current_accuracy == pytest.approx(1 - history["val"]["binary_error"][i])
    assert recorder.stages() == ["data_preparation", "model_training", "finalization"]
    (done,) = recorder.of_type("training_completed")
    assert done.stop_reason is None and done.run_id == run_id
    assert done.final_accuracy == pytest.approx(1 - history["val"]["binary_error"][-1])
    assert done.model_size == format_bytes(len(booster.model_to_string().encode()))
    (params, *_) = recorder.of_type("run_params")
    assert params.params["seed"] == 1 and params.params["num_iterations"] == 15
    assert params.params["num_leaves"] == 7 and params.params["objective"] == "binary"
    assert not {"update", "eval_valid", "eval_train"} & set(vars(booster))
    assert_wire_valid(recorder)


def test_sklearn_wrapper_with_early_stopping_completes_early(pm, recorder, cancer):
    x_train, x_val, y_train, y_val = cancer
    model = lgb.LGBMClassifier(n_estimators=300, learning_rate=0.5, num_leaves=7, n_jobs=1,
                               verbose=-1)
    model.fit(x_train, y_train, eval_X=(x_val,), eval_y=(y_val,),
              callbacks=[MLOpsCallback(emit=pm.dispatch, throttle=0),
                         lgb.early_stopping(3, verbose=False)])
    best = model.best_iteration_
    assert 0 < best < 300
    assert_progress_monotonic_to_100(recorder)
    last = recorder.progress()[-1]
    assert (last.current_step, last.total_steps, last.model_name) == (best + 3, 300,
                                                                      "LGBMClassifier")
    (done,) = recorder.of_type("training_completed")
    assert done.stop_reason == "early_stopping"
    assert done.message == f"Training stopped early at epoch {best + 3}/300"
    assert done.validation_score == pytest.approx(model.best_score_["valid_0"]["binary_logloss"])
    (params, *_) = recorder.of_type("run_params")
    assert params.params["num_iterations"] == 300
    assert_wire_valid(recorder)


def test_early_stopping_from_params_and_a_second_training(pm, recorder, cancer):
    train, val = _sets(cancer)
    callback = MLOpsCallback(emit=pm.dispatch, throttle=0)
    params = dict(PARAMS, learning_rate=0.6, early_stopping_round=2)
    booster = lgb.train(params, train, num_boost_round=200, valid_sets=[val],
                        callbacks=[callback])
    assert booster.best_iteration < 200
    lgb.train(PARAMS, train, num_boost_round=4, callbacks=[callback])
    done = recorder.of_type("training_completed")
    assert [d.stop_reason for d in done] == ["early_stopping", None]
    assert len({d.run_id for d in done}) == 2
    assert recorder.progress()[-1].current_step == 4


def test_throttled_iterations_and_the_stopping_one_is_always_sent(pm, recorder, cancer):
    train, val = _sets(cancer)
    history: dict = {}
    lgb.train(PARAMS, train, num_boost_round=9, valid_sets=[val], valid_names=["val"],
              callbacks=[lgb.record_evaluation(history),
                         MLOpsCallback(emit=pm.dispatch, throttle=3600)])
    sent = [e for e in recorder.progress() if e.metrics]
    assert {e.current_step for e in sent} == {9}
    assert sent[0].metrics["val-binary_logloss"] == pytest.approx(
        history["val"]["binary_logloss"][-1])
    assert_progress_monotonic_to_100(recorder)
    recorder.events.clear()
    params = dict(PARAMS, learning_rate=0.6)
    booster = lgb.train(params, train, num_boost_round=300, valid_sets=[val],
                        callbacks=[lgb.early_stopping(2, verbose=False),
                                   MLOpsCallback(emit=pm.dispatch, throttle=3600)])
    stopped_at = booster.best_iteration + 2
    assert {e.current_step for e in recorder.progress() if e.metrics} == {stopped_at}
    (done,) = recorder.of_type("training_completed")
    assert done.stop_reason == "early_stopping"


def test_an_iteration_is_sent_once_per_throttle_and_those_between_are_counted(
        pm, recorder, cancer, monkeypatch):
    train, val = _sets(cancer)
    history: dict = {}
    now = [0.0]
    monkeypatch.setattr("mlops_hooks.plugins.lightgbm._now", lambda: now[0])
    monkeypatch.setattr("mlops_hooks.run.lifecycle._perf", lambda: now[0])

    def tick(env: lgb.callback.CallbackEnv) -> None:  # before the adapter's reporter
        now[0] += 1.0

    tick.order = 10  # type: ignore[attr-defined]
    lgb.train(PARAMS, train, num_boost_round=10, valid_sets=[val], valid_names=["val"],
              callbacks=[lgb.record_evaluation(history), tick,
                         MLOpsCallback(emit=pm.dispatch, throttle=2.5)])
    sent = [e for e in recorder.progress() if e.metrics and e.stage == "model_training"]
    # started at 0 s, an iteration a second: due at 3 s, 6 s, 9 s; the last one always
    assert [e.current_step for e in sent] == [3, 6, 9, 10]
    for event in sent:
        assert event.metrics["val-binary_logloss"] == pytest.approx(
            history["val"]["binary_logloss"][event.current_step - 1])
    assert_progress_monotonic_to_100(recorder)


@pytest.mark.parametrize("valid", [True, False], ids=["valid", "no-valid"])
def test_a_stop_request_ends_the_training_within_the_stop_poll_as_requested(
        pm, recorder, cancer, monkeypatch, valid):
    train, val = _sets(cancer)
    now = [0.0]
    monkeypatch.setattr("mlops_hooks.plugins.lightgbm._now", lambda: now[0])
    monkeypatch.setattr("mlops_hooks.run.lifecycle._perf", lambda: now[0])
    adapter = MLOpsCallback(emit=pm.dispatch, throttle=3600)  # no event between start and end

    def stop_at_five(env: lgb.callback.CallbackEnv) -> None:  # before the adapter's reporter
        now[0] += 1.0  # an iteration a second: the 0.25 s poll reads the flag every iteration
        if env.iteration == 4:
            adapter.run.stop()  # as the dashboard's Stop button does

    stop_at_five.order = 10  # type: ignore[attr-defined]
    booster = lgb.train(PARAMS, train, num_boost_round=50, valid_sets=[val] if valid else None,
                        callbacks=[stop_at_five, adapter])
    assert booster.current_iteration() == 5 and booster.best_iteration == 5
    (done,) = recorder.of_type("training_completed")
    assert done.stop_reason == "requested" and "on request" in done.message
    assert recorder.progress()[-1].current_step == 5
    assert_wire_valid(recorder)


def test_other_before_iteration_callbacks_still_run_every_iteration(pm, recorder, cancer):
    train, val = _sets(cancer)
    seen: list[int] = []

    def rate(i: int) -> float:
        seen.append(i)
        return 0.3

    callback = MLOpsCallback(emit=pm.dispatch, throttle=0)
    lgb.train(PARAMS, train, num_boost_round=6, valid_sets=[val],
              callbacks=[callback, lgb.reset_parameter(learning_rate=rate)])
    assert seen == list(range(6))  # reset_parameter (order 10) runs after ours (order 5)
    assert recorder.progress()[-1].current_step == 6


class Boom(RuntimeError):
    pass


def test_a_feval_that_raises_fails_the_run_and_propagates(pm, recorder, cancer):
    train, val = _sets(cancer)
    error = Boom("metric exploded")
    calls = []

    def feval(preds, data):
        calls.append(1)
        if len(calls) == 3:
            raise error
        return "zero", 0.0, False

    with pytest.raises(Boom) as raised:
        lgb.train(PARAMS, train, num_boost_round=10, valid_sets=[val], feval=feval,
                  callbacks=[MLOpsCallback(emit=pm.dispatch, throttle=0)])
    assert raised.value is error
    (failed,) = recorder.of_type("training_failed")
    assert failed.progress_when_failed == 20.0 and "metric exploded" in failed.error
    assert not recorder.of_type("training_completed")


def test_another_callback_that_raises_fails_the_run(pm, recorder, cancer):
    train, val = _sets(cancer)

    def exploding(env):
        if env.iteration == 5:
            raise KeyError("callback")

    with pytest.raises(KeyError):
        lgb.train(PARAMS, train, num_boost_round=10, valid_sets=[val],
                  callbacks=[MLOpsCallback(emit=pm.dispatch, throttle=0), exploding])
    (failed,) = recorder.of_type("training_failed")
    # a plain function gets LightGBM's order -1: it runs before the reporter (order 29), so
    # the iteration it broke (the sixth) is not counted
    assert failed.progress_when_failed == 50.0 and failed.error_code


def test_a_broken_publisher_never_reaches_training(cancer):
    train, val = _sets(cancer)

    def broken(event):
        raise OSError("publisher down")

    with pytest.warns(RuntimeWarning, match="mlops-hooks"):
        booster = lgb.train(PARAMS, train, num_boost_round=4, valid_sets=[val],
                            callbacks=[MLOpsCallback(emit=broken)])
    assert booster.current_iteration() == 4


def test_model_size_can_be_left_out(pm, recorder, cancer):
    train, _ = _sets(cancer)
    lgb.train(PARAMS, train, num_boost_round=3,
              callbacks=[MLOpsCallback(emit=pm.dispatch, model_size=False)])
    (done,) = recorder.of_type("training_completed")
    assert done.model_size is None


def test_model_size_is_the_model_text_serialized_once(pm, recorder, monkeypatch):
    """``model_size`` is ``len(model_to_string())``, from one serialization, not two.

    Over 1 MiB, ``model_to_string`` serializes twice (the first call sizes its buffer).
    """
    x, y = make_classification(n_samples=3000, n_features=20, random_state=0)
    booster = lgb.train({"objective": "binary", "num_leaves": 63, "num_threads": 1,
                         "verbose": -1}, lgb.Dataset(x, y), num_boost_round=200,
                        callbacks=[MLOpsCallback(emit=pm.dispatch, model_size=True)])
    text = booster.model_to_string().encode()
    assert len(text) > 1 << 20
    (done,) = recorder.of_type("training_completed")
    assert done.model_size == format_bytes(len(text))
    serialize = basic._LIB.LGBM_BoosterSaveModelToString
    calls: list[int] = []

    def counted(*args):
        calls.append(1)
        return serialize(*args)

    monkeypatch.setattr(basic._LIB, "LGBM_BoosterSaveModelToString", counted)
    assert _booster_bytes(booster) == len(text)
    assert len(calls) == 1
    small = lgb.train(PARAMS, lgb.Dataset(*load_breast_cancer(return_X_y=True)), 3)
    assert _booster_bytes(small) == len(small.model_to_string().encode())
    assert _booster_bytes(object()) is None  # neither way works: no size, no exception


def test_bad_arguments():
    with pytest.raises(TypeError, match="model_size must be True, False or None, got 'no'"):
        MLOpsCallback(model_size="no")
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        MLOpsCallback("")
    with pytest.raises(TypeError, match="emit must be a callable"):
        MLOpsCallback(emit=3)
