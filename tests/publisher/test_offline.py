"""Runs kept on disk: one directory per run, its events as wire messages and its metadata."""

from __future__ import annotations

import json
import os

import pytest

from mlops_hooks._publisher.disk import mode, offline


def message(run_id: str | None, n: int, kind: str = "activity_update", **fields) -> bytes:
    row = {"type": kind, "event_id": f"e{n}", "timestamp": f"2026-01-01T00:00:0{n}Z", **fields}
    if kind == "activity_update":
        row["activity"] = {"id": f"a{n}", "title": f"#{n}"}
    if run_id is not None:
        row["run_id"] = run_id
    return json.dumps(row).encode()


def titles(path) -> list[str]:
    return [json.loads(line)["activity"]["title"] for line in path.read_text().splitlines()]


def test_one_directory_per_run_one_message_per_line_in_order_and_appended(tmp_path):
    runs = tmp_path / "runs"
    dirs = offline.keep([message("run_a", 1), message("run/../b", 2), message("run_a", 3),
                         message(None, 4)], runs)
    a, b, loose = (runs / name for name in ("run_a", "run_.._b", f"no-run-{os.getpid()}"))
    assert dirs == [a, b, loose]
    assert titles(a / "events.jsonl") == ["#1", "#3"] and titles(b / "events.jsonl") == ["#2"]
    assert titles(loose / "events.jsonl") == ["#4"]
    assert offline.keep([message("run_a", 5)], runs) == [a]
    assert titles(a / "events.jsonl") == ["#1", "#3", "#5"]  # appended: a resumed run adds


def test_run_json_holds_the_runs_metadata_and_follows_its_end(tmp_path):
    runs = tmp_path / "runs"
    offline.keep([message("r1", 1, "run_params", params={"lr": 0.1}, group="sweep",
                          model_name="mlp"),
                  message("r1", 2, "training_progress", stage="training", progress=10.0)],
                 runs, how="offline")
    meta = json.loads((runs / "r1" / "run.json").read_text())
    assert meta["run_id"] == "r1" and meta["model_name"] == "mlp" and meta["group"] == "sweep"
    assert meta["started"] == "2026-01-01T00:00:01Z" and meta["ended"] is None
    assert meta["status"] == "running" and meta["mode"] == "offline"
    assert meta["pid"] == os.getpid() and meta["host"]
    offline.keep([message("r1", 3, "training_completed", total_epochs=1)], runs)
    meta = json.loads((runs / "r1" / "run.json").read_text())
    assert meta["status"] == "completed" and meta["ended"] == "2026-01-01T00:00:03Z"
    assert meta["mode"] == "offline"  # the first writer's


def test_the_directory_and_the_mode_come_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("MLOPS_HOOKS_DIR", raising=False)
    monkeypatch.delenv("MLOPS_HOOKS_MODE", raising=False)
    assert str(mode.runs_dir()) == mode.DEFAULT_DIR == "mlops-hooks-runs"
    assert mode.mode() == "online" and not mode.is_offline()
    monkeypatch.setenv("MLOPS_HOOKS_DIR", str(tmp_path))
    monkeypatch.setenv("MLOPS_HOOKS_MODE", " Offline ")
    assert mode.runs_dir() == tmp_path and mode.is_offline()
    assert mode.run_dir("a/b") == tmp_path / "a_b"
    assert offline.keep([]) == [] and list(tmp_path.iterdir()) == []  # nothing: no file
    monkeypatch.setenv("MLOPS_HOOKS_MODE", "ofline")
    with pytest.raises(ValueError, match=r"MLOPS_HOOKS_MODE must be 'online' or 'offline', "
                                         r"got 'ofline'"):
        mode.is_offline()
