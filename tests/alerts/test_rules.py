"""The alert rules at the engine level: each fed the events it watches, directly."""

from __future__ import annotations

import math
from typing import Any

import msgspec

from mlops_hooks import events as ev
from mlops_hooks.server.alerts.config import AlertConfig
from mlops_hooks.server.alerts.engine import CLEARED, SOURCE, AlertEngine, Raised

SPEC_ALERT_FIELDS = {"id", "title", "message", "alert_type", "priority", "source", "timestamp",
                     "auto_dismiss", "actions"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def engine(*assignments: str, clock: Clock | None = None) -> AlertEngine:
    return AlertEngine(AlertConfig.build(assignments=assignments),
                       link=lambda run: f"http://dash/runs/{run}", clock=clock or Clock())


def feed(e: AlertEngine, *events: ev.Event) -> list[Raised]:
    out: list[Raised] = []
    for seq, event in enumerate(events, start=len(getattr(e, "_fed", [])) + 1):
        event.timestamp = event.timestamp or "2026-12-07T05:00:00.000Z"
        out.extend(e.observe(event, seq))
    return out


def progress(step: int, loss: float | None = None, epoch: int = 0, run: str = "r-1",
             **metrics: float) -> ev.TrainingProgress:
    return ev.TrainingProgress(run_id=run, model_name="Net", stage="model_training",
                               current_step=step, current_epoch=epoch, current_loss=loss,
                               metrics=metrics or None)


def host(run: str = "r-1", name: str = "node-1", **metrics: float) -> ev.HostMetrics:
    return ev.HostMetrics(run_id=run, host=name, elapsed_s=1.0, metrics=metrics)


def fired(raised: list[Raised]) -> list[ev.SystemAlert]:
    return [r.event for r in raised if r.event.clears is None]


def cleared(raised: list[Raised]) -> list[ev.SystemAlert]:
    return [r.event for r in raised if r.event.clears is not None]


def check_wire(event: ev.SystemAlert) -> dict[str, Any]:
    """The event is valid on the wire, its alert has exactly the spec's fields."""
    data: dict[str, Any] = msgspec.json.decode(ev.encode(event))
    assert ev.decode(ev.encode(event)) == event
    assert set(data["alert"]) == SPEC_ALERT_FIELDS
    assert data["alert"]["source"] == SOURCE
    assert data["alert"]["priority"] in ("low", "medium", "high")
    return data


def test_a_nan_loss_fires_once_and_the_runs_numerical_failure_is_the_same_episode():
    e = engine()
    raised = feed(e, progress(1, 0.5), progress(2, math.nan), progress(3, math.inf),
                  ev.TrainingFailed(run_id="r-1", error="loss is nan at epoch 0",
                                    error_code="NUMERICAL_ERROR"),
                  ev.RunState(run_id="r-1", state="failed", previous="running"))
    alerts = fired(raised)
    assert [a.alert.alert_type for a in alerts] == ["loss_not_finite"]
    data = check_wire(alerts[0])
    assert data["run_id"] == "r-1" and data["alert"]["priority"] == "high"
    note = raised[0].notification
    assert note is not None and note.rule == "loss_nan" and note.value == "nan"
    assert note.link == "http://dash/runs/r-1" and note.run["model_name"] == "Net"


def test_loss_not_finite_in_progress_fires_at_once_with_its_step():
    e = engine()
    nan = progress(7)
    nan.loss_not_finite = "nan"
    inf = progress(8)
    inf.loss_not_finite = "inf"
    raised = feed(e, progress(6, 0.5), nan, inf)
    [alert] = fired(raised)
    assert alert.alert.alert_type == "loss_not_finite" and alert.run_id == "r-1"
    assert alert.alert.message == "The loss of run Net (r-1) is nan at step 7"
    check_wire(alert)
    note = raised[0].notification
    assert note is not None and note.rule == "loss_nan" and note.value == "nan"


def test_divergence_fires_once_per_episode_clears_and_respects_the_cool_down():
    clock = Clock()
    e = engine("divergence.window=3", "divergence.factor=2", "alerts.cooldown_s=60",
               clock=clock)
    losses = [1.0, 0.8, 0.6, 0.5, 0.9, 1.4, 2.5, 4.0, 8.0]
    raised = feed(e, *[progress(i, x) for i, x in enumerate(losses)])
    alerts = fired(raised)
    assert len(alerts) == 1 and alerts[0].alert.alert_type == "loss_diverging"
    assert "rising" in (alerts[0].alert.message or "")
    note = raised[0].notification
    assert note is not None and note.rule == "divergence" and note.value == 2.5
    # back under: one clear naming the alert, low priority, auto-dismissed
    back = feed(e, *[progress(20 + i, 0.4) for i in range(3)])
    assert [c.clears for c in cleared(back)] == [alerts[0].alert.id]
    clear = check_wire(cleared(back)[0])
    assert clear["alert"]["alert_type"] == CLEARED and clear["alert"]["auto_dismiss"] is True
    assert clear["clears"] == alerts[0].alert.id and back[0].notification is None
    # diverging again within the cool-down: suppressed; after it: a new episode
    again = feed(e, *[progress(30 + i, 3.0 + i) for i in range(3)])
    assert fired(again) == [] and e.suppressed >= 1
    clock.now += 61
    later = feed(e, progress(40, 9.0))
    assert len(fired(later)) == 1 and fired(later)[0].alert.id != alerts[0].alert.id


def test_a_repeated_point_does_not_count_twice_and_a_falling_loss_never_fires():
    e = engine("divergence.window=3")
    assert feed(e, *[progress(i, 1.0 / (i + 1)) for i in range(50)]) == []


def test_plateau_after_patience_epochs_without_improvement_then_clears_on_improvement():
    e = engine("plateau.patience=3", "plateau.metric=val_loss")
    values = [1.0, 0.8, 0.81, 0.85, 0.9]
    raised = feed(e, *[progress(10 * i, 0.5, epoch=i, val_loss=v) for i, v in enumerate(values)])
    alerts = fired(raised)
    assert len(alerts) == 1 and alerts[0].alert.alert_type == "metric_plateau"
    assert "3 epochs" in (alerts[0].alert.message or "")
    assert len(cleared(feed(e, progress(60, 0.5, epoch=5, val_loss=0.5)))) == 1


def test_plateau_in_max_mode_follows_an_accuracy():
    e = engine("plateau.patience=2", "plateau.metric=val_acc", "plateau.mode=max")
    raised = feed(e, *[progress(i, 0.5, epoch=i, val_acc=v)
                       for i, v in enumerate([0.5, 0.7, 0.69, 0.7])])
    assert len(fired(raised)) == 1


def _timed(step: int, seconds: float, epoch: int = 0) -> ev.TrainingProgress:
    event = progress(step, 0.5, epoch=epoch)
    minute, second = divmod(seconds, 60)
    event.timestamp = f"2026-12-07T05:{int(minute):02d}:{second:06.3f}Z"
    return event


def test_throughput_drop_below_a_fraction_of_the_runs_median_fires_and_recovers():
    e = engine("throughput.min_samples=5", "throughput.recent=2", "throughput.fraction=0.5")
    t, events = 0.0, []
    for step in range(1, 12):  # 10 steps/s
        t += 0.1
        events.append(_timed(step * 1, t))
    assert fired(feed(e, *events)) == []
    # an epoch boundary (validation) between two steps is not a slow step
    assert fired(feed(e, _timed(12, t + 30, epoch=1))) == []
    t += 30
    slow = []
    for step in range(13, 16):  # 1 step/s
        t += 1.0
        slow.append(_timed(step, t, epoch=1))
    alerts = fired(feed(e, *slow))
    assert len(alerts) == 1 and alerts[0].alert.alert_type == "throughput_drop"
    fast = []
    for step in range(16, 19):
        t += 0.1
        fast.append(_timed(step, t, epoch=1))
    assert len(cleared(feed(e, *fast))) == 1


def test_stall_fires_on_the_stalled_state_and_clears_when_running_again():
    e = engine()
    stalled = feed(e, progress(1, 0.5),
                   ev.RunState(run_id="r-1", state="stalled", previous="running",
                               reason="no step for 95 s", model_name="Net"))
    alerts = fired(stalled)
    assert [a.alert.alert_type for a in alerts] == ["run_stalled"]
    assert "no step for 95 s" in (alerts[0].alert.message or "")
    assert stalled[0].notification is not None and stalled[0].notification.value == "stalled"
    again = feed(e, ev.RunState(run_id="r-1", state="stalled"))
    assert again == []  # same episode
    back = feed(e, ev.RunState(run_id="r-1", state="running", previous="stalled"))
    assert [c.clears for c in cleared(back)] == [alerts[0].alert.id]


def test_a_stall_the_watchdog_already_alerted_is_not_alerted_twice():
    from mlops_hooks.server.state.runwatch import _REASONS as REASONS  # as raised

    e = engine()
    watchdog = ev.RunState(run_id="r-1", state="stalled", previous="running",
                           reason=REASONS["stalled"])
    assert feed(e, progress(1, 0.5), watchdog) == []


def test_the_watchdogs_stall_alert_is_the_episodes_notified_once_and_cleared():
    from mlops_hooks.server.ops.monitor import _stall_events
    from mlops_hooks.server.state.runwatch import _REASONS as REASONS

    e = engine("alerts.cooldown_s=600")
    [alert, _] = _stall_events("r-1", "Net", 42.0)
    opened = feed(e, progress(1, 0.5), alert)
    [adopted] = opened
    assert adopted.stored and adopted.event is alert  # nothing new to submit
    note = adopted.notification
    assert note is not None and note.rule == "stall" and note.value == "stalled"
    assert note.alert == msgspec.to_builtins(alert.alert) and note.run["model_name"] == "Net"
    # the stalled state it causes, a step-clock stall, the same alert again: one episode
    assert feed(e, ev.RunState(run_id="r-1", state="stalled", previous="running",
                               reason=REASONS["stalled"]),
                ev.RunState(run_id="r-1", state="stalled", reason="no step for 95 s"),
                alert) == []
    back = feed(e, ev.RunState(run_id="r-1", state="running", previous="stalled"))
    assert [c.clears for c in cleared(back)] == [alert.alert.id]
    assert not any(r.stored for r in back)
    # the watchdog's next stall is a new episode, notified (it is stored whatever the cool-down)
    [again, _] = _stall_events("r-1", "Net", 50.0, "2026-12-07T05:01:00.000Z")
    [reopened] = feed(e, again)
    assert reopened.stored and reopened.notification is not None
    # other alerts, and clears, are not the watchdog's
    other = ev.SystemAlert(run_id="r-2", alert=ev.Alert(
        id="a-1", title="t", message="m", alert_type="training_stalled", priority="high",
        source="someone", timestamp="2026-12-07T05:00:00.000Z", auto_dismiss=False))
    assert feed(e, other) == []


def test_a_stall_then_a_crash_clears_the_stall_and_fires_the_crash_once():
    e = engine()
    feed(e, progress(1, 0.5), ev.RunState(run_id="r-1", state="stalled"))
    raised = feed(e, ev.RunState(run_id="r-1", state="crashed", previous="stalled",
                                 reason="the process vanished"))
    assert [a.alert.title for a in fired(raised)] == ["Training Run Crashed"]
    assert len(cleared(raised)) == 1
    assert feed(e, ev.RunState(run_id="r-1", state="crashed")) == []


def test_a_failed_run_alerts_once_whatever_reports_it():
    e = engine()
    raised = feed(e, progress(1, 0.5),
                  ev.TrainingFailed(run_id="r-1", error="boom", error_code="RUNTIME_ERROR",
                                    suggestions=["Check the traceback"]),
                  ev.RunState(run_id="r-1", state="failed"),
                  ev.RunState(run_id="r-1", state="crashed"))
    alerts = fired(raised)
    assert [a.alert.alert_type for a in alerts] == ["run_failed"]
    assert alerts[0].alert.actions == ["Check the traceback"]
    assert raised[0].notification is not None and raised[0].notification.value == "RUNTIME_ERROR"


def test_finished_is_opt_in():
    done = ev.TrainingCompleted(run_id="r-1", final_accuracy=0.93, model_name="Net")
    assert feed(engine(), done) == []
    raised = feed(engine("finished.enabled=true"), done,
                  ev.RunState(run_id="r-1", state="finished"))
    alerts = fired(raised)
    assert len(alerts) == 1 and alerts[0].alert.priority == "low"
    assert "0.93" in (alerts[0].alert.message or "")


def test_host_memory_near_oom_with_hysteresis_and_cleared_when_the_run_ends():
    e = engine()
    alerts = fired(feed(e, progress(1, 0.5), host(memory_percent=95.0)))
    assert [a.alert.alert_type for a in alerts] == ["host_memory_high"]
    assert "node-1" in (alerts[0].alert.message or "")
    assert feed(e, host(memory_percent=87.0)) == []  # within the hysteresis: still open
    ended = feed(e, ev.TrainingCompleted(run_id="r-1"))
    assert [c.clears for c in cleared(ended)] == [alerts[0].alert.id]


def test_gpu_memory_near_full_per_gpu():
    e = engine()
    raised = feed(e, host(**{"gpu0/memory_used_mb": 15800, "gpu0/memory_total_mb": 16000,
                             "gpu1/memory_used_mb": 1000, "gpu1/memory_total_mb": 16000}))
    alerts = fired(raised)
    assert len(alerts) == 1 and "GPU0" in (alerts[0].alert.message or "")
    assert raised[0].notification is not None and raised[0].notification.value == 98.8
    assert len(cleared(feed(e, host(**{"gpu0/memory_used_mb": 100,
                                       "gpu0/memory_total_mb": 16000})))) == 1


def test_gpu_idle_only_while_the_run_is_live():
    e = engine("gpu_idle.samples=3")
    idle = {"gpu0/util_percent": 2.0}
    assert feed(e, *[host(**idle) for _ in range(5)]) == []  # not live yet: no progress
    raised = feed(e, progress(1, 0.5), host(**idle), host(**idle), host(**idle))
    alerts = fired(raised)
    assert len(alerts) == 1 and alerts[0].alert.alert_type == "gpu_idle"
    stalled = feed(e, ev.RunState(run_id="r-1", state="stalled"))
    assert [a.alert.alert_type for a in fired(stalled)] == ["run_stalled"]
    # a stalled run is not live: its next sample clears the idle alert, later ones say nothing
    assert [c.clears for c in cleared(feed(e, host(**idle)))] == [alerts[0].alert.id]
    assert feed(e, host(**idle), host(**idle), host(**idle)) == []


def test_the_rules_alerts_are_not_rule_input_and_runless_events_are_ignored():
    e = engine()
    alert = ev.Alert(id="a", title="t", alert_type="run_failed", source=SOURCE)
    assert feed(e, ev.SystemAlert(run_id="r-1", alert=alert)) == []
    assert feed(e, ev.SystemMetrics(cpu_percent=99.0)) == []


def test_a_disabled_rule_never_fires():
    e = engine("failed.enabled=false")
    assert feed(e, ev.TrainingFailed(run_id="r", error="x", error_code="E")) == []
