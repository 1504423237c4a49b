from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import lightning.pytorch as L
import pytest
import pytorch_lightning
import torch

from mlops_hooks import events as ev
from mlops_hooks.plugins._support import lightning_support as support
from mlops_hooks.plugins.lightning import MLOpsCallback, auto_callbacks
from tests.plugins.conftest import (
    LIGHTNING_WARNINGS,
    assert_one_run,
    assert_progress_monotonic_to_100,
    assert_wire_valid,
)
from tests.plugins.lightning_models import ClassicDigitsMLP, DigitsMLP, digits_loaders

pytestmark = [
    *LIGHTNING_WARNINGS,
    pytest.mark.timeout(120),
]


def trainer(callbacks, *, flavour=L, **kwargs):
    options = dict(max_epochs=3, accelerator="cpu", devices=1, logger=False,
                   enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False, callbacks=callbacks)
    options.update(kwargs)
    return flavour.Trainer(**options)


def fit(trainer_, module=None, **kwargs):
    train, val = digits_loaders()
    trainer_.fit(module or DigitsMLP(), train, val, **kwargs)
    return trainer_


# ---------------------------------------------------------------------- the whole run


def test_fit_reports_stages_progress_epochs_and_completion(pm, recorder):
    callback = MLOpsCallback("digits-mlp", model_id="digits_v1", emit=pm.dispatch, throttle=0)
    t = fit(trainer([callback]))
    run_id = assert_one_run(recorder)
    assert callback.run.run_id == run_id
    assert recorder.stages() == ["data_preparation", "model_training", "validation",
                                 "model_training", "validation", "model_training",
                                 "validation", "model_training", "finalization"]
    assert_progress_monotonic_to_100(recorder)
    steps = [e for e in recorder.progress() if e.total_steps is not None]
    assert {e.total_steps for e in steps} == {t.estimated_stepping_batches} == {30}
    assert {e.total_epochs for e in recorder.progress()} == {3}
    events = recorder.progress()
    epoch_ends = [e for previous, e in itertools.pairwise(events)
                  if e.metrics and e.metrics != previous.metrics]
    assert [e.current_epoch for e in epoch_ends] == [1, 2, 3]
    assert all(e.current_loss is not None and e.current_loss > 0 for e in epoch_ends)
    assert [e.progress for e in epoch_ends] == [pytest.approx(100 / 3, abs=0.1),
                                                pytest.approx(200 / 3, abs=0.1), 100]
    assert all(0 <= e.current_accuracy <= 1 for e in epoch_ends)
    last = epoch_ends[-1]  # the metrics Lightning ends the fit with
    assert last.current_accuracy == pytest.approx(float(t.callback_metrics["val_acc"]))
    assert last.metrics == {k: pytest.approx(float(v)) for k, v in t.callback_metrics.items()}
    done = recorder.of_type("training_completed")
    assert len(done) == 1 and len(recorder.of_type("training_failed")) == 0
    done = done[0]
    val_acc = float(t.callback_metrics["val_acc"])
    assert done.final_accuracy == pytest.approx(val_acc) and 0 < val_acc <= 1
    assert done.validation_score == pytest.approx(val_acc)
    params = sum(p.numel() * 4 for p in t.lightning_module.parameters())
    assert done.model_size == f"{params / 1024:.1f}KB"
    assert (done.total_epochs, done.model_id, done.model_name) == (3, "digits_v1", "digits-mlp")
    titles = [a.activity.title for a in recorder.of_type("activity_update")]
    assert titles == ["Model Training Started", "Model Training Completed"]
    assert_wire_valid(recorder)


def test_sanity_check_is_not_reported(pm, recorder):
    fit(trainer([MLOpsCallback(emit=pm.dispatch, throttle=0)], max_epochs=1,
                num_sanity_val_steps=2))
    # the sanity check runs before training starts: no validation stage is entered for it
    assert recorder.stages() == ["data_preparation", "model_training", "validation",
                                 "model_training", "finalization"]
    validation = [e for e in recorder.progress() if e.stage == "validation"]
    assert validation and all(e.progress == 100 for e in validation)  # after the epoch's steps
    assert recorder.progress()[0].stage == "data_preparation"
    assert recorder.progress()[0].model_name == "DigitsMLP"  # default name: the module's class


