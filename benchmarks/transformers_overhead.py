"""What the Transformers ``MLOpsCallback`` costs a ``Trainer`` step, measured step by step.

A tiny model (``Linear(8, 1)`` returning ``{"loss": ...}``) is trained for thousands of
optimizer steps at batch size 1 on CPU, so the ``Trainer``'s own per-step cost is as small as
it gets and any per-step cost of a callback shows. Whole-fit ratios drift by several percent on
a shared machine, so the cost is measured inside each fit: the callback is in the trainer's
callback list on even steps only (``EveryOtherStep``), and the difference between neighbouring
steps (with it, without it) is what it costs a step. Targets, each in its own fits:

* ``none (A/A)``      - nothing is added on even steps: the control, the noise of the method;
* ``empty callback``  - a ``TrainerCallback`` that does nothing: what the ``Trainer``'s dispatch
  costs any callback (it calls every hook of every callback, ~6 a step);
* ``mlops (no plugins)`` - ``MLOpsCallback`` and its ``Run`` alone (``emit`` discards);
* ``mlops (plugins)``    - ``MLOpsCallback`` with the process's plugin manager (its publisher
  reconnecting to nothing: no server is started; undelivered events go to a temporary
  ``MLOPS_HOOKS_DIR``).

A last fit times the callback's ``on_step_end`` itself (``TimedMLOpsCallback``): the part of
the step that is the callback's own work, free of the machine's noise.

Numbers are for reporting; nothing passes or fails. Run from the repository root::

    .venv/bin/python benchmarks/transformers_overhead.py                # 3000 steps, 3 fits
    .venv/bin/python benchmarks/transformers_overhead.py --steps 5000 --fits 5
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from time import perf_counter, perf_counter_ns
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
warnings.simplefilter("ignore")
os.environ.setdefault("MLOPS_HOOKS_DISABLE", "console")
os.environ.setdefault("MLOPS_HOOKS_URL", "ws://127.0.0.1:9/ws")  # nothing listens there
os.environ.setdefault("MLOPS_HOOKS_DIR", tempfile.mkdtemp(prefix="mlops-bench-"))  # offline

import torch  # noqa: E402
from transformers import Trainer, TrainerCallback, TrainingArguments  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

from mlops_hooks.plugins.transformers import MLOpsCallback  # noqa: E402

hf_logging.set_verbosity_error()


class Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(8, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss": torch.nn.functional.mse_loss(self.layer(x), y)}


class Rows(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
    def __init__(self, size: int) -> None:
        generator = torch.Generator().manual_seed(0)
        self.x = torch.randn(size, 8, generator=generator)
        self.y = self.x.sum(dim=1, keepdim=True)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[index], "y": self.y[index]}


class EveryOtherStep(TrainerCallback):
    """Keeps ``target`` in the handler's callbacks on even steps only, and marks each step.

    The handler reads its list at every event, so on odd steps the target is not called at
    all. A step's time (this mark to the next) includes every hook of that step; two
    neighbouring steps see the same machine. Must come before ``target`` in the list.
    """

    def __init__(self, target: TrainerCallback) -> None:
        self.target = target
        self.callbacks: list[TrainerCallback] = []
        self.marks: list[float] = []

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.marks.append(perf_counter())
        present = self.target in self.callbacks
        if state.global_step & 1 and present:
            self.callbacks.remove(self.target)
        elif not state.global_step & 1 and not present:
            self.callbacks.append(self.target)

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.target not in self.callbacks:  # it sees the end of training every time
            self.callbacks.append(self.target)

    def cost(self) -> dict[str, float]:
        """Median step with and without the target (µs), median and mean paired difference."""
        steps = [b - a for a, b in zip(self.marks, self.marks[1:], strict=False)]
        pairs = [(steps[i], steps[i + 1]) for i in range(20, len(steps) - 1, 2)]  # warm-up
        diffs = [on - off for on, off in pairs]
        return {"on": statistics.median(p[0] for p in pairs) * 1e6,
                "off": statistics.median(p[1] for p in pairs) * 1e6,
                "diff": statistics.median(diffs) * 1e6,
                "mean_diff": statistics.fmean(diffs) * 1e6, "pairs": len(pairs)}


class TimedMLOpsCallback(MLOpsCallback):
    """Times its own ``on_step_end`` (the per-step hook), in nanoseconds."""

    durations: list[int] = []

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        start = perf_counter_ns()
        super().on_step_end(args, state, control, **kwargs)
        TimedMLOpsCallback.durations.append(perf_counter_ns() - start)


def fit_once(steps: int, target: TrainerCallback | None, output: str) -> dict[str, float]:
    clock = EveryOtherStep(target or TrainerCallback())
    args = TrainingArguments(output_dir=output, report_to=[], use_cpu=True, max_steps=steps,
                             per_device_train_batch_size=1, logging_strategy="no",
                             save_strategy="no", eval_strategy="no", disable_tqdm=True,
                             dataloader_num_workers=0, seed=0)
    trainer = Trainer(model=Tiny(), args=args, train_dataset=Rows(steps),
                      callbacks=[clock] if target is None else [clock, target])
    if target is not None:  # else the clock toggles a list of its own: the A/A control
        clock.callbacks = trainer.callback_handler.callbacks
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        trainer.train()
    return clock.cost()


def measure(steps: int, fits: int, make: Callable[[], TrainerCallback | None],
            output: str) -> dict[str, float]:
    costs = [fit_once(steps, make(), output) for _ in range(fits)]
    result = {key: statistics.median(c[key] for c in costs) for key in costs[0]}
    result["ratio"] = (result["off"] + result["diff"]) / result["off"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--fits", type=int, default=3)
    options = parser.parse_args()
    torch.set_num_threads(1)
    targets: dict[str, Callable[[], TrainerCallback | None]] = {
        "none (A/A)": lambda: None,
        "empty callback": TrainerCallback,
        "mlops (no plugins)": lambda: MLOpsCallback("bench", emit=lambda event: None),
        "mlops (plugins)": lambda: MLOpsCallback("bench"),
    }
    report: dict[str, Any] = {"steps": options.steps, "fits": options.fits, "targets": {}}
    with tempfile.TemporaryDirectory() as output:
        fit_once(200, TrainerCallback(), output)  # warm-up
        for name, make in targets.items():
            result = measure(options.steps, options.fits, make, output)
            report["targets"][name] = {k: round(v, 3) for k, v in result.items()}
            print(f"{name:20s} step {result['off']:8.1f} µs without, +{result['diff']:6.2f} µs "
                  f"with (mean +{result['mean_diff']:6.2f}); ratio {result['ratio']:.4f}",
                  flush=True)
        fit_once(options.steps, TimedMLOpsCallback("bench-hook"), output)
    hook = sorted(TimedMLOpsCallback.durations[20:])
    report["on_step_end_ns"] = {"median": statistics.median(hook),
                                "p99": hook[int(len(hook) * 0.99)], "calls": len(hook)}
    print(f"MLOpsCallback.on_step_end itself: median {report['on_step_end_ns']['median']} ns, "
          f"p99 {report['on_step_end_ns']['p99']} ns over {len(hook)} steps")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
