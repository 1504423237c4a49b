"""``MLOpsLogger`` with a real Lightning ``Trainer``: alone, and beside ``MLOpsCallback``."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as L
import pytest
import torch
from torch import nn

from mlops_hooks import events as ev
from mlops_hooks.plugins.lightning import MLOpsCallback, MLOpsLogger
from mlops_hooks.server.state.runs import series_point
from tests.plugins.conftest import LIGHTNING_WARNINGS, assert_one_run, assert_wire_valid
from tests.plugins.lightning_models import digits_loaders

pytestmark = [
    *LIGHTNING_WARNINGS,
    pytest.mark.timeout(120),
]
EPOCHS, BATCHES = 2, 10  # 640 digits in batches of 64


class LoggingMLP(L.LightningModule):
    """Logs on step and on epoch, and saves its hyperparameters (what the logger sees)."""

    def __init__(self, lr: float = 0.05, fail_at_epoch: int | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        if self.current_epoch == self.hparams.fail_at_epoch and batch_idx == 3:
            raise RuntimeError("boom in the second epoch")
        x, y = batch
        loss = nn.functional.cross_entropy(self.net(x), y)
        self.log("train_loss", loss, on_step=True, on_epoch=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        logits = self.net(x)
        self.log("val_acc", (logits.argmax(1) == y).float().mean())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def fit(logger: MLOpsLogger, callbacks: list[Any] | None = None,
        module: LoggingMLP | None = None, **options: Any) -> L.Trainer:
    trainer = L.Trainer(max_epochs=EPOCHS, accelerator="cpu", devices=1, logger=logger,
                        callbacks=callbacks or [], log_every_n_steps=1,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, **options)
    train, val = digits_loaders()
    trainer.fit(module or LoggingMLP(), train, val)
    return trainer


def series(events: list[ev.Event]) -> dict[str, dict[int, float]]:
    """The series the server builds from these events (its own ``series_point``)."""
    out: dict[str, dict[int, float]] = {}
    for event in events:
        if event.type == "training_progress":
            point = series_point(ev.to_dict(event))
            if point is not None:
                step, values = point
                for key, value in values.items():
                    out.setdefault(key, {})[step] = value
    return out


def test_the_logger_alone_makes_the_run_and_every_self_log_is_a_point(pm, recorder):
    logger = MLOpsLogger(emit=pm.dispatch, group="digits")
    fit(logger)
    run_id = assert_one_run(recorder)
    assert logger.version == run_id and logger.name == "LoggingMLP"
    assert logger.experiment is not None and not logger.shared
    got = series(recorder.events)
    steps = EPOCHS * BATCHES
    # on_step: one point per optimizer step, at the logger's own step
    assert sorted(got["train_loss_step"]) == list(range(steps))
    # on_epoch: one point per epoch, at the step the epoch ended
    assert sorted(got["train_loss_epoch"]) == [BATCHES - 1, steps - 1]
    assert len(got["val_acc"]) == EPOCHS
    params = [e for e in recorder.of_type("run_params") if e.params]
    assert params[0].params["lr"] == 0.05 and params[0].group == "digits"
    assert params[0].metadata is not None  # the logger's run: the first run_params has it
    completed = recorder.of_type("training_completed")
    assert len(completed) == 1 and not recorder.of_type("training_failed")
    assert recorder.progress()[-1].progress == 100  # the plan, learnt from the Trainer
    assert_wire_valid(recorder)


def test_the_logger_alone_fails_its_run_when_the_fit_raises(pm, recorder):
    logger = MLOpsLogger(emit=pm.dispatch)
    with pytest.raises(RuntimeError, match="boom"):
        fit(logger, module=LoggingMLP(fail_at_epoch=1))
    assert_one_run(recorder)
    failed = recorder.of_type("training_failed")
    assert len(failed) == 1 and "boom in the second epoch" in failed[0].error
    assert not recorder.of_type("training_completed")
    assert sorted(series(recorder.events)["train_loss_step"]) == list(range(BATCHES + 3))


@pytest.mark.parametrize("autolog", [True, False], ids=["log_graph", "no-autolog-hparams"])
def test_the_logger_with_the_callback_logs_into_the_callbacks_run(pm, recorder, autolog):
    callback = MLOpsCallback(emit=pm.dispatch, throttle=0)
    logger = MLOpsLogger()  # its events would go elsewhere: it must use the callback's run
    # without autolog, Lightning never calls log_graph: the callback hands its run over
    fit(logger, [callback], enable_autolog_hparams=autolog)
    run_id = assert_one_run(recorder)
    assert logger.shared and logger.version == run_id == callback.run.run_id
    assert len(recorder.of_type("training_completed")) == 1
    assert len([e for e in recorder.events if e.type == "activity_update"]) == 2  # one start
    got = series(recorder.events)
    # every step's point (the callback's epoch ends add the epoch's callback_metrics too)
    assert set(range(EPOCHS * BATCHES)) <= set(got["train_loss_step"])
    assert len(got["val_acc"]) >= EPOCHS
    # the callback counts the steps: the logger's points do not move them twice
    assert recorder.progress()[-1].current_step == EPOCHS * BATCHES
    assert_wire_valid(recorder)


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        MLOpsLogger(name="")
    with pytest.raises(TypeError, match="emit must be callable"):
        MLOpsLogger(emit="print")  # type: ignore[arg-type]