def test_max_steps_sets_the_plan(pm, recorder):
    fit(trainer([MLOpsCallback(emit=pm.dispatch, throttle=0)], max_epochs=100, max_steps=25))
    events = recorder.progress()
    assert {e.total_steps for e in events} == {25}  # known from the first event on
    trained = [e for e in events if e.stage != "data_preparation"]  # the loaders' size known
    assert {e.total_epochs for e in trained} == {3}  # 10 steps an epoch: 25 end in epoch 3
    assert_progress_monotonic_to_100(recorder)


def test_open_ended_run_reports_epochs_without_percentage(pm, recorder):
    class StopAfterTwo(L.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            trainer.should_stop = trainer.current_epoch >= 1

    fit(trainer([MLOpsCallback(emit=pm.dispatch, throttle=0), StopAfterTwo()],
                max_epochs=-1, max_steps=-1))
    assert all(e.progress is None for e in recorder.progress())
    assert max(e.current_epoch or 0 for e in recorder.progress()) == 2
    assert recorder.of_type("training_completed")[0].total_epochs == 2


def test_accumulated_gradients_count_optimizer_steps(pm, recorder):
    fit(trainer([MLOpsCallback(emit=pm.dispatch, throttle=0)], max_epochs=2,
                accumulate_grad_batches=4, num_sanity_val_steps=0))
    assert {e.total_steps for e in recorder.progress() if e.total_steps} == {6}
    assert max(e.current_step or 0 for e in recorder.progress()) == 6
    assert_progress_monotonic_to_100(recorder)


def test_manual_optimization_counts_its_optimizer_steps(pm, recorder):
    class Manual(DigitsMLP):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = False

        def training_step(self, batch, batch_idx):
            opt = self.optimizers()
            x, y = batch
            loss = torch.nn.functional.cross_entropy(self.net(x), y)
            opt.zero_grad()
            self.manual_backward(loss)
            opt.step()
            return loss

    fit(trainer([MLOpsCallback(emit=pm.dispatch, throttle=0)], max_epochs=2,
                num_sanity_val_steps=0), Manual())
    assert max(e.current_step or 0 for e in recorder.progress()) == 20
    assert_progress_monotonic_to_100(recorder)


def test_step_tracker_is_none_on_unknown_internals():
    assert support.step_tracker(object()) is None


@pytest.mark.parametrize("throttle", [0, 30])
def test_steps_fall_back_to_global_step_when_the_tracker_is_unknown(pm, recorder, monkeypatch,
                                                                    throttle):
    """Lightning internals the tracker lookup does not know: every count goes through
    ``trainer.global_step`` (in the batch hook, and in the catch-up of a paused one)."""
    seen: list[object] = []
    real_lookup = support.step_tracker

    def unknown_internals(trainer_):
        seen.append(real_lookup(trainer_))
        return None

    monkeypatch.setattr(support, "step_tracker", unknown_internals)
    callback = MLOpsCallback(emit=pm.dispatch, throttle=throttle)
    t = fit(trainer([callback]))
    assert len(seen) == 1 and seen[0] is not None  # the real lookup works: it was bypassed
    assert callback._step_tracker is None
    assert t.global_step == 30
    events = recorder.progress()
    epoch_ends = [e for previous, e in itertools.pairwise(events)
                  if e.metrics and e.metrics != previous.metrics]
    assert [(e.current_epoch, e.current_step) for e in epoch_ends] == [(1, 10), (2, 20),
                                                                        (3, 30)]
    steps = [e.current_step or 0 for e in events]  # None before the plan is known
    assert steps == sorted(steps)
    assert_progress_monotonic_to_100(recorder)
    assert len(recorder.of_type("training_completed")) == 1


def test_metric_names_are_configurable(pm, recorder):
    callback = MLOpsCallback(emit=pm.dispatch, accuracy_metrics="val_acc",
                             score_metrics=["missing", "val_loss"], loss_metrics="val_loss")
    t = fit(trainer([callback], max_epochs=1))
    val_loss = float(t.callback_metrics["val_loss"])
    val_acc = float(t.callback_metrics["val_acc"])
    done = recorder.of_type("training_completed")[0]
    assert done.validation_score == pytest.approx(val_loss)
    assert done.final_accuracy == pytest.approx(val_acc)
    epoch_end = next(e for e in recorder.progress() if e.metrics)  # the one epoch's end
    assert (epoch_end.stage, epoch_end.current_epoch) == ("model_training", 1)
    # the loss is val_loss as configured, not train_loss (the default), which differs
    assert float(t.callback_metrics["train_loss"]) != pytest.approx(val_loss)
    assert epoch_end.current_loss == pytest.approx(val_loss)
    assert epoch_end.current_accuracy == pytest.approx(val_acc)
    assert epoch_end.metrics == {name: pytest.approx(float(value))
                                 for name, value in t.callback_metrics.items()}


# ---------------------------------------------------------------------- failures


def test_failure_in_epoch_two_is_reported_and_reraised_unchanged(pm, recorder):
    module = DigitsMLP(fail_at_epoch=1)
    with pytest.raises(RuntimeError) as raised:
        fit(trainer([MLOpsCallback(emit=pm.dispatch)]), module)
    assert raised.value is module.error
    failed = recorder.of_type("training_failed")
    assert len(failed) == 1 and not recorder.of_type("training_completed")
    failed = failed[0]
    assert failed.stage_failed == "model_training"
    assert failed.progress_when_failed == pytest.approx(100 * 13 / 30, abs=0.1)
    assert failed.error == "RuntimeError: boom in epoch 2"
    assert failed.error_code == "TRAINING_ERROR"
    assert failed.suggestions == ["Check the traceback in the training logs",
                                  "Retry the run; report the error if it persists"]
    assert_one_run(recorder)
    assert recorder.of_type("activity_update")[-1].activity.status == "failed"


def test_sigterm_is_reported_as_terminated(pm, recorder):
    with pytest.raises(SystemExit):
        fit(trainer([MLOpsCallback(emit=pm.dispatch)]), DigitsMLP(fail_at_epoch=1,
                                                                  fail_with="sigterm"))
    failed = recorder.of_type("training_failed")[0]
    assert failed.error_code == "TERMINATED" and failed.stage_failed == "model_training"
    # Lightning finishes the batch that received SIGTERM (its step counts), then raises
    assert failed.progress_when_failed == pytest.approx(100 * 14 / 30, abs=0.1)
    assert failed.error == "SIGTERMException"


def test_keyboard_interrupt_is_reported_as_interrupted(pm, recorder):
    previous = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(SystemExit):  # Lightning turns Ctrl-C into a graceful exit(1)
            fit(trainer([MLOpsCallback(emit=pm.dispatch)]), DigitsMLP(fail_at_epoch=0,
                                                                      fail_with="interrupt"))
    finally:
        signal.signal(signal.SIGINT, previous)  # Lightning ignores further Ctrl-C
    failed = recorder.of_type("training_failed")[0]
    assert failed.error_code == "INTERRUPTED" and failed.progress_when_failed == 10


def test_failure_before_the_callback_setup_is_reported_at_data_preparation(pm, recorder):
    class BrokenData(L.LightningDataModule):
        def setup(self, stage):
            raise FileNotFoundError("digits.csv")

        def train_dataloader(self):
            return digits_loaders()[0]

        def val_dataloader(self):
            return digits_loaders()[1]

    with pytest.raises(FileNotFoundError):
        trainer([MLOpsCallback(emit=pm.dispatch)]).fit(DigitsMLP(), datamodule=BrokenData())
    failed = recorder.of_type("training_failed")[0]
    assert (failed.error_code, failed.stage_failed) == ("DATA_NOT_FOUND", "data_preparation")


def test_validate_and_test_alone_are_not_reported(pm, recorder):
    class Testable(DigitsMLP):
        def test_step(self, batch, batch_idx):
            x, y = batch
            self.log("test_acc", (self.net(x).argmax(1) == y).float().mean())

    _, val = digits_loaders()
    callback = MLOpsCallback(emit=pm.dispatch)
    t = trainer([callback])
    (validated,) = t.validate(Testable(), val)
    (tested,) = t.test(Testable(), val)
    assert set(validated) == {"val_loss", "val_acc"} and set(tested) == {"test_acc"}
    assert recorder.events == [] and callback.run is None


# ---------------------------------------------------------------------- resume


@pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty")
def test_resumed_fit_continues_the_same_run(pm, recorder, tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    first = MLOpsCallback(emit=pm.dispatch, throttle=0)
    ckpt = ModelCheckpoint(dirpath=tmp_path, save_last=True)
    fit(trainer([first, ckpt], max_epochs=2, enable_checkpointing=True))
    run_id = first.run.run_id
    recorder.events.clear()
    second = MLOpsCallback(emit=pm.dispatch, throttle=0)
    ckpt = ModelCheckpoint(dirpath=tmp_path, save_last=True)
    fit(trainer([second, ckpt], max_epochs=4, enable_checkpointing=True),
        ckpt_path=str(tmp_path / "last.ckpt"))
    assert assert_one_run(recorder) == run_id
    values = [e.progress for e in recorder.progress()]
    assert values[0] == 50 and values == sorted(values) and values[-1] == 100
    assert [e.current_epoch for e in recorder.progress() if e.metrics][:1] == [3]


def test_a_second_fit_of_the_same_trainer_continues_from_its_position(pm, recorder):
    callback = MLOpsCallback(emit=pm.dispatch, throttle=0)
    t, module = trainer([callback], max_epochs=2, num_sanity_val_steps=0), DigitsMLP()
    fit(t, module)  # 2 epochs of 10 steps
    first_run = callback.run
    recorder.events.clear()
    t.fit_loop.max_epochs = 4  # two more epochs
    fit(t, module)
    assert callback.run is not first_run and assert_one_run(recorder) == callback.run.run_id
    progress = recorder.progress()
    assert progress[0].progress == 50 and progress[0].stage == "data_preparation"
    assert_progress_monotonic_to_100(recorder)
    third = [e for e in progress if e.message.endswith("Epoch 3/4") and e.current_step]
    assert [(e.current_step, e.progress) for e in third][:2] == [(21, 52.5), (22, 55.0)]
    assert (recorder.of_type("training_completed")[0].message
            == "Training completed successfully!")


def test_max_steps_without_max_epochs_has_a_percentage_from_the_first_event(pm, recorder):
    fit(trainer([MLOpsCallback(emit=pm.dispatch, throttle=0)], max_epochs=None, max_steps=25))
    progress = recorder.progress()
    assert None not in [e.progress for e in progress]
    assert (progress[0].progress, progress[0].total_steps) == (0, 25)
    assert {e.total_steps for e in progress} == {25}
    assert next(e.progress for e in progress if e.current_step == 5) == 20
    assert_progress_monotonic_to_100(recorder)


def test_early_stopping_completes_at_100_with_eta_0_and_says_it_stopped_early(pm, recorder):
    from lightning.pytorch.callbacks import EarlyStopping

    stopper = EarlyStopping("val_loss", min_delta=10.0, patience=1)
    fit(trainer([MLOpsCallback(emit=pm.dispatch, throttle=0), stopper], max_epochs=10))
    assert stopper.stopped_epoch == 1  # after 2 of 10 epochs
    (done,) = recorder.of_type("training_completed")
    assert done.message == "Training stopped early at epoch 2/10" and done.total_epochs == 2
    progress = recorder.progress()
    assert [e.progress for e in progress if e.stage == "model_training"][-1] == 20
    finals = [e for e in progress if e.progress == 100]
    assert finals and progress[-1] is finals[-1] and finals[-1].stage == "finalization"
    assert {e.estimated_time_remaining for e in finals} == {0}


def test_a_non_finite_loss_stopped_by_early_stopping_is_a_numerical_failure(pm, recorder):
    from lightning.pytorch.callbacks import EarlyStopping

    class Diverging(DigitsMLP):
        def training_step(self, batch, batch_idx):
            loss = super().training_step(batch, batch_idx)
            return loss * float("nan") if self.current_epoch == 1 else loss

    stopper = EarlyStopping("train_loss", check_finite=True, patience=100)
    fit(trainer([MLOpsCallback(emit=pm.dispatch, throttle=0), stopper], max_epochs=5),
        Diverging())
    assert stopper.stopped_epoch == 1
    assert not recorder.of_type("training_completed")
    (failed,) = recorder.of_type("training_failed")
    assert (failed.error_code, failed.stage_failed) == ("NUMERICAL_ERROR", "model_training")
    assert failed.error == ("FloatingPointError: training stopped: the loss became "
                            "non-finite (nan) in epoch 2/5")
    assert failed.progress_when_failed == 40  # 20 of 50 steps


# ---------------------------------------------------------------------- flavours and rank


def test_the_same_callback_works_with_the_pytorch_lightning_trainer(pm, recorder):
    callback = MLOpsCallback(emit=pm.dispatch, throttle=0)
    assert isinstance(callback, L.Callback) and isinstance(callback, pytorch_lightning.Callback)
    train, val = digits_loaders()
    trainer([callback], flavour=pytorch_lightning, max_epochs=2).fit(ClassicDigitsMLP(),
                                                                     train, val)
    assert_progress_monotonic_to_100(recorder)
    assert recorder.of_type("training_completed")[0].total_epochs == 2


def test_non_zero_ranks_report_nothing(pm, recorder, monkeypatch):
    monkeypatch.setattr(L.Trainer, "is_global_zero", property(lambda self: False))
    callback = MLOpsCallback(emit=pm.dispatch)
    fit(trainer([callback], max_epochs=1))
    assert recorder.events == [] and callback.run is None


def test_callback_state_survives_pickling_without_its_run(pm):
    import pickle

    callback = MLOpsCallback("x", run_id="run_1", emit=print)
    clone = pickle.loads(pickle.dumps(callback))
    assert type(clone) is MLOpsCallback and clone.run_id == "run_1" and clone.run is None
    assert clone.state_dict() == {"run_id": "run_1"}


# ---------------------------------------------------------------------- arguments


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"name": ""}, ValueError, "name"),
    ({"throttle": -1}, ValueError, "throttle"),
    ({"throttle": float("nan")}, ValueError, "throttle"),
    ({"accuracy_metrics": []}, ValueError, "accuracy_metrics"),
    ({"score_metrics": [""]}, ValueError, "score_metrics"),
    ({"emit": 3}, TypeError, "emit"),
    ({"run_id": 5}, ValueError, "name"),
])
def test_bad_arguments_are_rejected_at_once(kwargs, error, match):
    with pytest.raises(error, match=match):
        MLOpsCallback(**kwargs)


