"""LightGBM: iterations streamed live, evaluation results as series, early stopping.

``lightgbm.train(..., callbacks=[MLOpsCallback(...)])`` (or ``LGBMClassifier.fit(...,
callbacks=[...])``) is enough: progress counts the iterations, each one's
``valid-multi_logloss`` / ``valid-multi_error`` becomes a series of the run, and
``lightgbm.early_stopping`` completes the run early with ``stop_reason: "early_stopping"``.

Run a server first (``mlops-hooks serve``), then::

    python examples/lightgbm_train.py
"""

from __future__ import annotations

import argparse

import lightgbm
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from mlops_hooks.plugins.lightgbm import MLOpsCallback


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=150, help="num_boost_round")
    parser.add_argument("--early-stopping", type=int, default=10, metavar="ROUNDS",
                        help="lightgbm.early_stopping rounds (0: off)")
    args = parser.parse_args()

    x, y = load_digits(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=0.25, stratify=y,
                                                      random_state=0)
    train_set = lightgbm.Dataset(x_train, y_train)
    valid_set = lightgbm.Dataset(x_val, y_val, reference=train_set)
    params = {"objective": "multiclass", "num_class": 10, "metric": ["multi_logloss",
              "multi_error"], "learning_rate": 0.1, "num_leaves": 15, "num_threads": 1,
              "verbose": -1}
    # throttle=0: every iteration is a point of the series (the default, 0.25 s, samples a
    # fast training at four iterations a second and always sends the last one)
    callbacks: list = [MLOpsCallback("digits-lgbm (LightGBM example)", throttle=0,
                                     model_id="digits_lgbm")]
    if args.early_stopping:
        callbacks.append(lightgbm.early_stopping(args.early_stopping, verbose=False))
    booster = lightgbm.train(params, train_set, num_boost_round=args.rounds,
                             valid_sets=[valid_set], valid_names=["valid"], callbacks=callbacks)
    accuracy = (booster.predict(x_val).argmax(axis=1) == y_val).mean()
    print(f"{booster.current_iteration()} iterations, validation accuracy {accuracy:.3f}")


if __name__ == "__main__":
    main()
