"""The Transformers adapter with a real ``Trainer`` on a tiny random-weight BERT (no download)."""

from __future__ import annotations

import warnings

import pytest
import torch
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    EarlyStoppingCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

from mlops_hooks.manager import get_plugin_manager
from mlops_hooks.plugins._support import open_runs as _open_runs
from mlops_hooks.plugins.transformers import MLOpsCallback
from tests.plugins.conftest import (
    assert_one_run,
    assert_progress_monotonic_to_100,
    assert_wire_valid,
)

pytestmark = pytest.mark.timeout(180)

VOCAB, LENGTH = 32, 8


class Tokens(torch.utils.data.Dataset):
    """Random token ids with a label read from the first one."""

    def __init__(self, size: int, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(0, VOCAB, (size, LENGTH), generator=generator)
        self.labels = (self.ids[:, 0] >= VOCAB // 2).long()

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[index], "labels": self.labels[index]}


class TinyBert(BertForSequenceClassification):
    """A one-layer BERT with 16 hidden units; raises ``error`` at forward call ``fail_at``."""

    def __init__(self, fail_at: int | None = None) -> None:
        torch.manual_seed(0)
        super().__init__(BertConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=1,
                                    num_attention_heads=2, intermediate_size=32,
                                    max_position_embeddings=LENGTH, num_labels=2))
        self.fail_at, self.calls = fail_at, 0
        self.error = FloatingPointError("loss is NaN at a chosen batch")

    def forward(self, input_ids=None, labels=None, **kwargs):
        if self.training:
            self.calls += 1
            if self.calls == self.fail_at:
                raise self.error
        return super().forward(input_ids=input_ids, labels=labels, **kwargs)


@pytest.fixture(scope="module")
def data() -> tuple[Tokens, Tokens]:
    return Tokens(100, seed=0), Tokens(20, seed=1)


def trainer_for(tmp_path, data, callbacks=(), model=None, **overrides) -> Trainer:
    """100 samples in batches of 8 (13 batches); with accumulation 3, 5 steps an epoch."""
    options = dict(output_dir=str(tmp_path / "out"), report_to=[], use_cpu=True,
                   num_train_epochs=2, per_device_train_batch_size=8,
                   gradient_accumulation_steps=3, logging_steps=2, eval_strategy="epoch",
                   save_strategy="no", disable_tqdm=True, seed=0,
                   dataloader_num_workers=0)
    options.update(overrides)
    train, evaluation = data
    return Trainer(model=model or TinyBert(), args=TrainingArguments(**options),
                   train_dataset=train, eval_dataset=evaluation, callbacks=list(callbacks))


def test_epochs_with_accumulation_progress_stages_params_and_series(pm, recorder, data,
                                                                    tmp_path):
    trainer = trainer_for(tmp_path, data, [MLOpsCallback(emit=pm.dispatch, throttle=0)])
    trainer.train()
    assert_one_run(recorder)
    assert_wire_valid(recorder)
    assert_progress_monotonic_to_100(recorder)
    progress = recorder.progress()
    assert {e.total_steps for e in progress} == {10}  # ceil(13 batches / 3) x 2 epochs
    steps = [e.current_step for e in progress]
    assert steps == sorted(steps) and steps[-1] == 10
    assert set(range(11)) <= set(steps)  # throttle 0: every optimizer step is sent
    assert recorder.stages() == ["data_preparation", "model_training", "validation",
                                 "model_training", "validation", "model_training",
                                 "finalization"]
    assert progress[-1].total_epochs == 2 and progress[-1].current_epoch == 2
    # every number of every log, at the log's step (one metric series per name)
    logged = {e.current_step: e.metrics for e in progress if e.metrics}
    assert {"loss", "learning_rate", "grad_norm", "epoch"} <= set(logged[2])
    assert logged[2]["loss"] == pytest.approx(trainer.state.log_history[0]["loss"])
    assert {"eval_loss", "eval_runtime", "train_loss", "train_runtime"} <= set(logged[10])
    (params,) = recorder.of_type("run_params")
    model = trainer.model
    assert params.params["learning_rate"] == 5e-5
    assert params.params["gradient_accumulation_steps"] == 3
    assert params.params["per_device_train_batch_size"] == 8
    assert params.params["total_train_batch_size"] == 24
    assert params.params["num_train_epochs"] == 2 and params.params["max_steps"] == 10
    assert params.params["seed"] == 0 and params.params["weight_decay"] == 0.0
    assert params.params["lr_scheduler_type"] == "linear"
    assert params.params["model.model_type"] == "bert"
    assert params.params["model.class"] == "TinyBert"
    assert params.params["model.parameters"] == model.num_parameters()
    assert params.params["model.hidden_size"] == 16
    (done,) = recorder.of_type("training_completed")
    assert done.stop_reason is None and done.total_epochs == 2
    size = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    assert done.model_size == f"{size / 1024:.1f}KB"
    assert not _open_runs.open_runs()


