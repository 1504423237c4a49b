"""Serving: announce a deployment and report prediction traffic.

``mlops_hooks.deploy()`` sends ``model_deployed``; a ``PredictionMonitor`` wrapped around the
predict function counts requests and failures and reports ``prediction_volume`` (totals,
per-minute rate, milestones) and ``model_status_change`` (active, error when too many requests
fail, inactive when idle or closed). Counting costs the request path a lock and a few integer
operations; events are built on a background thread.

Run a server first (``mlops-hooks serve``), then::

    python examples/serving.py --requests 3000
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

import mlops_hooks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=500.0, help="requests per second")
    args = parser.parse_args()

    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x / 16.0, y, test_size=0.2,
                                                        random_state=0)
    model = LogisticRegression(max_iter=1000).fit(x_train, y_train)
    accuracy = model.score(x_test, y_test)

    model_id = "digits_logreg_serving_example"
    mlops_hooks.deploy("Digits Classifier (serving example)", "v1.0", accuracy,
                       model_id=model_id)

    with mlops_hooks.PredictionMonitor(model_id, interval=1.0) as monitor:

        @monitor
        def predict(features: np.ndarray) -> int:
            return int(model.predict(features.reshape(1, -1))[0])

        failed = 0
        start = time.monotonic()
        for i in range(args.requests):
            features = x_test[i % len(x_test)]
            if i % 100 == 99:
                features = features[:-1]  # now and then a client sends a broken request
            try:
                predict(features)
            except ValueError:
                failed += 1
            delay = start + (i + 1) / args.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    print(f"served {args.requests} requests ({failed} failed), model accuracy {accuracy:.3f}")


if __name__ == "__main__":
    main()
