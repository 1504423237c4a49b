"""What the XGBoost, LightGBM and Optuna adapters share: frames, guards, scores, copies.

These frameworks tell their callbacks less than Lightning or Keras do, so the adapters learn
the rest from where they are called:

* :class:`Portable` lets a callback be pickled and copied without its runs;
* :class:`BoosterFit` holds a fit's run and :class:`MethodGuard`, and ends both on a failure;
* :func:`caller_locals` reads the locals of the framework's training loop (``num_boost_round``
  of ``xgboost.train``, the callback lists of ``lightgbm.train``, ``n_trials`` of Optuna);
* :class:`MethodGuard` wraps a booster's methods for one fit so an exception inside them (a
  custom objective or metric that raises) is reported as the run's failure, then re-raised
  unchanged;
* :func:`eval_metrics` and :func:`error_accuracy` turn evaluation results into metric names
  (``validation_0-logloss``) and an accuracy (``1 - error``).
"""

from __future__ import annotations

import pickle
import sys
from collections.abc import Callable, Iterable, Mapping
from types import FrameType
from typing import Any

from mlops_hooks.formatting import to_float
from mlops_hooks.plugins._support import open_runs
from mlops_hooks.plugins._support.base import FailsOnExit
from mlops_hooks.run import Emit, Run

__all__ = ["BoosterFit", "MethodGuard", "Portable", "caller_locals", "error_accuracy",
           "eval_metrics", "positive_count", "size_choice", "wants_size"]

#: Metric names whose value is an error rate (accuracy is ``1 - value``).
ERROR_METRICS = ("error", "merror", "binary_error", "multi_error")


#: With ``model_size=None`` the booster is serialized only after a fit of at least this many
#: seconds: serializing costs about 8 µs a tree, so there it stays under 1% of the fit.
SIZE_MIN_FIT = 1.0


def size_choice(value: object) -> bool | None:
    """Return ``model_size`` if it is True, False or None (measure when it is cheap).

    Raises:
        TypeError: ``value`` is something else.
    """
    if value is not None and not isinstance(value, bool):
        raise TypeError(f"model_size must be True, False or None, got {value!r}")
    return value


def wants_size(choice: bool | None, fit_seconds: float) -> bool:
    """Whether to serialize the booster for ``model_size`` after a fit of ``fit_seconds``.

    ``True`` and ``False`` decide; ``None`` measures after fits of :data:`SIZE_MIN_FIT` or
    more, where the serialization is within noise of the fit.
    """
    return choice if choice is not None else fit_seconds >= SIZE_MIN_FIT


def positive_count(argument: str, value: object) -> int | None:
    """Return ``value`` if it is None or an integer > 0.

    Raises:
        ValueError: ``value`` is something else.
    """
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                              or value <= 0):
        raise ValueError(f"{argument} must be an integer > 0 or None, got {value!r}")
    return value


class BoosterFit(FailsOnExit):
    """A boosting callback's run and method guard for one fit, and how a failure ends them.

    ``with callback:`` (from :class:`~mlops_hooks.plugins._support.base.FailsOnExit`) reports
    the block's exception with :meth:`_fail`.
    """

    _run: Run | None
    _guard: MethodGuard | None

    def _fail(self, exc: BaseException) -> None:
        """Remove the guard and report ``exc`` as the run's failure (if it is still running)."""
        run = self._run
        self._restore()
        if run is not None and run.active:
            run.fail(exc)
            open_runs.forget(run)

    def _restore(self) -> None:
        """Remove the method guard (the booster is left as it was)."""
        guard, self._guard = self._guard, None
        if guard is not None:
            guard.restore()


