"""What the XGBoost and LightGBM ``MLOpsCallback`` cost a boosting run, against one without.

Small data (scikit-learn's breast cancer, one thread) and shallow trees make a boosting round
as cheap as it gets (a fraction of a millisecond), with an evaluation set: the worst case for
the callback's per-round cost. Each variant is timed **side by side** with a bare fit (no
callback): a pair runs the two fits one after the other, the order alternating from pair to
pair (ABAB, BABA, ...), and the pairs of all variants are interleaved, so a pair's two fits
see the same machine and the ratio of their times is free of the drift between repeats.
Variants:

* ``A/A``       - a second bare fit: the **noise floor** of the method (what a ratio of two
  identical fits spreads over on this machine, now);
* ``adapter``   - ``MLOpsCallback`` emitting to a no-op (the adapter and ``Run`` alone), with
  its defaults (``model_size=None``: these sub-second fits are not serialized);
* ``adapter, model_size`` - the same, always serializing the booster at the end;
* ``mlops``     - ``MLOpsCallback`` with the default plugins but the console, publishing to a
  real ``mlops-hooks serve`` process (tests/live_server.py): the publisher's thread sends
  the training's ten-odd events beside it.

For each, on the wall clock and on the process's CPU clock (every thread's CPU time: steadier
on a shared machine, where other processes stretch wall time; blind to time spent waiting),
the median of the pair ratios, their spread (lowest-highest, and the middle half)
and the median minus the A/A median (the cost above the noise floor). Then the callback's own
time, measured inside it with ``time.perf_counter_ns`` around its hooks in separate fits: per
round (µs, and as a share of a bare round), at the start, and at the end (with and without
``model_size``). Numbers are for reporting; nothing passes or fails.

Run from the repository root::

    .venv/bin/python benchmarks/boosting_overhead.py              # 1000 rounds, 15 pairs
    .venv/bin/python benchmarks/boosting_overhead.py --rounds 300 --repeats 5 --no-server
    .venv/bin/python benchmarks/boosting_overhead.py --data medium --rounds 300 --repeats 6
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
warnings.simplefilter("ignore")

import lightgbm as lgb  # noqa: E402
import xgboost as xgb  # noqa: E402
from sklearn.datasets import load_breast_cancer, make_classification  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from mlops_hooks.manager import reset_plugin_managers  # noqa: E402
from mlops_hooks.plugins.lightgbm import MLOpsCallback as LightGBMCallback  # noqa: E402
from mlops_hooks.plugins.xgboost import MLOpsCallback as XGBoostCallback  # noqa: E402
from tests.live_server import LiveServer  # noqa: E402

Fit = Callable[[list[Any]], None]
CALLBACKS: dict[str, Any] = {"xgboost": XGBoostCallback, "lightgbm": LightGBMCallback}
#: The hooks timed inside each callback: (called per round, at the start, at the end).
#: LightGBM's ``_before`` runs at the first iteration (the start; later ones only when the
#: callback could not join the loop); ``_complete`` runs inside ``_finish`` at the last one.
HOOKS = {"xgboost": ("after_iteration", "before_training", "after_training"),
         "lightgbm": ("_report _finish _before", "_before", "_complete")}


def _noop(event: object) -> None:
    """The ``emit`` of the ``adapter`` variants."""


def runners(rounds: int, data: str = "tiny") -> dict[str, Fit]:
    """One training per framework, taking the extra callbacks.

    ``tiny``: breast cancer and depth-2 trees (rounds of well under a millisecond, the worst
    case); ``medium``: 20,000 generated rows of 20 features and the libraries' default tree
    sizes (depth 6, 31 leaves: rounds of a few milliseconds, an everyday tabular fit).
    """
    if data == "tiny":
        x, y = load_breast_cancer(return_X_y=True)
        depth, leaves = 2, 4
    else:
        x, y = make_classification(n_samples=20_000, n_features=20, random_state=0)
        depth, leaves = 6, 31
    x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=0.25, random_state=0)
    dtrain, dval = xgb.DMatrix(x_train, y_train), xgb.DMatrix(x_val, y_val)
    xgb_params = {"objective": "binary:logistic", "max_depth": depth, "nthread": 1,
                  "eval_metric": "logloss"}
    ltrain = lgb.Dataset(x_train, y_train, free_raw_data=False)
    lval = lgb.Dataset(x_val, y_val, reference=ltrain)
    lgb_params = {"objective": "binary", "num_leaves": leaves, "num_threads": 1, "verbose": -1}

    def xgboost(extra: list[Any]) -> None:
        xgb.train(xgb_params, dtrain, rounds, evals=[(dval, "val")], verbose_eval=False,
                  callbacks=extra)

    def lightgbm(extra: list[Any]) -> None:
        lgb.train(lgb_params, ltrain, rounds, valid_sets=[lval], callbacks=extra)

    return {"xgboost": xgboost, "lightgbm": lightgbm}


def timed(run: Fit, extra: list[Any]) -> tuple[float, float]:
    """Wall and CPU seconds of one fit (the process's CPU time: every thread's).

    A collection first, so no fit pays for the previous one's garbage.
    """
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    run(extra)
    return time.perf_counter() - wall, time.process_time() - cpu


def variants(framework: str, server: bool) -> dict[str, Callable[[], list[Any]]]:
    """The extra callbacks of each variant (built before its fit is timed)."""
    make = CALLBACKS[framework]
    built: dict[str, Callable[[], list[Any]]] = {
        "A/A": list,
        "adapter": lambda: [make(emit=_noop)],
        "adapter, model_size": lambda: [make(emit=_noop, model_size=True)]}
    if server:
        built["mlops"] = lambda: [make()]
    return built


def paired_ratios(run: Fit, builds: dict[str, Callable[[], list[Any]]], repeats: int
                  ) -> dict[str, Any]:
    """``repeats`` pairs (bare fit, variant fit) per variant, interleaved; their ratios.

    Returns:
        ``{"wall": {variant: ratios}, "cpu": {variant: ratios}, "bare_ms": median bare fit}``.
    """
    names = list(builds)
    for build in builds.values():  # warm-up
        timed(run, build())
    timed(run, [])
    ratios: dict[str, dict[str, list[float]]] = {
        clock: {name: [] for name in names} for clock in ("wall", "cpu")}
    bare: list[float] = []
    pair = 0
    for repeat in range(repeats):
        for name in names[repeat % len(names):] + names[:repeat % len(names)]:
            extra = builds[name]()
            if pair % 2:  # B A
                mine = timed(run, extra)
                base = timed(run, [])
            else:  # A B
                base = timed(run, [])
                mine = timed(run, extra)
            pair += 1
            for index, clock in enumerate(("wall", "cpu")):
                ratios[clock][name].append(mine[index] / base[index])
            bare.append(base[0])
    return {**ratios, "bare_ms": statistics.median(bare) * 1e3}


@contextlib.contextmanager
def probed(callback: Any, names: set[str]) -> Iterator[dict[str, list[int]]]:
    """Time each call of ``callback``'s methods ``names`` (nanoseconds, per call).

    The timers are instance attributes hiding the methods, so the callback's own calls
    (``self._report``) go through them too.
    """
    calls: dict[str, list[int]] = {name: [] for name in names}
    now = time.perf_counter_ns
    for name in names:
        method = getattr(callback, name)

        def timer(*args: Any, _method: Any = method, _out: list[int] = calls[name],
                  **kwargs: Any) -> Any:
            start = now()
            try:
                return _method(*args, **kwargs)
            finally:
                _out.append(now() - start)

        setattr(callback, name, timer)
    yield calls


def hook_costs(framework: str, run: Fit, rounds: int, repeats: int, model_size: bool
               ) -> dict[str, float]:
    """The callback's own time: µs per round, ms at the start and at the end (medians)."""
    per_round, start, end = HOOKS[framework]
    names = set(per_round.split()) | {start, end}
    samples: dict[str, list[float]] = {"round_us": [], "start_ms": [], "end_ms": []}
    for _ in range(repeats + 1):  # the first is a warm-up
        callback = CALLBACKS[framework](emit=_noop, model_size=model_size)
        with probed(callback, names) as calls:
            gc.collect()
            run([callback])
        first, last = calls[start][0], sum(calls[end])
        inside = sum(sum(calls[name]) for name in per_round.split())
        if start in per_round.split():
            inside -= first
        if framework == "lightgbm":  # _complete runs inside _finish
            inside -= last
        samples["round_us"].append(inside / rounds / 1e3)
        samples["start_ms"].append(first / 1e6)
        samples["end_ms"].append(last / 1e6)
    return {key: statistics.median(values[1:]) for key, values in samples.items()}


