from __future__ import annotations

import io
import json
import os

from mlops_hooks import events as ev
from mlops_hooks.manager import create_plugin_manager
from mlops_hooks.plugins.console import ConsolePlugin
from mlops_hooks.plugins.jsonl import JsonlRecorder, make_plugin
from mlops_hooks.run import Run


def test_console_prints_one_line_per_meaningful_change():
    out = io.StringIO()
    pm = create_plugin_manager("training", builtins=False, entrypoints=False)
    pm.register(ConsolePlugin(out), name="console")
    run = Run("digits", total_epochs=3, steps_per_epoch=1000, emit=pm.dispatch, throttle=0)
    run.start()
    run.stage("model_training")
    for epoch in range(3):
        run.epoch_start(epoch)
        for _ in range(1000):
            run.step(loss=0.5)
        run.epoch_end(epoch)
    run.complete(final_accuracy=0.9)
    lines = out.getvalue().splitlines()
    assert all(line.startswith("[mlops] ") for line in lines)
    assert len(lines) <= 10, lines  # 3000 steps, a handful of lines
    assert any("Epoch 3/3" in line for line in lines)
    assert "Training completed successfully!" in lines[-1] and "0.9" in lines[-1]


def test_console_prints_failures_with_code_and_hint():
    out = io.StringIO()
    plugin = ConsolePlugin(out)
    plugin.mlops_training_failed(ev.TrainingFailed(
        error="MemoryError: boom", error_code="MEMORY_ERROR", stage_failed="model_training",
        progress_when_failed=45, suggestions=["Reduce batch size"], model_name="m"))
    line = out.getvalue().strip()
    assert "FAILED [MEMORY_ERROR]" in line and "45" in line and "Reduce batch size" in line


def test_jsonl_records_wire_format(tmp_path, monkeypatch):
    path = tmp_path / "deep" / "events.jsonl"
    monkeypatch.setenv("MLOPS_HOOKS_JSONL", str(path))
    recorder = make_plugin()
    assert isinstance(recorder, JsonlRecorder)
    pm = create_plugin_manager("training", builtins=False, entrypoints=False)
    pm.register(recorder, name="jsonl")
    with Run("j", total_steps=2, emit=pm.dispatch) as run:
        run.step()
        run.step()
    recorder.close()
    lines = path.read_text().splitlines()
    decoded = [ev.decode(line) for line in lines]
    assert [e.type for e in decoded][-2:] == ["training_completed", "activity_update"]
    assert all(json.loads(line)["run_id"] == run.run_id for line in lines)


def test_jsonl_is_inactive_without_a_path(monkeypatch):
    monkeypatch.delenv("MLOPS_HOOKS_JSONL", raising=False)
    assert make_plugin() is None


def test_jsonl_reopens_in_a_forked_child(tmp_path):
    path = tmp_path / "fork.jsonl"
    recorder = JsonlRecorder(path)
    recorder.mlops_event(ev.HealthChange(current_health="warning"))
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        recorder.mlops_event(ev.HealthChange(current_health="critical"))
        os._exit(0)
    os.waitpid(pid, 0)
    recorder.mlops_event(ev.HealthChange(current_health="healthy"))
    recorder.close()
    healths = [json.loads(line)["current_health"] for line in path.read_text().splitlines()]
    assert sorted(healths) == ["critical", "healthy", "warning"]


def test_console_is_off_under_auto_attach_unless_asked_for(monkeypatch):
    from mlops_hooks.plugins import console

    monkeypatch.delenv("MLOPS_HOOKS_CONSOLE", raising=False)
    monkeypatch.delenv("MLOPS_HOOKS_AUTO", raising=False)
    assert isinstance(console.make_plugin(), ConsolePlugin)
    monkeypatch.setenv("MLOPS_HOOKS_AUTO", "1")
    assert console.make_plugin() is None  # a user who attached nothing in code hears nothing
    monkeypatch.setenv("MLOPS_HOOKS_CONSOLE", "yes")
    assert isinstance(console.make_plugin(), ConsolePlugin)
