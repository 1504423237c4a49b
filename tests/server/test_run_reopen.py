"""A new attempt of an ended run reopens it: the state machine (the wire: test_run_reopen_live).

The rule (docs/protocol.md, *Run states*): the ``activity_update`` whose ``action_type`` is
``training_start`` (what ``Run.start()`` sends first) for a run that ended, timed after its
``ended_at``, sets it back to ``running`` and raises one ``run_state``. Nothing else reopens a
run: not a late start of the ended process, not a progress event of any time.
"""

from __future__ import annotations

import time
from typing import Any

from mlops_hooks import events as ev
from mlops_hooks.server.state.runwatch import REOPENED, RunWatch
from mlops_hooks.server.state.state import State
from tests.server.conftest import progress


def _apply(state: State, watch: RunWatch, data: dict[str, Any], seq: int,
           now: float = 0.0) -> list[ev.RunState]:
    event = ev.from_dict(data)
    event.seq = seq
    prior = watch.before(event)
    wire = {**ev.to_dict(event), "seq": seq}
    state.apply(event, wire)
    return watch.after(event, wire, prior, now)


def _start(run_id: str, at: str, action: str = "training_start") -> dict[str, Any]:
    return {"type": "activity_update", "run_id": run_id, "timestamp": at,
            "activity": {"id": f"act-{run_id}-{at}", "title": "Model Training Started",
                         "action_type": action, "status": "in_progress"}}


def _at(minute: int) -> str:
    return f"2026-12-07T08:{minute:02d}:00Z"


def _ended(end: dict[str, Any]) -> tuple[State, RunWatch]:
    state = State()
    watch = RunWatch(state, grace=1, factor=3, floor=1)
    assert _apply(state, watch, _start("r", _at(0)), 1) == []  # unknown run: nothing to reopen
    assert "r" not in state.runs
    for i in range(1, 4):
        _apply(state, watch, progress("r", i * 10, current_step=i, current_loss=1 / i,
                                      timestamp=_at(i)), i + 1, now=i * 0.1)
    out = _apply(state, watch, {"run_id": "r", "timestamp": _at(5), **end}, 5)
    assert len(out) == 1 and state.runs["r"].finished
    return state, watch


def test_a_start_after_the_end_reopens_a_failed_run_once_and_keeps_its_history():
    state, watch = _ended({"type": "training_failed", "error": "ValueError: boom",
                           "error_code": "TRAINING_ERROR"})
    run = state.runs["r"]
    started, points = run.started_at, list(run.points)
    out = _apply(state, watch, _start("r", _at(6)), 6)
    assert [(e.state, e.previous, e.reason, e.event_id) for e in out] == [
        ("running", "failed", REOPENED, "run-state:6:r")]
    assert (run.status, run.failed, run.completed, run.ended_at) == ("running", None, None, None)
    assert run.started_at == started == "2026-12-07T08:01:00.000Z" and run.points == points
    assert _apply(state, watch, _start("r", _at(7)), 7) == []  # running already: nothing more
    _apply(state, watch, progress("r", 40, current_step=4, timestamp=_at(8)), 8, now=5.0)
    assert [p["step"] for p in run.points] == [1, 2, 3, 4]  # the new attempt appends
    assert watch.steps.threshold("r") is None  # its step clock starts over (one step so far)
    done = _apply(state, watch, {"type": "training_completed", "run_id": "r",
                                 "timestamp": _at(9)}, 9)
    assert [(e.state, e.previous) for e in done] == [("finished", "running")]
    assert run.ended_at == "2026-12-07T08:09:00.000Z"


def test_a_late_start_or_any_progress_of_the_ended_attempt_changes_nothing():
    state, watch = _ended({"type": "training_completed", "final_accuracy": 0.9})
    run = state.runs["r"]
    before = {k: v for k, v in run.to_dict().items() if k != "updated"}  # when it was last heard
    for seq, data in enumerate((
            _start("r", _at(4)),  # the ended process's own start, delivered late
            _start("r", _at(5)),  # not after the end: the same millisecond
            _start("r", _at(9), action="training_complete"),  # another activity of the run
            progress("r", 99, current_step=9, timestamp=_at(4)),  # a late step
            progress("r", 99, current_step=9, timestamp=_at(9)),  # no start: not a new attempt
    ), start=6):
        assert _apply(state, watch, data, seq) == [], data
    assert {k: v for k, v in run.to_dict().items() if k != "updated"} == before
    assert run.status == "completed" and run.completed is not None


