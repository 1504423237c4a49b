"""A run's parameters and metadata (``mlops_hooks.run.params``) and ``track(params=, group=)``."""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import shlex
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from mlops_hooks import events as ev
from mlops_hooks.run import Run, track
from mlops_hooks.run import params as rp

REPO = Path(__file__).resolve().parents[2]


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                          check=True).stdout


def expected_git() -> dict:
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no").strip())
    return {"commit": _git("rev-parse", "HEAD").strip(), "dirty": dirty}


def _installed(distribution: str) -> bool:
    try:
        importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def expected_metadata() -> dict:
    frameworks = {}
    for name, dist in rp.FRAMEWORKS.items():
        # the distribution of an imported module, or its CPU build's (xgboost-cpu)
        installed = [d for d in (dist, f"{dist}-cpu") if _installed(d)]
        if name in sys.modules and installed:
            frameworks[installed[0]] = importlib.metadata.version(installed[0])
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "python": platform.python_version(), "frameworks": frameworks,
            "command": shlex.join(sys.argv)[:1024], "executable": sys.executable,
            "cwd": os.getcwd(), "git": expected_git()}


@pytest.fixture
def git_known(monkeypatch) -> None:
    """The process's git probe has answered (it runs in this checkout)."""
    monkeypatch.chdir(REPO)
    rp.git_info(timeout=60)
    assert rp.git_info() == (True, expected_git())


# ---------------------------------------------------------------------- values and keys


class Obj:
    def __repr__(self) -> str:
        return "Obj()"


class BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def test_flatten_makes_every_value_a_capped_json_scalar():
    params = {
        "lr": 0.1, "epochs": 3, "amsgrad": False, "seed": None, "name": "adam",
        "optimizer": {"name": "sgd", "momentum": 0.9, "nested": {"deep": 1}},
        "ns": argparse.Namespace(a=1, b="x"),
        "layers": [64, 32], "betas": (0.9, 0.999), "mixed": [1, Obj()], "empty": {},
        "obj": Obj(), "bad": BadRepr(), "np_float": np.float32(0.5), "np_int": np.int64(7),
        "np_array": np.zeros(3), "nan": float("nan"), "inf": float("-inf"),
        "huge": 2**60, "text": "t" * 2000, "k" * 200: 1, 5: "int key",
    }
    assert rp.flatten(params) == {
        "lr": 0.1, "epochs": 3, "amsgrad": False, "seed": None, "name": "adam",
        "optimizer.name": "sgd", "optimizer.momentum": 0.9, "optimizer.nested.deep": 1,
        "ns.a": 1, "ns.b": "x",
        "layers": "[64, 32]", "betas": "[0.9, 0.999]", "mixed": "[1, Obj()]", "empty": "{}",
        "obj": "Obj()", "bad": "<BadRepr>", "np_float": 0.5, "np_int": 7,
        "np_array": "array([0., 0., 0.])", "nan": "nan", "inf": "-inf",
        "huge": str(2**60), "text": "t" * 1021 + "...", "k" * 128: 1, "5": "int key",
    }
    flat = rp.flatten(params)
    assert ev.from_dict({"type": "run_params", "run_id": "r", "params": flat}).params == flat


def test_flatten_keeps_the_first_256_keys_and_the_first_value_of_a_key():
    many = {f"p{i:03d}": i for i in range(300)}
    flat = rp.flatten(many)
    assert list(flat) == [f"p{i:03d}" for i in range(256)]
    out = {"lr": 1}
    assert rp.flatten({"lr": 2, "x": 3}, out=out) == {"lr": 1, "x": 3}


def test_a_scipy_distribution_is_named_with_its_arguments():
    from scipy.stats import loguniform, randint

    assert rp.param_value(loguniform(1e-3, 10)) == "loguniform(0.001, 10)"
    assert rp.param_value(randint(1, 5)) == "randint(1, 5)"


def test_group_comes_from_the_argument_then_the_environment_then_the_default(monkeypatch):
    monkeypatch.delenv(rp.GROUP_ENV, raising=False)
    assert rp.resolve_group(None) is None
    assert rp.resolve_group(None, "GridSearchCV(SVC)") == "GridSearchCV(SVC)"
    monkeypatch.setenv(rp.GROUP_ENV, "sweep-7")
    assert rp.resolve_group(None, "GridSearchCV(SVC)") == "sweep-7"
    assert rp.resolve_group("mine", "GridSearchCV(SVC)") == "mine"
    for bad in ("", "  ", 3):
        with pytest.raises(ValueError, match="group must be a non-empty string or None"):
            rp.resolve_group(bad)


# ---------------------------------------------------------------------- metadata and git


def test_metadata_once_git_is_known(git_known):
    assert rp.run_metadata() == expected_metadata()


def test_git_is_none_outside_a_repository_and_without_git(tmp_path, monkeypatch):
    outside = tmp_path / "plain"
    outside.mkdir()
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    assert rp._read_git(str(outside)) is None
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    assert rp._read_git(str(REPO)) is None