class Portable:
    """A callback that is pickled and copied without its runs (an estimator keeps it).

    XGBoost's scikit-learn wrapper holds its callbacks as a parameter, so pickling a fitted
    model, or ``sklearn.base.clone``, copies the callback. Copies drop the running state
    (:meth:`fresh_state`); a pickled copy also drops an ``emit`` that cannot be pickled (a
    plugin manager's ``dispatch``: the copy reports to its own process's manager), while a
    ``copy.deepcopy`` shares it.
    """

    emit: Emit | None

    def fresh_state(self) -> dict[str, Any]:
        """The attributes of a callback that has not run yet (what copies start with)."""
        return {}

    def __getstate__(self) -> dict[str, Any]:
        state = {**self.__dict__, **self.fresh_state()}
        try:
            pickle.dumps(state.get("emit"))
        except Exception:
            state["emit"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        copied = object.__new__(type(self))
        copied.__dict__.update({**self.__dict__, **self.fresh_state()})
        memo[id(self)] = copied
        return copied


def caller_locals(module: str, functions: Iterable[str], *, depth: int = 16,
                  all_threads: bool = False) -> dict[str, Any] | None:
    """The locals of the nearest caller frame running one of ``module``'s ``functions``.

    Args:
        module: The defining module's ``__name__`` (``"xgboost.training"``).
        functions: Function names (``"train"``, ``"cv"``).
        depth: Frames to look through.
        all_threads: Also look through the other threads' stacks (a callback that runs on a
            worker thread while the loop runs on the main one).

    Returns:
        The frame's ``f_locals`` (a live view of a function's variables: mutable objects,
        such as lists, are the loop's own), or None when no such frame is found.
    """
    names = frozenset(functions)
    stacks: list[FrameType | None] = [sys._getframe(1)]
    if all_threads:
        stacks += list(sys._current_frames().values())
    for frame in stacks:
        for _ in range(depth):
            if frame is None:
                break
            if frame.f_code.co_name in names and frame.f_globals.get("__name__") == module:
                return dict(frame.f_locals)
            frame = frame.f_back
    return None


class MethodGuard:
    """Wraps methods of one object for a fit: an exception in them fails the run.

    The wrappers are instance attributes hiding the class's methods; :meth:`restore` removes
    them (the object is left as it was). A wrapper reports the exception with ``fail`` (once)
    and re-raises it unchanged.

    Args:
        target: The object (a booster).
        methods: Names of its methods to guard (missing ones are skipped).
        fail: Called with the exception.
    """

    def __init__(self, target: Any, methods: Iterable[str],
                 fail: Callable[[BaseException], None]) -> None:
        self.target = target
        self._names: list[str] = []
        for name in methods:
            original = getattr(target, name, None)
            if original is None or name in vars(target):
                continue
            setattr(target, name, self._guarded(original, fail))
            self._names.append(name)

    @staticmethod
    def _guarded(method: Callable[..., Any],
                 fail: Callable[[BaseException], None]) -> Callable[..., Any]:
        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                result = method(*args, **kwargs)
            except BaseException as exc:
                try:
                    fail(exc)
                except Exception as error:  # the user's exception is what must surface
                    sys.stderr.write(f"mlops-hooks: could not report the failure: {error!r}\n")
                raise
            return result

        guarded.__wrapped__ = method  # type: ignore[attr-defined]
        return guarded

    def restore(self) -> None:
        """Remove the wrappers (safe to call twice)."""
        for name in self._names:
            vars(self.target).pop(name, None)
        self._names = []


def eval_metrics(results: Iterable[tuple[str, str, Any]]) -> dict[str, float]:
    """``{"<data>-<metric>": value}`` of ``(data name, metric name, value)`` triples.

    A value that is a ``(mean, std)`` pair (cross-validation) gives its mean; values that are
    not numbers are left out.
    """
    metrics: dict[str, float] = {}
    for data, metric, value in results:
        if isinstance(value, (tuple, list)) and value:
            value = value[0]
        number = to_float(value)
        if number is not None:
            metrics[f"{data}-{metric}"] = number
    return metrics


def error_accuracy(metrics: Mapping[str, float], data: str | None) -> float | None:
    """``1 - error`` of the first error-rate metric of the data set ``data`` (else None)."""
    if data is None:
        return None
    for name in ERROR_METRICS:
        value = metrics.get(f"{data}-{name}")
        if value is not None and 0.0 <= value <= 1.0:
            return 1.0 - value
    return None

