"""``run_params`` captured with no user code: real Lightning, Keras 3 and scikit-learn fits."""

from __future__ import annotations

import math
import warnings

import keras  # KERAS_BACKEND=torch is set by conftest.py before this import
import lightning.pytorch as L
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV
from sklearn.svm import SVC
from torch import nn

from mlops_hooks import events as ev
from mlops_hooks.plugins import keras as keras_plugin
from mlops_hooks.plugins._support.base import Adapter
from mlops_hooks.plugins.lightning import MLOpsCallback as LightningCallback
from mlops_hooks.plugins.sklearn import MLOpsCallback as SklearnCallback
from mlops_hooks.run import params as rp
from tests.core.test_run_params import expected_metadata
from tests.plugins.conftest import assert_one_run, assert_wire_valid
from tests.plugins.lightning_models import digits_loaders

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*does not have many workers:UserWarning"),
    pytest.mark.filterwarnings("ignore:.*GPU available but not used:UserWarning"),
    pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning"),
    pytest.mark.filterwarnings("ignore:The estimator SVC does not support callbacks"),
    pytest.mark.timeout(180),
]


@pytest.fixture(autouse=True)
def _git_known_and_no_group(monkeypatch):
    """Git has answered (one ``run_params`` at start), and no group comes from outside."""
    from tests.core.test_run_params import REPO

    monkeypatch.chdir(REPO)
    rp.git_info(timeout=60)
    assert rp.git_info()[0]
    monkeypatch.delenv(rp.GROUP_ENV, raising=False)
    monkeypatch.delenv(rp.GROUP_SIZE_ENV, raising=False)


def _optimizer_params(prefix: str, optimizer: torch.optim.Optimizer) -> dict:
    group = optimizer.param_groups[0]
    return {f"{prefix}.name": type(optimizer).__name__,
            **{f"{prefix}.{k}": rp.param_value(v) for k, v in group.items() if k != "params"}}


# ---------------------------------------------------------------------- Lightning


class HParamsMLP(L.LightningModule):
    def __init__(self, lr: float = 0.01, hidden: int = 32,
                 arch: dict | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self.net(x), y)
        self.log("train_loss", loss, on_step=True, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self.net(x)
        self.log("val_loss", nn.functional.cross_entropy(logits, y))
        self.log("val_acc", (logits.argmax(1) == y).float().mean())

    def on_train_epoch_end(self) -> None:  # runs after the callbacks' on_train_epoch_end
        self.log("epoch_number", float(self.current_epoch + 1))

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
        return {"optimizer": optimizer,
                "lr_scheduler": torch.optim.lr_scheduler.StepLR(optimizer, step_size=1)}


def test_lightning_sends_hparams_optimizer_batch_size_and_limits(pm, recorder):
    callback = LightningCallback("digits-hp", emit=pm.dispatch, throttle=0,
                                 params={"seed": 7, "lr": "user wins"}, group="lr-sweep")
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", devices=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[callback],
                        accumulate_grad_batches=2)
    train, val = digits_loaders(batch_size=64)
    trainer.fit(HParamsMLP(lr=0.02, arch={"depth": 2, "act": "relu"}), train, val)
    run_id = assert_one_run(recorder)
    (sent,) = recorder.of_type("run_params")
    assert sent.params == {
        "seed": 7, "lr": "user wins",
        "hidden": 32, "arch.depth": 2, "arch.act": "relu",
        **_optimizer_params("optimizer", trainer.optimizers[0]),
        "optimizer.lr": 0.02,  # as the fit started (StepLR has decayed it since)
        "lr_scheduler.name": "StepLR", "lr_scheduler.interval": "epoch",
        "batch_size": 64, "max_epochs": 2, "max_steps": -1, "accumulate_grad_batches": 2,
        "precision": "32-true",
    }
    assert sent.params["optimizer.lr"] == 0.02 and sent.params["optimizer.name"] == "Adam"
    assert (sent.run_id, sent.model_name, sent.group) == (run_id, "digits-hp", "lr-sweep")
    assert sent.metadata == expected_metadata()
    assert set(sent.metadata["frameworks"]) >= {"torch", "lightning"}
    types = [e.type for e in recorder.events]
    assert types.index("run_params") == types.index("training_progress") + 1
    assert_wire_valid(recorder)