def test_missing_lightning_names_the_extra(monkeypatch):
    for flavour in support.FLAVOURS:
        monkeypatch.setitem(sys.modules, flavour, None)
    with pytest.raises(ImportError, match=r"pip install 'mlops-hooks\[lightning\]'"):
        support.callback_bases()


# ---------------------------------------------------------------------- distributed


def read_jsonl(path: Path) -> list[ev.Event]:
    return [ev.decode(line) for line in path.read_bytes().splitlines() if line.strip()]


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_ddp_spawn_on_two_cpu_processes_produces_exactly_one_stream(tmp_path, monkeypatch):
    path = tmp_path / "events.jsonl"
    monkeypatch.setenv("MLOPS_HOOKS_JSONL", str(path))  # the workers' built-in recorder
    t = trainer([MLOpsCallback("ddp-digits")], max_epochs=2, strategy="ddp_spawn",
                devices=2, num_sanity_val_steps=0)
    fit(t)
    events = read_jsonl(path)
    assert len({e.run_id for e in events}) == 1
    started = [e for e in events if e.type == "activity_update"
               and e.activity.action_type == "training_start"]
    assert len(started) == 1 and len([e for e in events if e.type == "training_completed"]) == 1
    pids = {e.activity.metadata["pid"] for e in events if e.type == "activity_update"}
    assert len(pids) == 1 and os.getpid() not in pids  # rank zero's worker, only
    progress = [e for e in events if e.type == "training_progress"]
    values = [e.progress for e in progress]
    assert values == sorted(values) and values[-1] == 100
    assert {e.total_steps for e in progress if e.total_steps} == {10}  # 5 batches per rank


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_ddp_spawn_failure_is_reported_once_by_rank_zero(tmp_path, monkeypatch):
    path = tmp_path / "events.jsonl"
    monkeypatch.setenv("MLOPS_HOOKS_JSONL", str(path))
    t = trainer([MLOpsCallback("ddp-digits")], max_epochs=2, strategy="ddp_spawn",
                devices=2, num_sanity_val_steps=0)
    with pytest.raises(Exception, match="boom in epoch 2"):
        fit(t, DigitsMLP(fail_at_epoch=1))
    events = read_jsonl(path)
    failed = [e for e in events if e.type == "training_failed"]
    assert len(failed) == 1 and len({e.run_id for e in events}) == 1
    assert failed[0].error == "RuntimeError: boom in epoch 2"
    assert failed[0].stage_failed == "model_training"
    assert failed[0].progress_when_failed == pytest.approx(80, abs=0.1)  # 8 of 10 steps


