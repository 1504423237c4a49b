"""A Stop request raises the framework's own flag the moment it arrives (issue 17, latency).

The request comes from another thread (as from the publisher's background thread) while a
callback placed *after* ``MLOpsCallback`` runs its part of a step: the adapter's own batch hook
has already run for that step, so only the flag raised on arrival can make that step the last.
Real Lightning ``Trainer.fit`` and real Keras 3 ``fit``.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import lightning.pytorch as L
import pytest

from mlops_hooks import events as ev
from mlops_hooks.plugins._support.stop_flag import raise_flag_on_stop
from mlops_hooks.plugins.lightning import MLOpsCallback
from mlops_hooks.run import control
from tests.plugins.conftest import LIGHTNING_WARNINGS
from tests.plugins.lightning_models import DigitsMLP, digits_loaders

os.environ.setdefault("KERAS_BACKEND", "torch")

pytestmark = [
    *LIGHTNING_WARNINGS,
    pytest.mark.timeout(300),
]

STOP_AT = 7


def _ask_from_another_thread(run_id: str) -> None:
    """What the publisher's thread does on a ``control`` message, then wait for it."""
    asker = threading.Thread(target=control.request_stop, args=(run_id,),
                             kwargs={"requested_by": "tester"})
    asker.start()
    asker.join()


def _completed(events: list[ev.Event]) -> ev.TrainingCompleted:
    done = [e for e in events if isinstance(e, ev.TrainingCompleted)]
    assert len(done) == 1, [e.type for e in events]
    return done[0]


class _AskAfter(L.Callback):
    """Placed after MLOpsCallback: asks for the stop during its part of step STOP_AT."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.batches = 0

    def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
        self.batches += 1
        if trainer.global_step == STOP_AT:
            _ask_from_another_thread(self.run_id)


def test_lightning_ends_with_the_step_running_when_the_request_arrives():
    events: list[ev.Event] = []
    ask = _AskAfter("flag-lightning")
    trainer = L.Trainer(max_epochs=50, accelerator="cpu", devices=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False,
                        callbacks=[MLOpsCallback("digits-mlp", run_id="flag-lightning",
                                                 emit=events.append, throttle=0), ask])
    train, val = digits_loaders()
    trainer.fit(DigitsMLP(), train, val)
    assert trainer.global_step == STOP_AT and ask.batches == STOP_AT  # not one step later
    done = _completed(events)
    assert done.stop_reason == "requested" and "(by tester)" in done.message
    assert control.stop_requested("flag-lightning") is None


def test_a_single_process_fit_never_takes_part_in_a_collective(monkeypatch):
    """One process: the flag is raised on arrival, and no stop agreement is ever made.

    The agreement of a distributed fit (``tests/control/test_stop_distributed.py``) is not
    installed: Lightning finds no ``on_train_batch_start`` to call, and the strategy is never
    asked to reduce anything, yet the stop lands on the same step as before.
    """
    agreements: list[object] = []  # a stop agreement reduces two numbers (Lightning: one)
    lightnings: list[object] = []  # every reduction: Lightning's own (epoch metrics) included
    events: list[ev.Event] = []
    callback = MLOpsCallback("digits-mlp", run_id="flag-single", emit=events.append, throttle=0)
    ask = _AskAfter("flag-single")
    trainer = L.Trainer(max_epochs=50, accelerator="cpu", devices=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[callback, ask])
    strategy = trainer.strategy
    reduce, decide = strategy.reduce, strategy.reduce_boolean_decision

    def counted_reduce(tensor: Any, *args: Any, **kwargs: Any) -> Any:
        lightnings.append(tensor)
        if getattr(tensor, "numel", lambda: 1)() == 2:
            agreements.append(tensor)
        return reduce(tensor, *args, **kwargs)

    def counted_decision(decision: bool, *args: Any, **kwargs: Any) -> bool:
        agreements.append(decision)
        return bool(decide(decision, *args, **kwargs))

    monkeypatch.setattr(strategy, "reduce", counted_reduce)
    monkeypatch.setattr(strategy, "reduce_boolean_decision", counted_decision)
    seen: list[object] = []

    class SeesTheHook(L.Callback):
        def on_train_batch_end(self, *args: Any) -> None:
            seen.append(callback.on_train_batch_start)

    trainer.callbacks.append(SeesTheHook())
    train, val = digits_loaders()
    trainer.fit(DigitsMLP(), train, val)
    assert trainer.world_size == 1 and trainer.global_step == STOP_AT
    assert seen == [None] * STOP_AT  # Lightning skips the hook: nothing runs per batch
    assert agreements == [] and lightnings  # the counting sees Lightning's own reductions
    assert _completed(events).stop_reason == "requested"


def test_keras_ends_with_the_batch_running_when_the_request_arrives():
    import keras
    import numpy as np
    from sklearn.datasets import load_digits

    from mlops_hooks.plugins.keras import MLOpsCallback as KerasCallback

    class AskAfter(keras.callbacks.Callback):
        batches = 0

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            AskAfter.batches += 1
            if AskAfter.batches == STOP_AT:
                _ask_from_another_thread("flag-keras")

    x, y = load_digits(return_X_y=True)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    events: list[ev.Event] = []
    history = model.fit(np.asarray(x[:640] / 16.0, "float32"), y[:640], epochs=50,
                        batch_size=64, verbose=0,
                        callbacks=[KerasCallback("digits-keras", run_id="flag-keras",
                                                 emit=events.append, throttle=0), AskAfter()])
    assert AskAfter.batches == STOP_AT and len(history.history["loss"]) == 1
    assert _completed(events).stop_reason == "requested"


def test_the_flag_owner_is_held_weakly_and_a_failing_write_never_reaches_the_sender():
    class Owner:
        should_stop = False

    class Refuses:
        def __setattr__(self, name: str, value: Any) -> None:
            raise RuntimeError("read-only")

    kept, gone = Owner(), Owner()
    raise_flag_on_stop("flag-weak", kept, "should_stop")
    raise_flag_on_stop("flag-weak", gone, "should_stop")
    raise_flag_on_stop("flag-weak", Refuses(), "should_stop")  # dropped at once: held weakly
    refuses = Refuses()
    raise_flag_on_stop("flag-weak", refuses, "should_stop")
    del gone
    try:
        control.request_stop("flag-weak")  # the failing write is not raised here
        assert kept.should_stop is True
        raise_flag_on_stop("flag-weak", (late := Owner()), "should_stop")
        assert late.should_stop is True  # asked already: raised at once
    finally:
        control.forget("flag-weak")
    with pytest.raises(TypeError):
        raise_flag_on_stop("flag-weak", 3, "should_stop")  # an int cannot be held weakly
