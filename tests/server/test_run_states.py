"""Run states (issue 17): the stall clock, liveness, the state machine and the heartbeat wire.

The pure parts take the time as an argument, so these tests give them times instead of waiting.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from mlops_hooks import events as ev
from mlops_hooks import hookimpl, protocol
from mlops_hooks._publisher.carried import OpenRuns
from mlops_hooks.manager import create_plugin_manager
from mlops_hooks.server.config import ServerConfig
from mlops_hooks.server.state.liveness import HEARTBEAT_TIMEOUT, Liveness
from mlops_hooks.server.state.runwatch import RunWatch
from mlops_hooks.server.state.stalls import StepClock
from mlops_hooks.server.state.state import State
from tests.server.conftest import ServerRecorder, progress


def _step(step: int, **extra: Any) -> dict[str, Any]:
    return {"current_step": step, "progress": step / 10, "stage": "model_training", **extra}


# --------------------------------------------------------------------------- stalls


def test_a_run_stalls_after_k_times_its_median_step_time_and_never_below_the_floor():
    clock = StepClock(factor=5, floor=2)
    assert clock.progress("r", _step(1), 0.0)
    assert clock.threshold("r") is None  # one event: no median yet, never stalled here
    assert clock.stalled("r", 1000.0) is None
    for i, t in enumerate((1.0, 2.0, 3.0, 13.0), start=2):  # intervals 1, 1, 1, 10: median 1
        clock.progress("r", _step(i), t)
    assert clock.threshold("r") == 5.0
    assert clock.stalled("r", 17.9) is None
    reason = clock.stalled("r", 18.0)
    assert reason is not None and reason.startswith("no step for 5.0s (5x the median step time")
    fast = StepClock(factor=5, floor=2)
    for i in range(4):
        fast.progress("f", _step(i), i * 0.1)
    assert fast.threshold("f") == 2.0  # 5 x 0.1 s is below the floor


def test_a_repeated_position_is_no_step_and_a_stage_change_is():
    clock = StepClock(factor=2, floor=1)
    clock.progress("r", _step(1), 0.0)
    assert not clock.progress("r", _step(1), 5.0)  # same step, same stage: no advance
    assert clock.progress("r", _step(1, stage="validation"), 6.0)
    assert clock.threshold("r") == 12.0  # the one interval: 6 s


@pytest.mark.parametrize("factor, floor", [(0, 1), (1, 0), (-1, 1), (True, 1)])
def test_stall_settings_must_be_positive(factor: Any, floor: Any):
    with pytest.raises(ValueError, match="stall"):
        StepClock(factor, floor)
    with pytest.raises(ValueError, match=r"ServerConfig\.stall_"):
        ServerConfig(stall_factor=factor or 0, stall_floor=floor or 0)


def test_crash_grace_must_be_a_number_of_seconds():
    with pytest.raises(ValueError, match=r"ServerConfig\.crash_grace"):
        ServerConfig(crash_grace=-1)
    with pytest.raises(ValueError, match="crash grace"):
        Liveness(float("nan"))


@pytest.mark.parametrize("timeout", [0, -1, float("inf"), float("nan"), True, "30"])
def test_the_heartbeat_timeout_must_be_a_number_of_seconds_above_zero(timeout: Any):
    with pytest.raises(ValueError, match=r"ServerConfig\.heartbeat_timeout must be a number > 0"):
        ServerConfig(heartbeat_timeout=timeout)
    with pytest.raises(ValueError, match="the heartbeat timeout must be a number of seconds > 0"):
        Liveness(1, timeout)


def test_a_shorter_heartbeat_timeout_orphans_silent_and_restored_runs_sooner():
    live = Liveness(grace=1, heartbeat_timeout=4)
    a = live.connect(0.0)
    live.heartbeat(a, ["silent"], 0.0)
    live.restored(["left"], 0.0)
    assert live.due(3.9) == []
    assert live.due(4.0) == []  # the silent connection's run is orphaned now, then the grace
    assert sorted(run for run, _ in live.due(5.0)) == ["left", "silent"]


# --------------------------------------------------------------------------- liveness


def test_a_closed_connection_orphans_its_runs_until_the_grace_ends():
    live = Liveness(grace=3)
    a = live.connect(0.0)
    live.heartbeat(a, ["r1", "r2"], 0.0)
    live.disconnect(a, 10.0)
    assert live.due(12.9) == []
    due = live.due(13.0)
    assert sorted(run for run, _ in due) == ["r1", "r2"]
    assert "connection closed" in due[0][1]
    assert live.due(100.0) == []  # reported once


def test_a_publisher_that_reconnects_within_the_grace_keeps_its_run():
    live = Liveness(grace=3)
    a = live.connect(0.0)
    live.heartbeat(a, ["r1"], 0.0)
    live.disconnect(a, 10.0)
    b = live.connect(11.0)
    assert live.heartbeat(b, ["r1"], 11.0) == ["r1"]  # carried again
    assert live.due(20.0) == []
    other = live.connect(0.0)
    live.heartbeat(other, ["r1"], 21.0)
    live.disconnect(b, 22.0)  # another connection still carries it
    assert live.due(30.0) == [] and live.carried("r1")


def test_silent_heartbeats_orphan_the_runs_and_an_ended_run_is_never_reported():
    live = Liveness(grace=1)
    a = live.connect(0.0)
    live.heartbeat(a, ["r1", "r2"], 0.0)
    assert live.due(HEARTBEAT_TIMEOUT - 0.1) == []
    assert live.due(HEARTBEAT_TIMEOUT) == []  # orphaned now, reported after the grace
    live.ended("r2")  # its end arrived meanwhile
    due = live.due(HEARTBEAT_TIMEOUT + 1)
    assert [run for run, _ in due] == ["r1"] and "no heartbeat" in due[0][1]
    live2 = Liveness(grace=1)
    c = live2.connect(0.0)
    live2.heartbeat(c, ["x"], 0.0)
    live2.disconnect(c, 1.0)
    live2.ended("x")  # its training_completed arrived meanwhile
    assert live2.due(10.0) == []


def test_after_a_restart_a_live_run_must_be_carried_again():
    live = Liveness(grace=2)
    live.restored(["back", "gone"], 0.0)
    a = live.connect(1.0)
    live.heartbeat(a, ["back"], 1.0)  # its publisher reconnected
    assert live.due(HEARTBEAT_TIMEOUT + 1.9) == []
    due = live.due(HEARTBEAT_TIMEOUT + 2)
    assert [run for run, _ in due] == ["gone"] and "restarted" in due[0][1]


# --------------------------------------------------------------------------- the state machine


def _apply(state: State, watch: RunWatch, data: dict[str, Any], seq: int,
           now: float = 0.0) -> list[ev.RunState]:
    event = ev.from_dict(data)
    event.seq = seq
    event.timestamp = event.timestamp or "2026-12-07T05:00:00.000Z"
    prior = watch.before(event)
    wire = {**ev.to_dict(event), "seq": seq}
    state.apply(event, wire)
    return watch.after(event, wire, prior, now)


def _watch() -> tuple[State, RunWatch]:
    state = State()
    return state, RunWatch(state, grace=1, factor=3, floor=1)


def test_ends_map_to_states_and_the_first_event_raises_none():
    state, watch = _watch()
    assert _apply(state, watch, progress("a", 10), 1) == []  # a new run runs without saying so
    done = _apply(state, watch, {"type": "training_completed", "run_id": "a",
                                 "final_accuracy": 0.9, "stop_reason": "early_stopping"}, 2)
    assert [(e.state, e.previous, e.event_id) for e in done] == [
        ("finished", "running", "run-state:2:a")]
    assert done[0].reason == "training completed (stop_reason: early_stopping)"
    for run_id, code, error, want in (
            ("c", "INTERRUPTED", "KeyboardInterrupt", "interrupted"),
            ("t", "TERMINATED", "SIGTERMException: the process received SIGTERM", "killed"),
            ("x", "TERMINATED", "SystemExit: the process exited before the run finished",
             "failed"),  # exited, not killed
            ("m", "MEMORY_ERROR", "MemoryError", "failed")):
        _apply(state, watch, progress(run_id, 5), 10)
        out = _apply(state, watch, {"type": "training_failed", "run_id": run_id, "error": error,
                                    "error_code": code}, 11)
        assert [(e.state, e.previous) for e in out] == [(want, "running")]
        assert out[0].reason == f"{code}: {error}"
        assert state.runs[run_id].status == want


def test_a_stalled_run_is_running_again_at_its_next_step():
    state, watch = _watch()
    for i in range(4):
        _apply(state, watch, progress("s", i, current_step=i), i + 1, now=i * 0.1)
    assert watch.tick(0.5) == []
    stalled = watch.tick(1.4)
    assert [(e.state, e.previous) for e in stalled] == [("stalled", "running")]
    assert stalled[0].event_id == "run-state:stalled:4:s"
    assert watch.tick(1.5) == []  # raised already: not again while it travels
    _apply(state, watch, {**ev.to_dict(stalled[0]), "seq": 5}, 5)
    assert state.runs["s"].status == "stalled"
    resumed = _apply(state, watch, progress("s", 9, current_step=9), 6, now=2.0)
    assert [(e.state, e.previous, e.reason) for e in resumed] == [
        ("running", "stalled", "steps resumed")]


def test_a_crash_is_raised_after_the_grace_and_undone_by_a_heartbeat():
    state, watch = _watch()
    carrier = watch.liveness.connect(0.0)
    watch.liveness.heartbeat(carrier, ["c"], 0.0)
    _apply(state, watch, progress("c", 10), 1)
    watch.liveness.disconnect(carrier, 1.0)
    assert watch.tick(1.5) == []
    crashed = watch.tick(2.0)
    assert [(e.state, e.previous) for e in crashed] == [("crashed", "running")]
    assert "did not come back within 1 s" in (crashed[0].reason or "")
    _apply(state, watch, {**ev.to_dict(crashed[0]), "seq": 2}, 2)
    assert state.runs["c"].status == "crashed" and state.runs["c"].ended_at is not None
    back = watch.heartbeat(watch.connect(), ["c"])
    assert [(e.state, e.previous) for e in back] == [("running", "crashed")]


def test_a_run_crashed_and_quiet_in_the_same_tick_is_only_crashed():
    state, watch = _watch()
    carrier = watch.liveness.connect(0.0)
    watch.liveness.heartbeat(carrier, ["q"], 0.0)
    for i in range(3):
        _apply(state, watch, progress("q", i, current_step=i), i + 1, now=i * 0.1)
    watch.liveness.disconnect(carrier, 0.3)
    out = watch.tick(5.0)  # past the grace and past the stall threshold
    assert [e.state for e in out] == ["crashed"]
    _apply(state, watch, {**ev.to_dict(out[0]), "seq": 4}, 4)
    late = ev.RunState(run_id="q", state="stalled", previous="running")
    assert _apply(state, watch, ev.to_dict(late), 5) == []
    assert state.runs["q"].status == "crashed"  # a stall raised before the crash landed


def test_a_late_crash_never_overrides_an_end():
    state, watch = _watch()
    _apply(state, watch, progress("e", 10), 1)
    _apply(state, watch, {"type": "training_completed", "run_id": "e"}, 2)
    late = ev.RunState(run_id="e", state="crashed", previous="running")
    assert _apply(state, watch, ev.to_dict(late), 3) == []
    assert state.runs["e"].status == "completed"


# --------------------------------------------------------------------------- the wire


def test_the_publisher_lists_its_open_runs_in_each_ping():
    runs = OpenRuns()
    assert runs.observe(ev.TrainingProgress(run_id="a", progress=1.0, stage="model_training"))
    assert not runs.observe(ev.TrainingProgress(run_id="a", progress=2.0, stage="model_training"))
    assert runs.observe(ev.RunParams(run_id="b", params={}))
    assert not runs.observe(ev.TrainingCompleted(run_id="a"))
    assert runs.ids() == ["b"]
    assert protocol.ping(7, runs.ids()) == b'{"type":"ping","id":7,"runs":["b"]}'
    assert protocol.ping(7) == b'{"type":"ping","id":7}'


def test_a_heartbeat_is_answered_with_a_pong_and_a_bad_one_names_runs(make_client):
    client = make_client()
    with client.websocket_connect("/ws/publish") as pub:
        pub.send_json({"type": "ping", "id": 1, "runs": ["r-1"]})
        assert pub.receive_json()["type"] == "pong"
        pub.send_json({"type": "ping", "id": 2, "runs": "r-1"})
        bad = pub.receive_json()
        assert bad["type"] == "error" and bad["field"] == "runs"
        pub.send_json({"type": "ping", "id": 3, "runs": ["x"] * 65})
        assert pub.receive_json()["field"] == "runs"
        pub.send_json({"type": "run_state", "run_id": "r-1", "state": "crashed"})
        refused = pub.receive_json()
        assert refused["type"] == "error" and refused["field"] == "type"
        assert "raised by the server" in refused["error"]
    assert client.get("/api/runs", params={"status": "crashed,killed,interrupted"}).json() == {
        "runs": [], "next_cursor": None}
    bad = client.get("/api/runs", params={"status": "finished"})
    assert bad.status_code == 400 and bad.json()["field"] == "status"


class StateHook:
    """A server plugin implementing only ``mlops_run_state``."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []

    @hookimpl
    def mlops_run_state(self, event: ev.RunState, side: str) -> None:
        self.calls.append((event.run_id, event.state, side))