# ---------------------------------------------------------------------- zero-code attach

AUTO_SCRIPT = textwrap.dedent("""
    import json, os, warnings
    warnings.simplefilter("ignore")
    import lightning.pytorch as L
    import pytorch_lightning as PL
    from mlops_hooks.plugins.lightning import MLOpsCallback

    def count(flavour, callbacks):
        trainer = flavour.Trainer(callbacks=callbacks, logger=False, enable_progress_bar=False,
                                  enable_checkpointing=False, enable_model_summary=False)
        return sum(isinstance(c, MLOpsCallback) for c in trainer.callbacks)

    counts = {}
    for auto in ("1", ""):
        os.environ["MLOPS_HOOKS_AUTO"] = auto
        counts[auto] = [count(L, []), count(L, [MLOpsCallback("mine")]),
                        count(PL, []), count(PL, [MLOpsCallback("mine")])]
    print(json.dumps(counts))
""")


@pytest.mark.slow
def test_auto_attach_adds_exactly_one_callback_to_either_trainer():
    env = {**os.environ, "MLOPS_HOOKS_DISABLE": "publisher,console"}
    out = subprocess.run([sys.executable, "-c", AUTO_SCRIPT], env=env, capture_output=True,
                         text=True, timeout=120, check=True)
    counts = json.loads(out.stdout.strip().splitlines()[-1])
    assert counts == {"1": [1, 1, 1, 1], "": [0, 1, 0, 1]}