def test_max_steps_is_the_plan_and_ends_mid_epoch(pm, recorder, data, tmp_path):
    trainer_for(tmp_path, data, [MLOpsCallback(emit=pm.dispatch, throttle=0)], max_steps=7,
                gradient_accumulation_steps=1, eval_strategy="no").train()
    assert_progress_monotonic_to_100(recorder)
    progress = recorder.progress()
    assert {e.total_steps for e in progress} == {7}
    assert progress[-1].current_step == 7
    assert "validation" not in recorder.stages()
    (done,) = recorder.of_type("training_completed")
    assert done.stop_reason is None  # the plan was max_steps, and it was reached



def test_standalone_evaluate_and_predict_after_training_are_not_reported(pm, recorder, data,
                                                                         tmp_path):
    trainer = trainer_for(tmp_path, data, [MLOpsCallback(emit=pm.dispatch)], max_steps=2,
                          eval_strategy="no")
    trainer.train()
    count = len(recorder.events)
    trainer.evaluate()
    trainer.predict(data[1])
    assert len(recorder.events) == count
    assert "evaluate" not in vars(trainer)  # the guard is gone with the training


def test_resumed_training_continues_from_the_checkpoint_step(pm, recorder, data, tmp_path):
    trainer_for(tmp_path, data, max_steps=8, gradient_accumulation_steps=1,
                eval_strategy="no", save_strategy="steps", save_steps=4).train()
    trainer = trainer_for(tmp_path, data, [MLOpsCallback(emit=pm.dispatch, throttle=0)],
                          max_steps=8, gradient_accumulation_steps=1, eval_strategy="no")
    trainer.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-4"))
    progress = recorder.progress()
    assert progress[0].current_step == 4 and progress[0].progress == 50.0  # not 0
    assert sorted({e.current_step for e in progress}) == [4, 5, 6, 7, 8]
    assert_progress_monotonic_to_100(recorder)
    assert progress[-1].current_step == 8
    (done,) = recorder.of_type("training_completed")
    assert done.stop_reason is None


def test_early_stopping_completes_with_its_stop_reason(pm, recorder, data, tmp_path):
    callbacks = [MLOpsCallback(emit=pm.dispatch, throttle=0),
                 EarlyStoppingCallback(early_stopping_patience=1)]
    # a learning rate of 0 never improves eval_loss: stopped after the second evaluation
    trainer = trainer_for(tmp_path, data, callbacks, num_train_epochs=10, learning_rate=0.0,
                          save_strategy="epoch", load_best_model_at_end=True,
                          metric_for_best_model="eval_loss")
    trainer.train()
    assert trainer.state.global_step == 10  # 2 of 10 epochs
    (done,) = recorder.of_type("training_completed")
    assert done.stop_reason == "early_stopping"
    assert "early" in done.message.lower() or "stopped" in done.message.lower()
    assert recorder.progress()[-1].progress == 100


