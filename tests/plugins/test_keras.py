from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import httpx
import keras  # KERAS_BACKEND=torch is set by conftest.py before this import
import numpy as np
import pytest

from mlops_hooks import events as ev
from mlops_hooks.plugins._support import open_runs as _open_runs
from mlops_hooks.plugins.keras import MLOpsCallback
from tests.live_server import LiveServer
from tests.plugins.conftest import (
    assert_one_run,
    assert_progress_monotonic_to_100,
    assert_wire_valid,
)
from tests.server.live import QUIET

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return (x[:800] / 16.0).astype("float32"), y[:800].astype("int64")


class FailingModel(keras.Sequential):
    """Raises in its training step at a chosen epoch (counted with on_epoch_begin)."""

    def __init__(self, *args, fail_at_step=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fail_at_step = fail_at_step
        self.steps_seen = 0
        self.error = RuntimeError("boom in epoch 2")

    def train_step(self, data):
        self.steps_seen += 1
        if self.steps_seen == self.fail_at_step:
            raise self.error
        return super().train_step(data)


def model_for(**kwargs):
    keras.utils.set_random_seed(0)
    model = FailingModel([keras.Input((64,)), keras.layers.Dense(32, activation="relu"),
                          keras.layers.Dense(10, activation="softmax")], name="digits_dense",
                         **kwargs)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def test_fit_reports_stages_progress_epochs_and_completion(pm, recorder, digits):
    x, y = digits
    model = model_for()
    callback = MLOpsCallback(model_id="digits_v2", emit=pm.dispatch, throttle=0)
    history = model.fit(x, y, epochs=3, batch_size=64, validation_split=0.2, verbose=0,
                        callbacks=[callback])
    assert_one_run(recorder)
    assert recorder.stages() == ["data_preparation", "model_training", "validation",
                                 "model_training", "validation", "model_training",
                                 "validation", "model_training", "finalization"]
    assert_progress_monotonic_to_100(recorder)
    progress = recorder.progress()
    assert {e.total_steps for e in progress} == {30} and {e.total_epochs for e in progress} == {3}
    assert progress[0].model_name == "digits_dense"
    epoch_ends = [e for e in progress if e.metrics and "val_loss" in e.metrics]
    assert sorted({e.current_epoch for e in epoch_ends}) == [1, 2, 3]
    assert progress[-2].metrics["val_accuracy"] == pytest.approx(
        history.history["val_accuracy"][-1])
    assert all(e.current_loss is not None for e in progress if e.current_step)
    (done,) = recorder.of_type("training_completed")
    assert done.final_accuracy == pytest.approx(history.history["val_accuracy"][-1])
    assert done.validation_score == done.final_accuracy and 0 < done.final_accuracy <= 1
    assert done.model_size == f"{model.count_params() * 4 / 1024:.1f}KB"
    assert (done.total_epochs, done.model_id) == (3, "digits_v2")
    assert not recorder.of_type("training_failed")
    assert model.train_function.__name__ != "guarded_step"  # the step guards are removed
    assert_wire_valid(recorder)


def test_failure_in_a_training_step_is_reported_and_reraised_unchanged(pm, recorder, digits):
    x, y = digits
    model = model_for(fail_at_step=14)  # epoch 2 (10 steps per epoch), 4th step
    with pytest.raises(RuntimeError) as raised:
        model.fit(x, y, epochs=3, batch_size=64, validation_split=0.2, verbose=0,
                  callbacks=[MLOpsCallback(emit=pm.dispatch)])
    assert raised.value is model.error
    (failed,) = recorder.of_type("training_failed")
    assert failed.stage_failed == "model_training" and failed.error_code == "TRAINING_ERROR"
    assert failed.progress_when_failed == pytest.approx(100 * 13 / 30, abs=0.1)
    assert failed.error == "RuntimeError: boom in epoch 2"
    assert not recorder.of_type("training_completed")
    assert model.train_function.__name__ != "guarded_step"
    assert _open_runs.open_runs() == []


class RaiseAtEpoch(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch
        self.error = ValueError("bad batch in epoch 2")

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise self.error


def test_failure_outside_a_step_is_reported_by_the_context_manager(pm, recorder, digits):
    x, y = digits
    failing = RaiseAtEpoch(1)
    with pytest.raises(ValueError) as raised, MLOpsCallback(emit=pm.dispatch) as callback:
        model_for().fit(x, y, epochs=3, batch_size=64, verbose=0,
                        callbacks=[callback, failing])
    assert raised.value is failing.error
    (failed,) = recorder.of_type("training_failed")
    assert failed.error_code == "INVALID_VALUE"
    assert failed.progress_when_failed == pytest.approx(100 / 3, abs=0.1)


def test_an_open_run_is_reported_by_the_exception_hook(pm, recorder, digits, monkeypatch):
    x, y = digits
    seen = []
    monkeypatch.setattr(_open_runs, "_previous_hook", lambda *args: seen.append(args[1]))
    failing = RaiseAtEpoch(1)
    with pytest.raises(ValueError):
        model_for().fit(x, y, epochs=3, batch_size=64, verbose=0,
                        callbacks=[MLOpsCallback(emit=pm.dispatch), failing])
    assert not recorder.of_type("training_failed")  # Keras told the callback nothing
    _open_runs._excepthook(ValueError, failing.error, None)
    assert recorder.of_type("training_failed")[0].error == "ValueError: bad batch in epoch 2"
    assert seen == [failing.error]  # the previous hook still runs


UNCAUGHT = textwrap.dedent("""
    import numpy as np, keras
    from mlops_hooks.plugins.keras import MLOpsCallback

    class Boom(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                raise MemoryError("out of memory in epoch 2")

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    x = np.zeros((32, 4), "float32")
    model.fit(x, np.zeros((32, 2), "float32"), epochs=3, verbose=0,
              callbacks=[MLOpsCallback("uncaught"), Boom()])
""")


@pytest.mark.slow
def test_an_uncaught_exception_in_a_script_is_reported(tmp_path):
    path = tmp_path / "events.jsonl"
    env = {**os.environ, "KERAS_BACKEND": "torch", "MLOPS_HOOKS_JSONL": str(path),
           "MLOPS_HOOKS_DISABLE": "publisher,console"}
    done = subprocess.run([sys.executable, "-c", UNCAUGHT], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 1 and "MemoryError" in done.stderr  # the traceback still shows
    events = [ev.decode(line) for line in path.read_bytes().splitlines()]
    (failed,) = [e for e in events if e.type == "training_failed"]
    assert failed.error_code == "MEMORY_ERROR" and failed.progress_when_failed == pytest.approx(
        100 / 3, abs=0.1)


LEFT_OPEN = textwrap.dedent("""
    import numpy as np, keras
    from mlops_hooks.plugins.keras import MLOpsCallback

    class Boom(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                raise ValueError("a callback broke in epoch 2")

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    x = np.zeros((32, 4), "float32")
    try:  # outside a step, without `with`: Keras never tells the adapter
        model.fit(x, np.zeros((32, 2), "float32"), epochs=3, batch_size=8, verbose=0,
                  callbacks=[MLOpsCallback("left-open", run_id="run_left_open"), Boom()])
    except ValueError:
        print("caught and ignored")
""")


@pytest.mark.slow
def test_a_run_still_open_at_interpreter_exit_reaches_a_real_server_as_failed(tmp_path):
    with LiveServer(tmp_path / "server", extra_args=list(QUIET)) as server:
        env = {**os.environ, "KERAS_BACKEND": "torch", "MLOPS_HOOKS_URL": server.ws_url,
               "MLOPS_HOOKS_DISABLE": "console", "MLOPS_HOOKS_FLUSH_TIMEOUT": "30"}
        env.pop("MLOPS_HOOKS_JSONL", None)
        done = subprocess.run([sys.executable, "-c", LEFT_OPEN], env=env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0 and done.stdout == "caught and ignored\n", done.stderr
        models = httpx.get(server.http_url + "/api/models", timeout=10).json()
    (run,) = [r for r in models["runs"] if r["run_id"] == "run_left_open"]
    assert run["status"] == "failed" and run["completed"] is None
    failed = run["failed"]
    assert "the process exited before the run finished" in failed["error"]
    assert (failed["stage_failed"], failed["model_name"]) == ("model_training", "left-open")
    assert failed["progress_when_failed"] == pytest.approx(100 / 3, abs=0.1)  # 1 epoch of 3
    assert failed["error_code"] == "TERMINATED"


@pytest.mark.filterwarnings("ignore:Your input ran out of data")  # how Keras learns the length
def test_unknown_steps_progress_by_epochs_then_learnt_epoch_length(pm, recorder, digits):
    import torch
    from torch.utils.data import DataLoader, IterableDataset

    x, y = digits

    class Stream(IterableDataset):  # no length: Keras cannot know the steps per epoch
        def __iter__(self):
            return iter(zip(torch.tensor(x[:256]), torch.tensor(y[:256]), strict=True))

    callback = MLOpsCallback(emit=pm.dispatch, throttle=0)
    model_for().fit(DataLoader(Stream(), batch_size=64), epochs=3, verbose=0, shuffle=False,
                    callbacks=[callback])
    progress = recorder.progress()
    assert progress[0].total_steps is None
    assert_progress_monotonic_to_100(recorder)
    assert [e.progress for e in progress if e.current_step and e.current_step < 4] == [0] * 3
    assert progress[-1].total_steps == 12  # learnt from the first epoch: 4 steps


def test_batch_hooks_stay_asynchronous(digits):
    model = model_for()
    callbacks = keras.callbacks.CallbackList([MLOpsCallback(emit=print)], model=model)
    assert callbacks._async_train  # Keras would turn this off for a synchronous batch hook


def test_standalone_evaluate_is_not_reported(pm, recorder, digits):
    x, y = digits
    model = model_for()
    callback = MLOpsCallback(emit=pm.dispatch)
    model.fit(x, y, epochs=1, batch_size=128, verbose=0, callbacks=[callback])
    count = len(recorder.events)
    model.evaluate(x, y, verbose=0, callbacks=[callback])
    assert len(recorder.events) == count


def test_each_fit_is_a_new_run_unless_a_run_id_is_given(pm, recorder, digits):
    x, y = digits
    callback = MLOpsCallback(emit=pm.dispatch)
    model = model_for()
    for _ in range(2):
        model.fit(x, y, epochs=1, batch_size=256, verbose=0, callbacks=[callback])
    assert len({e.run_id for e in recorder.events}) == 2
    recorder.events.clear()
    model.fit(x, y, epochs=1, batch_size=256, verbose=0,
              callbacks=[MLOpsCallback(run_id="run_fixed", emit=pm.dispatch)])
    assert {e.run_id for e in recorder.events} == {"run_fixed"}


def test_a_fit_resumed_at_initial_epoch_continues_the_progress_from_there(pm, recorder, digits):
    x, y = digits
    model = model_for()
    model.fit(x, y, epochs=3, batch_size=100, verbose=0,
              callbacks=[MLOpsCallback(run_id="run_resumed", emit=pm.dispatch, throttle=0)])
    recorder.events.clear()
    model.fit(x, y, epochs=5, initial_epoch=3, batch_size=100, verbose=0,  # 8 steps an epoch
              callbacks=[MLOpsCallback(run_id="run_resumed", emit=pm.dispatch, throttle=0)])
    assert assert_one_run(recorder) == "run_resumed"
    stepped = [(e.current_epoch, e.current_step, e.progress) for e in recorder.progress()
               if e.current_step]
    # Epochs 4 and 5 of 5: steps 25..40 of 40, never back at 0 %.
    expected = [(4 if step <= 32 else 5, step, step * 100 / 40) for step in range(25, 41)]
    assert sorted(set(stepped)) == expected
    assert [p for _, _, p in stepped] == sorted(p for _, _, p in stepped)
    assert {(e.total_steps, e.total_epochs) for e in recorder.progress()} == {(40, 5)}
    (done,) = recorder.of_type("training_completed")
    assert done.total_epochs == 5 and recorder.progress()[-1].progress == 100


@pytest.mark.parametrize("raise_error", [False, True], ids=["stop-training", "raise"])
@pytest.mark.filterwarnings("ignore:__array_wrap__ must accept context:DeprecationWarning")
def test_terminate_on_nan_is_a_numerical_failure(pm, recorder, digits, raise_error):
    x, y = digits
    x = x.copy()
    x[300:] = np.nan  # batch 4 of epoch 1 (100 samples a batch, not shuffled) is NaN
    model = model_for()
    try:
        with MLOpsCallback(emit=pm.dispatch, throttle=0) as callback:
            model.fit(x, y, epochs=5, batch_size=100, shuffle=False, verbose=0,
                      callbacks=[keras.callbacks.TerminateOnNaN(raise_error=raise_error),
                                 callback])
    except RuntimeError as error:  # raised by TerminateOnNaN, outside a step: the `with`
        assert raise_error and "NaN or Inf loss" in str(error)
    assert not recorder.of_type("training_completed")
    (failed,) = recorder.of_type("training_failed")
    assert (failed.error_code, failed.stage_failed) == ("NUMERICAL_ERROR", "model_training")
    assert failed.progress_when_failed == 10  # 4 of 40 steps
    assert failed.suggestions and "learning rate" in failed.suggestions[0]
    if not raise_error:  # stopped by model.stop_training: the epoch's NaN loss says why
        assert failed.error == ("FloatingPointError: training stopped: the loss became "
                                "non-finite (nan) in epoch 1/5")
    assert 100 not in [e.progress for e in recorder.progress()]


def test_early_stopping_completes_at_100_with_eta_0_and_says_it_stopped_early(pm, recorder,
                                                                              digits):
    x, y = digits
    model = model_for()
    stopper = keras.callbacks.EarlyStopping(monitor="loss", min_delta=10.0, patience=1)
    model.fit(x, y, epochs=5, batch_size=100, verbose=0,
              callbacks=[stopper, MLOpsCallback(emit=pm.dispatch, throttle=0)])
    assert stopper.stopped_epoch == 1  # after 2 of 5 epochs
    (done,) = recorder.of_type("training_completed")
    assert done.message == "Training stopped early at epoch 2/5" and done.total_epochs == 2
    progress = recorder.progress()
    assert [e.progress for e in progress
            if e.current_step == 16 and e.stage == "model_training"][-1] == 40  # 2 of 5 epochs
    finals = [e for e in progress if e.progress == 100]
    assert finals and {e.estimated_time_remaining for e in finals} == {0}
    assert finals[-1].stage == "finalization" and progress[-1] is finals[-1]


def test_without_tensorflow_the_import_picks_an_installed_backend(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env["KERAS_HOME"] = str(tmp_path)  # no keras.json: Keras' default would be TensorFlow
    code = ("import importlib.util, os\n"
            "assert importlib.util.find_spec('tensorflow') is None\n"
            "import mlops_hooks.plugins.keras\n"
            "import keras\n"
            "print(keras.backend.backend(), os.environ['KERAS_BACKEND'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["torch", "torch"]


def test_a_chosen_backend_that_is_missing_is_named_with_the_way_out(tmp_path):
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "KERAS_HOME": str(tmp_path)}
    code = ("try:\n import mlops_hooks.plugins.keras\n"
            "except ImportError as e:\n print(e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env=env, check=True).stdout
    assert "Keras 3 is installed, but importing it failed with the backend 'tensorflow' " \
           "(from KERAS_BACKEND): No module named 'tensorflow'" in out
    assert "KERAS_BACKEND=torch (installed: torch)" in out
    assert "pip install 'mlops-hooks[keras]'" not in out  # Keras is not what is missing


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"name": " "}, ValueError, "name"),
    ({"throttle": -0.5}, ValueError, "throttle"),
    ({"accuracy_metrics": ["ok", 3]}, ValueError, "accuracy_metrics"),
    ({"emit": "stdout"}, TypeError, "emit"),
])
def test_bad_arguments_are_rejected_at_once(kwargs, error, match):
    with pytest.raises(error, match=match):
        MLOpsCallback(**kwargs)


def test_missing_keras_names_the_extra():
    code = ("import sys; sys.modules['keras'] = None\n"
            "try:\n import mlops_hooks.plugins.keras\n"
            "except ImportError as e:\n print(e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert "pip install 'mlops-hooks[keras]'" in out


def test_numpy_logs_and_arrays_are_accepted(pm, recorder):
    callback = MLOpsCallback(emit=pm.dispatch, throttle=0)
    callback.set_params({"epochs": 1, "steps": 2, "verbose": 0})
    callback.set_model(model_for())
    callback.on_train_begin()
    callback.on_epoch_begin(0)
    callback.on_train_batch_end(0, {"loss": np.float32(0.5)})
    callback.on_train_batch_end(1, {"loss": np.float32(0.25)})
    callback.on_epoch_end(0, {"loss": np.float64(0.3), "accuracy": np.float32(0.9)})
    callback.on_train_end({"accuracy": np.float32(0.9)})
    assert recorder.progress()[-2].current_loss == pytest.approx(0.3)
    assert recorder.of_type("training_completed")[0].final_accuracy == pytest.approx(0.9)
    json.dumps([ev.to_dict(e) for e in recorder.events])  # plain JSON, no NumPy scalars
