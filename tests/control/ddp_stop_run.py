"""A distributed Lightning fit (DDP on CPU, gloo) that streams to ``MLOPS_HOOKS_URL``.

Run by the distributed stop test as ``torchrun --nproc_per_node 2 ddp_stop_run.py OUTDIR``:
``EPOCHS`` epochs of the digits MLP, every step sleeping ``STEP_SLEEP`` seconds on every rank
(long enough to be stopped from the server). The strategy records its reductions (the stop
agreements: no checkpointing, no early stopping, no ``sync_dist`` logging).
Each rank writes what it did to ``OUTDIR/result<RANK>.json``, after its fit returned.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import lightning.pytorch as pl  # noqa: E402
from lightning.pytorch.strategies import DDPStrategy  # noqa: E402

from mlops_hooks.plugins.lightning import MLOpsCallback  # noqa: E402
from tests.plugins.lightning_models import DigitsMLP, digits_loaders  # noqa: E402

RUN_ID = os.environ.get("RUN_ID", "ddp-stop")
EPOCHS = int(os.environ.get("EPOCHS", "50"))
STEP_SLEEP = float(os.environ.get("STEP_SLEEP", "0.05"))


class CountingDDP(DDPStrategy):
    """DDP on gloo that records the stop agreements it reduces over the ranks."""

    def __init__(self) -> None:
        super().__init__(process_group_backend="gloo")
        self.reductions: list[list[float]] = []
        self.boolean_decisions = 0

    def reduce(self, tensor: Any, group: Any = None, reduce_op: Any = "mean") -> Any:
        reduced = super().reduce(tensor, group=group, reduce_op=reduce_op)
        if reduced.numel() == 2:  # a stop agreement (Lightning's own reductions are scalars)
            self.reductions.append([float(v) for v in reduced])
        return reduced

    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:
        self.boolean_decisions += 1
        return bool(super().reduce_boolean_decision(decision, all=all))


class SlowSteps(pl.Callback):
    def on_train_batch_end(self, *args: Any) -> None:
        time.sleep(STEP_SLEEP)


def main() -> None:
    out = Path(sys.argv[1])
    strategy = CountingDDP()
    callback = MLOpsCallback("ddp-digits", run_id=RUN_ID)
    trainer = pl.Trainer(
        max_epochs=EPOCHS, strategy=strategy, accelerator="cpu", devices=2, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[callback, SlowSteps()])
    train, val = digits_loaders()
    trainer.fit(DigitsMLP(), train, val)
    result: dict[str, Any] = {
        "rank": trainer.global_rank, "world_size": trainer.world_size,
        "global_step": trainer.global_step, "epochs": trainer.current_epoch,
        "batches_per_epoch": trainer.num_training_batches,
        "reductions": strategy.reductions, "boolean_decisions": strategy.boolean_decisions,
        "run_id": callback.run.run_id if callback.run else None}
    if trainer.global_rank == 0:
        from mlops_hooks.manager import get_plugin_manager

        publisher = get_plugin_manager().get_plugin("publisher")
        result["flushed"] = publisher.flush(30) if publisher is not None else None
    (out / f"result{trainer.global_rank}.json").write_text(json.dumps(result))
    import torch.distributed as dist

    if dist.is_initialized():  # end gloo's threads now, not in the interpreter's teardown
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
