from __future__ import annotations

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.callback import AutoPropagatedCallback, FitCallback
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.experimental import enable_halving_search_cv  # noqa: F401 - HalvingGridSearchCV
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.model_selection import (
    GridSearchCV,
    HalvingGridSearchCV,
    RandomizedSearchCV,
    cross_validate,
    train_test_split,
)
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from mlops_hooks import events as ev
from mlops_hooks.plugins import sklearn as sklearn_plugin
from mlops_hooks.plugins._support import sklearn_fallback as fallback
from mlops_hooks.plugins._support.sklearn_tasks import TaskTree
from mlops_hooks.plugins.sklearn import MLOpsCallback, monitored_fit
from mlops_hooks.run import Run
from mlops_hooks.run import lifecycle as run_lifecycle
from tests.plugins.conftest import (
    assert_one_run,
    assert_progress_monotonic_to_100,
    assert_wire_valid,
)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def cancer():
    x, y = load_breast_cancer(return_X_y=True)
    x = StandardScaler().fit_transform(x)
    return train_test_split(x, y, test_size=0.25, random_state=0)


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    return x[:600] / 16.0, y[:600]


def test_is_a_fit_and_auto_propagated_callback():
    callback = MLOpsCallback()
    assert isinstance(callback, FitCallback) and isinstance(callback, AutoPropagatedCallback)
    assert callback.max_propagation_depth is None


def saved_size(model) -> str:
    """The size of ``model`` pickled as a user saves it, formatted like the spec (KB here)."""
    size = len(pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL))
    assert 1024 <= size < 1024 ** 2
    return f"{size / 1024:.1f}KB"


def test_logistic_regression_reports_iterations_and_validation_score(pm, recorder, cancer,
                                                                     monkeypatch):
    x_train, x_val, y_train, y_val = cancer
    sizes: list[int | None] = []

    def measured(estimator):
        sizes.append(fallback.pickled_size(estimator))
        return sizes[-1]

    monkeypatch.setattr(sklearn_plugin, "pickled_size", measured)
    model = LogisticRegression(max_iter=200)
    model.set_callbacks(MLOpsCallback("cancer-logreg", model_id="lr_v1", emit=pm.dispatch,
                                      throttle=0, validation_data=(x_val, y_val)))
    model.fit(x_train, y_train)
    assert_one_run(recorder)
    assert recorder.stages() == ["data_preparation", "model_training", "validation",
                                 "finalization"]
    assert_progress_monotonic_to_100(recorder)
    assert all(e.progress is not None for e in recorder.progress())
    n_iter = int(model.n_iter_[0])
    assert any(e.message.endswith(f"- {n_iter} iterations") for e in recorder.progress())
    (done,) = recorder.of_type("training_completed")
    assert done.final_accuracy == pytest.approx(model.score(x_val, y_val))
    assert done.validation_score == done.final_accuracy and done.model_id == "lr_v1"
    # taken in teardown, while the fit context is still on the estimator: the bytes of the
    # model as saved after the fit, not of that context
    assert sizes == [len(pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL))]
    assert done.model_size == saved_size(model)
    assert done.model_name == "cancer-logreg" and not recorder.of_type("training_failed")
    assert_wire_valid(recorder)


def test_pipeline_reports_feature_engineering_then_training(pm, recorder, digits):
    x, y = digits
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300))
    pipe.set_callbacks(MLOpsCallback(emit=pm.dispatch, throttle=0))
    pipe.fit(x, y)
    assert recorder.stages() == ["data_preparation", "feature_engineering", "model_training",
                                 "finalization"]
    assert_progress_monotonic_to_100(recorder)
    scaled = [e.progress for e in recorder.progress() if e.stage == "feature_engineering"]
    assert max(scaled) == 50  # one of two pipeline steps
    assert recorder.progress()[0].model_name == "Pipeline"


@pytest.mark.slow
def test_grid_search_with_two_worker_processes_reports_fits_and_best_score(pm, recorder,
                                                                          digits):
    x, y = digits
    search = GridSearchCV(make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)),
                          {"logisticregression__C": [0.1, 1.0]}, cv=3, n_jobs=2)
    search.set_callbacks(MLOpsCallback("digits-search", emit=pm.dispatch, throttle=0))
    search.fit(x, y)
    assert_one_run(recorder)
    assert_progress_monotonic_to_100(recorder)
    progress = recorder.progress()
    fits = [e.current_step or 0 for e in progress if "fits" in (e.message or "")]
    assert fits == sorted(fits) and fits[-1] == 7  # 2 candidates x 3 folds + the refit
    assert any("/7 fits, " in e.message and "iterations" in e.message for e in progress)
    worker_iterations = [e for e in progress if "0/7 fits" in e.message and "iter" in e.message]
    assert worker_iterations  # solver iterations inside worker processes reached us
    (done,) = recorder.of_type("training_completed")
    assert done.final_accuracy == pytest.approx(search.best_score_)
    assert done.validation_score == pytest.approx(search.best_score_)
    pids = {e.activity.metadata["pid"] for e in recorder.of_type("activity_update")}
    assert pids == {os.getpid()}  # only the main process emits