def test_lightning_epoch_metrics_reach_progress_with_the_modules_own_epoch_end(pm, recorder):
    callback = LightningCallback(emit=pm.dispatch, throttle=0)
    trainer = L.Trainer(max_epochs=3, accelerator="cpu", devices=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[callback])
    train, val = digits_loaders(batch_size=64)  # 10 steps per epoch
    trainer.fit(HParamsMLP(), train, val)
    progress = recorder.progress()
    for epoch in (1, 2, 3):
        # what the module logs in its own on_train_epoch_end arrives at the epoch's last step
        marked = [e for e in progress if e.metrics and e.metrics.get("epoch_number") == epoch]
        assert marked and marked[0].current_step == 10 * epoch, epoch
        assert {"train_loss_epoch", "train_loss_step", "val_loss", "val_acc"} <= set(
            marked[0].metrics)
    final = {k: float(v) for k, v in trainer.callback_metrics.items()}
    assert progress[-1].metrics == pytest.approx(final)
    assert progress[-1].metrics["epoch_number"] == 3.0


def test_env_group_and_bad_options(pm, recorder, monkeypatch):
    monkeypatch.setenv(rp.GROUP_ENV, "nightly")
    monkeypatch.setenv(rp.GROUP_SIZE_ENV, "20")
    callback = LightningCallback(emit=pm.dispatch)
    trainer = L.Trainer(max_steps=2, accelerator="cpu", devices=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[callback])
    trainer.fit(HParamsMLP(), *digits_loaders())
    (sent,) = recorder.of_type("run_params")
    assert (sent.group, sent.group_size) == ("nightly", 20)
    assert (sent.params["max_steps"], sent.params["max_epochs"]) == (2, -1)
    with pytest.raises(TypeError, match="params must be a mapping of names to values, got str"):
        LightningCallback(params="lr=1")
    with pytest.raises(ValueError, match="group must be a non-empty string or None, got ''"):
        keras_plugin.MLOpsCallback(group="")
    with pytest.raises(TypeError, match="params must be a mapping"):
        SklearnCallback(params=[1])
    with pytest.raises(ValueError, match=r"group_size must be a positive integer .* got -2"):
        SklearnCallback(group_size=-2)
    monkeypatch.setenv(rp.GROUP_SIZE_ENV, "twenty")  # read by the constructor: refused at once
    for make in (LightningCallback, keras_plugin.MLOpsCallback, SklearnCallback):
        with pytest.raises(ValueError, match="MLOPS_HOOKS_GROUP_SIZE must be a positive integer"):
            make()


# ---------------------------------------------------------------------- Keras


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    return (x[:800] / 16.0).astype("float32"), y[:800].astype("int64")


def _keras_model(optimizer):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")], name="kdigits")
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def test_keras_sends_the_optimizer_config_batch_size_and_epochs(pm, recorder, digits):
    x, y = digits
    model = _keras_model(keras.optimizers.Adam(learning_rate=0.003))
    history = model.fit(x, y, epochs=2, batch_size=50, validation_split=0.25, verbose=0,
                        callbacks=[keras_plugin.MLOpsCallback(
                            emit=pm.dispatch, throttle=0, params={"seed": 0},
                            group="keras-sweep", group_size=4)])
    (sent,) = recorder.of_type("run_params")
    with warnings.catch_warnings():  # Keras' get_config warns under NumPy 2 on torch
        warnings.simplefilter("ignore", DeprecationWarning)
        config = model.optimizer.get_config()
    expected_optimizer = {f"optimizer.{k}": rp.param_value(v) for k, v in config.items()}
    expected_optimizer.update({"optimizer.name": "Adam", "optimizer.learning_rate": 0.003})
    assert sent.params == {"seed": 0, **expected_optimizer, "batch_size": 50, "epochs": 2,
                           "steps_per_epoch": 12}
    assert (sent.model_name, sent.group, sent.group_size) == ("kdigits", "keras-sweep", 4)
    assert sent.metadata == expected_metadata()
    assert "keras" in sent.metadata["frameworks"]
    # every key of every epoch's logs reaches training_progress.metrics
    ends = [e for e in recorder.progress() if e.metrics]
    by_epoch = {e.current_epoch: e.metrics for e in ends}
    for epoch in (1, 2):
        assert by_epoch[epoch] == pytest.approx(
            {k: float(v[epoch - 1]) for k, v in history.history.items()})
    assert set(by_epoch[2]) == {"accuracy", "loss", "val_accuracy", "val_loss"}


