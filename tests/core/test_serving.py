from __future__ import annotations

import asyncio
import threading

import pytest

import mlops_hooks
from mlops_hooks import events as ev
from mlops_hooks.serving import PredictionMonitor, default_milestones, deploy


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


def monitor_for(pm, clock, **kwargs):
    options = dict(emit=pm.dispatch, background=False, clock=clock, interval=5.0,
                   idle_after=60.0)
    options.update(kwargs)
    return PredictionMonitor("cp_v32", **options)


def volumes(recorder):
    return recorder.of_type("prediction_volume")


def statuses(recorder):
    return [(e.status, e.health_score) for e in recorder.of_type("model_status_change")]


# ---------------------------------------------------------------------- deploy


def test_deploy_emits_model_deployed_and_an_activity(pm, recorder):
    event = deploy("Customer Predictor v3.2", "v3.2", 0.973, model_id="cp_v32_20251206",
                   emit=pm.dispatch)
    deployed, activity = recorder.events
    assert deployed is event and deployed.type == "model_deployed"
    assert (deployed.model_name, deployed.model_version, deployed.model_accuracy,
            deployed.model_id) == ("Customer Predictor v3.2", "v3.2", 0.973, "cp_v32_20251206")
    assert ev.decode(ev.encode(deployed)) == deployed  # timestamp is ISO-8601 UTC
    assert activity.type == "activity_update"
    assert activity.activity.title == "Model Deployed"
    assert activity.activity.action_type == "model_deployment"
    assert activity.activity.metadata["model_id"] == "cp_v32_20251206"
    assert "v3.2" in activity.activity.description


def test_deploy_derives_a_model_id(pm, recorder):
    event = deploy("Customer Predictor v3.2", "v3.2", emit=pm.dispatch)
    day = event.deployment_timestamp[:10].replace("-", "")
    assert event.model_id == f"customer_predictor_v3_2_{day}"
    assert deploy("churn", "7", emit=pm.dispatch).model_id == f"churn_7_{day}"


def test_deploy_uses_the_process_plugin_manager(monkeypatch, recorder):
    mlops_hooks.get_plugin_manager().register(recorder)
    mlops_hooks.deploy("m", "v1", 0.5)
    assert [e.type for e in recorder.events] == ["model_deployed", "activity_update"]