def test_a_slow_git_counts_as_unknown(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    slow = bin_dir / "git"
    release = tmp_path / "released"
    # waits until the test has seen the timeout (a condition, never a fixed sleep)
    slow.write_text(f"#!/bin/sh\nwhile [ ! -e {release} ]; do sleep 0.05; done\n")
    slow.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(rp, "GIT_TIMEOUT", 0.3)
    try:
        assert rp._read_git(str(REPO)) is None
    finally:
        release.touch()


# ---------------------------------------------------------------------- track()


def test_track_sends_params_and_metadata_right_after_the_first_progress(pm, recorder,
                                                                        git_known,
                                                                        monkeypatch):
    monkeypatch.delenv(rp.GROUP_ENV, raising=False)
    with track("digits", total_epochs=2, params={"lr": 0.1, "opt": {"name": "sgd"},
                                                  "layers": [64, 32]},
               group="sweep-1", emit=pm.dispatch) as run:
        run.epoch_end(0, metrics={"val_loss": 0.5})
    assert [e.type for e in recorder.events][:3] == ["activity_update", "training_progress",
                                                      "run_params"]
    (sent,) = recorder.of_type("run_params")
    assert sent == ev.RunParams(run_id=run.run_id, model_name="digits", group="sweep-1",
                                params={"lr": 0.1, "opt.name": "sgd", "layers": "[64, 32]"},
                                metadata=expected_metadata())
    assert ev.decode(ev.encode(sent)) == sent


def test_track_takes_the_group_from_the_environment(pm, recorder, git_known, monkeypatch):
    monkeypatch.setenv(rp.GROUP_ENV, "nightly")
    with track("g", emit=pm.dispatch):
        pass
    (sent,) = recorder.of_type("run_params")
    assert (sent.group, sent.params) == ("nightly", {})


def test_track_refuses_bad_params_and_groups_at_once(pm, recorder):
    bad_params = track("x", params=[("lr", 1)], emit=pm.dispatch)
    with pytest.raises(TypeError, match="params must be a mapping of names to values, got list"):
        bad_params.__enter__()
    bad_group = track("x", group="", emit=pm.dispatch)
    with pytest.raises(ValueError, match="group must be a non-empty string or None, got ''"):
        bad_group.__enter__()
    assert recorder.events == []


def test_git_that_answers_after_the_start_follows_in_a_second_event(pm, recorder, monkeypatch):
    release, answered = threading.Event(), threading.Event()

    def slow_read(cwd: str) -> dict:
        release.wait()
        return {"commit": "c0ffee", "dirty": False}

    monkeypatch.setattr(rp, "_read_git", slow_read)
    monkeypatch.setattr(rp, "_GIT", rp._GitProbe())

    class Waiter:
        from mlops_hooks.manager import hookimpl

        @hookimpl
        def mlops_run_params(self, event: ev.RunParams) -> None:
            if event.metadata and "git" in event.metadata:
                answered.set()

    pm.register(Waiter(), name="waiter")
    monkeypatch.delenv(rp.GROUP_ENV, raising=False)
    with track("late-git", params={"lr": 1}, emit=pm.dispatch) as run:
        first = recorder.of_type("run_params")
        assert len(first) == 1 and "git" not in first[0].metadata
        assert first[0].metadata["pid"] == os.getpid()
        release.set()
        assert answered.wait(60)
    second = recorder.of_type("run_params")[1]
    assert second == ev.RunParams(run_id=run.run_id, model_name="late-git", params={},
                                  metadata={"git": {"commit": "c0ffee", "dirty": False}})
    assert threading.current_thread().name == "MainThread"


def test_params_that_cannot_be_sent_are_a_warning_never_an_error(pm, recorder):
    run = Run("r", emit=pm.dispatch).start()
    too_big = {"command": "x" * 20_000}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(rp, "run_metadata", lambda: too_big)
        with pytest.warns(RuntimeWarning, match="the run's parameters were not sent: "
                                                "run_params.metadata: expected JSON"):
            assert rp.send_params(run, {"lr": 1}) is None
    assert recorder.of_type("run_params") == []


# ---------------------------------------------------------------------- group_size


def test_group_size_comes_from_the_argument_then_the_environment(monkeypatch):
    monkeypatch.delenv(rp.GROUP_SIZE_ENV, raising=False)
    assert rp.resolve_group_size(None) is None
    monkeypatch.setenv(rp.GROUP_SIZE_ENV, " 50 ")
    assert rp.resolve_group_size(None) == 50
    assert rp.resolve_group_size(8) == 8
    for bad in (0, -1, 2.5, True, "8"):
        with pytest.raises(ValueError, match="group_size must be a positive integer"):
            rp.resolve_group_size(bad)
    for raw in ("fifty", "0", "-3", "1e3"):
        monkeypatch.setenv(rp.GROUP_SIZE_ENV, raw)
        with pytest.raises(ValueError, match=f"MLOPS_HOOKS_GROUP_SIZE must be a positive "
                                             f"integer .*got '{raw}'"):
            rp.resolve_group_size(None)


def test_track_sends_the_group_size_with_a_group_only(pm, recorder, git_known, monkeypatch):
    monkeypatch.delenv(rp.GROUP_ENV, raising=False)
    monkeypatch.setenv(rp.GROUP_SIZE_ENV, "12")
    with track("planned", group="study", emit=pm.dispatch):
        pass
    with track("explicit", group="study", group_size=3, emit=pm.dispatch):
        pass
    with track("alone", emit=pm.dispatch):  # no group: nothing to plan
        pass
    sent = recorder.of_type("run_params")
    assert [(e.model_name, e.group, e.group_size) for e in sent] == [
        ("planned", "study", 12), ("explicit", "study", 3), ("alone", None, None)]
    assert ev.decode(ev.encode(sent[0])).group_size == 12


def test_track_refuses_a_bad_group_size_naming_the_variable(pm, recorder, monkeypatch):
    monkeypatch.setenv(rp.GROUP_SIZE_ENV, "lots")
    with pytest.raises(ValueError, match="MLOPS_HOOKS_GROUP_SIZE must be a positive integer"):
        track("x", group="g", emit=pm.dispatch).__enter__()
    monkeypatch.delenv(rp.GROUP_SIZE_ENV)
    with pytest.raises(ValueError, match=r"group_size must be a positive integer .* got 0"):
        track("x", group="g", group_size=0, emit=pm.dispatch).__enter__()
    assert recorder.events == []
