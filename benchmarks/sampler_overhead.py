"""What the training machine's sampler (``host_metrics``) costs the training thread.

The sampler runs in the publisher's background thread, never the training thread; what it can
cost training is CPU and the GIL while it reads psutil (and NVML) every
``MLOPS_HOOKS_SYSTEM_INTERVAL`` seconds. Measured with the step-interleaved method of
``callback_overhead.py``: one Lightning fit (``Linear(8, 1)``, batch size 1, ``MLOpsCallback``
publishing to a real ``mlops-hooks serve``) with the sampler at a short interval (``--interval``,
0.05 s: 200 times the default 10 s), switched on and off in alternating blocks of ``--block``
steps (the publisher thread's ``tick`` is swapped for a no-op on "off" blocks). Neighbouring
blocks see the same machine, so the ratio of their mean step times (means: a sample's cost
falls on the few steps it overlaps) is the sampler's cost free of the drift between fits. The
same fit with ``MLOPS_HOOKS_SYSTEM_INTERVAL=0`` toggled the same way is the A/A control: the
method's own noise floor. Every figure is the median over ``--fits`` fits of each kind, run
interleaved, with the spread (lowest-highest) across them.

Usage::

    .venv/bin/python benchmarks/sampler_overhead.py            # about 2 minutes
    .venv/bin/python benchmarks/sampler_overhead.py --quick    # 1,500 steps, 3 fits

Nothing here passes or fails a build; numbers depend on the machine (and its load).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import callback_overhead as co  # noqa: E402
import lightning.pytorch as L  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from mlops_hooks.manager import get_plugin_manager  # noqa: E402
from mlops_hooks.plugins.lightning import MLOpsCallback  # noqa: E402
from tests.live_server import LiveServer  # noqa: E402

Log = Callable[[str], None]
INTERVAL_ENV = "MLOPS_HOOKS_SYSTEM_INTERVAL"


def _log(text: str) -> None:
    print(f"  {text}", file=sys.stderr, flush=True)


def _sampler() -> Any:
    """The publisher thread's sampler (``None`` until the publisher has started)."""
    plugin = get_plugin_manager("training").get_plugin("publisher")
    worker = getattr(plugin, "_worker", None)
    return getattr(worker, "system", None)