def test_server_plugins_get_mlops_run_state_once_per_change(make_client):
    recorder, hook = ServerRecorder(), StateHook()
    pm = create_plugin_manager("server", builtins=False, entrypoints=False)
    pm.register(recorder, name="recorder")
    pm.register(hook, name="state-hook")
    client = make_client(plugins=pm)
    with client.websocket_connect("/ws?types=run_state") as sub:
        sub.receive_json()
        assert client.post("/api/events", json=[
            progress("h"), {"type": "training_failed", "run_id": "h", "error": "Ctrl-C",
                            "error_code": "INTERRUPTED"}]).status_code == 200
        state = sub.receive_json()
    assert (state["type"], state["state"], state["previous"]) == (
        "run_state", "interrupted", "running")
    hooked = [e for e in recorder.events if e.type == "run_state"]
    assert [(e.run_id, e.state) for e in hooked] == [("h", "interrupted")]
    assert hook.calls == [("h", "interrupted", "server")]
    assert client.get("/api/runs/h").json()["run"]["status"] == "interrupted"


# --------------------------------------------------------------------------- after a restart


def test_the_runs_held_are_carried_or_orphaned_and_a_change_is_flagged_once():
    live = Liveness(grace=1)
    a = live.connect(0.0)
    live.heartbeat(a, ["r1", "r2"], 0.0)
    assert live.changed and live.held() == {"r1", "r2"}
    live.changed = False
    live.heartbeat(a, ["r2", "r1"], 5.0)  # the same runs: nothing to write
    assert not live.changed
    live.disconnect(a, 6.0)  # the server stopping: orphaned, still held
    assert live.held() == {"r1", "r2"} and not live.changed
    live.ended("r1")
    assert live.changed and live.held() == {"r2"}
    assert [r for r, _ in live.due(7.0)] == ["r2"] and live.held() == frozenset()


