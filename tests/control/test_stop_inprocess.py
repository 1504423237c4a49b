"""The training side of a stop, in one process: the flag, the adapters, the publisher's notice.

Real Lightning ``Trainer.fit`` and ``Run`` objects; the stop request comes from another thread,
as it does from the publisher's background thread.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import lightning.pytorch as L
import msgspec
import pytest

from mlops_hooks import events as ev
from mlops_hooks._publisher.control import notice
from mlops_hooks._publisher.mailbox import Mailbox
from mlops_hooks.plugins.lightning import MLOpsCallback
from mlops_hooks.run import Run, control
from tests.plugins.conftest import LIGHTNING_WARNINGS
from tests.plugins.lightning_models import DigitsMLP, digits_loaders

pytestmark = [
    *LIGHTNING_WARNINGS,
    pytest.mark.timeout(300),
]


def _completed(events: list[ev.Event]) -> ev.TrainingCompleted:
    done = [e for e in events if isinstance(e, ev.TrainingCompleted)]
    assert len(done) == 1, [e.type for e in events]
    return done[0]


class _Steps(L.Callback):
    """Slows each step a little and lets the test see the step count from another thread."""

    def __init__(self) -> None:
        self.step = 0
        self.stepped = threading.Condition()

    def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
        time.sleep(0.01)
        with self.stepped:
            self.step = trainer.global_step
            self.stepped.notify_all()


def test_a_stop_re_arms_a_paused_lightning_hook_and_stops_within_a_step_or_two():
    events: list[ev.Event] = []
    # A throttle of 10 minutes: after its first progress event the batch hook is paused for the
    # rest of the fit, so only the stop request's re-arm can let it see the flag.
    callback = MLOpsCallback("digits-mlp", run_id="stop-rearm", emit=events.append, throttle=600)
    steps = _Steps()
    trainer = L.Trainer(max_epochs=50, accelerator="cpu", devices=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[callback, steps])
    asked_at: list[int] = []

    def stop_when_paused() -> None:
        with steps.stepped:
            assert steps.stepped.wait_for(
                lambda: steps.step >= 15 and vars(callback).get("on_train_batch_end", 0) is None,
                timeout=120), "the batch hook never paused"
            asked_at.append(steps.step)
        control.request_stop("stop-rearm", request_id="r-1", requested_by="tester",
                             source="10.0.0.9")

    asker = threading.Thread(target=stop_when_paused)
    asker.start()
    train, val = digits_loaders()
    trainer.fit(DigitsMLP(), train, val)
    asker.join()
    assert trainer.global_step - asked_at[0] <= 3  # the next step boundary or so, not 50 epochs
    assert trainer.current_epoch < 50
    done = _completed(events)
    assert done.stop_reason == "requested"
    assert done.message.startswith("Training stopped on request at epoch")
    assert "(by tester from 10.0.0.9)" in done.message
    assert control.stop_requested("stop-rearm") is None  # forgotten once the run is over


def test_a_run_reads_the_flag_and_completes_with_the_reason():
    events: list[ev.Event] = []
    run = Run("loop", total_epochs=5, steps_per_epoch=4, run_id="stop-flag", emit=events.append)
    with run:
        for epoch in range(5):
            run.epoch_start(epoch)
            for step in range(4):
                run.step(loss=1.0)
                if epoch == 1 and step == 2:
                    threading.Thread(target=run.stop).start()
                    while not run.should_stop:
                        time.sleep(0.001)
                if run.should_stop:
                    break
            if run.should_stop:
                break
            run.epoch_end(epoch)
    done = _completed(events)
    assert (done.stop_reason, done.total_epochs) == ("requested", 1)
    assert done.message == "Training stopped on request at epoch 1/5 (by local)"
    assert not run.should_stop


def test_a_run_that_finished_its_plan_has_no_stop_reason():
    events: list[ev.Event] = []
    with Run("loop", total_epochs=1, steps_per_epoch=2, run_id="stop-late",
             emit=events.append) as run:
        run.epoch_start(0)
        run.step(n=2)
        run.epoch_end(0)
        control.request_stop("stop-late")  # too late: the plan is done
    done = _completed(events)
    assert done.stop_reason is None
    assert done.message == "Training completed successfully!"
    assert b"stop_reason" not in ev.encode(done)


def test_an_open_ended_run_stopped_on_request_says_where():
    events: list[ev.Event] = []
    with Run("open", run_id="stop-open", emit=events.append) as run:
        run.step(n=7)
        run.stop()
        assert run.stop_request is not None and run.stop_request.requested_by == "local"
    done = _completed(events)
    assert done.stop_reason == "requested"
    assert done.message == "Training stopped on request at step 7 (by local)"


def test_watchers_are_told_once_and_at_once_when_already_asked():
    calls: list[str] = []
    control.watch("stop-watch", lambda: calls.append("first"))
    control.watch("stop-watch", lambda: 1 / 0)  # a watcher that raises is ignored
    control.request_stop("stop-watch")
    control.request_stop("stop-watch")  # a second request changes nothing
    control.watch("stop-watch", lambda: calls.append("late"))
    assert calls == ["first", "late"]
    control.forget("stop-watch")
    assert control.stop_requested("stop-watch") is None


def test_the_publisher_marks_the_run_and_queues_an_acknowledgement():
    mailbox = Mailbox()
    message = {"type": "control", "action": "stop", "run_id": "stop-notice",
               "request_id": "stop_abc", "requested_by": "publisher-token",
               "source": "127.0.0.1"}
    notice("control", json.dumps(message).encode(), mailbox)
    request = control.stop_requested("stop-notice")
    assert request is not None
    assert (request.request_id, request.requested_by, request.source) == \
        ("stop_abc", "publisher-token", "127.0.0.1")
    (ack, _), = mailbox.inbox
    assert isinstance(ack, ev.ActivityUpdate) and ack.run_id == "stop-notice"
    assert ack.activity.action_type == "stop_acknowledged"
    assert ack.activity.metadata["request_id"] == "stop_abc"
    ev.decode(ev.encode(ack))  # valid on the wire
    control.forget("stop-notice")


@pytest.mark.parametrize("data", [
    b"not json", b'{"type": "control"}', b'{"type": "control", "action": 3, "run_id": "x"}',
    msgspec.json.encode({"type": "control", "action": "pause", "run_id": "stop-unknown"}),
    msgspec.json.encode({"type": "control", "action": "stop", "run_id": ""}),
])
def test_control_messages_it_does_not_understand_are_ignored(data: bytes):
    mailbox = Mailbox()
    notice("control", data, mailbox)
    notice("announcement", b'{"type": "announcement"}', mailbox)
    assert not mailbox.inbox
    assert control.stop_requested("stop-unknown") is None


def test_an_explicit_stop_reason_is_sent_and_a_request_wins_over_it():
    events: list[ev.Event] = []
    run = Run("boost", total_epochs=10, run_id="stop-explicit", emit=events.append)
    with run:
        run.epoch_end(0)
        done = run.complete(stop_reason="early_stopping")
    assert done is not None and done.stop_reason == "early_stopping"
    assert done.message == "Training stopped early at epoch 1/10"
    assert ev.decode(ev.encode(done)) == done
    with Run("boost", total_epochs=10, run_id="stop-both", emit=events.append) as run:
        run.epoch_end(0)
        run.stop()
        done = run.complete(stop_reason="early_stopping")
    assert done is not None and done.stop_reason == "requested"
    assert done.message == "Training stopped on request at epoch 1/10 (by local)"


@pytest.mark.parametrize("reason", ["", "Early stop", "x" * 65, 3])
def test_a_bad_stop_reason_is_refused_before_anything_is_sent(reason):
    events: list[ev.Event] = []
    run = Run("boost", total_epochs=10, run_id="stop-bad", emit=events.append)
    with pytest.raises(ValueError, match="stop_reason must be None or a lower-case name"):
        run.complete(stop_reason=reason)
    assert events == [] and run.finished is None