SVC_GRID = {"C": [0.1, 1, 10], "gamma": [0.0001, 0.001, 0.01, 0.1]}  # 12 candidates


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:The estimator SVC does not support callbacks")
def test_grid_search_progress_is_the_fraction_of_fits_and_the_refit_is_one_of_them(
        pm, recorder):
    x, y = load_digits(return_X_y=True)
    search = GridSearchCV(SVC(), SVC_GRID, cv=3, n_jobs=2)  # 36 fits, then the refit
    search.set_callbacks(MLOpsCallback("digits-svc", emit=pm.dispatch, throttle=0))
    search.fit(x, y)
    assert_one_run(recorder)
    assert_progress_monotonic_to_100(recorder)
    counted = [e for e in recorder.progress() if "/37 fits" in e.message]
    assert [e.current_step for e in counted] == sorted(e.current_step for e in counted)
    assert {e.current_step for e in counted} == set(range(1, 38))  # every fit and the refit
    for event in counted:  # each fit is 1/37 of the run: the refit is no bigger than a fit
        assert event.progress == round(100 * event.current_step / 37, 1), event
        assert event.message.endswith(f"- {event.current_step}/37 fits")
    before_refit = [e.progress for e in counted if e.current_step == 36]
    assert before_refit and before_refit[0] == 97.3  # the refit is the last 2.7%
    assert all(e.estimated_time_remaining == 0 for e in recorder.progress()
               if e.progress == 100)


