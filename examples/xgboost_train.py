"""XGBoost: boosting rounds streamed live, with every evaluation result as a series.

``XGBClassifier(callbacks=[MLOpsCallback(...)])`` is enough: progress counts the rounds of
``n_estimators``, each round's ``validation_0-logloss`` / ``validation_0-error`` becomes a
series of the run (``/runs/<id>`` on the dashboard), and early stopping completes the run
early with ``stop_reason: "early_stopping"``.

Run a server first (``mlops-hooks serve``), then::

    python examples/xgboost_train.py
"""

from __future__ import annotations

import argparse

from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split
from xgboost import XGBClassifier

from mlops_hooks.plugins.xgboost import MLOpsCallback


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=200, help="n_estimators")
    parser.add_argument("--early-stopping", type=int, default=10, metavar="ROUNDS",
                        help="early_stopping_rounds (0: off)")
    args = parser.parse_args()

    x, y = load_breast_cancer(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=0.25, stratify=y,
                                                      random_state=0)
    model = XGBClassifier(
        n_estimators=args.rounds, learning_rate=0.3, max_depth=3,
        eval_metric=["logloss", "error"], n_jobs=1,
        early_stopping_rounds=args.early_stopping or None,
        # throttle=0: every round is a point of the series (the default, 0.25 s, samples a
        # fast training at four rounds a second and always sends the last one)
        callbacks=[MLOpsCallback("cancer-xgb (XGBoost example)", throttle=0,
                                 model_id="cancer_xgb", params={"dataset": "breast_cancer"})])
    model.fit(x_train, y_train, eval_set=[(x_val, y_val)], verbose=False)
    rounds = model.get_booster().num_boosted_rounds()
    print(f"{rounds} rounds, validation accuracy {model.score(x_val, y_val):.3f}")


if __name__ == "__main__":
    main()
