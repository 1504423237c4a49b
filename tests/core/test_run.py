from __future__ import annotations

import json

import pytest

import mlops_hooks
from mlops_hooks import events as ev
from mlops_hooks.run import Run, track
from mlops_hooks.run import lifecycle as run_module


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(run_module, "_perf", c)
    return c


def progress(recorder):
    return recorder.of_type("training_progress")


def assert_valid_on_the_wire(events):
    for event in events:  # everything a Run emits survives strict decoding
        assert ev.decode(ev.encode(event)) == event


def test_whole_run_event_sequence(pm, recorder, clock):
    run = Run("digits", total_epochs=4, steps_per_epoch=10, emit=pm.dispatch, throttle=0)
    with run:
        run.stage("model_training")
        for epoch in range(4):
            run.epoch_start(epoch)
            for _ in range(10):
                clock.now += 0.1
                run.step(loss=0.5)
            run.stage("validation")
            run.stage("model_training")
            run.epoch_end(epoch, metrics={"val_loss": 0.4}, accuracy=0.9)
        run.complete(final_accuracy=0.95, validation_score=0.93, model_size=2_411_724)
    kinds = [e.type for e in recorder.events]
    assert kinds[0] == "activity_update" and kinds[1] == "training_progress"
    assert kinds[-2:] == ["training_completed", "activity_update"]
    values = [e.progress for e in progress(recorder)]
    assert values == sorted(values) and values[-1] == 100
    stages = [e.stage for e in progress(recorder)]
    assert stages[0] == "data_preparation" and stages[-1] == "finalization"
    order = ["data_preparation", "model_training", "validation", "finalization"]
    assert [s for i, s in enumerate(stages) if i == 0 or stages[i - 1] != s][:3] == order[:3]
    done = recorder.of_type("training_completed")[0]
    assert done.final_accuracy == 0.95 and done.validation_score == 0.93
    assert done.model_size == "2.3MB" and done.total_epochs == 4
    assert done.training_time == "4.0s" and done.message == "Training completed successfully!"
    assert {e.run_id for e in recorder.events} == {run.run_id}
    last_epoch_end = next(e for e in progress(recorder) if e.current_epoch == 4)
    assert last_epoch_end.metrics == {"val_loss": 0.4} and last_epoch_end.current_accuracy == 0.9
    assert_valid_on_the_wire(recorder.events)


def test_message_and_fields_look_like_the_spec(pm, recorder, clock):
    run = Run("m", total_epochs=20, steps_per_epoch=100, emit=pm.dispatch).start()
    run.stage("model_training")
    for epoch in range(13):
        run.epoch_start(epoch)
        clock.now += 10
        run.step(loss=0.0234, n=100)
        run.epoch_end(epoch)
    run.epoch_start(13)
    clock.now += 5
    run.step(loss=0.0234, n=100)
    last = progress(recorder)[-1]
    assert last.progress == 70 and last.current_epoch == 14 and last.total_epochs == 20
    assert last.message == "Training 70% complete - Epoch 14/20"
    assert last.current_stage == "Training model" and last.current_loss == 0.0234
    # ETA from a smoothed rate: 10 steps/s for 13 epochs, then 100 steps in 5 s (20/s) moves it
    # by the smoothing weight: 10 + 0.3 * (20 - 10) = 13 steps/s; 600 steps left -> 46 s
    assert last.estimated_time_remaining == round(600 / (10 + 0.3 * (20 - 10))) == 46


def test_progress_is_throttled_but_forced_on_stage_epoch_and_100(pm, recorder, clock):
    run = Run("t", total_steps=1000, emit=pm.dispatch, throttle=0.25).start()
    run.stage("model_training")
    before = len(progress(recorder))
    for _ in range(999):
        clock.now += 0.001  # 1 ms per step: ~4 events a second at most
        run.step()
    sent = progress(recorder)[before:]
    # 999 steps in 0.999 s (fake clock): one event per 0.25 s after the forced one
    # (the float sum of 250 steps of 0.001 s falls just short of 0.25, so each is one step late)
    assert [e.current_step for e in sent] == [251, 502, 753]
    run.step()
    assert progress(recorder)[-1].progress == 100
    run.epoch_end(0)
    assert progress(recorder)[-1].current_epoch == 1