class BlockToggle(L.Callback):
    """Switches the sampler on and off every ``block`` steps, and marks each step's start."""

    def __init__(self, block: int) -> None:
        self.block = block
        self.marks: list[float] = []
        #: Samples taken during "on" and "off" blocks (proof of the toggle: "off" stays 0).
        self.samples = {"on": 0, "off": 0}
        self._on = True
        self._sampler: Any = None

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any,
                             batch_idx: int) -> None:
        self.marks.append(time.perf_counter())
        if batch_idx % self.block:
            return
        if self._sampler is None:
            self._sampler = _sampler()
            if self._sampler is None:
                return
            sample = self._sampler.sample

            def counted(out: Any) -> None:
                self.samples["on" if self._on else "off"] += 1
                sample(out)

            self._sampler.sample = counted
        on = self._on = (batch_idx // self.block) % 2 == 0
        # the worker looks the method up at every turn: "off" blocks call a no-op
        if on:
            self._sampler.__dict__.pop("tick", None)
        else:
            self._sampler.tick = _idle

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if self._sampler is not None:
            self._sampler.__dict__.pop("tick", None)
            self._on = True

    def cost(self) -> dict[str, float]:
        """Mean step time of "on" and "off" blocks (µs) and the paired ratio of neighbours."""
        steps = [b - a for a, b in zip(self.marks, self.marks[1:], strict=False)]
        blocks = [steps[i:i + self.block] for i in range(0, len(steps), self.block)]
        blocks = [b for b in blocks if len(b) == self.block]
        pairs = [(statistics.fmean(blocks[i]), statistics.fmean(blocks[i + 1]))
                 for i in range(2, len(blocks) - 1, 2)]  # "on" block, then "off"; skip warm-up
        return {"on": statistics.median(p[0] for p in pairs) * 1e6,
                "off": statistics.median(p[1] for p in pairs) * 1e6,
                "ratio": statistics.median(p[0] / p[1] for p in pairs),
                "pairs": len(pairs)}


def _idle(inbox: Any) -> None:
    """The sampler's ``tick`` on "off" blocks."""


def measure(steps: int, fits: int, block: int, interval: float, log: Log = _log
            ) -> dict[str, Any]:
    """Interleaved fits: sampler toggled at ``interval`` (on) and at 0 (A/A)."""
    torch.set_num_threads(1)
    data = TensorDataset(torch.randn(steps, 8), torch.randn(steps, 1))
    loader = DataLoader(data, batch_size=1, shuffle=False)
    results: dict[str, list[dict[str, float]]] = {"sampler": [], "aa": []}
    saved = {k: os.environ.get(k) for k in (INTERVAL_ENV, "MLOPS_HOOKS_URL",
                                             "MLOPS_HOOKS_DISABLE")}
    with tempfile.TemporaryDirectory() as tmp, \
            LiveServer(Path(tmp), extra_args=["--metrics-interval", "0",
                                              "--stall-timeout", "0"]) as server:
        try:
            for i in range(fits * 2 + 2):  # one warm-up fit of each kind first
                kind = ("sampler", "aa")[(i + i // 2) % 2]  # the order alternates every round
                os.environ[INTERVAL_ENV] = str(interval) if kind == "sampler" else "0"
                with co.publishing_to(server.ws_url):
                    toggle = BlockToggle(block)
                    co.fit_once(loader, [toggle, MLOpsCallback(f"sampler-{kind}")], False)
                if i < 2:
                    continue
                results[kind].append({**toggle.cost(), **{f"samples_{k}": float(v) for k, v
                                                           in toggle.samples.items()}})
                log(f"{kind:8} fit {len(results[kind])}: ratio {results[kind][-1]['ratio']:.4f} "
                    f"(on {results[kind][-1]['on']:.1f} µs, off {results[kind][-1]['off']:.1f} "
                    f"µs a step)")
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        with urllib.request.urlopen(f"{server.http_url}/api/runs?limit=500",
                                       timeout=10) as reply:
            runs = json.load(reply)["runs"]
        sampled = sum(1 for run in runs if any(k.startswith("system/")
                                                for k in run["last_metrics"]))
    out: dict[str, Any] = {"steps": steps, "fits": fits, "block": block, "interval": interval,
                           "runs_with_system_series": sampled, "runs": len(runs)}
    for kind, costs in results.items():
        ratios = [c["ratio"] for c in costs]
        out[kind] = {"ratio": statistics.median(ratios), "low": min(ratios),
                     "high": max(ratios), "on_us": statistics.median(c["on"] for c in costs),
                     "off_us": statistics.median(c["off"] for c in costs),
                     "pairs": costs[0]["pairs"], "ratios": ratios,
                     "samples_on": sum(c["samples_on"] for c in costs),
                     "samples_off": sum(c["samples_off"] for c in costs)}
    return out


def report(r: dict[str, Any]) -> list[str]:
    """Text lines of a :func:`measure` result."""
    s, aa = r["sampler"], r["aa"]
    return [
        f"sampler cost to the training thread: {r['steps']:,} steps at batch size 1, sampler "
        f"at {r['interval']} s toggled every {r['block']} steps, {r['fits']} interleaved fits "
        f"of each kind ({s['pairs']} block pairs a fit)",
        f"  sampler on/off : ratio {s['ratio']:.4f} (spread {s['low']:.4f}-{s['high']:.4f}); "
        f"step {s['on_us']:.1f} µs on, {s['off_us']:.1f} µs off",
        f"  A/A (interval 0): ratio {aa['ratio']:.4f} (spread {aa['low']:.4f}-{aa['high']:.4f});"
        f" the method's noise floor",
        f"  samples taken: {s['samples_on']:.0f} in 'on' blocks, {s['samples_off']:.0f} in "
        f"'off' blocks (A/A: {aa['samples_on']:.0f} / {aa['samples_off']:.0f})",
        f"  runs with system/ series on the server: {r['runs_with_system_series']} of "
        f"{r['runs']} (the sampler fits, warm-up included, and none of the A/A ones)",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,500 steps, 3 fits of each")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--fits", type=int, default=5)
    parser.add_argument("--block", type=int, default=100, help="steps per on/off block")
    parser.add_argument("--interval", type=float, default=0.05, help="sampler seconds")
    parser.add_argument("--json", metavar="PATH", help="also write the raw results here")
    args = parser.parse_args()
    steps, fits = (1500, 3) if args.quick else (args.steps, args.fits)
    result = measure(steps, fits, args.block, args.interval)
    print("\n".join(report(result)))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
