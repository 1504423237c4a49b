"""Monitoring for scikit-learn estimators without callback support, and completion scores.

:func:`monitored_fit` wraps ``estimator.fit`` (or ``partial_fit`` over epochs) in a
:class:`~mlops_hooks.run.Run`: start, progress, completion with the validation score and the
model's size, and failure with the stage and progress (the exception is re-raised unchanged).
"""

from __future__ import annotations

import copy
from typing import Any

from mlops_hooks.plugins._support import base as _base
from mlops_hooks.plugins._support.base import check_emit, check_name, fraction
from mlops_hooks.run import Emit, Run, signals
from mlops_hooks.run.params import probe_git, resolve_group, resolve_group_size, send_params

__all__ = ["completion_scores", "monitored_fit", "pickled_size"]

_ACCURACY_SCORERS = (None, "accuracy", "balanced_accuracy")


#: What scikit-learn keeps on an estimator only while its fit runs; the callbacks' ``teardown``
#: (where the size is taken) still sees them, a saved model never does.
_FIT_TIME_ATTRIBUTES = ("_callback_fit_ctx", "_skl_callbacks_to_teardown")


def _as_saved(estimator: Any) -> Any:
    """``estimator`` as it is once its fit has returned (a shallow copy without fit-time state)."""
    state = getattr(estimator, "__dict__", None)
    if not isinstance(state, dict) or not any(name in state for name in _FIT_TIME_ATTRIBUTES):
        return estimator
    saved = copy.copy(estimator)
    for name in _FIT_TIME_ATTRIBUTES:
        saved.__dict__.pop(name, None)
    return saved


def pickled_size(estimator: Any) -> int | None:
    """Bytes of the pickled estimator (what a deployment loads), counted, never kept.

    The state scikit-learn holds on the estimator only during its fit is left out.
    """
    return _base.pickled_size(_as_saved(estimator))


def _get_params(estimator: Any) -> dict[str, Any]:
    """``get_params(deep=True)``, or nothing when the estimator cannot tell (never raises)."""
    try:
        return dict(estimator.get_params(deep=True))
    except Exception:
        return {}


def _is_classifier(estimator: Any) -> bool:
    from sklearn.base import is_classifier

    return bool(is_classifier(estimator))


def completion_scores(estimator: Any, validation_data: Any,
                      run: Run) -> tuple[float | None, float | None]:
    """``(final_accuracy, validation_score)`` of a fitted estimator.

    A search reports its ``best_score_`` (an accuracy when scored by accuracy); with
    ``validation_data`` the estimator's own ``score`` on it (accuracy for classifiers) wins.
    """
    accuracy: float | None = None
    score: Any = getattr(estimator, "best_score_", None)
    if score is not None and getattr(estimator, "scoring", None) in _ACCURACY_SCORERS \
            and _is_classifier(estimator):
        accuracy = fraction(score)
    if validation_data is not None:
        run.stage("validation")
        score = estimator.score(*validation_data)
        accuracy = fraction(score) if _is_classifier(estimator) else None
    return accuracy, score


def monitored_fit(
    estimator: Any,
    X: Any,
    y: Any = None,
    *,
    name: str | None = None,
    validation_data: tuple[Any, Any] | None = None,
    epochs: int | None = None,
    classes: Any = None,
    model_id: str | None = None,
    run_id: str | None = None,
    emit: Emit | None = None,
    **fit_params: Any,
) -> Any:
    """Fit ``estimator`` and report the run, for estimators without callback support.

    With ``epochs``, the estimator is trained with ``partial_fit`` for that many passes and
    progress moves per epoch; otherwise ``fit`` is one step (0% then 100%). The run's
    ``run_params`` carries ``get_params(deep=True)`` (group: ``MLOPS_HOOKS_GROUP``).

    Args:
        estimator: Any scikit-learn compatible estimator.
        X: Training data.
        y: Training targets.
        name: What is trained, shown on the dashboard; defaults to the estimator's class.
        validation_data: ``(X_val, y_val)`` scored at the end (``final_accuracy`` for
            classifiers, ``validation_score`` always); each epoch's score too with ``epochs``.
        epochs: Passes of ``partial_fit`` (the estimator must have it).
        classes: All class labels, for the first ``partial_fit`` of a classifier.
        model_id: Identifier of the produced model.
        run_id: Identifier of the run (generated when omitted).
        emit: Where events go; defaults to the process's plugin manager.
        **fit_params: Passed to ``fit``/``partial_fit``.

    Returns:
        The fitted estimator.

    Raises:
        ValueError: ``epochs`` is not a positive integer, a name is empty, or
            ``MLOPS_HOOKS_GROUP_SIZE`` is not a positive integer.
        TypeError: ``epochs`` is given but the estimator has no ``partial_fit``.

    Example:
        >>> monitored_fit(SVC(), X, y, validation_data=(X_val, y_val))  # doctest: +SKIP
    """
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int)
                               or epochs <= 0):
        raise ValueError(f"epochs must be a positive integer or None, got {epochs!r}")
    if epochs is not None and not hasattr(estimator, "partial_fit"):
        raise TypeError(f"epochs needs an estimator with partial_fit; "
                        f"{type(estimator).__name__} has none (leave epochs=None to use fit)")
    planned = resolve_group_size(None)  # MLOPS_HOOKS_GROUP_SIZE, checked before the fit
    probe_git()
    run = Run(check_name(name) or type(estimator).__name__, total_epochs=epochs,
              total_steps=None if epochs else 1, run_id=check_name(run_id),
              model_id=check_name(model_id), emit=check_emit(emit))
    with run, signals.watching(run):  # SIGTERM: reported as killed, then the default
        send_params(run, _get_params(estimator), group=resolve_group(None),
                    group_size=planned)
        run.stage("model_training")
        if epochs is None:
            estimator.fit(X, y, **fit_params)
            run.step()
        else:
            for epoch in range(epochs):
                run.epoch_start(epoch)
                if epoch == 0 and classes is not None:
                    estimator.partial_fit(X, y, classes=classes, **fit_params)
                else:
                    estimator.partial_fit(X, y, **fit_params)
                score = estimator.score(*validation_data) if validation_data else None
                run.epoch_end(epoch, accuracy=score if _is_classifier(estimator) else None,
                              metrics={"val_score": score} if score is not None else None)
        accuracy, score = completion_scores(estimator, validation_data, run)
        run.complete(final_accuracy=accuracy, validation_score=score,
                     model_size=pickled_size(estimator))
    return estimator
