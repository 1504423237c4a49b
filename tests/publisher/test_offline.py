"""Offline run files: the undelivered events a publisher keeps on disk at exit."""

from __future__ import annotations

import json
import os

from mlops_hooks._publisher import offline


def message(run_id: str | None, n: int) -> bytes:
    row = {"type": "activity_update", "event_id": f"e{n}", "timestamp": "2026-01-01T00:00:00Z",
           "activity": {"id": f"a{n}", "title": f"#{n}"}}
    if run_id is not None:
        row["run_id"] = run_id
    return json.dumps(row).encode()


def titles(path) -> list[str]:
    return [json.loads(line)["activity"]["title"] for line in path.read_text().splitlines()]


def test_one_file_per_run_one_message_per_line_in_order_and_appended(tmp_path):
    files = offline.keep([message("run_a", 1), message("run/../b", 2), message("run_a", 3),
                          message(None, 4)], tmp_path / "runs")
    a, b, loose = (tmp_path / "runs" / name for name in
                   ("run_a.jsonl", "run_.._b.jsonl", f"no-run-{os.getpid()}.jsonl"))
    assert files == [a, b, loose]
    assert titles(a) == ["#1", "#3"] and titles(b) == ["#2"] and titles(loose) == ["#4"]
    assert offline.keep([message("run_a", 5)], tmp_path / "runs") == [a]
    assert titles(a) == ["#1", "#3", "#5"]  # appended: a resumed run adds to its file


def test_the_directory_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("MLOPS_HOOKS_DIR", raising=False)
    assert str(offline.runs_dir()) == offline.DEFAULT_DIR == "mlops-hooks-runs"
    monkeypatch.setenv("MLOPS_HOOKS_DIR", str(tmp_path))
    assert offline.runs_dir() == tmp_path
    assert offline.keep([]) == [] and list(tmp_path.iterdir()) == []  # nothing: no file
