"""A Transformers training resumed from a checkpoint continues the checkpoint's run.

Real ``Trainer`` on the tiny random-weight BERT of ``test_transformers``; the run id travels in
the checkpoint's ``trainer_state.json`` (``stateful_callbacks``, Transformers' own mechanism).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import TrainerCallback

from mlops_hooks.manager import get_plugin_manager
from mlops_hooks.plugins._support import open_runs as _open_runs
from mlops_hooks.plugins.transformers import MLOpsCallback
from tests.plugins.conftest import assert_one_run, assert_progress_monotonic_to_100
from tests.plugins.test_transformers import TinyBert, Tokens, trainer_for

pytestmark = pytest.mark.timeout(180)

#: 100 samples in batches of 8, no accumulation: 13 steps an epoch; a checkpoint every 4.
STEPS = dict(max_steps=8, gradient_accumulation_steps=1, eval_strategy="no",
             save_strategy="steps", save_steps=4, logging_steps=1)


@pytest.fixture(scope="module")
def data() -> tuple[Tokens, Tokens]:
    return Tokens(100, seed=0), Tokens(20, seed=1)


class Crash(TrainerCallback):
    """Raises at the end of optimizer step ``at`` (after checkpoint-4, before checkpoint-8)."""

    def __init__(self, at: int = 6) -> None:
        self.at = at

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.at:
            raise RuntimeError("the machine went away")


def saved_state(tmp_path: Path, step: int = 4) -> dict:
    path = tmp_path / "out" / f"checkpoint-{step}" / "trainer_state.json"
    return dict(json.loads(path.read_text())["stateful_callbacks"])


def crash_at_six(tmp_path, data, callback: MLOpsCallback, **overrides) -> None:
    trainer = trainer_for(tmp_path, data, [callback, Crash()], **{**STEPS, **overrides})
    with pytest.raises(RuntimeError, match="went away"), callback:
        trainer.train()


def resume(tmp_path, data, callback: MLOpsCallback, **overrides):
    trainer = trainer_for(tmp_path, data, [callback], **{**STEPS, **overrides})
    trainer.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-4"))
    return trainer


def test_a_resumed_training_continues_the_checkpoints_run(pm, recorder, data, tmp_path):
    first = MLOpsCallback("bert", emit=pm.dispatch, throttle=0)
    crash_at_six(tmp_path, data, first)
    run_id = first.run.run_id
    entry = saved_state(tmp_path)["MLOpsCallback"]
    assert entry["attributes"] == {"mlops_run_id": run_id}
    assert entry["args"]["name"] == "bert" and "emit" not in entry["args"]
    (failed,) = recorder.of_type("training_failed")
    assert failed.progress_when_failed == 75.0  # step 6 of 8
    before = len(recorder.events)

    second = MLOpsCallback("bert", emit=pm.dispatch, throttle=0)  # a new Trainer, a new callback
    resume(tmp_path, data, second)
    assert second.run.run_id == run_id and assert_one_run(recorder) == run_id
    progress = [e for e in recorder.events[before:] if e.type == "training_progress"]
    assert (progress[0].current_step, progress[0].progress) == (4, 50.0)  # the checkpoint's
    assert [e.current_step for e in progress] == sorted(e.current_step for e in progress)
    assert {e.current_step for e in progress} == {4, 5, 6, 7, 8}
    assert progress[-1].progress == 100 and {e.total_steps for e in progress} == {8}
    (done,) = recorder.of_type("training_completed")
    assert done.stop_reason is None
    params = recorder.of_type("run_params")
    assert "resumed_from_step" not in params[0].params
    assert params[-1].params["resumed_from_step"] == 4
    assert saved_state(tmp_path, 8)["MLOpsCallback"]["attributes"]["mlops_run_id"] == run_id
    assert not _open_runs.open_runs()


def test_an_explicit_run_id_wins_over_the_checkpoints(pm, recorder, data, tmp_path):
    crash_at_six(tmp_path, data, MLOpsCallback(emit=pm.dispatch))
    recorder.events.clear()
    second = MLOpsCallback(emit=pm.dispatch, run_id="fine-tune-2")
    resume(tmp_path, data, second)
    assert assert_one_run(recorder) == "fine-tune-2"
    assert recorder.progress()[0].current_step == 4
    assert saved_state(tmp_path, 8)["MLOpsCallback"]["args"]["run_id"] == "fine-tune-2"


def test_a_checkpoint_without_the_callback_resumes_as_a_new_run_that_says_so(
        pm, recorder, data, tmp_path):
    trainer = trainer_for(tmp_path, data, [Crash()], **STEPS)
    with pytest.raises(RuntimeError):
        trainer.train()
    assert "MLOpsCallback" not in saved_state(tmp_path)
    callback = MLOpsCallback(emit=pm.dispatch, throttle=0)
    # saving every 2 steps: Transformers 5.25 alone raises KeyError('MLOpsCallback') at the
    # first save of a training resumed from a checkpoint its stateful callback was not in
    trainer = resume(tmp_path, data, callback, save_steps=2)
    assert trainer.state.global_step == 8
    run_id = assert_one_run(recorder)
    (params,) = recorder.of_type("run_params")
    assert params.params["resumed_from_step"] == 4
    assert recorder.progress()[0].current_step == 4
    assert_progress_monotonic_to_100(recorder)
    assert saved_state(tmp_path, 8)["MLOpsCallback"]["attributes"]["mlops_run_id"] == run_id


def test_a_report_to_checkpoint_resumed_with_a_given_callback_continues_its_run(
        recorder, data, tmp_path):
    get_plugin_manager("training").register(recorder, name="recorder")
    model = TinyBert(fail_at=6)  # step 6 fails in its training_step (reported at once)
    trainer = trainer_for(tmp_path, data, model=model, report_to=["mlops_hooks"], **STEPS)
    with pytest.raises(FloatingPointError):
        trainer.train()
    run_id = assert_one_run(recorder)
    assert recorder.of_type("training_failed")[0].progress_when_failed == 62.5  # 5 of 8
    assert set(saved_state(tmp_path)) >= {"_ReportToCallback"}
    resume(tmp_path, data, MLOpsCallback("given"))
    assert assert_one_run(recorder) == run_id
    assert recorder.of_type("training_completed")[0].model_name == "given"
    assert not _open_runs.open_runs()


def test_restoring_callback_states_keeps_the_given_callback_reporting(pm, recorder, data,
                                                                      tmp_path):
    """``restore_callback_states_from_checkpoint=True``: Transformers replaces stateful callbacks
    by ones rebuilt from the checkpoint; the rebuilt one hands the training back to ours."""
    crash_at_six(tmp_path, data, MLOpsCallback("bert", emit=pm.dispatch))
    run_id = assert_one_run(recorder)
    process = get_plugin_manager("training")  # where a callback without emit= would send
    stray = type(recorder)()
    process.register(stray, name="stray")
    given = MLOpsCallback("given", emit=pm.dispatch, throttle=0)
    trainer = resume(tmp_path, data, given, restore_callback_states_from_checkpoint=True)
    assert [c for c in trainer.callback_handler.callbacks
            if isinstance(c, MLOpsCallback)] == [given]
    assert given.run.run_id == run_id and assert_one_run(recorder) == run_id
    assert recorder.of_type("training_completed")[0].model_name == "given"
    assert not stray.events  # every event through the given callback's emit


def test_a_damaged_run_id_in_the_checkpoint_is_a_new_run_with_a_warning(pm, recorder, data,
                                                                        tmp_path):
    crash_at_six(tmp_path, data, MLOpsCallback(emit=pm.dispatch))
    first = assert_one_run(recorder)
    path = tmp_path / "out" / "checkpoint-4" / "trainer_state.json"
    saved = json.loads(path.read_text())
    saved["stateful_callbacks"]["MLOpsCallback"]["attributes"]["mlops_run_id"] = 42
    path.write_text(json.dumps(saved))
    recorder.events.clear()
    with pytest.warns(RuntimeWarning, match="mlops_run_id must be a string.*got '42'"):
        resume(tmp_path, data, MLOpsCallback(emit=pm.dispatch))
    assert assert_one_run(recorder) != first
    assert recorder.of_type("run_params")[0].params["resumed_from_step"] == 4
