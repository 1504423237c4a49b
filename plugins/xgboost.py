"""XGBoost adapter: :class:`MLOpsCallback`, a real ``xgboost.callback.TrainingCallback``.

::

    from mlops_hooks.plugins.xgboost import MLOpsCallback

    booster = xgboost.train(params, dtrain, num_boost_round=200, evals=[(dval, "val")],
                            early_stopping_rounds=10, callbacks=[MLOpsCallback("churn")])
    # or the scikit-learn wrapper
    XGBClassifier(n_estimators=200, callbacks=[MLOpsCallback()]).fit(X, y, eval_set=[(Xv, yv)])

**What is reported.** Boosting rounds are the run's steps, and, when there are evaluation
sets, its epochs too (XGBoost's callbacks call a round an ``epoch``): progress over the
planned rounds, read from ``xgboost.train``'s (or ``xgboost.cv``'s) ``num_boost_round``, which
the scikit-learn wrapper sets from ``n_estimators`` (``num_boost_round=`` overrides it). A
round's evaluation results are sent with its progress event, named as XGBoost names them
(``validation_0-logloss``, ``val-auc``), so each becomes a series of the run: at most one
event per ``throttle`` seconds (a skipped round costs a clock read), the last round always;
``throttle=0`` sends every round. ``current_loss`` is the first metric of the first
evaluation set, the accuracy ``1 - error`` of the last set when it has an error metric.
Stages ``model_training`` → ``finalization``. ``run_params``: the estimator's ``get_params()``
(scikit-learn wrapper; unset ``None`` values left out) or ``xgboost.train``'s ``params``, and
``num_boost_round``.

**Completion.** ``after_training``: ``validation_score`` is the early-stopping best score
(else the last value of the last set's last metric: the one XGBoost's early stopping watches),
``final_accuracy`` ``1 - error`` of the last set (at the best round when early stopping kept
one: what the model predicts with), ``model_size`` the serialized booster. A fit
stopped by ``EarlyStopping`` / ``early_stopping_rounds`` completes early with
``stop_reason: "early_stopping"`` (``"callback"`` when another callback stopped it). A Stop
request from the dashboard is read at least every 0.25 s: ``after_iteration`` asks XGBoost to
stop, and the run completes with ``stop_reason: "requested"``.

**Failures.** XGBoost tells callbacks nothing about exceptions, so during a fit the booster's
``update`` and ``eval_set`` (``eval`` in ``xgboost.cv``) are wrapped: an exception there (a
custom objective or metric that raises, bad data) is reported at once as ``training_failed``
with its progress, then re-raised unchanged. Anything else escaping the fit is reported by
``with MLOpsCallback(...) as cb:``, or by the chained ``sys.excepthook`` / the exit check.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

from mlops_hooks.plugins._support import open_runs as _open_runs
from mlops_hooks.plugins._support.base import (
    Adapter,
    missing_framework,
    never_raises,
)
from mlops_hooks.plugins._support.boosting import (
    BoosterFit,
    MethodGuard,
    Portable,
    caller_locals,
    error_accuracy,
    eval_metrics,
    positive_count,
    size_choice,
    wants_size,
)
from mlops_hooks.run import Emit, Run

try:
    import xgboost
    from xgboost.callback import EarlyStopping, TrainingCallback
except ImportError as _error:  # pragma: no cover - exercised with xgboost hidden
    raise missing_framework("XGBoost", "xgboost", _error) from _error

__all__ = ["MLOpsCallback"]

_GUARDED = ("update", "eval_set", "eval")
_now = time.perf_counter  # bound at import: code that patches the clock is not disturbed
#: Seconds between two reads of the run's Stop flag while rounds are counted without events.
_STOP_POLL = 0.25


class MLOpsCallback(BoosterFit, Portable, Adapter, TrainingCallback):
    """Stream an XGBoost training (``xgboost.train``, ``xgboost.cv``, ``XGBModel.fit``).

    Args:
        name: What is trained; defaults to the estimator's class (``XGBClassifier``) or
            ``"xgboost"``.
        num_boost_round: Rounds planned; read from the training loop when omitted.
        model_id: Identifier of the produced model, sent with ``training_completed``.
        run_id: Identifier of the run; generated per training when omitted.
        throttle: Minimum seconds between progress events (each carries its round's
            evaluation results; the last round is always sent; 0: every round).
        model_size: Serialize the booster at the end for ``model_size`` (about 8
            microseconds a tree: 1000 trees cost 8-50 ms). None (the default) does it after
            fits of a second or more, where that is under 1%; True always; False never.
        emit: Where events go (e.g. ``pm.dispatch``); defaults to the process's plugin
            manager.
        params: Parameters to send with ``run_params`` besides the captured ones (these win).
        group: The sweep or study of the run; defaults to ``MLOPS_HOOKS_GROUP``.

    Raises:
        ValueError: An argument is empty or out of range.
        TypeError: ``emit`` is not callable, or ``params`` is not a mapping.
    """

    _data: list[str]
    _early_stopping: bool
    _metrics: dict[str, float]
    _log: Any
    _epoch: int
    _unsent: bool
    _quiet_until: float
    _fit_started: float
    _quiet_steps: int

    def __init__(
        self,
        name: str | None = None,
        *,
        num_boost_round: int | None = None,
        model_id: str | None = None,
        run_id: str | None = None,
        throttle: float = 0.25,
        model_size: bool | None = None,
        emit: Emit | None = None,
        params: Mapping[str, Any] | None = None,
        group: str | None = None,
    ) -> None:
        TrainingCallback.__init__(self)
        self.configure(name, model_id=model_id, run_id=run_id, throttle=throttle, emit=emit)
        self.configure_params(params, group)
        self.measure_size = size_choice(model_size)
        self.num_boost_round = positive_count("num_boost_round", num_boost_round)
        self.__dict__.update(self.fresh_state())

    def fresh_state(self) -> dict[str, Any]:
        """The running state of a callback that has not run yet."""
        return {
            "_run": None, "_guard": None,
            "_data": [],  # evaluation set names, in order
            "_early_stopping": False, "_metrics": {},
            "_log": None,  # XGBoost's evaluation history of the training
            "_epoch": 0,  # the last round counted
            "_unsent": False,  # it was counted without an event (throttled)
            # rounds are counted without an event until this clock time, while the run's
            # steps are below _quiet_steps (the last planned round always sends)
            "_fit_started": 0.0, "_quiet_until": -math.inf, "_quiet_steps": 0,
        }

    @property
    def run(self) -> Run | None:
        """The run of the current (or last) training."""
        return self._run

    # ------------------------------------------------------------------ XGBoost hooks

    def before_training(self, model: Any) -> Any:
        """Start a run sized from the training loop; guard the booster's update and eval."""
        self._begin(model)
        return model

    def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
        """Count the round and send its evaluation results; stop on a Stop request.

        The hot path: between two events (``throttle``) a round is an attribute check, a
        clock read and a compare; nothing is built. A Stop request from the dashboard is
        read at least every 0.25 s (and with each event): XGBoost is asked to stop.
        """
        try:
            run = self._run
            if (run is not None and evals_log and run.finished is None
                    and run.steps < self._quiet_steps and _now() < self._quiet_until):
                run.catch_up(1)
                self._log, self._epoch, self._unsent = evals_log, epoch, True
                return False
        except Exception:  # pragma: no cover - the guarded path below reports it
            pass
        return self._round(epoch, evals_log) is True

    def after_training(self, model: Any) -> Any:
        """Complete the run (early when it stopped before its planned rounds)."""
        self._end(model)
        return model

    @never_raises
    def _begin(self, model: Any) -> None:
        previous = self._run
        if self.reporting(previous):
            self._fail(RuntimeError("the previous training ended without completing (an "
                                    "exception was raised outside the booster)"))
        loop = caller_locals("xgboost.training", ("train", "cv")) or {}
        estimator = (caller_locals("xgboost.sklearn", ("fit",)) or {}).get("self")
        rounds = self.num_boost_round or loop.get("num_boost_round")
        rounds = rounds if isinstance(rounds, int) and rounds > 0 else None
        evals = loop.get("evals")
        self._data = [str(name) for _, name in evals] if isinstance(evals, list) else []
        self._early_stopping = any(isinstance(c, EarlyStopping)
                                   for c in loop.get("callbacks") or ())
        self._metrics, self._log, self._unsent = {}, None, False
        self._quiet_until = -math.inf  # a new fit: its first round takes the full path
        self._fit_started = _now()
        has_evals = bool(self._data) or "evals" not in loop or "nfold" in loop
        default = type(estimator).__name__ if estimator is not None else "xgboost"
        run = self._run = self.new_run(default, total_steps=rounds,
                                       total_epochs=rounds if has_evals else None)
        run.start()
        self.send_params(run, lambda: training_params(estimator, loop, rounds))
        run.stage("model_training")
        _open_runs.watch(run)
        self._guard = MethodGuard(model, _GUARDED, self._fail)

    @never_raises
    def _round(self, epoch: int, evals_log: Any) -> bool:
        """Count a round (and send it when due); True: a Stop request asks to end the fit."""
        run = self._run
        self._quiet_until = -math.inf
        if run is None or run.finished:
            return False
        if not evals_log:  # no evaluation sets: throttled steps
            run.step(None, 1)
            return run.should_stop
        self._log, self._epoch = evals_log, epoch
        run.catch_up(1)
        now = _now()
        if now < run.next_progress_at and run.steps < (run.planned_steps or 0):
            self._unsent = True  # throttled
        else:
            self._send(run, epoch, evals_log)
        # a Stop request is read at least every _STOP_POLL seconds, whatever the throttle
        self._quiet_until = min(run.next_progress_at, now + _STOP_POLL)
        self._quiet_steps = (run.planned_steps or 0) - 1
        return run.should_stop

    def _send(self, run: Run, epoch: int, evals_log: Any) -> None:
        """Send round ``epoch`` (already counted) with its evaluation results."""
        self._unsent = False
        metrics = eval_metrics(
            (data, metric, values[-1])
            for data, by_metric in (evals_log or {}).items()
            for metric, values in by_metric.items() if values)
        if not metrics:
            run.update_metrics({})
            return
        self._metrics = metrics
        run.epoch_end(epoch, loss=next(iter(metrics.values())),
                      accuracy=error_accuracy(metrics, self._primary(evals_log)),
                      metrics=metrics)

    def _primary(self, evals_log: Any) -> str | None:
        """The set XGBoost's early stopping watches: the last evaluation set."""
        if self._data:
            return self._data[-1]
        names = list(evals_log or ())
        return str(names[-1]) if names else None

    @never_raises
    def _end(self, model: Any) -> None:
        run = self._run
        self._restore()
        if not self.reporting(run):
            return
        if self._unsent:  # the last round reaches the series
            self._send(run, self._epoch, self._log)
        metrics = self._metrics
        best = _int_attr(model, "best_iteration") if self._early_stopping else None
        if best is not None and self._log:  # what the model predicts with: the best round
            metrics = eval_metrics((data, metric, values[best])
                                   for data, by_metric in self._log.items()
                                   for metric, values in by_metric.items()
                                   if len(values) > best) or metrics
        primary = self._data[-1] if self._data else None
        last = [v for k, v in metrics.items() if primary and k.startswith(primary + "-")]
        score = _float_attr(model, "best_score") if self._early_stopping else None
        completion: dict[str, Any] = {
            "final_accuracy": error_accuracy(metrics, primary),
            "validation_score": score if score is not None else (last[-1] if last else None),
            "model_size": _booster_bytes(model)
            if wants_size(self.measure_size, _now() - self._fit_started) else None,
        }
        planned = run.planned_steps
        early = planned is not None and run.steps < planned
        run.complete(**completion, stop_reason=(
            "early_stopping" if self._early_stopping else "callback") if early else None)
        _open_runs.forget(run)


