"""An XGBoost or LightGBM training that streams to ``MLOPS_HOOKS_URL`` and can be stopped.

Run as a script by ``test_boosting_stop_live.py``: ``python boosting_stop_run.py FRAMEWORK
RESULT`` with FRAMEWORK ``xgboost`` or ``lightgbm``. Each round sleeps ``STEP_SLEEP`` seconds
in a callback of its own, so ``ROUNDS`` rounds last long enough to be stopped; ``RESULT``
receives how many rounds were trained.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from tests.control.stop_run import write_result

RUN_ID = os.environ.get("RUN_ID", "stop-boosting")
ROUNDS = int(os.environ.get("ROUNDS", "3000"))
STEP_SLEEP = float(os.environ.get("STEP_SLEEP", "0.02"))


def _data() -> Any:
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    x, y = load_breast_cancer(return_X_y=True)
    return train_test_split(x, y, test_size=0.25, random_state=0)


def xgboost() -> dict[str, Any]:
    import xgboost as xgb

    from mlops_hooks.plugins.xgboost import MLOpsCallback

    class SlowRounds(xgb.callback.TrainingCallback):
        def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            time.sleep(STEP_SLEEP)
            return False

    x_train, x_val, y_train, y_val = _data()
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 2, "nthread": 1},
                        xgb.DMatrix(x_train, y_train), ROUNDS,
                        evals=[(xgb.DMatrix(x_val, y_val), "val")], verbose_eval=False,
                        callbacks=[SlowRounds(), MLOpsCallback("stop-xgboost", run_id=RUN_ID)])
    return {"rounds": booster.num_boosted_rounds()}


def lightgbm() -> dict[str, Any]:
    import lightgbm as lgb

    from mlops_hooks.plugins.lightgbm import MLOpsCallback

    def slow_rounds(env: Any) -> None:
        time.sleep(STEP_SLEEP)

    x_train, x_val, y_train, y_val = _data()
    train = lgb.Dataset(x_train, y_train)
    booster = lgb.train({"objective": "binary", "num_leaves": 4, "num_threads": 1,
                         "verbose": -1}, train, ROUNDS,
                        valid_sets=[lgb.Dataset(x_val, y_val, reference=train)],
                        callbacks=[slow_rounds, MLOpsCallback("stop-lightgbm", run_id=RUN_ID)])
    return {"rounds": booster.current_iteration()}


def main() -> None:
    framework, result_path = sys.argv[1], sys.argv[2]
    write_result({"xgboost": xgboost, "lightgbm": lightgbm}[framework](), result_path)


if __name__ == "__main__":
    main()