def test_a_reopened_run_is_live_again_for_the_crash_watch():
    state, watch = _ended({"type": "training_failed", "error": "KeyboardInterrupt",
                           "error_code": "INTERRUPTED"})
    old = watch.liveness.connect(0.0)
    watch.liveness.heartbeat(old, ["r"], 0.0)
    watch.liveness.disconnect(old, 1.0)  # the ended attempt's connection closes: an orphan
    out = _apply(state, watch, _start("r", _at(6)), 6)
    assert [(e.state, e.previous) for e in out] == [("running", "interrupted")]
    assert watch.tick(10.0) == []  # its orphan went with the reopening: no false crash
    new = watch.liveness.connect(10.0)
    watch.liveness.heartbeat(new, ["r"], 10.0)
    watch.liveness.disconnect(new, 11.0)  # the new attempt's process vanishes
    crashed = watch.tick(12.0)
    assert [(e.state, e.previous) for e in crashed] == [("crashed", "running")]


def test_a_crashed_run_reopens_on_a_later_start():
    state, watch = _ended({"type": "training_failed", "error": "SIGTERMException: SIGTERM",
                           "error_code": "TERMINATED"})
    run = state.runs["r"]
    assert run.status == "killed"
    _apply(state, watch, _start("r", _at(6)), 6)
    crash = ev.RunState(run_id="r", state="crashed", previous="running",
                        timestamp=_at(7))
    _apply(state, watch, ev.to_dict(crash), 7)
    assert run.status == "crashed" and run.ended_at == "2026-12-07T08:07:00.000Z"
    assert _apply(state, watch, _start("r", _at(6)), 8) == []  # before the crash: no
    out = _apply(state, watch, _start("r", _at(8)), 9)
    assert [(e.state, e.previous, e.reason) for e in out] == [("running", "crashed", REOPENED)]
    assert run.ended_at is None


def test_a_crashed_run_whose_heartbeat_and_start_race_says_running_once():
    state, watch = _ended({"type": "training_failed", "error": "boom",
                           "error_code": "TRAINING_ERROR"})
    _apply(state, watch, _start("r", _at(6)), 6)
    crash = ev.RunState(run_id="r", state="crashed", previous="running", timestamp=_at(7))
    _apply(state, watch, ev.to_dict(crash), 7)
    # the resumed process's heartbeat lists the run: `running` is raised, still on its way
    # when the process's start (then its progress) is applied
    back = watch.heartbeat(watch.connect(), ["r"])
    assert [(e.state, e.reason) for e in back] == [("running", "its publisher is connected again")]
    assert _apply(state, watch, _start("r", _at(8)), 8, now=time.monotonic()) == []
    assert state.runs["r"].status == "running"
    _apply(state, watch, {**ev.to_dict(back[0]), "seq": 9}, 9)  # it arrives: nothing more
    assert state.runs["r"].status == "running"


def test_a_reopened_run_can_stall_again_on_its_own_step_times():
    state, watch = _ended({"type": "training_completed"})
    assert watch.tick(100.0) == []  # ended: never stalled
    _apply(state, watch, _start("r", _at(6)), 6, now=100.0)
    for i in range(4):  # the new attempt steps every 0.1 s
        _apply(state, watch, progress("r", 50 + i, current_step=4 + i, timestamp=_at(7)),
               7 + i, now=100.0 + i * 0.1)
    assert watch.steps.threshold("r") == 1.0  # 3 x 0.1 s is under the 1 s floor
    assert watch.tick(101.2) == []
    stalled = watch.tick(101.4)
    assert [(e.state, e.previous) for e in stalled] == [("stalled", "running")]
