"""A real training run that streams to ``MLOPS_HOOKS_URL`` and can be stopped from the server.

Run as a script by the stop tests: ``python stop_run.py FRAMEWORK RESULT`` with FRAMEWORK one of
``lightning``, ``keras``, ``track``. Every step sleeps ``STEP_SLEEP`` seconds, so a run of
``EPOCHS`` epochs lasts long enough to be stopped; ``RESULT`` receives how far it got.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

RUN_ID = os.environ.get("RUN_ID", "stop-run")
EPOCHS = int(os.environ.get("EPOCHS", "50"))
STEP_SLEEP = float(os.environ.get("STEP_SLEEP", "0.05"))


def lightning() -> dict[str, Any]:
    import lightning.pytorch as pl

    from mlops_hooks.plugins.lightning import MLOpsCallback
    from tests.plugins.lightning_models import DigitsMLP, digits_loaders

    class SlowSteps(pl.Callback):
        def on_train_batch_end(self, *args: Any) -> None:
            time.sleep(STEP_SLEEP)

    train, val = digits_loaders()
    trainer = pl.Trainer(
        max_epochs=EPOCHS, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1,
        callbacks=[MLOpsCallback("digits-mlp", run_id=RUN_ID), SlowSteps()])
    trainer.fit(DigitsMLP(), train, val)
    return {"epochs": trainer.current_epoch, "global_step": trainer.global_step}


def keras() -> dict[str, Any]:
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras as k
    import numpy as np
    from sklearn.datasets import load_digits

    from mlops_hooks.plugins.keras import MLOpsCallback

    class SlowSteps(k.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            time.sleep(STEP_SLEEP)

    x, y = load_digits(return_X_y=True)
    model = k.Sequential([k.Input((64,)), k.layers.Dense(32, activation="relu"),
                          k.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(np.asarray(x[:640] / 16.0, "float32"), y[:640], epochs=EPOCHS,
                        batch_size=64, verbose=0,
                        callbacks=[MLOpsCallback("digits-keras", run_id=RUN_ID), SlowSteps()])
    return {"epochs": len(history.history["loss"])}


def track_loop() -> dict[str, Any]:
    from mlops_hooks import track

    steps = 0
    with track("hand-loop", total_epochs=EPOCHS, steps_per_epoch=10, run_id=RUN_ID) as run:
        run.stage("model_training")
        for epoch in range(EPOCHS):
            run.epoch_start(epoch)
            for _ in range(10):
                time.sleep(STEP_SLEEP)
                steps += 1
                run.step(loss=1.0 / steps)
                if run.should_stop:
                    break
            if run.should_stop:
                break
            run.epoch_end(epoch, metrics={"val_loss": 1.0 / steps})
    return {"epochs": epoch, "steps": steps}


def write_result(result: dict[str, Any], result_path: str) -> None:
    """Flush the publisher (whether it delivered goes in ``flushed``), then write ``result``."""
    from mlops_hooks.manager import get_plugin_manager

    publisher = get_plugin_manager().get_plugin("publisher")
    result["flushed"] = publisher.flush(30) if publisher is not None else None
    with open(result_path, "w") as out:
        json.dump(result, out)


def main() -> None:
    framework, result_path = sys.argv[1], sys.argv[2]
    write_result({"lightning": lightning, "keras": keras, "track": track_loop}[framework](),
                 result_path)


if __name__ == "__main__":
    main()