def test_another_callback_stopping_training_is_named_callback(pm, recorder, data, tmp_path):
    class StopAtThree(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            control.should_training_stop = state.global_step >= 3

    trainer_for(tmp_path, data, [MLOpsCallback(emit=pm.dispatch), StopAtThree()],
                eval_strategy="no").train()
    (done,) = recorder.of_type("training_completed")
    assert done.stop_reason == "callback"


def test_failure_in_a_step_is_reported_and_the_exception_propagates(pm, recorder, data,
                                                                    tmp_path):
    model = TinyBert(fail_at=14)  # micro-batch 14: the second step of epoch 2 (3 per step)
    trainer = trainer_for(tmp_path, data, [MLOpsCallback(emit=pm.dispatch)], model=model)
    with pytest.raises(FloatingPointError) as raised:
        trainer.train()
    assert raised.value is model.error
    (failed,) = recorder.of_type("training_failed")
    assert failed.error_code == "NUMERICAL_ERROR"
    assert failed.stage_failed == "model_training"
    assert failed.progress_when_failed == 50.0  # 5 of 10 steps done
    assert "loss is NaN at a chosen batch" in failed.error
    assert not recorder.of_type("training_completed")
    assert "training_step" not in vars(trainer) and "evaluate" not in vars(trainer)
    assert not _open_runs.open_runs()


def test_ctrl_c_in_a_step_is_interrupted_and_propagates(pm, recorder, data, tmp_path):
    model = TinyBert(fail_at=4)  # the first micro-batch of step 2
    model.error = KeyboardInterrupt()
    trainer = trainer_for(tmp_path, data, [MLOpsCallback(emit=pm.dispatch)], model=model)
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    (failed,) = recorder.of_type("training_failed")
    assert (failed.error_code, failed.progress_when_failed) == ("INTERRUPTED", 10.0)


def test_failure_outside_a_step_is_reported_by_the_context_manager(pm, recorder, data,
                                                                   tmp_path):
    class Broken(TrainerCallback):
        def on_epoch_end(self, args, state, control, **kwargs):
            raise KeyError("a callback broke")

    callback = MLOpsCallback(emit=pm.dispatch)
    trainer = trainer_for(tmp_path, data, [callback, Broken()])
    with pytest.raises(KeyError), callback:
        trainer.train()
    (failed,) = recorder.of_type("training_failed")
    assert failed.error_code == "DATA_ERROR"
    assert failed.progress_when_failed == 50.0


def test_failure_in_evaluation_is_reported_at_the_validation_stage(pm, recorder, data,
                                                                   tmp_path):
    def broken_metrics(prediction):
        raise ValueError("compute_metrics broke")

    trainer = trainer_for(tmp_path, data, [MLOpsCallback(emit=pm.dispatch)])
    trainer.compute_metrics = broken_metrics
    with pytest.raises(ValueError, match="compute_metrics broke"):
        trainer.train()
    (failed,) = recorder.of_type("training_failed")
    assert (failed.stage_failed, failed.progress_when_failed) == ("validation", 50.0)


def test_a_broken_publisher_never_reaches_training(data, tmp_path):
    def broken(event):
        raise ConnectionError("the publisher broke")

    trainer = trainer_for(tmp_path, data, [MLOpsCallback(emit=broken, throttle=0)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        output = trainer.train()
    assert output.global_step == 10
    assert any("mlops-hooks" in str(w.message) and "training goes on" in str(w.message)
               for w in caught)


def test_report_to_enables_it_by_name_and_steps_aside_for_a_given_callback(recorder, data,
                                                                           tmp_path):
    assert "mlops_hooks" in INTEGRATION_TO_CALLBACK  # registered by importing the module
    manager = get_plugin_manager("training")
    manager.register(recorder, name="recorder")
    trainer = trainer_for(tmp_path, data, report_to=["mlops_hooks"], eval_strategy="no")
    assert [type(c).__name__ for c in trainer.callback_handler.callbacks
            if isinstance(c, MLOpsCallback)] == ["_ReportToCallback"]
    trainer.train()
    assert recorder.of_type("training_completed")[0].model_name == "TinyBert"
    recorder.events.clear()
    trainer = trainer_for(tmp_path, data, [MLOpsCallback("given")], report_to=["mlops_hooks"],
                          eval_strategy="no")
    trainer.train()
    assert_one_run(recorder)
    assert {e.model_name for e in recorder.progress()} == {"given"}


def test_not_enabled_without_being_named(data, tmp_path):
    for report_to in ([], "all", "none"):
        trainer = trainer_for(tmp_path, data, report_to=report_to)
        assert not any(isinstance(c, MLOpsCallback) for c in trainer.callback_handler.callbacks)


def test_bad_options_are_refused_at_once():
    with pytest.raises(ValueError, match="throttle"):
        MLOpsCallback(throttle=-1)
    with pytest.raises(TypeError, match="emit"):
        MLOpsCallback(emit="print")
    with pytest.raises(ValueError, match="accuracy_metrics"):
        MLOpsCallback(accuracy_metrics=[])


UNCAUGHT = """
import sys
sys.path.insert(0, {root!r})
from transformers import TrainerCallback
from tests.plugins.test_transformers import Tokens, trainer_for
from mlops_hooks.plugins.transformers import MLOpsCallback
import pathlib

class Broken(TrainerCallback):
    def on_epoch_end(self, args, state, control, **kwargs):
        raise KeyError("a callback broke")

data = (Tokens(100), Tokens(20, seed=1))
trainer = trainer_for(pathlib.Path({tmp!r}), data, [MLOpsCallback("uncaught"), Broken()])
trainer.train()  # outside a step, no `with`: only the excepthook sees it
"""


def test_an_uncaught_failure_outside_a_step_is_reported_by_the_excepthook(tmp_path):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[2])
    events = tmp_path / "events.jsonl"
    env = {**os.environ, "MLOPS_HOOKS_JSONL": str(events), "OMP_NUM_THREADS": "1",
           "MLOPS_HOOKS_DISABLE": "publisher,console", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, "-c", UNCAUGHT.format(root=root, tmp=str(tmp_path))],
                          env=env, capture_output=True, text=True, timeout=150, cwd=root)
    assert done.returncode == 1 and "KeyError: 'a callback broke'" in done.stderr, done.stderr
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    (failed,) = [e for e in lines if e["type"] == "training_failed"]
    assert failed["error_code"] == "DATA_ERROR" and failed["progress_when_failed"] == 50.0
    assert not [e for e in lines if e["type"] == "training_completed"]