def test_open_ended_run_reports_epochs_without_percentage(pm, recorder, clock):
    run = Run("open", emit=pm.dispatch, throttle=0).start()
    run.stage("model_training")
    run.epoch_start(0)
    run.step(loss=1.0)
    run.epoch_end(0)
    last = progress(recorder)[-1]
    assert last.progress is None and last.current_epoch == 1 and last.total_epochs is None
    assert last.message == "Training model - Epoch 1"
    run.complete()
    assert progress(recorder)[-1].progress is None
    assert_valid_on_the_wire(recorder.events)


def test_epochs_only_progress_learns_epoch_length(pm, recorder, clock):
    run = Run("e", total_epochs=4, emit=pm.dispatch, throttle=0).start()
    for _ in range(10):
        run.step()
    run.epoch_end(0)
    assert progress(recorder)[-1].progress == 25
    for _ in range(5):
        run.step()
    assert progress(recorder)[-1].progress == 37.5


def test_progress_never_goes_back(pm, recorder, clock):
    run = Run("m", total_steps=100, emit=pm.dispatch, throttle=0).start()
    run.step(n=50)
    run.set_totals(total_steps=200)  # a larger plan must not move the bar backwards
    run.step()
    values = [e.progress for e in progress(recorder)]
    assert values == sorted(values) and values[-1] == 50


def test_failure_inside_track_reports_and_reraises_unchanged(pm, recorder, clock):
    boom = MemoryError("Insufficient memory available for training")
    with pytest.raises(MemoryError) as info, track("f", total_epochs=4, steps_per_epoch=10,
                                                   emit=pm.dispatch, throttle=0) as run:
        run.stage("model_training")
        for epoch in range(4):
            for _ in range(10):
                run.step()
            run.epoch_end(epoch)
            if epoch == 1:
                raise boom
    assert info.value is boom
    failed = recorder.of_type("training_failed")
    assert len(failed) == 1
    f = failed[0]
    assert f.error_code == "MEMORY_ERROR" and f.stage_failed == "model_training"
    assert f.progress_when_failed == 50 and "Reduce batch size" in f.suggestions
    assert "Insufficient memory" in f.error and f.timestamp
    activity = recorder.of_type("activity_update")[-1].activity
    assert activity.action_type == "training_failed" and activity.severity_level == "error"
    assert not recorder.of_type("training_completed")
    assert_valid_on_the_wire(recorder.events)


def test_keyboard_interrupt_is_reported_as_interrupted(pm, recorder):
    with pytest.raises(KeyboardInterrupt), track("k", emit=pm.dispatch) as run:
        run.stage("validation")
        raise KeyboardInterrupt
    f = recorder.of_type("training_failed")[0]
    assert f.error_code == "INTERRUPTED" and f.stage_failed == "validation"


def test_complete_and_fail_happen_once(pm, recorder):
    run = Run("once", emit=pm.dispatch).start()
    assert run.complete() is not None
    assert run.complete() is None and run.fail(RuntimeError()) is None
    assert len(recorder.of_type("training_completed")) == 1
    assert not recorder.of_type("training_failed")


def test_loss_is_converted_only_when_emitting(pm, recorder):
    class LazyLoss:
        conversions = 0

        def __float__(self):
            LazyLoss.conversions += 1
            return 0.25

    run = Run("lazy", total_steps=10_000, emit=pm.dispatch, throttle=3600).start()
    for _ in range(1000):
        run.step(loss=LazyLoss())
    assert LazyLoss.conversions == 0
    run.epoch_end(0)
    assert LazyLoss.conversions == 1 and progress(recorder)[-1].current_loss == 0.25


def test_non_finite_loss_is_omitted(pm, recorder):
    run = Run("nan", emit=pm.dispatch, throttle=0).start()
    run.step(loss=float("nan"))
    assert progress(recorder)[-1].current_loss is None
    assert "current_loss" not in json.loads(ev.encode(progress(recorder)[-1]))
    assert progress(recorder)[-1].loss_not_finite == "nan"


class AcceleratorLoss:
    """A loss tensor on a GPU (none here): reading it would wait for the device."""

    class device:  # the shape of torch.device
        type = "cuda"

    def __init__(self) -> None:
        self.reads = 0

    def __float__(self) -> float:
        self.reads += 1
        return float("nan")