def test_auto_callback_removes_itself_when_a_user_callback_appears(pm, recorder, monkeypatch):
    monkeypatch.setenv("MLOPS_HOOKS_AUTO", "1")
    monkeypatch.setattr(support, "callbacks_being_configured", lambda: None)  # not visible
    mine = MLOpsCallback("mine", emit=pm.dispatch)
    t = trainer([mine], max_epochs=1)
    assert sum(isinstance(c, MLOpsCallback) for c in t.callbacks) == 2  # seen only at setup
    auto = next(c for c in t.callbacks if c.auto)
    assert auto.state_key != mine.state_key  # two instances never clash in checkpoints
    fit(t)
    assert [c for c in t.callbacks if isinstance(c, MLOpsCallback)] == [mine]
    assert len(recorder.of_type("training_completed")) == 1
    assert auto.run is None


def test_auto_callbacks_is_off_without_the_variable(monkeypatch):
    monkeypatch.delenv("MLOPS_HOOKS_AUTO", raising=False)
    assert auto_callbacks() == []
    monkeypatch.setenv("MLOPS_HOOKS_AUTO", "yes")
    (callback,) = auto_callbacks()
    assert callback.auto and isinstance(callback, MLOpsCallback)


# ---------------------------------------------------------------------- per-step cost