# ---------------------------------------------------------------------- parameters


def training_params(estimator: Any, loop: Mapping[str, Any],
                    rounds: int | None) -> dict[str, Any]:
    """A training's parameters: the estimator's ``get_params()`` or ``train``'s ``params``.

    ``None`` values of the scikit-learn wrapper (XGBoost's defaults) and its ``callbacks``
    are left out; ``num_boost_round`` is the planned rounds.
    """
    captured: dict[str, Any] = {}
    if estimator is not None:
        captured.update((k, v) for k, v in estimator.get_params().items()
                        if v is not None and k != "callbacks")
    else:
        params = loop.get("params")
        if isinstance(params, Mapping):
            captured.update(params)
        elif isinstance(params, list):  # [(name, value), ...]: repeated names keep the last
            captured.update((str(k), v) for k, v in params)
        stopping = loop.get("early_stopping_rounds")
        if stopping:
            captured["early_stopping_rounds"] = stopping
    if rounds is not None:
        captured["num_boost_round"] = rounds
    return captured


def _float_attr(model: Any, key: str) -> float | None:
    try:
        value = model.attr(key)
        return float(value) if value is not None else None
    except Exception:
        return None


def _int_attr(model: Any, key: str) -> int | None:
    value = _float_attr(model, key)
    return int(value) if value is not None and value >= 0 else None


def _booster_bytes(model: Any) -> int | None:
    if not isinstance(model, xgboost.Booster):
        return None
    try:
        return len(model.save_raw())
    except Exception:
        return None