def test_a_restored_run_heard_from_is_no_orphan_but_one_never_heard_from_is_crashed():
    live = Liveness(grace=1)
    live.restored(["moved", "gone"], 0.0)
    assert live.held() == {"moved", "gone"}
    live.heard("moved")  # its publisher reached another server of the fleet
    live.heard("other")  # not restored: nothing happens
    due = live.due(HEARTBEAT_TIMEOUT + 1)
    assert [run for run, _ in due] == ["gone"]
    live2 = Liveness(grace=1)
    c = live2.connect(0.0)
    live2.heartbeat(c, ["carried"], 0.0)
    live2.disconnect(c, 1.0)
    live2.heard("carried")  # an orphan of a closed connection is not cleared by an event
    assert [run for run, _ in live2.due(2.0)] == ["carried"]


def test_restore_limits_itself_to_the_runs_held_and_an_event_clears_a_restored_orphan():
    state, watch = _watch()
    for seq, run_id in enumerate(["mine", "theirs", "quiet"], start=1):
        _apply(state, watch, progress(run_id, 10), seq)
    _apply(state, watch, {"type": "training_completed", "run_id": "quiet"}, 4)
    written: list[frozenset[str]] = []
    watch.on_held = written.append
    restored_at = time.monotonic()  # restore reads the clock itself
    watch.restore(["mine", "quiet", "unknown"])  # a fleet: only what this server carried
    assert set(watch.liveness.orphans) == {"mine"}
    assert watch.tick(restored_at) == [] and written == [frozenset({"mine"})]
    assert watch.tick(restored_at + 0.2) == [] and len(written) == 1  # unchanged: not again
    crashed = watch.tick(time.monotonic() + HEARTBEAT_TIMEOUT + 1)
    assert [(e.run_id, e.state) for e in crashed] == [("mine", "crashed")]
    assert "after the server restarted" in (crashed[0].reason or "")
    state2, watch2 = _watch()
    _apply(state2, watch2, progress("alive", 10), 1)
    _apply(state2, watch2, progress("vanished", 10), 2)
    watch2.restore()  # alone: every live run
    _apply(state2, watch2, {"type": "system_alert", "run_id": "vanished", "alert": {
        "id": "a-1", "title": "t", "message": "m", "alert_type": "training_stalled",
        "priority": "high", "source": "watchdog", "timestamp": "2026-12-07T05:00:00.000Z",
        "auto_dismiss": False, "actions": []}}, 3)  # the server's own alert is no sign of life
    _apply(state2, watch2, progress("alive", 11), 4)  # its publisher reached another server
    due = watch2.tick(time.monotonic() + HEARTBEAT_TIMEOUT + 1)
    assert [e.run_id for e in due if e.state == "crashed"] == ["vanished"]