def test_lightning_never_enters_a_per_batch_hook_the_callback_does_not_use(pm, recorder):
    from lightning.pytorch.profilers import SimpleProfiler

    from mlops_hooks.plugins._support.lightning_support import UNUSED_BATCH_HOOKS

    class WithBackwardHook(MLOpsCallback):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.backward_calls = 0

        def on_before_backward(self, trainer, pl_module, loss):
            self.backward_calls += 1

    profiler = SimpleProfiler()
    plain = MLOpsCallback(emit=pm.dispatch)
    custom = WithBackwardHook(name="custom", emit=pm.dispatch)
    t = fit(trainer([plain], max_epochs=1, profiler=profiler))
    actions = set(profiler.recorded_durations)
    mine = {a for a in actions if a.startswith(f"[Callback]{plain.state_key}.")}
    assert f"[Callback]{plain.state_key}.on_train_batch_end" in mine
    assert not {f"[Callback]{plain.state_key}.{hook}" for hook in UNUSED_BATCH_HOOKS} & mine
    assert t.global_step == 10 and len(recorder.of_type("training_completed")) == 1
    # a subclass that implements one of those hooks still gets it
    fit(trainer([custom], max_epochs=1))
    assert custom.backward_calls == t.global_step


def _batch_hook_calls(profiler, callback) -> int:
    return len(profiler.recorded_durations.get(
        f"[Callback]{callback.state_key}.on_train_batch_end", []))