def test_a_search_inside_a_pipeline_never_reports_less_than_it_sent(pm, recorder, digits):
    x, y = digits
    pipe = make_pipeline(StandardScaler(), GridSearchCV(LogisticRegression(max_iter=300),
                                                        {"C": [0.1, 1.0]}, cv=2))
    pipe.set_callbacks(MLOpsCallback(emit=pm.dispatch, throttle=0))
    pipe.fit(x, y)
    assert_progress_monotonic_to_100(recorder)
    for event in recorder.progress():  # the message's percentage is the event's (truncated)
        said = int(event.message.split("% complete")[0].rsplit(" ", 1)[1])
        assert 0 <= event.progress - said <= 1, event  # progress is rounded to 0.1
    # the scaler was half of the pipeline until the search's 5 fits weighed in: 1 of 6 units
    assert [e.progress for e in recorder.progress() if "/5 fits" in e.message][-1] == 100


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_search_eta_is_the_time_per_fit_times_the_fits_left(pm, recorder, monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(run_lifecycle, "_perf", clock)
    run = Run("search", emit=pm.dispatch, throttle=0)
    tree = TaskTree(run)
    run.advance(0)
    run.start()
    # the messages of a GridSearchCV with 4 evaluations and a refit (what workers send)
    tree.consume({"event": "begin", "path": (0,), "max_subtasks": 2, "task_name": "fit"})
    tree.consume({"event": "begin", "path": (0, 0), "max_subtasks": 4, "task_name": "search"})
    clock.now += 10  # worker start-up and the first fit
    etas = []
    for task_id in range(4):
        tree.consume({"event": "end", "path": (0, 0, task_id),
                      "task_name": "candidate-split-evaluation", "leaf": True})
        last = recorder.progress()[-1]
        etas.append((last.progress, last.estimated_time_remaining))
        clock.now += 2  # two seconds per fit from then on
    assert etas == [(20, 40), (40, 6), (60, 4), (80, 2)]  # then 3, 2 and 1 fits of 2 s left
    tree.consume({"event": "begin", "path": (0, 1), "max_subtasks": 0,
                  "task_name": "refit-with-best-params"})
    tree.consume({"event": "end", "path": (0, 1), "task_name": "refit-with-best-params",
                  "leaf": True})
    last = recorder.progress()[-1]
    assert (last.progress, last.estimated_time_remaining, last.message) == (
        100, 0, "Training 100% complete - 5/5 fits")


@pytest.mark.filterwarnings("ignore:The estimator SVC does not support callbacks")
def test_halving_search_weighs_each_round_like_the_first(pm, recorder):
    x, y = load_digits(return_X_y=True)
    search = HalvingGridSearchCV(SVC(), SVC_GRID, cv=3, factor=3, random_state=0)
    search.set_callbacks(MLOpsCallback("digits-halving", emit=pm.dispatch, throttle=0))
    search.fit(x, y)
    assert search.n_candidates_ == [12, 4, 2]  # rounds of 36, 12 and 6 fits
    assert_progress_monotonic_to_100(recorder)
    by_fits: dict[int, ev.TrainingProgress] = {}
    for event in recorder.progress():
        if "round" in event.message:
            by_fits.setdefault(event.current_step, event)
    # 3 rounds of 36 units (a fit of round 2 is 3 units, of round 3 is 6) and the refit: 109
    assert by_fits[36].progress == round(100 * 36 / 109, 1)
    assert by_fits[36 + 12].progress == round(100 * 72 / 109, 1)
    assert by_fits[36 + 12 + 6].progress == round(100 * 108 / 109, 1)
    assert by_fits[36].message.endswith("- 36 fits, round 1/3")
    assert by_fits[40].message.endswith("- 40 fits, round 2/3")
    assert by_fits[54].message.endswith("- 54 fits, round 3/3")


@pytest.mark.parametrize("final", [LogisticRegression(C=-1.0), SVC(C=-1.0)],
                         ids=["with-callback-support", "without-callback-support"])
@pytest.mark.filterwarnings("ignore:The estimator SVC does not support callbacks")
def test_a_failing_final_estimator_is_reported_at_model_training(pm, recorder, digits, final):
    x, y = digits
    pipe = Pipeline([("scale", StandardScaler()), ("model", final)])
    pipe.set_callbacks(MLOpsCallback(emit=pm.dispatch))
    with pytest.raises(ValueError, match="'C' parameter"):
        pipe.fit(x, y)
    (failed,) = recorder.of_type("training_failed")
    assert failed.stage_failed == "model_training" and failed.error_code == "INVALID_PARAMETER"
    assert failed.progress_when_failed == 50  # the scaler, one of two steps, was done


@pytest.mark.slow
@pytest.mark.parametrize("n_jobs", [1, 2])
def test_cross_validate_reports_each_fold_fit_to_the_callers_emitter(pm, recorder, digits,
                                                                     n_jobs):
    x, y = digits
    model = LogisticRegression(max_iter=300)
    model.set_callbacks(MLOpsCallback("digits-cv", emit=pm.dispatch, throttle=0))
    scores = cross_validate(model, x, y, cv=3, n_jobs=n_jobs)["test_score"]
    assert len(scores) == 3
    done = recorder.of_type("training_completed")
    assert len(done) == 3 and len({e.run_id for e in done}) == 3  # one run per fold's fit
    for run_id in {e.run_id for e in done}:
        values = [e.progress for e in recorder.progress() if e.run_id == run_id]
        assert values == sorted(values) and values[-1] == 100
    assert {e.model_name for e in done} == {"digits-cv"} and not recorder.of_type(
        "training_failed")
    assert_wire_valid(recorder)


def test_randomized_search_sequential(pm, recorder, cancer):
    x_train, _, y_train, _ = cancer
    search = RandomizedSearchCV(LogisticRegression(max_iter=200), {"C": [0.01, 0.1, 1, 10]},
                                n_iter=2, cv=2, random_state=0)
    search.set_callbacks(MLOpsCallback(emit=pm.dispatch, throttle=0))
    search.fit(x_train, y_train)
    assert_progress_monotonic_to_100(recorder)
    assert max(e.current_step or 0 for e in recorder.progress()) == 5
    assert recorder.of_type("training_completed")[0].validation_score == pytest.approx(
        search.best_score_)


class Boom(TransformerMixin, BaseEstimator):
    error = RuntimeError("boom in step 2")

    def fit(self, x, y=None):
        raise self.error

    def transform(self, x):
        return x


@pytest.mark.filterwarnings("ignore:The estimator Boom does not support callbacks")
def test_failure_is_reported_with_stage_and_progress_and_reraised_unchanged(pm, recorder,
                                                                             digits):
    x, y = digits
    pipe = Pipeline([("scale", StandardScaler()), ("boom", Boom()),
                     ("lr", LogisticRegression())])
    pipe.set_callbacks(MLOpsCallback(emit=pm.dispatch))
    with pytest.raises(RuntimeError) as raised:
        pipe.fit(x, y)
    assert raised.value is Boom.error
    (failed,) = recorder.of_type("training_failed")
    assert failed.error == "RuntimeError: boom in step 2"
    assert failed.stage_failed == "feature_engineering"
    assert failed.progress_when_failed == pytest.approx(100 / 3, abs=0.1)
    assert not recorder.of_type("training_completed")


def test_failure_in_a_search_candidate(pm, recorder, cancer):
    x_train, _, y_train, _ = cancer
    search = GridSearchCV(LogisticRegression(), {"C": [1.0, -1.0]}, cv=2, error_score="raise")
    search.set_callbacks(MLOpsCallback(emit=pm.dispatch))
    with pytest.raises(ValueError, match="C") as raised:
        search.fit(x_train, y_train)
    (failed,) = recorder.of_type("training_failed")
    assert str(raised.value) in failed.error and failed.error_code == "INVALID_PARAMETER"
    assert failed.stage_failed == "model_training"
    assert failed.progress_when_failed == 40  # 2 of 4 fits and the refit to come: 2/5


def test_callback_pickles_without_its_emitter_and_data(pm, cancer):
    _, x_val, _, y_val = cancer
    callback = MLOpsCallback("x", emit=pm.dispatch, validation_data=(x_val, y_val))
    clone = pickle.loads(pickle.dumps(callback))
    assert clone.name == "x" and clone.emit is None and clone.validation_data is None


# ---------------------------------------------------------------------- fallback


def test_monitored_fit_for_an_estimator_without_callbacks(pm, recorder, cancer):
    x_train, x_val, y_train, y_val = cancer
    model = monitored_fit(SVC(), x_train, y_train, validation_data=(x_val, y_val),
                          name="cancer-svc", emit=pm.dispatch)
    assert recorder.stages() == ["data_preparation", "model_training", "validation",
                                 "finalization"]
    assert_progress_monotonic_to_100(recorder)
    (done,) = recorder.of_type("training_completed")
    assert done.final_accuracy == pytest.approx(model.score(x_val, y_val))
    assert done.model_size == saved_size(model)


def test_monitored_fit_with_partial_fit_epochs(pm, recorder, cancer):
    x_train, x_val, y_train, y_val = cancer
    monitored_fit(SGDClassifier(random_state=0), x_train, y_train, epochs=3,
                  classes=np.unique(y_train), validation_data=(x_val, y_val), emit=pm.dispatch)
    assert_progress_monotonic_to_100(recorder)
    ends = [e for e in recorder.progress() if e.metrics]
    assert [e.current_epoch for e in ends][:3] == [1, 2, 3]
    # the same fit again, by hand: each epoch's accuracy is the validation score after it
    replay, scores = SGDClassifier(random_state=0), []
    for _ in range(3):
        replay.partial_fit(x_train, y_train, classes=np.unique(y_train))
        scores.append(replay.score(x_val, y_val))
    assert [e.current_accuracy for e in ends][:3] == pytest.approx(scores)
    assert [e.metrics["val_score"] for e in ends][:3] == pytest.approx(scores)
    assert recorder.of_type("training_completed")[0].total_epochs == 3


def test_monitored_fit_failure_is_reported_and_reraised(pm, recorder, cancer):
    x_train, _, y_train, _ = cancer
    with pytest.raises(ValueError, match="C") as raised:
        monitored_fit(SVC(C=-1.0), x_train, y_train, emit=pm.dispatch)
    (failed,) = recorder.of_type("training_failed")
    assert str(raised.value) in failed.error and failed.stage_failed == "model_training"


@pytest.mark.parametrize(("call", "error", "match"), [
    (lambda: MLOpsCallback(name=""), ValueError, "name"),
    (lambda: MLOpsCallback(max_propagation_depth=-1), ValueError, "max_propagation_depth"),
    (lambda: MLOpsCallback(validation_data=[1, 2, 3]), TypeError, "validation_data"),
    (lambda: MLOpsCallback(throttle="fast"), ValueError, "throttle"),
    (lambda: MLOpsCallback(emit=object()), TypeError, "emit"),
    (lambda: monitored_fit(SVC(), [[0]], [0], epochs=0), ValueError, "epochs"),
    (lambda: monitored_fit(SVC(), [[0]], [0], epochs=2), TypeError, "partial_fit"),
])
def test_bad_arguments_are_rejected_at_once(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_missing_sklearn_names_the_extra():
    code = ("import sys; sys.modules['sklearn.callback'] = None\n"
            "try:\n import mlops_hooks.plugins.sklearn\n"
            "except ImportError as e:\n print(e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert "pip install 'mlops-hooks[sklearn]'" in out
