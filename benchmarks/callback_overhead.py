"""What the Lightning ``MLOpsCallback`` costs a training loop, against a fit without it.

A tiny model (``Linear(8, 1)``) is fitted for thousands of steps at batch size 1, so the
per-step cost of Lightning itself is as small as it gets and any per-batch cost of a callback
shows. Variants, run interleaved (the order rotates every repeat, after one warm-up fit each):

* ``baseline``       - no callback;
* ``empty callback``  - a ``Callback`` that does nothing: what Lightning's dispatch costs any
  callback (it enters a profiler context for every hook of every callback, ~8 hooks a step);
* ``mlops (server up)``   - ``MLOpsCallback`` with the default plugins, publishing to a real
  ``mlops-hooks serve`` process (tests/live_server.py);
* ``mlops (server down)`` - the same with nothing listening: the publisher is reconnecting;
* ``mlops (no plugins)``  - the callback and ``Run`` alone (no publisher or console plugin);
* ``tqdm``           - Lightning's ``TQDMProgressBar`` (refresh every step, output discarded),
  for reference.

Each fit's training loop (``on_train_start`` to ``on_train_end``) is timed, as wall time and
as CPU time of the training thread; the report gives the median per variant, the ratio of
medians to the baseline (target for the callback: <= 1.01), the median of the ratios of
fits run side by side in the same repeat (less sensitive to load drifting over the run) and
the ratio of the fastest fits (least disturbed by other processes on a shared machine). A
last fit times the callback's per-batch hook directly, and three more have it on every other
step only: neighbouring steps with and without it give its cost free of the drift between
fits (``EveryOtherStep``). Numbers are for reporting; nothing
passes or fails.

Run from the repository root::

    .venv/bin/python benchmarks/callback_overhead.py                 # 3000 steps, 5 repeats
    .venv/bin/python benchmarks/callback_overhead.py --steps 5000 --repeats 9
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import socket
import statistics
import sys
import tempfile
import time
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
warnings.simplefilter("ignore")

import lightning.pytorch as L  # noqa: E402
import torch  # noqa: E402
from lightning.pytorch.callbacks import TQDMProgressBar  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from mlops_hooks.manager import reset_plugin_managers  # noqa: E402
from mlops_hooks.plugins.lightning import MLOpsCallback  # noqa: E402
from tests.live_server import LiveServer, free_port  # noqa: E402

for _name in list(logging.root.manager.loggerDict):  # after their import, which sets levels
    if _name.startswith(("lightning", "pytorch_lightning")):
        logging.getLogger(_name).setLevel(logging.ERROR)


class Tiny(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(8, 1)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return torch.nn.functional.mse_loss(self.layer(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


class LoopTimer(L.Callback):
    """Times the training loop only (setup and teardown are the same for every variant).

    Wall time, and the CPU time of the training thread (less sensitive to other load on the
    machine; it leaves out the publisher's background thread, which the wall time includes).
    """

    def __init__(self) -> None:
        self.seconds = (0.0, 0.0)
        self._start = (0.0, 0.0)

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self._start = (time.perf_counter(), time.thread_time())

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self.seconds = (time.perf_counter() - self._start[0],
                        time.thread_time() - self._start[1])


def fit_once(loader: DataLoader[Any], extra: list[L.Callback],
             progress_bar: bool) -> tuple[float, float]:
    timer = LoopTimer()
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=False,
                        enable_checkpointing=False, enable_model_summary=False,
                        enable_progress_bar=progress_bar, num_sanity_val_steps=0,
                        callbacks=[timer, *extra])
    with open(os.devnull, "w") as sink, contextlib.redirect_stderr(sink), \
            contextlib.redirect_stdout(sink):
        trainer.fit(Tiny(), loader)
    return timer.seconds


class TimedMLOpsCallback(MLOpsCallback):
    """Measures the time spent inside the per-batch hook (one extra fit, not in the ratios)."""

    durations: list[int] = []
    _pausable_override = True  # it only times the parent's hook: paused like the parent

    def on_train_batch_end(self, *args: Any) -> None:
        start = time.perf_counter_ns()
        super().on_train_batch_end(*args)
        TimedMLOpsCallback.durations.append(time.perf_counter_ns() - start)


class EveryOtherStep(L.Callback):
    """Keeps ``target`` in the Trainer's callbacks on even steps only, and marks each step.

    Lightning reads ``trainer.callbacks`` at every hook call, so on odd steps the target is
    simply not there. A step's time (this start to the next) includes its own
    ``on_train_batch_end``; two neighbouring steps see the same machine, so their difference
    is what the callback costs a step, free of the drift that moves whole fits by several
    percent. Must come before ``target`` in the callback list.
    """

    def __init__(self, target: L.Callback) -> None:
        self.target = target
        self.marks: list[float] = []

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any,
                             batch_idx: int) -> None:
        self.marks.append(time.perf_counter())
        callbacks = trainer.callbacks
        present = self.target in callbacks
        if batch_idx & 1 and present:
            callbacks.remove(self.target)
        elif not batch_idx & 1 and not present:
            callbacks.append(self.target)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if self.target not in trainer.callbacks:  # epoch and fit hooks see it every time
            trainer.callbacks.append(self.target)

    def cost(self) -> dict[str, float]:
        """Median step time with and without the callback (µs); paired difference median and
        mean (the mean includes the rare steps on which it sends an event)."""
        steps = [b - a for a, b in zip(self.marks, self.marks[1:], strict=False)]
        pairs = [(steps[i], steps[i + 1]) for i in range(10, len(steps) - 1, 2)]  # skip warm-up
        diffs = [p[0] - p[1] for p in pairs]
        return {"on": statistics.median(p[0] for p in pairs) * 1e6,
                "off": statistics.median(p[1] for p in pairs) * 1e6,
                "diff": statistics.median(diffs) * 1e6,
                "mean_diff": statistics.fmean(diffs) * 1e6, "pairs": len(pairs)}


class Inert(L.Callback):
    """A callback Lightning never enters on a step: the A/A control of the interleaved measure."""


for _hook in ("on_train_batch_start", "on_train_batch_end", "on_before_backward",
              "on_after_backward", "on_before_optimizer_step", "on_before_zero_grad"):
    setattr(Inert, _hook, None)


def interleaved_cost(loader: DataLoader[Any], fits: int = 3,
                     make: Callable[[], L.Callback] | None = None) -> dict[str, float]:
    """The per-step cost of a callback from steps with and without it in one fit.

    Args:
        loader: The training data.
        fits: Fits to run; each figure is the median over them.
        make: Builds the callback (default: ``MLOpsCallback``; :class:`Inert` for the A/A).

    Returns:
        The median over ``fits`` fits of each figure of :meth:`EveryOtherStep.cost`, plus
        ``ratio``: (step without it + median difference) / step without it.
    """
    costs = []
    for _ in range(fits):
        target = make() if make is not None else MLOpsCallback("bench-interleaved")
        clock = EveryOtherStep(target)
        fit_once(loader, [clock, target], False)
        costs.append(clock.cost())
    result = {key: statistics.median(c[key] for c in costs) for key in costs[0]}
    result["ratio"] = (result["off"] + result["diff"]) / result["off"]
    return result


Variant = Callable[[], tuple[float, float]]


def run_interleaved(variants: dict[str, Variant], repeats: int, log: Callable[[str], None]
                    ) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """One warm-up fit per variant, then ``repeats`` rounds, the order rotating every round.

    Returns:
        The wall and training-thread CPU seconds of every fit, per variant.
    """
    names = list(variants)
    for name in names:  # warm-up: imports, allocator, first connection
        variants[name]()
    wall: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for repeat in range(repeats):
        order = names[repeat % len(names):] + names[:repeat % len(names)]
        for name in order:
            seconds, thread_seconds = variants[name]()
            wall[name].append(seconds)
            cpu[name].append(thread_seconds)
        log(f"repeat {repeat + 1}/{repeats}: " + ", ".join(
            f"{n} {wall[n][-1]:.3f}s" for n in names))
    return wall, cpu


@contextlib.contextmanager
def publishing_to(url: str | None) -> Iterator[None]:
    """Point the process's publisher at ``url`` (a fresh plugin manager per variant).

    ``None``: no plugins at all (the adapter and ``Run`` alone).
    """
    os.environ["MLOPS_HOOKS_URL"] = url or "ws://127.0.0.1:9/ws"
    os.environ["MLOPS_HOOKS_DISABLE"] = "jsonl" if url else "jsonl,console,publisher"
    reset_plugin_managers()
    try:
        yield
    finally:
        reset_plugin_managers()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3000, help="steps per fit (batch size 1)")
    parser.add_argument("--repeats", type=int, default=5, help="timed fits per variant")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = TensorDataset(torch.randn(args.steps, 8), torch.randn(args.steps, 1))
    loader = DataLoader(data, batch_size=1, shuffle=False)

    down_port = free_port()  # nothing listens there
    with tempfile.TemporaryDirectory() as tmp, LiveServer(Path(tmp)) as server:
        up_url = f"ws://127.0.0.1:{server.port}/ws"
        down_url = f"ws://127.0.0.1:{down_port}/ws"

        def mlops(url: str | None) -> Callable[[], tuple[float, float]]:
            def run() -> tuple[float, float]:
                with publishing_to(url):
                    return fit_once(loader, [MLOpsCallback("bench")], False)
            return run

        variants: dict[str, Callable[[], tuple[float, float]]] = {
            "baseline": lambda: fit_once(loader, [], False),
            "empty callback": lambda: fit_once(loader, [L.Callback()], False),
            "mlops (server up)": mlops(up_url),
            "mlops (server down)": mlops(down_url),
            "mlops (no plugins)": mlops(None),
            "tqdm": lambda: fit_once(loader, [TQDMProgressBar(refresh_rate=1)], True),
        }
        names = list(variants)
        wall, cpu = run_interleaved(variants, args.repeats, lambda line: print(line, flush=True))
        assert_no_port_clash(down_port)
        with publishing_to(up_url):
            fit_once(loader, [TimedMLOpsCallback("bench-timed")], False)
        with publishing_to(up_url):
            inter = interleaved_cost(loader)
        aa = interleaved_cost(loader, make=Inert)
        with urllib.request.urlopen(f"{server.http_url}/api/models", timeout=10) as reply:
            runs = json.load(reply)["runs"]
        completed = sum(1 for run in runs if run.get("status") == "completed")
        print(f"the server saw {len(runs)} runs, {completed} completed (expected "
              f"{args.repeats + 5} from the server-up fits)")

    print(f"\n{args.steps} steps at batch size 1, {args.repeats} interleaved repeats, "
          f"torch threads 1, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    for label, times in (("wall time of the training loop", wall),
                         ("CPU time of the training thread", cpu)):
        base = statistics.median(times["baseline"])
        print(f"\n{label}")
        print(f"{'variant':<22}{'median s':>10}{'us/step':>10}{'ratio':>8}{'paired':>8}"
              f"{'min':>8}   all (s)")
        for name in names:
            median = statistics.median(times[name])
            paired = statistics.median(t / b for t, b in zip(times[name], times["baseline"],
                                                                 strict=True))
            fastest = min(times[name]) / min(times["baseline"])
            print(f"{name:<22}{median:>10.3f}{median / args.steps * 1e6:>10.1f}"
                  f"{median / base:>8.3f}{paired:>8.3f}{fastest:>8.3f}   "
                  + " ".join(f"{t:.3f}" for t in times[name]))
    report_hook_cost(statistics.median(wall["baseline"]) / args.steps * 1e6, args.steps)
    print(f"step-interleaved (callback on even steps only, same fit, server up, median of 3 "
          f"fits): step {inter['on']:.1f} us with it, {inter['off']:.1f} us without; paired "
          f"difference median {inter['diff']:.2f} us, mean {inter['mean_diff']:.2f} us -> "
          f"ratio {inter['ratio']:.4f}; A/A (a callback never entered): paired difference "
          f"median {aa['diff']:.2f} us, mean {aa['mean_diff']:.2f} us -> ratio {aa['ratio']:.4f}")
    for label, times in (("wall", wall), ("CPU", cpu)):
        empty = statistics.median(times["empty callback"])
        up = statistics.median(times["mlops (server up)"]) / empty
        alone = statistics.median(times["mlops (no plugins)"]) / empty
        print(f"{label}: against the empty callback, ratio of medians: MLOpsCallback "
              f"(server up) {up:.3f}, (no plugins) {alone:.3f}")


def assert_no_port_clash(port: int) -> None:
    """The 'server down' port must still be closed, or that variant measured something else."""
    with socket.socket() as sock:
        if sock.connect_ex(("127.0.0.1", port)) == 0:
            print(f"warning: port {port} was open during the 'server down' variant",
                  file=sys.stderr)


def report_hook_cost(baseline_step_us: float, steps: int) -> None:
    durations = sorted(TimedMLOpsCallback.durations)
    if not durations:
        return
    median = statistics.median(durations) / 1000
    mean = statistics.fmean(durations) / 1000
    p99 = durations[int(len(durations) * 0.99)] / 1000
    print(f"\nMLOpsCallback.on_train_batch_end (server up), {len(durations)} calls (paused "
          f"between progress events): median {median:.2f} us, mean {mean:.2f} us, p99 "
          f"{p99:.2f} us; on average {sum(durations) / 1000 / steps:.2f} us a step, "
          f"{100 * sum(durations) / 1000 / steps / baseline_step_us:.3f}% of a baseline step")


if __name__ == "__main__":
    main()
