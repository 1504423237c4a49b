"""Optuna adapter: :class:`MLOpsCallback`, a study callback; each trial is a run.

::

    from mlops_hooks.plugins.optuna import MLOpsCallback

    cb = MLOpsCallback()
    study.optimize(objective, n_trials=20, callbacks=[cb])

**What is reported.** The study is the runs' group (``group`` = the study's name, unless
``group=`` or ``MLOPS_HOOKS_GROUP`` names one) and ``group_size`` its planned trials:
``n_trials=``, else ``study.optimize``'s ``n_trials`` (read from the stack, the main thread's
when ``n_jobs`` > 1), else a ``MaxTrialsCallback``'s. Each trial is a run named
``<study> #<number>`` whose ``run_params`` are the trial's params (and ``trial``, its
number); its intermediate values (``trial.report``) are the ``intermediate_value`` series
(the step is ``step + 1``), and its end sends ``value`` (``value_0``, ``value_1``, ... for
several objectives) and ``best_value`` (the study's best so far) as metrics;
``validation_score`` is the trial's value. A pruned trial completes with
``stop_reason: "pruned"``; a failed one (``catch=``) is ``training_failed``. Works with
``n_jobs`` > 1 (Optuna calls the callback on the trial's thread).

**Live trials.** Optuna calls callbacks only once a trial has finished, so by default a
trial appears on the dashboard when it ends. For a trial to show while it runs, open its run
inside the objective with :meth:`MLOpsCallback.trial_run`: the run starts at once, each
``trial.report(value, step)`` is sent as it happens (``steps_per_trial=`` gives the progress a
percentage), an exception in the block is reported as the trial's failure with its real
error (and re-raised unchanged), and the callback completes the run when Optuna has the
trial's value. A trial that raises out of ``study.optimize`` (no ``catch=``) is reported only
this way: Optuna does not call callbacks for it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from mlops_hooks.plugins._support import open_runs as _open_runs
from mlops_hooks.plugins._support.base import Adapter, missing_framework, never_raises
from mlops_hooks.plugins._support.boosting import caller_locals, positive_count
from mlops_hooks.run import Emit, Run

try:
    import optuna
    from optuna.trial import FrozenTrial, TrialState
except ImportError as _error:  # pragma: no cover - exercised with optuna hidden
    raise missing_framework("Optuna", "optuna", _error) from _error

__all__ = ["MLOpsCallback"]


class MLOpsCallback(Adapter):
    """Report each trial of an Optuna study as a run of the study's group.

    Args:
        name: The runs' name prefix; defaults to the study's name (``"<name> #<number>"``).
        n_trials: Trials planned (the group's size); read from ``study.optimize`` when
            omitted.
        steps_per_trial: Steps a trial reports (``trial.report``), for a percentage.
        throttle: Minimum seconds between progress events of a live trial.
        emit: Where events go (e.g. ``pm.dispatch``); defaults to the process's plugin
            manager.
        params: Parameters to send with every trial's ``run_params`` besides its own.
        group: The runs' group; defaults to ``MLOPS_HOOKS_GROUP``, then the study's name.

    Raises:
        ValueError: An argument is empty or out of range.
        TypeError: ``emit`` is not callable, or ``params`` is not a mapping.
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        n_trials: int | None = None,
        steps_per_trial: int | None = None,
        throttle: float = 0.25,
        emit: Emit | None = None,
        params: Mapping[str, Any] | None = None,
        group: str | None = None,
    ) -> None:
        self.configure(name, model_id=None, run_id=None, throttle=throttle, emit=emit)
        self.configure_params(params, group)
        self.n_trials = positive_count("n_trials", n_trials)
        self.steps_per_trial = positive_count("steps_per_trial", steps_per_trial)
        self._lock = threading.Lock()
        self._runs: dict[tuple[str, int], Run] = {}
        self._planned: dict[str, int | None] = {}  # study name -> n_trials found
        self.last_run: Run | None = None

    # ------------------------------------------------------------------ study callback

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """After a trial: complete, prune or fail its run (opened now if it was not live)."""
        self._finished(study, trial)

    @never_raises
    def _finished(self, study: optuna.Study, trial: FrozenTrial) -> None:
        key = (study.study_name, trial.number)
        with self._lock:
            live = self._runs.pop(key, None)
        if live is None:
            run = self._open(study, trial.number, dict(trial.params))
            for step, value in sorted(trial.intermediate_values.items()):
                _report(run, step, value)
        else:
            run = live
            if trial.params:
                self.send_params(run, lambda: dict(trial.params),
                                 default_group=study.study_name, later=True,
                                 group_size=self._group_size(study))
        if not run.active:
            return
        metrics = _values(trial)
        best = _best_value(study)
        if best is not None:
            metrics["best_value"] = best
        if metrics:
            run.update_metrics(metrics)
        score = trial.values[0] if trial.values and len(trial.values) == 1 else None
        if trial.state == TrialState.COMPLETE:
            run.complete(validation_score=score)
        elif trial.state == TrialState.PRUNED:
            last = max(trial.intermediate_values, default=None)
            where = f" at step {last}" if last is not None else ""
            run.complete(validation_score=score, message=f"Trial {trial.number} pruned{where}",
                         stop_reason="pruned")
        else:
            run.fail(RuntimeError(f"trial {trial.number} of study {study.study_name!r} "
                                  f"ended {trial.state.name}"))
        _open_runs.forget(run)

    # ------------------------------------------------------------------ live trials

    @contextlib.contextmanager
    def trial_run(self, trial: optuna.Trial) -> Iterator[Run | None]:
        """Report ``trial`` while it runs: use inside the objective, around its work.

        Yields the trial's run (None if it could not be opened); its ``trial.report`` calls
        are sent as they happen. An exception other than ``TrialPruned`` fails the run with
        that exception, which is re-raised unchanged.

        Example:
            >>> def objective(trial):  # doctest: +SKIP
            ...     with cb.trial_run(trial):
            ...         for epoch in range(10):
            ...             trial.report(score, epoch)
        """
        run = self._open_live(trial)
        try:
            yield run
        except optuna.TrialPruned:
            raise
        except BaseException as exc:
            if run is not None and run.active:
                _quiet_fail(run, exc)
            raise
        finally:
            vars(trial).pop("report", None)

    @never_raises
    def _open_live(self, trial: optuna.Trial) -> Run | None:
        study = trial.study
        run = self._open(study, trial.number, dict(trial.params))
        with self._lock:
            self._runs[(study.study_name, trial.number)] = run
        original = trial.report

        def report(value: float, step: int) -> None:
            original(value, step)
            _report_quietly(run, step, value)

        trial.report = report  # type: ignore[method-assign]
        return run

    # ------------------------------------------------------------------ runs

    def _open(self, study: optuna.Study, number: int,
              params: dict[str, Any]) -> Run:
        run = self.new_run(study.study_name, total_steps=self.steps_per_trial)
        run.name = f"{run.name} #{number}"  # ``name=`` is the prefix, not the whole name
        self.last_run = run
        run.start()
        self.send_params(run, lambda: {"trial": number, **params},
                         default_group=study.study_name, group_size=self._group_size(study))
        run.stage("model_training")
        _open_runs.watch(run)
        return run

    def _group_size(self, study: optuna.Study) -> int | None:
        if self.n_trials is not None:
            return self.n_trials
        name = study.study_name
        with self._lock:
            if name in self._planned:
                return self._planned[name]
        found = planned_trials()
        with self._lock:
            self._planned.setdefault(name, found)
            return self._planned[name]


