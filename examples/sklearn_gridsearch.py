"""scikit-learn 1.9: a GridSearchCV streamed live through the callback protocol.

``set_callbacks(MLOpsCallback(...))`` on the search is enough: scikit-learn hands the callback
to the pipeline and its steps, and with ``n_jobs > 1`` the worker processes report their fits
to the main process. Progress counts the fits ("12/20 fits, 340 iterations"); completion
carries the score on ``validation_data``.

Run a server first (``mlops-hooks serve``), then::

    python examples/sklearn_gridsearch.py
"""

from __future__ import annotations

import argparse

from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlops_hooks.plugins.sklearn import MLOpsCallback


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cv", type=int, default=5)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--grid", type=float, nargs="+", default=[0.01, 0.1, 1.0, 10.0],
                        metavar="C", help="values of C to try")
    args = parser.parse_args()

    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, stratify=y,
                                                        random_state=0)
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    search = GridSearchCV(pipeline, {"logisticregression__C": args.grid}, cv=args.cv,
                          n_jobs=args.n_jobs)
    search.set_callbacks(MLOpsCallback("digits-logreg (scikit-learn example)",
                                       model_id="digits_logreg_sklearn",
                                       validation_data=(x_test, y_test)))
    search.fit(x_train, y_train)
    print(f"best {search.best_params_}, test accuracy {search.score(x_test, y_test):.3f}")


if __name__ == "__main__":
    main()
