"""A tiny Transformers training in a process of its own (tests/plugins/test_transformers_live.py).

``python transformers_job.py crash|fail|resume OUTDIR [NAME]``: the tiny BERT of
``test_transformers`` (model name NAME, default ``resumed-bert``) for 8 steps with a checkpoint
every 4; ``crash`` stops at the end of step 6, creates ``OUTDIR/at-step-6`` and waits there
(the test kills it with SIGKILL: the machine went away), ``fail`` raises a ``RuntimeError`` at
the end of step 6 (the run ends ``failed``; the process exits with the traceback), ``resume``
continues from ``OUTDIR/out/checkpoint-4``.

``torchrun --nproc_per_node 2 transformers_job.py ddp OUTDIR``: 2 epochs of 96 samples in
batches of 8 per process, on CPU with the gloo backend (6 steps an epoch, 12 in all). Each
process writes what it emits to ``OUTDIR/rank<RANK>.jsonl``, and what it did to
``OUTDIR/result<RANK>.json``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
PHASE, OUT = sys.argv[1], Path(sys.argv[2])
if PHASE == "ddp":  # before mlops_hooks is imported: the JSONL plugin reads it once
    os.environ["MLOPS_HOOKS_JSONL"] = str(OUT / f"rank{os.environ['RANK']}.jsonl")

from transformers import TrainerCallback  # noqa: E402

from mlops_hooks.plugins.transformers import MLOpsCallback  # noqa: E402
from tests.plugins.test_transformers import Tokens, trainer_for  # noqa: E402


class WaitForTheEnd(TrainerCallback):
    """Waits at the end of optimizer step 6 (after checkpoint-4) to be killed."""

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 6:
            (OUT / "at-step-6").touch()
            time.sleep(120)  # killed long before: SIGKILL, nothing runs after it
            raise RuntimeError("not killed within 120 s")


class FailAtStep6(TrainerCallback):
    """Raises at the end of optimizer step 6 (after checkpoint-4): the training fails."""

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 6:
            raise RuntimeError("the data went bad at step 6")


def main() -> None:
    if PHASE == "ddp":
        callback = MLOpsCallback("ddp-bert", throttle=0)
        trainer = trainer_for(OUT, (Tokens(96), Tokens(16, seed=1)), [callback],
                              ddp_backend="gloo", gradient_accumulation_steps=1,
                              logging_steps=1)
        trainer.train()
        result = {"rank": int(os.environ["RANK"]), "pid": os.getpid(),
                  "world_size": trainer.args.world_size,
                  "global_step": trainer.state.global_step,
                  "run_id": callback.run.run_id if callback.run else None}
        (OUT / f"result{result['rank']}.json").write_text(json.dumps(result))
        import torch.distributed as dist

        if dist.is_initialized():  # end gloo's threads now, not in the interpreter's teardown
            dist.barrier()         # (left to it, a rank sometimes aborts: "terminate called")
            dist.destroy_process_group()
        return
    callbacks = [MLOpsCallback(sys.argv[3] if len(sys.argv) > 3 else "resumed-bert",
                               throttle=0)]
    if PHASE == "crash":
        callbacks.append(WaitForTheEnd())
    if PHASE == "fail":
        callbacks.append(FailAtStep6())
    trainer = trainer_for(OUT, (Tokens(100), Tokens(20, seed=1)), callbacks, max_steps=8,
                          gradient_accumulation_steps=1, eval_strategy="no",
                          save_strategy="steps", save_steps=4, logging_steps=1)
    checkpoint = OUT / "out" / "checkpoint-4"
    trainer.train(resume_from_checkpoint=str(checkpoint) if PHASE == "resume" else None)


if __name__ == "__main__":
    main()