def summary(ratios: list[float]) -> dict[str, float]:
    """Median, lowest, highest and the middle half of ``ratios``."""
    quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
    return {"median": statistics.median(ratios), "low": min(ratios), "high": max(ratios),
            "q1": quartiles[0], "q3": quartiles[2]}


def measure(framework: str, run: Fit, rounds: int, repeats: int, server: bool
            ) -> dict[str, Any]:
    """Every figure of one framework."""
    paired = paired_ratios(run, variants(framework, server), repeats)
    return {"rounds": rounds, "pairs": repeats, "bare_ms": paired["bare_ms"],
            "ratios": {clock: {name: summary(r) for name, r in paired[clock].items()}
                       for clock in ("wall", "cpu")},
            "raw": {clock: paired[clock] for clock in ("wall", "cpu")},
            "callback": {
                "model_size": hook_costs(framework, run, rounds, repeats, True),
                "no model_size": hook_costs(framework, run, rounds, repeats, False)}}


def report(framework: str, r: dict[str, Any]) -> list[str]:
    """Text lines of a :func:`measure` result."""
    bare_round = r["bare_ms"] / r["rounds"] * 1e3
    lines = [f"{framework}: {r['rounds']} rounds, bare fit {r['bare_ms']:.1f} ms "
             f"({bare_round:.0f} µs a round, its fixed costs included); {r['pairs']} side-by-side "
             f"pairs per variant"]
    for clock, label in (("wall", "wall time"), ("cpu", "CPU time (all threads)")):
        lines.append(f"  {label}:")
        floor = r["ratios"][clock]["A/A"]["median"]
        for name, s in r["ratios"][clock].items():
            above = "  (the noise floor)" if name == "A/A" else \
                f"  {(s['median'] - floor) * 100:+.1f}% over the floor"
            lines.append(f"    {name:24} ratio {s['median']:.3f}  spread {s['low']:.3f}-"
                         f"{s['high']:.3f}  middle half {s['q1']:.3f}-{s['q3']:.3f}{above}")
    for label, c in r["callback"].items():
        lines.append(f"  callback ({label}): {c['round_us']:.2f} µs a round "
                     f"({c['round_us'] / bare_round * 100:.2f}% of a bare round), start "
                     f"{c['start_ms']:.2f} ms, end {c['end_ms']:.2f} ms")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--data", choices=("tiny", "medium"), default="tiny",
                        help="tiny: the worst case (default); medium: 20,000 rows, default trees")
    parser.add_argument("--repeats", type=int, default=15, help="pairs per variant")
    parser.add_argument("--framework", choices=sorted(CALLBACKS), action="append",
                        help="only this one (repeatable); default both")
    parser.add_argument("--no-server", action="store_true", help="leave out the mlops variant")
    parser.add_argument("--json", metavar="PATH", help="also write the raw results here")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        if not args.no_server:
            server = stack.enter_context(LiveServer(Path(tmp), extra_args=[
                "--metrics-interval", "0", "--stall-timeout", "0"]))
            os.environ["MLOPS_HOOKS_URL"] = server.ws_url
        os.environ["MLOPS_HOOKS_DISABLE"] = "jsonl,console"
        reset_plugin_managers()
        for framework, run in runners(args.rounds, args.data).items():
            if args.framework and framework not in args.framework:
                continue
            results[framework] = measure(framework, run, args.rounds, args.repeats,
                                         not args.no_server)
            print("\n".join(report(framework, results[framework])), flush=True)
        reset_plugin_managers()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
