"""The server turns ``host_metrics`` into a run's ``system/...`` series (docs/protocol.md)."""

from __future__ import annotations

from typing import Any

from mlops_hooks import events as ev
from mlops_hooks.server.state.state import State


class Points:
    """A listener that keeps the series points (and ignores everything else)."""

    def __init__(self) -> None:
        self.points: list[tuple[str, int, dict[str, float]]] = []

    def points_added(self, run_id: str, step: int, values: dict[str, float]) -> None:
        self.points.append((run_id, step, values))

    def __getattr__(self, name: str) -> Any:
        return lambda *args: None


def _apply(state: State, data: dict[str, Any]) -> None:
    state.apply(ev.from_dict(data), data)


def _sample(host: str, elapsed: float, **metrics: float) -> dict[str, Any]:
    return {"type": "host_metrics", "run_id": "r-1", "host": host, "elapsed_s": elapsed,
            "metrics": metrics}


def test_samples_become_system_series_keyed_by_host_once_a_second_host_reports():
    points = Points()
    state = State(points)  # type: ignore[arg-type]
    _apply(state, _sample("a", 0.5, cpu_percent=1.0))  # unknown run: ignored
    _apply(state, {"type": "training_progress", "run_id": "r-1", "stage": "model_training",
                   "current_step": 3, "current_loss": 0.5})
    before = state.runs["r-1"].to_dict()
    _apply(state, _sample("a", 10.7, cpu_percent=12.5, **{"gpu0/util_percent": 90}))
    assert state.runs["r-1"].to_dict() == before  # the run is not touched (stall stays stall)
    assert state.system is None  # the server's own resources are not replaced
    _apply(state, _sample("b", 11.2, cpu_percent=50.0))
    _apply(state, _sample("a", 20.1, cpu_percent=13.0))
    system = [p for p in points.points if any(k.startswith("system/") for k in p[2])]
    assert system == [
        ("r-1", 10, {"system/cpu_percent": 12.5, "system/gpu0/util_percent": 90}),
        ("r-1", 11, {"system/b/cpu_percent": 50.0}),
        ("r-1", 20, {"system/a/cpu_percent": 13.0}),
    ]
    _apply(state, {"type": "training_completed", "run_id": "r-1", "model_name": "m"})
    _apply(state, _sample("a", 30, cpu_percent=1.0))
    assert len([p for p in points.points if p[1] == 30]) == 0  # finished: ignored


def test_host_metrics_needs_its_run_and_host():
    for bad in ({"host": "a"}, {"run_id": "r"}):
        try:
            ev.from_dict({"type": "host_metrics", "elapsed_s": 1, "metrics": {}, **bad})
        except ev.EventError as exc:
            assert "host_metrics" in str(exc) or "required" in str(exc)
        else:
            raise AssertionError("accepted without a required field")