def test_keras_default_batch_size_and_a_schedule(pm, recorder, digits):
    x, y = digits
    schedule = keras.optimizers.schedules.ExponentialDecay(0.01, decay_steps=10,
                                                           decay_rate=0.5)
    model = _keras_model(keras.optimizers.SGD(learning_rate=schedule, momentum=0.5))
    model.fit(x, y, epochs=1, verbose=0, callbacks=[keras_plugin.MLOpsCallback(
        emit=pm.dispatch)])
    (sent,) = recorder.of_type("run_params")
    assert sent.params["batch_size"] == 32 and sent.params["steps_per_epoch"] == 25
    assert sent.params["optimizer.learning_rate"] == 0.01  # the rate at the start
    assert sent.params["optimizer.learning_rate_schedule"] == "ExponentialDecay"
    assert (sent.params["optimizer.name"], sent.params["optimizer.momentum"]) == ("SGD", 0.5)


# ---------------------------------------------------------------------- scikit-learn


def test_grid_search_sends_params_grid_group_and_best_params(pm, recorder):
    x, y = load_digits(return_X_y=True)
    search = GridSearchCV(SVC(), {"C": [0.1, 1.0], "kernel": ["rbf", "linear"]}, cv=2)
    search.set_callbacks(SklearnCallback(emit=pm.dispatch, throttle=0))
    search.fit(x[:300], y[:300])
    first, best = recorder.of_type("run_params")
    expected = {"grid.C": "[0.1, 1.0]", "grid.kernel": '["rbf", "linear"]'}
    expected.update({k: rp.param_value(v) for k, v in search.get_params(deep=True).items()
                     if k != "param_grid"})
    assert first.params == expected
    assert (first.params["estimator"], first.params["estimator__C"], first.params["cv"],
            first.params["error_score"]) == ("SVC()", 1.0, 2, "nan")
    assert list(first.params)[:2] == ["grid.C", "grid.kernel"]
    assert (first.model_name, first.group) == ("GridSearchCV", "GridSearchCV(SVC)")
    assert first.group_size is None  # a search is one run: its candidates are its progress
    assert first.metadata == expected_metadata()
    assert best == ev.RunParams(run_id=first.run_id, model_name="GridSearchCV",
                                group="GridSearchCV(SVC)",
                                params={f"best.{k}": v for k, v in search.best_params_.items()})
    types = [e.type for e in recorder.events]
    assert types.index("run_params") == types.index("training_progress") + 1
    assert types.index("training_completed") > len(types) - 1 - types[::-1].index("run_params")
    assert_wire_valid(recorder)


def test_monitored_fit_sends_get_params(pm, recorder, monkeypatch):
    from mlops_hooks.plugins.sklearn import monitored_fit

    monkeypatch.setenv(rp.GROUP_ENV, "svc-trials")
    monkeypatch.setenv(rp.GROUP_SIZE_ENV, "7")
    x, y = load_digits(return_X_y=True)
    model = SVC(C=2.0)
    monitored_fit(model, x[:200], y[:200], emit=pm.dispatch)
    (sent,) = recorder.of_type("run_params")
    assert sent.params == {k: rp.param_value(v) for k, v in model.get_params().items()}
    assert (sent.params["C"], sent.model_name, sent.group, sent.group_size) == (
        2.0, "SVC", "svc-trials", 7)
    assert sent.metadata == expected_metadata()


# ---------------------------------------------------------------------- the shared base


def test_a_capture_that_raises_is_a_warning_and_the_users_params_still_go(pm, recorder):
    adapter = Adapter()
    adapter.configure("r", model_id=None, run_id=None, throttle=0, emit=pm.dispatch)
    adapter.configure_params({"lr": 0.5}, None)
    run = adapter.new_run("default").start()
    with pytest.warns(RuntimeWarning, match=r"some of the run's parameters could not be read "
                                            r"\(ZeroDivisionError: division by zero\)"):
        adapter.send_params(run, lambda: {"ok": 1 / 0})
    (sent,) = recorder.of_type("run_params")
    assert sent.params == {"lr": 0.5}
    assert not math.isnan(sent.metadata["pid"])