def planned_trials() -> int | None:
    """``n_trials`` of the running ``study.optimize`` (or of its ``MaxTrialsCallback``)."""
    loop = caller_locals("optuna.study._optimize", ("_optimize",), depth=24, all_threads=True)
    if loop is None:
        return None
    n_trials = loop.get("n_trials")
    if isinstance(n_trials, int) and n_trials > 0:
        return n_trials
    for callback in loop.get("callbacks") or ():
        if isinstance(callback, optuna.study.MaxTrialsCallback):
            limit = getattr(callback, "_n_trials", None)
            return limit if isinstance(limit, int) and limit > 0 else None
    return None


def _report(run: Run, step: int, value: float) -> None:
    """An intermediate value at ``step`` (0-based): the run's step ``step + 1``."""
    if not run.active:
        return
    run.catch_up(step + 1 - run.steps)
    run.update_metrics({"intermediate_value": value})


@never_raises
def _report_quietly(run: Run, step: int, value: float) -> None:
    _report(run, step, value)


def _quiet_fail(run: Run, exc: BaseException) -> None:
    try:
        run.fail(exc)
        _open_runs.forget(run)
    except Exception:  # the objective's exception is what must surface
        pass


def _values(trial: FrozenTrial) -> dict[str, float]:
    values = trial.values or []
    if len(values) == 1:
        return {"value": float(values[0])}
    return {f"value_{i}": float(v) for i, v in enumerate(values)}


def _best_value(study: optuna.Study) -> float | None:
    if len(study.directions) != 1:
        return None
    try:
        return float(study.best_value)
    except ValueError:  # no completed trial yet
        return None