def test_a_non_finite_loss_is_sent_at_once_and_once_per_episode(pm, recorder, clock):
    import numpy as np
    import torch

    run = Run("nan", total_steps=100, emit=pm.dispatch, throttle=3600).start()
    sent = len(progress(recorder))
    run.step(loss=1.0)
    run.step(loss=torch.tensor(0.5))
    assert len(progress(recorder)) == sent  # throttled
    run.step(loss=float("nan"))  # at once, throttle or not
    run.step(loss=np.float32("nan"))
    run.step(loss=torch.tensor(float("inf")))  # the same episode: nothing more
    [nan] = progress(recorder)[sent:]
    assert (nan.current_step, nan.loss_not_finite, nan.current_loss) == (3, "nan", None)
    wire = json.loads(ev.encode(nan))
    assert wire["loss_not_finite"] == "nan" and "current_loss" not in wire
    run.epoch_end(0, loss=0.25)  # an event with a finite loss ends the episode
    assert (progress(recorder)[-1].loss_not_finite, progress(recorder)[-1].current_loss) == (
        None, 0.25)
    run.step(loss=torch.tensor(float("-inf")))  # a CPU tensor is read at once
    assert (progress(recorder)[-1].current_step, progress(recorder)[-1].loss_not_finite) == (
        6, "-inf")
    assert_valid_on_the_wire(progress(recorder))


def test_a_loss_on_an_accelerator_is_not_read_per_step_but_in_the_next_event(
        pm, recorder, clock):
    run = Run("gpu", emit=pm.dispatch, throttle=1.0).start()
    sent = len(progress(recorder))
    loss = AcceleratorLoss()
    run.step(loss=loss)
    assert loss.reads == 0 and len(progress(recorder)) == sent  # no device sync per step
    clock.now += 2
    run.step(loss=loss)  # the throttled event reads it
    assert loss.reads > 0 and progress(recorder)[-1].loss_not_finite == "nan"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"total_epochs": 0}, "total_epochs must be a positive integer"),
        ({"total_steps": -5}, "total_steps must be a positive integer"),
        ({"steps_per_epoch": 2.5}, "steps_per_epoch must be a positive integer"),
        ({"throttle": -1}, "throttle must be a number of seconds >= 0"),
    ],
)
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Run("x", **kwargs)


def test_bad_name_stage_and_accuracy(pm):
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        Run("  ")
    run = Run("x", emit=pm.dispatch).start()
    with pytest.raises(ValueError, match="stage must be one of data_preparation"):
        run.stage("training")
    with pytest.raises(ValueError, match="final_accuracy must be a number between 0 and 1"):
        run.complete(final_accuracy=97.3)
    assert run.finished is None  # a rejected call leaves the run as it was


def test_track_uses_the_process_plugin_manager(monkeypatch, recorder):
    monkeypatch.setenv("MLOPS_HOOKS_DISABLE", "publisher,console")
    mlops_hooks.get_plugin_manager().register(recorder, name="rec")
    with track("default", total_steps=2) as run:
        run.step()
        run.step()
    assert recorder.of_type("training_completed")[0].run_id == run.run_id


def test_emit_and_emit_dict(monkeypatch, recorder):
    monkeypatch.setenv("MLOPS_HOOKS_DISABLE", "publisher,console")
    mlops_hooks.get_plugin_manager().register(recorder, name="rec")
    event = mlops_hooks.emit_dict({"type": "health_change", "current_health": "warning"})
    mlops_hooks.emit(ev.SystemMetrics(cpu_percent=12.5))
    assert [e.type for e in recorder.events] == ["health_change", "system_metrics"]
    assert recorder.events[0] == event
    with pytest.raises(ev.EventError, match=r"health_change\.current_health"):
        mlops_hooks.emit_dict({"type": "health_change", "current_health": "fine"})
    with pytest.raises(TypeError, match="use emit_dict"):
        mlops_hooks.emit({"type": "health_change"})  # type: ignore[arg-type]


def test_step_cost_is_microseconds_when_throttled(pm):
    """Counts work rather than time: the throttled path builds no event."""
    built = []
    run = Run("hot", total_steps=10**9, emit=built.append, throttle=3600).start()
    for _ in range(100_000):
        run.step(loss=0.1)
    assert len(built) == 2  # the start activity and the first progress only


