"""The demo's scikit-learn run: a ``GridSearchCV`` over a scaled logistic regression.

The public ``MLOpsCallback`` is set on the search (``set_callbacks``), which scikit-learn
propagates to the pipeline and its steps; with ``n_jobs=2`` the worker processes report their
fits to the main process over scikit-learn's own callback transport.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from mlops_hooks.cli.demo._data import Digits
from mlops_hooks.plugins.sklearn import MLOpsCallback

__all__ = ["Searched", "predictor", "search"]


@dataclass(frozen=True)
class Searched:
    """The refitted best pipeline, its test accuracy and the winning parameters."""

    estimator: Any
    accuracy: float
    best_params: dict[str, Any]
    fits: int


def _jobs(wanted: int) -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, min(wanted, cores))


def search(data: Digits, *, grid_c: tuple[float, ...], cv: int, model_id: str,
           n_jobs: int = 2) -> Searched:
    """Grid-search ``C`` of a ``StandardScaler`` + ``LogisticRegression`` pipeline.

    Returns:
        The best pipeline (refitted on the training split) and its test accuracy.
    """
    pipeline = Pipeline([("scale", StandardScaler()),
                         ("logreg", LogisticRegression(max_iter=2000))])
    grid = GridSearchCV(pipeline, {"logreg__C": list(grid_c)}, cv=cv, n_jobs=_jobs(n_jobs))
    grid.set_callbacks(MLOpsCallback("Digits LogReg grid search", model_id=model_id,
                                     validation_data=(data.x_test, data.y_test)))
    grid.fit(data.x_train, data.y_train)
    return Searched(grid.best_estimator_, float(grid.score(data.x_test, data.y_test)),
                    dict(grid.best_params_), len(grid_c) * cv)


def predictor(estimator: Any) -> Callable[[np.ndarray[Any, Any]], int]:
    """A function that classifies one image (a row of 64 pixels), as a service would."""

    def predict(features: np.ndarray[Any, Any]) -> int:
        return int(estimator.predict(np.asarray(features)[None])[0])

    return predict