def test_batch_hook_pauses_between_progress_events_and_steps_stay_exact(pm, recorder):
    """Between two progress events Lightning does not even enter the per-batch hook; the
    skipped batches are still counted, so epoch ends, completion and failure report exact
    steps."""
    from lightning.pytorch.profilers import SimpleProfiler

    profiler = SimpleProfiler()
    callback = MLOpsCallback("paused", emit=pm.dispatch, throttle=30)
    train, val = digits_loaders(batch_size=8)  # 80 steps an epoch
    t = trainer([callback], profiler=profiler)
    t.fit(DigitsMLP(), train, val)
    assert t.global_step == 240
    # one call after the start event, then paused 30 s (a fit that took longer gets a few)
    assert 1 <= _batch_hook_calls(profiler, callback) <= 3
    assert "on_train_batch_end" not in vars(callback)  # given back at the end of the fit
    events = recorder.progress()
    epoch_ends = [e for previous, e in itertools.pairwise(events)
                  if e.metrics and e.metrics != previous.metrics]
    assert [(e.current_epoch, e.current_step) for e in epoch_ends] == [(1, 80), (2, 160),
                                                                        (3, 240)]
    assert [e.progress for e in epoch_ends] == [pytest.approx(100 / 3, abs=0.1),
                                                pytest.approx(200 / 3, abs=0.1), 100]
    assert all(e.current_loss is not None for e in epoch_ends)
    assert len(recorder.of_type("training_completed")) == 1

    # without a throttle every batch is seen
    eager = MLOpsCallback("eager", emit=pm.dispatch, throttle=0)
    profiler = SimpleProfiler()
    t = trainer([eager], max_epochs=1, profiler=profiler)
    t.fit(DigitsMLP(), train, val)
    assert _batch_hook_calls(profiler, eager) == t.global_step == 80


def test_a_subclass_with_its_own_batch_hook_is_never_paused(pm, recorder):
    class Counting(MLOpsCallback):
        calls = 0

        def on_train_batch_end(self, *args):
            Counting.calls += 1
            super().on_train_batch_end(*args)

    train, val = digits_loaders(batch_size=8)
    t = trainer([Counting("counting", emit=pm.dispatch, throttle=30)], max_epochs=1)
    t.fit(DigitsMLP(), train, val)
    assert Counting.calls == t.global_step == 80


def test_failure_while_the_batch_hook_is_paused_counts_every_step(pm, recorder):
    module = DigitsMLP(fail_at_epoch=1)
    train, val = digits_loaders(batch_size=8)
    with pytest.raises(RuntimeError):
        trainer([MLOpsCallback(emit=pm.dispatch, throttle=30)]).fit(module, train, val)
    failed = recorder.of_type("training_failed")[0]
    # the module raises at batch 3 of the second epoch: 80 + 3 steps were done
    assert failed.progress_when_failed == pytest.approx(100 * 83 / 240, abs=0.1)


def test_a_paused_hook_is_not_pickled():
    import pickle

    callback = MLOpsCallback("x", emit=print)
    callback.on_train_batch_end = None
    clone = pickle.loads(pickle.dumps(callback))
    assert callable(clone.on_train_batch_end)
