"""A real Lightning training run that streams to the server named by ``MLOPS_HOOKS_URL``.

Run as a script by the reliability tests (``python lightning_run.py LEDGER RESULT``). Besides
``MLOpsCallback`` and the built-in publisher it registers one test instrument, a ledger plugin
that gives every event a known ``event_id`` and appends it to ``LEDGER`` before the publisher
queues it: the test then knows exactly which events the training emitted. ``RESULT`` receives
the trainer's outcome and the publisher's final counters.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import lightning.pytorch as pl

from mlops_hooks import events as ev
from mlops_hooks.manager import get_plugin_manager, hookimpl
from mlops_hooks.plugins.lightning import MLOpsCallback
from tests.plugins.lightning_models import DigitsMLP, digits_loaders


class Ledger:
    """Numbers every event of this process and writes it down (unbuffered: survives a kill)."""

    def __init__(self, path: str, run_id: str) -> None:
        self.file = open(path, "ab", buffering=0)  # noqa: SIM115 - closed at exit
        self.run_id = run_id
        self.n = 0

    @hookimpl(tryfirst=True)
    def mlops_event(self, event: ev.Event) -> None:
        self.n += 1
        event.event_id = f"{self.run_id}:{self.n:06d}"
        line = {"event_id": event.event_id, "type": event.type, "t": time.time()}
        if isinstance(event, ev.TrainingProgress):
            line["progress"] = event.progress
        self.file.write(json.dumps(line).encode() + b"\n")


class SlowSteps(pl.Callback):
    """Make each step take a little time, so the run lasts long enough to be interrupted."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_train_batch_end(self, *args: Any) -> None:
        time.sleep(self.seconds)


def main() -> None:
    ledger_path, result_path = sys.argv[1], sys.argv[2]
    run_id = os.environ.get("RUN_ID", "reliability-run")
    epochs = int(os.environ.get("EPOCHS", "8"))
    step_sleep = float(os.environ.get("STEP_SLEEP", "0.04"))
    pm = get_plugin_manager()
    pm.register(Ledger(ledger_path, run_id), name="ledger")
    train, val = digits_loaders()
    trainer = pl.Trainer(
        max_epochs=epochs, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1,
        callbacks=[MLOpsCallback("digits-mlp", run_id=run_id, throttle=0.05),
                   SlowSteps(step_sleep)])
    started = time.time()
    trainer.fit(DigitsMLP(), train, val)
    elapsed = time.time() - started
    publisher = pm.get_plugin("publisher")
    flushed = publisher.flush(30) if publisher is not None else None
    status = publisher.status() if publisher is not None else {}
    result = {
        "epochs": trainer.current_epoch,
        "global_step": trainer.global_step,
        "val_acc": float(trainer.callback_metrics["val_acc"]),
        "seconds": elapsed,
        "flushed": flushed,
        "publisher": {k: status.get(k) for k in
                      ("acked", "duplicates", "dropped", "invalid", "rejected", "reconnects",
                       "buffered", "sent")},
    }
    with open(result_path, "w") as out:
        json.dump(result, out)


if __name__ == "__main__":
    main()