def test_advance_sets_progress_directly_with_eta_from_elapsed_time(pm, recorder, clock):
    run = Run("grid-search", emit=pm.dispatch, throttle=1.0)  # open-ended until advance()
    run.start()
    assert progress(recorder)[-1].progress is None
    run.advance(0)
    clock.now += 10
    run.advance(25, steps=3, message="3/12 fits")
    last = progress(recorder)[-1]
    assert (last.progress, last.current_step, last.message) == (25, 3, "3/12 fits")
    assert last.estimated_time_remaining == 30  # 10 s for 25% -> 30 s for the other 75%
    run.advance(20)  # never goes back
    clock.now += 0.1
    run.advance(30)  # throttled: not sent, but the state moves
    assert progress(recorder)[-1].progress == 25 and run.progress == 30
    run.advance(100)  # 100% is never throttled
    assert progress(recorder)[-1].progress == 100
    with pytest.raises(ValueError, match="percent"):
        run.advance(float("nan"))
    run.complete()
    assert progress(recorder)[-1].stage == "finalization"


def test_failure_after_unsent_advance_reports_the_real_progress(pm, recorder, clock):
    run = Run("search", emit=pm.dispatch, throttle=60)
    run.start()
    run.advance(42)
    run.fail(RuntimeError("boom"))
    assert recorder.of_type("training_failed")[0].progress_when_failed == 42


def test_resumed_run_measures_its_rate_from_the_steps_already_done(pm, recorder, clock):
    run = Run("resumed", total_steps=1000, emit=pm.dispatch, throttle=0)
    run.steps = 500  # restored from a checkpoint before start()
    run.start()
    clock.now += 10
    run.step(n=10)  # 1 step/s since the start, not 51 steps/s
    assert progress(recorder)[-1].estimated_time_remaining == 490


def test_progress_when_failed_counts_steps_since_the_last_throttled_event(pm, recorder, clock):
    run = Run("throttled", total_steps=100, emit=pm.dispatch, throttle=60)
    run.start()
    for _ in range(43):
        clock.now += 0.01
        run.step()
    assert progress(recorder)[-1].progress == 0  # throttled
    run.fail(RuntimeError("boom"))
    assert recorder.of_type("training_failed")[0].progress_when_failed == 43


def test_metrics_are_kept_within_the_events_caps(pm, recorder, clock):
    run = Run("wide", total_epochs=2, emit=pm.dispatch, throttle=0)
    with run:
        run.epoch_end(0, metrics={f"layer_{i}": 0.5 for i in range(300)} | {"k" * 200: 1.0})
        run.epoch_end(1, metrics={"layer_0": 0.25})
    last = progress(recorder)[-1]
    assert last.metrics is not None and len(last.metrics) == ev.MAX_METRICS
    assert last.metrics["layer_0"] == 0.25 and all(len(k) <= ev.MAX_KEY for k in last.metrics)
    assert_valid_on_the_wire(progress(recorder))  # accepted by a server, not refused


def test_an_early_stop_completes_at_100_with_eta_0_and_says_so(pm, recorder, clock):
    run = Run("early", total_epochs=10, steps_per_epoch=5, emit=pm.dispatch, throttle=0)
    run.start()
    for epoch in range(3):
        run.epoch_start(epoch)
        for _ in range(5):
            clock.now += 1
            run.step(loss=0.5)
        run.epoch_end(epoch)
    assert progress(recorder)[-1].estimated_time_remaining == 35  # 7 epochs of 5 s to go
    done = run.complete()
    last = progress(recorder)[-1]
    assert (last.progress, last.estimated_time_remaining, last.stage) == (100, 0, "finalization")
    assert done is not None and done.message == "Training stopped early at epoch 3/10"
    assert done.total_epochs == 3


def test_a_run_that_ends_on_plan_keeps_the_usual_message(pm, recorder, clock):
    with track("on-plan", total_epochs=2, emit=pm.dispatch) as run:
        for epoch in range(2):
            run.epoch_end(epoch, loss=0.3)
    (done,) = recorder.of_type("training_completed")
    assert done.message == "Training completed successfully!"


