"""The W&B-style API in process: step and commit rules, config, summary, reinit, modes, and
what it accepts without raising (events recorded on the process's plugin manager)."""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Iterator

import numpy as np
import pytest
import torch

import mlops_hooks.wandb as wandb
from mlops_hooks import events as ev
from mlops_hooks.manager import get_plugin_manager, reset_plugin_managers
from tests.recorder import Recorder


@pytest.fixture
def rec(monkeypatch: pytest.MonkeyPatch) -> Iterator[Recorder]:
    monkeypatch.setenv("MLOPS_HOOKS_DISABLE", "publisher,console")
    for name in ("WANDB_MODE", "WANDB_PROJECT", "WANDB_RUN_GROUP", "MLOPS_HOOKS_GROUP"):
        monkeypatch.delenv(name, raising=False)
    reset_plugin_managers()
    recorder = Recorder()
    get_plugin_manager("training").register(recorder, name="recorder")
    yield recorder
    wandb.finish()
    reset_plugin_managers()


def points(recorder: Recorder) -> list[tuple[int | None, dict[str, float]]]:
    return [(e.current_step, dict(e.metrics)) for e in recorder.progress() if e.metrics]


def test_step_and_commit_follow_wandbs_rules(rec: Recorder) -> None:
    run = wandb.init(project="p")
    wandb.log({"a": 1})                       # step 0, committed
    wandb.log({"b": np.float32(2.0)}, commit=False)
    wandb.log({"c": torch.tensor(3.0)})       # step 1: b and c
    wandb.log({"d": 4}, step=5)               # commits nothing yet, moves to 5
    wandb.log({"e": 5}, step=5)               # same step: merged
    wandb.log({"f": 6}, step=7)               # commits step 5, moves to 7
    wandb.log({"g": 7}, step=3)               # behind: ignored
    wandb.log({"h": {"i": 8}}, step=7, commit=True)  # commits step 7, then step 8
    assert run.step == 8
    assert points(rec) == [(0, {"a": 1.0}), (1, {"b": 2.0, "c": 3.0}),
                           (5, {"d": 4.0, "e": 5.0}), (7, {"f": 6.0, "h.i": 8.0})]
    assert run.summary["c"] == 3.0 and run.summary["h.i"] == 8.0


def test_config_is_attribute_and_dict_access_and_every_change_is_sent(rec: Recorder) -> None:
    args = argparse.Namespace(lr=0.1, layers=3)
    run = wandb.init(project="p", config=args)
    assert wandb.config.lr == 0.1 and wandb.config["layers"] == 3 and "lr" in wandb.config
    wandb.config.batch = 32
    wandb.config["opt"] = {"name": "adam", "beta": 0.9}
    wandb.config.update({"lr": 0.2}, allow_val_change=True)
    wandb.config.setdefaults({"lr": 9.0, "seed": 1})
    assert run.config.as_dict() == {"lr": 0.2, "layers": 3, "batch": 32,
                                    "opt": {"name": "adam", "beta": 0.9}, "seed": 1}
    sent = [e.params for e in rec.of_type("run_params") if e.params]
    assert sent[0] == {"lr": 0.1, "layers": 3}
    assert sent[1:] == [{"batch": 32}, {"opt.name": "adam", "opt.beta": 0.9}, {"lr": 0.2},
                        {"seed": 1}]
    assert all(e.group == "p" for e in rec.of_type("run_params") if e.params)
    with pytest.raises(AttributeError, match="no key 'missing'"):
        wandb.config.missing  # noqa: B018


def test_summary_values_and_the_completion(rec: Recorder) -> None:
    wandb.init(name="r")
    wandb.log({"val_acc": 0.8, "acc": 0.9})
    wandb.summary["acc"] = 0.95
    wandb.summary.update({"best": 1.5})
    wandb.finish()
    done = rec.of_type("training_completed")
    assert len(done) == 1
    assert done[0].final_accuracy == 0.95 and done[0].validation_score == 0.8
    assert points(rec)[-1] == (1, {"acc": 0.95, "best": 1.5})
    assert wandb.run is None and wandb.config.as_dict() == {}


