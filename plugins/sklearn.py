"""scikit-learn 1.9 adapter: :class:`MLOpsCallback` for ``set_callbacks`` and a fallback.

With estimators that support scikit-learn's callback protocol (``GridSearchCV``,
``RandomizedSearchCV``, ``Pipeline``, ``LogisticRegression``, ``StandardScaler``, ...)::

    from mlops_hooks.plugins.sklearn import MLOpsCallback

    search = GridSearchCV(LogisticRegression(), {"C": [0.1, 1, 10]}, n_jobs=2)
    search.set_callbacks(MLOpsCallback("digits-search"))
    search.fit(X, y)

The callback is a ``FitCallback`` and an ``AutoPropagatedCallback``: set on the outermost
estimator, scikit-learn hands it to every sub-estimator (down to ``max_propagation_depth``
levels). Progress is the completed fraction of the fit's task tree, weighed by the fits each
part holds (a search's refit is one fit among them; pipeline steps and solver iterations share
their fit), with "12/20 fits, 340 iterations" in the message. With ``n_jobs`` > 1 the copies
of the callback in worker processes send their task events to the main process over
scikit-learn's callback transport, exactly as its ``ProgressBar`` does; only the main process
emits events (a fit that starts in a worker, as in ``cross_validate(n_jobs=2)``, relays its
events there). Stages: ``data_preparation`` at
start, ``feature_engineering`` while a pipeline fits its transformers, ``model_training``,
``validation`` while scoring ``validation_data``, ``finalization`` at the end.
``training_completed`` carries the search's ``best_score_`` (or the score on
``validation_data``) and the pickled size of the fitted estimator; a fit that raises reports
``training_failed`` with the stage and progress of that moment. ``run_params`` carries
``get_params()`` and a search's grid at the start (group: the search's name, e.g.
``GridSearchCV(SVC)``), and the search's ``best_params_`` at the end. Ctrl-C fails the run as
``INTERRUPTED``; SIGTERM (a scheduler's ``scancel``, a pod eviction) during a fit in the main
thread fails it as ``TERMINATED`` (``killed`` on the server) before the process dies of SIGTERM
(:mod:`mlops_hooks.run.signals`; a SIGTERM handler the program installed is left alone).

For estimators without callback support use :func:`monitored_fit` (start, completion with
score, failure; per-epoch progress for estimators with ``partial_fit``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

from mlops_hooks.events import Event
from mlops_hooks.plugins._support.base import Adapter, missing_framework, never_raises
from mlops_hooks.plugins._support.sklearn_fallback import (
    completion_scores,
    monitored_fit,
    pickled_size,
)
from mlops_hooks.plugins._support.sklearn_tasks import TaskTree, begin_message, end_message
from mlops_hooks.run import Emit, Run, signals

try:
    import sklearn.callback  # noqa: F401 - the protocol this module implements
except ImportError as _error:  # pragma: no cover - exercised with scikit-learn hidden
    raise missing_framework("scikit-learn >= 1.9", "sklearn", _error) from _error

try:  # how sklearn's own ProgressBar forwards worker events (private; present since 1.9)
    from sklearn.callback._transport import close_listener, open_listener, send
except ImportError:  # pragma: no cover - a later scikit-learn moved it: stay process-local
    open_listener = close_listener = send = None

__all__ = ["MLOpsCallback", "monitored_fit"]

# Per-fit state of the main process, keyed by the fit's root uuid (not picklable, so not on
# the callback, whose copies travel to worker processes).
_trees: dict[Any, TaskTree] = {}


class MLOpsCallback(Adapter):
    """Stream a scikit-learn fit to the mlops-hooks dashboard and plugins.

    Args:
        name: What is trained, shown on the dashboard; defaults to the estimator's class.
        model_id: Identifier of the produced model, sent with ``training_completed``.
        run_id: Identifier of the run; generated per fit when omitted.
        validation_data: ``(X_val, y_val)`` to score the fitted estimator on at the end
            (``final_accuracy`` for classifiers, ``validation_score`` always).
        max_propagation_depth: How many levels of sub-estimators receive the callback
            (None: all).
        throttle: Minimum seconds between progress events.
        emit: Where events go (e.g. ``pm.dispatch``); defaults to the process's plugin
            manager. Only the main process emits.
        params: Parameters to send with the run's ``run_params`` besides what is captured
            (``get_params()``, a search's grid); these win on a name clash.
        group: The sweep or study of the run; defaults to ``MLOPS_HOOKS_GROUP``, then to a
            search's name (``GridSearchCV(SVC)``).
        group_size: How many runs the group plans; defaults to ``MLOPS_HOOKS_GROUP_SIZE``.
            Not taken from a search: a search fit is one run (its candidates' fits are that
            run's progress, "12/20 fits"), and the group of its name counts its repeats.

    Raises:
        ValueError: An argument is empty or out of range.
        TypeError: ``emit`` is not callable, ``validation_data`` is not a pair, or
            ``params`` is not a mapping.

    Example:
        >>> search.set_callbacks(MLOpsCallback("digits-search"))  # doctest: +SKIP
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        model_id: str | None = None,
        run_id: str | None = None,
        validation_data: tuple[Any, Any] | None = None,
        max_propagation_depth: int | None = None,
        throttle: float = 0.25,
        emit: Emit | None = None,
        params: Mapping[str, Any] | None = None,
        group: str | None = None,
        group_size: int | None = None,
    ) -> None:
        self.configure(name, model_id=model_id, run_id=run_id, throttle=throttle, emit=emit)
        self.configure_params(params, group, group_size)
        if validation_data is not None and (
                not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2):
            raise TypeError("validation_data must be a pair (X_val, y_val), got "
                            f"{type(validation_data).__name__}")
        self.validation_data = validation_data
        if max_propagation_depth is not None and (
                isinstance(max_propagation_depth, bool)
                or not isinstance(max_propagation_depth, int) or max_propagation_depth < 0):
            raise ValueError("max_propagation_depth must be an integer >= 0 or None, got "
                             f"{max_propagation_depth!r}")
        self._max_propagation_depth = max_propagation_depth
        self._handles: dict[Any, Any] = {}  # root uuid -> listener handle (picklable)
        self._runs: dict[Any, Run] = {}  # this process's runs (dropped when pickled)
        self.last_run: Run | None = None
        self._pid = os.getpid()  # the process the callback was made in (its copies keep it)
        self._relay: Any = None  # listener for runs that start in worker processes

    @property
    def max_propagation_depth(self) -> int | None:
        """Levels of nested estimators the callback is propagated to (None: all)."""
        return self._max_propagation_depth

    def __getstate__(self) -> dict[str, Any]:
        if (self._relay is None and not self._runs and open_listener is not None
                and os.getpid() == self._pid):
            # Sent to workers outside a fit of ours (cross_validate(n_jobs=2)): a fit that
            # starts there relays its events to this process, which emits them.
            try:
                self._relay = open_listener(_Relay(self.emit), owner=self)
            except Exception:  # no local sockets: such runs report in their own process
                self._relay = None
        state = self.__dict__.copy()  # workers only send messages: no emitter, no validation
        state.update(emit=None, validation_data=None, _runs={}, last_run=None)
        return state

    def _relayed(self, event: Event) -> None:
        if self._relay is not None:
            try:
                send(self._relay, event)
                return
            except Exception:  # the main process is gone (an unpickled model): report here
                self._relay = None
        _Relay(None)(event)

    # ------------------------------------------------------------------ protocol

    @never_raises
    def setup(self, estimator: Any, context: Any) -> None:
        """Start the run of the outermost estimator's fit and open the message listener."""
        in_worker = os.getpid() != self._pid and self._relay is not None
        run = self.new_run(type(estimator).__name__,
                           emit=self._relayed if in_worker else None)
        tree = TaskTree(run)
        key = context.root_uuid
        _trees[key] = tree
        self._runs[key] = self.last_run = run
        if open_listener is not None:
            self._handles[key] = open_listener(tree.consume)
        run.advance(0)  # progress is a fraction of the task tree: 0% from the first event
        run.start()
        if not in_worker:  # SIGTERM: reported as killed, then the default action
            signals.watch(run)
        self.send_params(run, lambda: estimator_params(estimator),
                         default_group=search_name(estimator))

    @never_raises
    def on_fit_task_begin(self, estimator: Any, context: Any) -> None:
        """Forward the task's start to the main process (non-leaf tasks only)."""
        message = begin_message(context)
        if message is not None:
            self._send(context.root_uuid, message)

    @never_raises
    def on_fit_task_end(self, estimator: Any, context: Any) -> None:
        """Forward the task's end to the main process."""
        self._send(context.root_uuid, end_message(context))

    @never_raises
    def teardown(self, estimator: Any, context: Any) -> None:
        """Complete or fail the run (scikit-learn calls this in a ``finally``)."""
        key = context.root_uuid
        handle = self._handles.pop(key, None)
        if handle is not None:
            close_listener(handle)
        tree = _trees.pop(key, None)
        run = self._runs.pop(key, None)
        if tree is None or run is None:
            return
        signals.unwatch(run)
        if not tree.root_done:  # the fit raised: teardown runs while it propagates
            error = sys.exc_info()[1] or RuntimeError("the fit ended without completing")
            run.fail(error, stage=tree.failing_stage(estimator))
            return
        best = getattr(estimator, "best_params_", None)
        if isinstance(best, Mapping):  # a search: what it found, as best.<name>
            self.send_params(run, lambda: {f"best.{k}": v for k, v in best.items()},
                             default_group=search_name(estimator), later=True)
        accuracy, score = completion_scores(estimator, self.validation_data, run)
        run.complete(final_accuracy=accuracy, validation_score=score,
                     model_size=pickled_size(getattr(estimator, "best_estimator_", estimator)))

    def _send(self, key: Any, message: dict[str, Any]) -> None:
        handle = self._handles.get(key)
        if handle is not None:
            send(handle, message)
            return
        tree = _trees.get(key)  # no transport: only this process's tasks are seen
        if tree is not None:
            tree.consume(message)


class _Relay:
    """Emits in the main process the events of fits that started in worker processes."""

    def __init__(self, emit: Emit | None) -> None:
        self.emit = emit

    def __call__(self, event: Event) -> None:
        emit = self.emit
        if emit is None:
            from mlops_hooks.manager import get_plugin_manager

            emit = get_plugin_manager("training").dispatch
        emit(event)


# ---------------------------------------------------------------------- parameters

_GRID_ATTRIBUTES = ("param_grid", "param_distributions")


def search_name(estimator: Any) -> str | None:
    """A hyper-parameter search's name, ``GridSearchCV(SVC)``; None for other estimators."""
    if not any(hasattr(estimator, name) for name in _GRID_ATTRIBUTES):
        return None
    inner = getattr(estimator, "estimator", None)
    outer = type(estimator).__name__
    return f"{outer}({type(inner).__name__})" if inner is not None else outer


def estimator_params(estimator: Any) -> dict[str, Any]:
    """An estimator's parameters: a search's grid as ``grid.<name>``, then ``get_params()``.

    ``get_params(deep=True)`` keeps scikit-learn's names (``estimator__C``); objects become
    their ``repr``. A grid's values are JSON list text (``[0.1, 1, 10]``), or the ``repr`` of a
    list of objects or of a distribution; several grids are ``grid.<i>.<name>``.
    """
    captured: dict[str, Any] = {}
    grid = next((getattr(estimator, n) for n in _GRID_ATTRIBUTES if hasattr(estimator, n)),
                None)
    grids = [grid] if isinstance(grid, Mapping) else list(grid) if isinstance(
        grid, (list, tuple)) else []
    for i, one in enumerate(grids):
        if isinstance(one, Mapping):
            prefix = "grid." if len(grids) == 1 else f"grid.{i}."
            captured.update((f"{prefix}{k}", v) for k, v in one.items())
    for key, value in estimator.get_params(deep=True).items():
        if key not in _GRID_ATTRIBUTES:
            captured.setdefault(str(key), value if not isinstance(value, Mapping) else
                                repr(value))
    return captured