@pytest.mark.parametrize(("args", "kwargs", "match"), [
    (("",), {}, "model_name"),
    (("m", ""), {}, "model_version"),
    (("m", "v1", 1.5), {}, "model_accuracy"),
    (("m", "v1", "high"), {}, "model_accuracy"),
    (("m",), {"model_id": " "}, "model_id"),
])
def test_deploy_rejects_bad_values(pm, args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        deploy(*args, emit=pm.dispatch, **kwargs)


# ---------------------------------------------------------------------- prediction volume


def test_first_prediction_marks_the_model_active_at_once(pm, recorder, clock):
    monitor = monitor_for(pm, clock)
    monitor.record()
    assert statuses(recorder) == [("active", 1.0)]
    assert volumes(recorder)[0].total_predictions == 1
    change = recorder.of_type("model_status_change")[0]
    assert change.model_id == "cp_v32" and change.last_prediction.endswith("Z")


def test_volume_is_throttled_and_reports_the_per_minute_rate(pm, recorder, clock):
    monitor = monitor_for(pm, clock)
    for _ in range(300):  # 30 s at 10 predictions per second
        clock.now += 0.1
        monitor.record()
    sent = volumes(recorder)
    # The first at once, then one every 5 s (51 predictions of 0.1 s: the float sum of 50 is
    # 4.999...), not 300.
    assert [e.total_predictions for e in sent] == [1, 52, 103, 154, 205, 256]
    # 256 predictions in the 25.5 s since the first one (at 100.1 s): 602.35 a minute
    assert sent[-1].predictions_per_minute == round(256 / 25.5 * 60, 1) == 602.4
    assert all(e.message is None and e.milestone_reached is None for e in sent)
    assert all(e.model_id == "cp_v32" for e in sent)


def test_rate_is_measured_over_the_window(pm, recorder, clock):
    monitor = monitor_for(pm, clock, window=60.0)
    for _ in range(120):  # 2 minutes at 1 per second, then 5 per second
        clock.now += 1
        monitor.record()
    for _ in range(300):
        clock.now += 0.2
        monitor.record()
    last = volumes(recorder)[-1]  # sent at 278.4 s, one every 5 s
    assert last.total_predictions == 412
    # The rate is measured from the newest sample (one per event) at least a window old: the
    # event at 216 s with 116 predictions, so 296 predictions in 62.4 s.
    assert last.predictions_per_minute == round((412 - 116) / (278.4 - 216) * 60, 1) == 284.6


def test_milestones_use_the_spec_message_and_are_not_throttled(pm, recorder, clock):
    monitor = monitor_for(pm, clock)
    monitor.record(999)
    monitor.record(1)
    monitor.record(4000)
    monitor.record(6000)  # jumps over nothing else: 10k reached
    milestones = [(e.milestone_reached, e.message) for e in volumes(recorder)
                  if e.milestone_reached]
    assert milestones == [(1000, "1000 predictions milestone reached!"),
                          (5000, "5000 predictions milestone reached!"),
                          (10000, "10000 predictions milestone reached!")]
    assert volumes(recorder)[-1].total_predictions == 11000
    for event in recorder.events:
        assert ev.decode(ev.encode(event)) == event


def test_default_and_custom_milestones(pm, recorder, clock):
    gen = default_milestones()
    assert [next(gen) for _ in range(6)] == [1000, 5000, 10000, 50000, 100000, 500000]
    monitor = monitor_for(pm, clock, milestones=[10, 3])
    monitor.record(12)
    assert [e.milestone_reached for e in volumes(recorder)] == [10]  # the highest reached


def test_error_rate_turns_the_status_to_error_with_health_score(pm, recorder, clock):
    monitor = monitor_for(pm, clock, error_threshold=0.1, min_samples=20)
    monitor.record(50)
    clock.now += 6
    monitor.record(50, errors=25)  # 25 of 100 in the window failed
    assert statuses(recorder)[-1] == ("error", 0.75)
    clock.now += 61  # the bad minute leaves the window
    monitor.record(100)
    clock.now += 6
    monitor.record(100)
    assert statuses(recorder)[-1] == ("active", 1.0)


def test_idle_model_becomes_inactive_then_active_again(pm, recorder, clock):
    monitor = monitor_for(pm, clock, idle_after=30.0)
    monitor.record()
    clock.now += 10
    monitor.poll()
    assert statuses(recorder) == [("active", 1.0)]
    clock.now += 25
    monitor.poll()
    assert statuses(recorder)[-1] == ("inactive", None)
    monitor.poll()
    assert len(statuses(recorder)) == 2  # reported once
    monitor.record()
    assert statuses(recorder)[-1] == ("active", 1.0)


def test_decorator_counts_calls_results_and_failures(pm, recorder, clock):
    monitor = monitor_for(pm, clock)

    @monitor
    def predict(x):
        if x < 0:
            raise ValueError("negative")
        return x * 2

    @monitor(count=len)
    def predict_batch(rows):
        return [r * 2 for r in rows]

    assert predict(2) == 4 and predict.__name__ == "predict"
    assert predict_batch([1, 2, 3]) == [2, 4, 6]
    with pytest.raises(ValueError, match="negative"):
        predict(-1)
    assert (monitor.total, monitor.errors) == (5, 1)


def test_decorator_on_coroutine_functions(pm, recorder, clock):
    monitor = monitor_for(pm, clock)

    @monitor
    async def predict(x):
        return x + 1

    assert asyncio.run(predict(1)) == 2
    assert monitor.total == 1


def test_record_is_thread_safe(pm, recorder, clock):
    monitor = monitor_for(pm, clock)

    def worker():
        for _ in range(5000):
            monitor.record()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert monitor.total == 20000
    assert [e.milestone_reached for e in volumes(recorder) if e.milestone_reached] == [
        1000, 5000, 10000]


def test_background_thread_reports_idleness_and_close_marks_inactive(pm, recorder):
    done = threading.Event()

    class Watch:
        @mlops_hooks.hookimpl
        def mlops_model_status_change(self, event):
            if event.status == "inactive":
                done.set()

    pm.register(Watch())
    monitor = PredictionMonitor("bg", emit=pm.dispatch, interval=0.05, idle_after=0.1)
    monitor.record(3)
    assert done.wait(10), "no inactive status from the background thread"
    monitor.record()
    monitor.close()
    assert statuses(recorder)[-1] == ("inactive", None)
    assert volumes(recorder)[-1].total_predictions == 4
    assert not monitor._thread.is_alive()


def test_context_manager_closes(pm, recorder, clock):
    with monitor_for(pm, clock) as monitor:
        monitor.record(2)
    assert statuses(recorder)[-1][0] == "inactive"


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"model_id": ""}, "model_id"),
    ({"interval": 0}, "interval"),
    ({"idle_after": -1}, "idle_after"),
    ({"error_threshold": 2}, "error_threshold"),
    ({"min_samples": 0}, "min_samples"),
    ({"milestones": [0, 10]}, "milestones"),
])
def test_bad_monitor_arguments(kwargs, match):
    options = {"model_id": "m", "background": False, **kwargs}
    with pytest.raises(ValueError, match=match):
        PredictionMonitor(**options)


def test_bad_record_arguments(pm, clock):
    monitor = monitor_for(pm, clock)
    for n, errors in ((-1, 0), (1, 2), (2, -1)):
        with pytest.raises(ValueError, match="errors"):
            monitor.record(n, errors=errors)