def test_reinit_modes_and_a_disabled_run(rec: Recorder) -> None:
    first = wandb.init(project="p")
    assert wandb.init(reinit="return_previous") is first
    second = wandb.init(project="p")               # the default finishes the previous run
    assert first.finished and not second.finished and wandb.run is second
    third = wandb.init(reinit="create_new")
    assert not second.finished and wandb.run is third
    wandb.finish(exit_code=3)
    failed = rec.of_type("training_failed")
    assert [e.run_id for e in failed] == [third.id] and "exit code 3" in failed[0].error
    count = len(rec.events)
    off = wandb.init(mode="disabled", config={"lr": 1})
    off.log({"loss": 1.0})
    off.alert("t", "x")
    off.finish()
    assert len(rec.events) == count and off.config.lr == 1
    with pytest.raises(ValueError, match="mode must be one of online, offline, disabled"):
        wandb.init(mode="cloud")


def test_unsupported_features_warn_once_and_never_raise(rec: Recorder) -> None:
    run = wandb.init(project="p")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            table = wandb.Table(columns=["a"])
            table.add_data(1)
            wandb.log({"t": table, "img": wandb.Image(np.zeros((2, 2))), "text": "hi"})
            run.log_artifact(wandb.Artifact("m", type="model"))
            wandb.plot.line(table, "a", "b")
            wandb.watch(torch.nn.Linear(2, 2), log="all")
            run.define_metric("loss", step_metric="epoch")
            wandb.log("not a dict")  # type: ignore[arg-type]
    messages = [str(w.message) for w in caught]
    assert len(messages) == len(set(messages)), messages  # each feature once
    for feature in ("wandb.Table", "wandb.Image", "wandb.Artifact", "run.log_artifact",
                    "wandb.watch", "logging str values", "wandb.log(str)"):
        assert any(feature in m for m in messages), (feature, messages)
    assert not rec.of_type("training_failed")
    assert isinstance(rec.events[0], ev.ActivityUpdate)


def test_only_finite_numbers_become_points(rec: Recorder) -> None:
    wandb.init(project="p")
    long_key = "k" * 300
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wandb.log({"nan": float("nan"), "inf": float("-inf"), "flag": True, "n": 3,
                   long_key: 1.5, "np": np.int64(4), 7: 2.0})
    assert points(rec) == [(0, {"n": 3.0, "k" * ev.MAX_KEY: 1.5, "np": 4.0, "7": 2.0})]


def test_a_nan_loss_reaches_the_run_at_once_and_a_run_ending_on_it_fails(
        rec: Recorder, capsys: pytest.CaptureFixture[str]) -> None:
    """``wandb.log({"loss": nan})``: no point (series hold finite numbers), but the run's
    progress says ``loss_not_finite`` at once (sent at once once per episode), no warning."""
    wandb.init(project="p")
    wandb.log({"loss": 0.5, "acc": 0.9})
    assert not [e for e in rec.progress() if e.loss_not_finite is not None]
    wandb.log({"loss": float("nan"), "acc": 0.8})
    flagged = [e for e in rec.progress() if e.loss_not_finite is not None]
    assert {(e.loss_not_finite, e.current_loss) for e in flagged} == {("nan", None)}
    sent = len(rec.progress())
    wandb.log({"loss": np.float32("nan")})  # the same episode, no point: nothing is sent
    assert len(rec.progress()) == sent
    assert points(rec) == [(0, {"loss": 0.5, "acc": 0.9}), (1, {"acc": 0.8})]
    wandb.log({"train/loss": float("inf")})  # not "loss": the first loss key present wins
    wandb.finish()
    (failed,) = rec.of_type("training_failed")
    assert failed.error_code == "NUMERICAL_ERROR"
    assert "only numbers become series" not in capsys.readouterr().err


def test_a_finite_loss_after_nan_ends_the_episode(rec: Recorder) -> None:
    wandb.init(project="p")
    wandb.log({"train_loss": float("nan")})
    wandb.log({"train_loss": 0.4})
    wandb.log({"train_loss": float("-inf")})
    assert [e.loss_not_finite for e in rec.progress() if e.loss_not_finite] == ["nan", "-inf"]
    wandb.finish()
    assert rec.of_type("training_failed")  # it ended on -inf