@pytest.mark.parametrize("loss", [float("nan"), float("inf")])
def test_completing_with_a_non_finite_loss_is_a_numerical_failure(pm, recorder, clock, loss):
    run = Run("nan", total_epochs=4, emit=pm.dispatch)
    run.start()
    run.stage("model_training")
    run.epoch_start(0)
    run.epoch_end(0, loss=0.7)
    run.epoch_start(1)
    run.step(loss=loss)
    run.stage("finalization")
    assert run.complete() is None
    assert not recorder.of_type("training_completed") and run.finished == "failed"
    (failed,) = recorder.of_type("training_failed")
    assert failed.error == (f"FloatingPointError: training stopped: the loss became "
                            f"non-finite ({loss}) in epoch 2/4")
    assert (failed.error_code, failed.stage_failed) == ("NUMERICAL_ERROR", "model_training")
    assert failed.progress_when_failed == 25
    assert failed.suggestions[0] == "Lower the learning rate"


def test_track_carries_the_last_accuracy_and_validation_score_into_completion(pm, recorder,
                                                                             clock):
    with track("carried", total_epochs=3, emit=pm.dispatch) as run:
        for epoch, acc in enumerate([0.5, 0.75, 0.875]):
            run.epoch_end(epoch, accuracy=acc, metrics={"val_accuracy": acc - 0.125})
    (done,) = recorder.of_type("training_completed")
    assert (done.final_accuracy, done.validation_score) == (0.875, 0.75)
    run2 = Run("explicit", total_epochs=1, emit=pm.dispatch)
    run2.start()
    run2.epoch_end(0, accuracy=0.5, metrics={"val_score": 0.25})
    assert run2.complete(final_accuracy=0.625, validation_score=0.5) is not None
    assert recorder.of_type("training_completed")[-1].final_accuracy == 0.625  # given wins


def test_a_run_resumed_after_it_started_continues_from_there(pm, recorder, clock):
    run = Run("second-fit", total_epochs=4, emit=pm.dispatch, throttle=0)
    run.start()
    run.resume(steps=20, epochs_done=2)  # the trainer's position, learnt after start()
    run.set_totals(total_steps=40)
    run.stage("model_training")
    assert progress(recorder)[-1].progress == 50
    clock.now += 10
    run.step(n=10)  # 1 step/s from the resumed position, not 3
    assert progress(recorder)[-1].estimated_time_remaining == 10


def test_a_real_hand_written_loop_ends_with_the_accuracy_it_reported(pm, recorder):
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import SGDClassifier
    from sklearn.preprocessing import StandardScaler

    x, y = load_breast_cancer(return_X_y=True)
    x = StandardScaler().fit_transform(x)
    model, scores = SGDClassifier(random_state=0), []
    with track("cancer-sgd", total_epochs=3, emit=pm.dispatch) as run:  # no complete() call
        for epoch in range(3):
            run.epoch_start(epoch)
            model.partial_fit(x[:400], y[:400], classes=[0, 1])
            scores.append(model.score(x[400:], y[400:]))
            run.epoch_end(epoch, accuracy=model.score(x[:400], y[:400]),
                          metrics={"val_accuracy": scores[-1]})
    (done,) = recorder.of_type("training_completed")
    assert done.final_accuracy == model.score(x[:400], y[:400])
    assert done.validation_score == scores[-1]


def test_an_epoch_only_loop_sends_no_step_so_each_epoch_is_its_own_point(pm, recorder, clock):
    # the server keys a run's series by current_step, else current_epoch: a loop that counts
    # no steps must not send step 0 on every event (each epoch would overwrite the last)
    with track("epochs", total_epochs=3, emit=pm.dispatch, throttle=0) as run:
        for epoch in range(3):
            run.epoch_end(epoch, loss=1.0 / (epoch + 1))
    ends = [e for e in progress(recorder) if e.current_loss is not None]
    assert {e.current_step for e in progress(recorder)} == {None}
    assert {e.current_epoch: e.current_loss for e in ends} == {
        1: 1.0, 2: 0.5, 3: pytest.approx(1 / 3)}


def test_a_loop_that_counts_steps_sends_them_from_its_first_step(pm, recorder, clock):
    with track("steps", total_epochs=1, emit=pm.dispatch, throttle=0) as run:
        for _ in range(3):
            run.step(loss=0.5)
    assert [e.current_step for e in progress(recorder) if e.current_step is not None][:3] \
        == [1, 2, 3]
