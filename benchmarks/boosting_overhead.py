"""What the XGBoost and LightGBM ``MLOpsCallback`` cost a boosting run, against one without.

Small data (scikit-learn's breast cancer, one thread) and shallow trees make a boosting round
as cheap as it gets (a fraction of a millisecond), with an evaluation set, so every round
sends an event: the worst case for the callback's per-round cost. Variants, interleaved (the
order rotates every repeat, after one warm-up run each):

* ``baseline``  - no callback;
* ``adapter``   - ``MLOpsCallback`` emitting to a no-op (the adapter and ``Run`` alone);
* ``adapter, no model_size`` - the same without serializing the booster at the end;
* ``mlops``     - ``MLOpsCallback`` with the default plugins but the console, publishing to a
  real ``mlops-hooks serve`` process (tests/live_server.py): the publisher's thread sends
  the training's ten-odd events beside it.

The report gives per framework the median wall time per variant, the ratio of medians and the
median of the ratios of runs side by side in the same repeat. Numbers are for reporting;
nothing passes or fails.

Run from the repository root::

    .venv/bin/python benchmarks/boosting_overhead.py              # 300 rounds, 7 repeats
    .venv/bin/python benchmarks/boosting_overhead.py --rounds 1000 --repeats 9
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
warnings.simplefilter("ignore")

import lightgbm as lgb  # noqa: E402
import xgboost as xgb  # noqa: E402
from sklearn.datasets import load_breast_cancer  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from mlops_hooks.manager import reset_plugin_managers  # noqa: E402
from mlops_hooks.plugins.lightgbm import MLOpsCallback as LightGBMCallback  # noqa: E402
from mlops_hooks.plugins.xgboost import MLOpsCallback as XGBoostCallback  # noqa: E402
from tests.live_server import LiveServer  # noqa: E402


def runners(rounds: int) -> dict[str, Callable[[list[Any]], None]]:
    """One training per framework, taking the extra callbacks."""
    x, y = load_breast_cancer(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=0.25, random_state=0)
    dtrain, dval = xgb.DMatrix(x_train, y_train), xgb.DMatrix(x_val, y_val)
    xgb_params = {"objective": "binary:logistic", "max_depth": 2, "nthread": 1,
                  "eval_metric": "logloss"}
    ltrain = lgb.Dataset(x_train, y_train, free_raw_data=False)
    lval = lgb.Dataset(x_val, y_val, reference=ltrain)
    lgb_params = {"objective": "binary", "num_leaves": 4, "num_threads": 1, "verbose": -1}

    def xgboost(extra: list[Any]) -> None:
        xgb.train(xgb_params, dtrain, rounds, evals=[(dval, "val")], verbose_eval=False,
                  callbacks=extra)

    def lightgbm(extra: list[Any]) -> None:
        lgb.train(lgb_params, ltrain, rounds, valid_sets=[lval], callbacks=extra)

    return {"xgboost": xgboost, "lightgbm": lightgbm}


def timed(run: Callable[[list[Any]], None], extra: list[Any]) -> float:
    start = time.perf_counter()
    run(extra)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    callbacks = {"xgboost": XGBoostCallback, "lightgbm": LightGBMCallback}
    with tempfile.TemporaryDirectory() as tmp, LiveServer(
            Path(tmp), extra_args=["--metrics-interval", "0", "--stall-timeout", "0"]) as server:
        os.environ["MLOPS_HOOKS_URL"] = server.ws_url
        os.environ["MLOPS_HOOKS_DISABLE"] = "jsonl,console"
        reset_plugin_managers()
        for framework, run in runners(args.rounds).items():
            make = callbacks[framework]
            variants: dict[str, Callable[[], list[Any]]] = {
                "baseline": list,
                "adapter": lambda make=make: [make(emit=lambda event: None)],
                "adapter, no model_size": lambda make=make: [
                    make(emit=lambda event: None, model_size=False)],
                "mlops": lambda make=make: [make()]}
            for build in variants.values():  # warm-up
                timed(run, build())
            times: dict[str, list[float]] = {name: [] for name in variants}
            names = list(variants)
            for repeat in range(args.repeats):
                for name in names[repeat % 4:] + names[:repeat % 4]:
                    times[name].append(timed(run, variants[name]()))
            base = times["baseline"]
            report = [f"{framework}: {args.rounds} rounds, baseline median "
                      f"{statistics.median(base) * 1e3:.1f} ms"]
            for name in names[1:]:
                mine = times[name]
                ratios = [m / b for m, b in zip(mine, base, strict=True)]
                report.append(f"{name} {statistics.median(mine) * 1e3:.1f} ms (ratio of medians "
                              f"{statistics.median(mine) / statistics.median(base):.3f}, "
                              f"median ratio {statistics.median(ratios):.3f})")
            print("; ".join(report))
        reset_plugin_managers()


if __name__ == "__main__":
    main()
