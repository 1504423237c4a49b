"""LightGBM adapter: :class:`MLOpsCallback`, a LightGBM callback (a callable with ``order``).

::

    from mlops_hooks.plugins.lightgbm import MLOpsCallback

    booster = lightgbm.train(params, train_set, num_boost_round=200, valid_sets=[valid_set],
                             callbacks=[lightgbm.early_stopping(10), MLOpsCallback("churn")])
    # or the scikit-learn wrapper
    LGBMClassifier(n_estimators=200).fit(X, y, eval_X=(Xv,), eval_y=(yv,),
                                         callbacks=[MLOpsCallback()])

**What is reported.** Iterations are the run's steps (and its epochs when there are
validation sets): progress over ``env.end_iteration - env.begin_iteration`` (a training
continued from ``init_model`` counts its own iterations). An iteration's
``evaluation_result_list`` is sent with its progress event as metrics named
``<data>-<metric>`` (``valid_0-binary_logloss``, ``training-auc``), one series each: at most one
event per ``throttle`` seconds (a skipped iteration costs a clock read), the last one always;
``throttle=0`` sends every iteration. ``current_loss`` is the first result, the accuracy
``1 - binary_error`` (or ``multi_error``) of the last validation set. ``run_params``:
``env.params`` (LightGBM's resolved parameters, ``num_iterations`` included).

**How the end is seen.** LightGBM has no end-of-training callback and ends early stopping
with an exception (``EarlyStopException``) that no later callback sees. So the callback runs
*before* each iteration (``before_iteration = True``), and at the first one it reads the
callback list of ``lightgbm.train`` (or ``lightgbm.cv``) from the stack and joins it (leaving
the before-iteration list: nothing is left to do there):

* a reporter placed before ``early_stopping`` (``order`` 30) sends each iteration's results;
* every after-iteration callback is guarded: an ``EarlyStopException`` completes the run with
  ``stop_reason: "early_stopping"`` and the scores of the best iteration (what the booster
  predicts with) (at the last iteration, LightGBM's "did not meet early
  stopping" check, it is a normal completion); any other exception fails it;
* a last callback completes the run after the final iteration.

A Stop request from the dashboard is read by the reporter at least every 0.25 s: it completes
the run (``stop_reason: "requested"``) and raises ``EarlyStopException``, LightGBM's own way
to end a training early (the booster keeps every iteration done).

The booster's ``update``, ``eval_train`` and ``eval_valid`` are wrapped for the training: an
exception in them (a custom objective or ``feval`` that raises) is reported as
``training_failed`` with its progress, then re-raised unchanged. Anything else escaping the
training is reported by ``with MLOpsCallback(...) as cb:``, or by the chained
``sys.excepthook`` / the exit check.
"""

from __future__ import annotations

import bisect
import contextlib
import ctypes
import math
import time
from collections.abc import Callable, Mapping
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
    size_choice,
    wants_size,
)
from mlops_hooks.run import Emit, Run

try:
    from lightgbm.callback import CallbackEnv, EarlyStopException
except ImportError as _error:  # pragma: no cover - exercised with lightgbm hidden
    raise missing_framework("LightGBM", "lightgbm", _error) from _error

__all__ = ["MLOpsCallback"]

_GUARDED = ("update", "eval_train", "eval_valid")
#: The reporter's place among after-iteration callbacks: after ``record_evaluation`` (20),
#: before ``early_stopping`` (30), so the iteration that stops is reported.
_REPORT_ORDER = 29
_now = time.perf_counter  # bound at import: code that patches the clock is not disturbed
#: Seconds between two reads of the run's Stop flag while rounds are counted without events.
_STOP_POLL = 0.25


class MLOpsCallback(BoosterFit, Portable, Adapter):
    """Stream a LightGBM training (``lightgbm.train``, ``lightgbm.cv``, ``LGBMModel.fit``).

    Args:
        name: What is trained; defaults to the estimator's class (``LGBMClassifier``) or
            ``"lightgbm"``.
        model_id: Identifier of the produced model, sent with ``training_completed``.
        run_id: Identifier of the run; generated per training when omitted.
        throttle: Minimum seconds between progress events (each carries its iteration's
            results; the last iteration is always sent; 0: every iteration).
        model_size: Serialize the booster at the end for ``model_size`` (about 8
            microseconds a tree: 1000 trees cost 8-50 ms). None (the default) does it after
            fits of a second or more, where that is under 1%; True always; False never.
        emit: Where events go (e.g. ``pm.dispatch``); defaults to the process's plugin
            manager.
        params: Parameters to send with ``run_params`` besides ``env.params`` (these win).
        group: The sweep or study of the run; defaults to ``MLOPS_HOOKS_GROUP``.

    Raises:
        ValueError: An argument is empty or out of range.
        TypeError: ``emit`` is not callable, or ``params`` is not a mapping.

    Attributes:
        order: LightGBM's ordering key among before-iteration callbacks (``reset_parameter``
            is 10).
        before_iteration: ``True``: called before each iteration.
    """

    _model: Any
    _joined: bool
    _last: CallbackEnv | None
    _unsent: bool
    _leave: list[Any] | None
    _quiet_until: float
    _fit_started: float
    _quiet_last: int

    def __init__(
        self,
        name: str | None = None,
        *,
        model_id: str | None = None,
        run_id: str | None = None,
        throttle: float = 0.25,
        model_size: bool | None = None,
        emit: Emit | None = None,
        params: Mapping[str, Any] | None = None,
        group: str | None = None,
    ) -> None:
        self.configure(name, model_id=model_id, run_id=run_id, throttle=throttle, emit=emit)
        self.configure_params(params, group)
        self.measure_size = size_choice(model_size)
        # instance attributes: LightGBM sets a missing ``order`` in the instance's __dict__
        self.order = 5
        self.before_iteration = True
        self.__dict__.update(self.fresh_state())

    def fresh_state(self) -> dict[str, Any]:
        """The running state of a callback that has not run yet."""
        return {
            "_run": None, "_guard": None, "_model": None, "_joined": False,
            "_last": None,  # the last iteration counted (its CallbackEnv)
            "_unsent": False,  # it was counted without an event (throttled)
            "_leave": None,  # LightGBM's before-iteration list, to leave
            # iterations are counted without an event until this clock time, while they are
            # below _quiet_last (the last iteration always sends)
            "_fit_started": 0.0, "_quiet_until": -math.inf, "_quiet_last": 0,
        }

    @property
    def run(self) -> Run | None:
        """The run of the current (or last) training."""
        return self._run

    def __call__(self, env: CallbackEnv) -> None:
        """Before an iteration: at the first one, start the run and join the training loop."""
        self._before(env)

    # ------------------------------------------------------------------ the loop

    @never_raises
    def _before(self, env: CallbackEnv) -> None:
        run = self._run
        if self.reporting(run) and env.model is self._model and self._joined:
            return
        if self.reporting(run) and env.model is self._model:  # not joined: count rounds
            run.step(None, 1)
            return
        if self.reporting(run):
            self._fail(RuntimeError("the previous training ended without completing (an "
                                    "exception was raised outside the booster)"))
        loop = caller_locals("lightgbm.engine", ("train", "cv")) or {}
        estimator = (caller_locals("lightgbm.sklearn", ("fit",)) or {}).get("self")
        rounds = env.end_iteration - env.begin_iteration
        has_valid = bool(loop.get("valid_sets") or loop.get("nfold")) or not loop
        default = type(estimator).__name__ if estimator is not None else "lightgbm"
        run = self._run = self.new_run(default, total_steps=max(rounds, 1),
                                       total_epochs=max(rounds, 1) if has_valid else None)
        self._model, self._last, self._unsent = env.model, None, False
        self._quiet_until = -math.inf  # a new training: its first iteration takes the full path
        self._fit_started = _now()
        run.start()
        params = dict(env.params)
        self.send_params(run, lambda: params)
        run.stage("model_training")
        _open_runs.watch(run)
        self._guard = MethodGuard(env.model, _GUARDED, self._fail)
        after, before = loop.get("callbacks_after_iter"), loop.get("callbacks_before_iter")
        self._joined = isinstance(after, list)
        if isinstance(after, list):
            self._join(after)
            # joined: nothing is left to do before iterations (leaving the list is done from
            # the reporter, as LightGBM is iterating over it now)
            self._leave = before if isinstance(before, list) else None

    def _join(self, after: list[Any]) -> None:
        """Guard the after-iteration callbacks; add the reporter and the finisher."""
        orders = [getattr(cb, "order", 0) for cb in after]
        guarded: list[Any] = [_Guarded(cb, self._stopped, self._fail) for cb in after]
        guarded.insert(bisect.bisect_right(orders, _REPORT_ORDER), self._report)
        guarded.append(self._finish)
        after[:] = guarded

    def _report(self, env: CallbackEnv) -> None:
        """After an iteration: count it and send its results (at most one event per throttle).

        The hot path: between two events an iteration is a few attribute checks, a clock read
        and a compare; nothing is built. A Stop request from the dashboard is read at least
        every 0.25 s (and with each event): the run completes and LightGBM is stopped the way
        its ``early_stopping`` does, with ``EarlyStopException``.
        """
        try:
            run = self._run
            if (env.model is self._model and run is not None and run.finished is None
                    and env.evaluation_result_list and env.iteration < self._quiet_last
                    and _now() < self._quiet_until):
                run.catch_up(1)
                self._last, self._unsent = env, True
                return
        except Exception:  # pragma: no cover - the guarded path below reports it
            pass
        if self._report_iteration(env) is True:  # stopped on request: the run has completed
            raise EarlyStopException(env.iteration, env.evaluation_result_list or [])

    @never_raises
    def _report_iteration(self, env: CallbackEnv) -> bool:
        """Count an iteration (send it when due); True: the run completed on a Stop request."""
        run = self._run
        self._quiet_until = -math.inf
        if run is None or run.finished or env.model is not self._model:
            return False
        if self._leave is not None:
            with contextlib.suppress(ValueError):
                self._leave.remove(self)
            self._leave = None
        if not env.evaluation_result_list:  # no validation sets: throttled steps
            run.step(None, 1)
            return self._stop_requested(run, env)
        run.catch_up(1)
        self._last = env
        now = _now()
        if now < run.next_progress_at and env.iteration < env.end_iteration - 1:
            self._unsent = True  # throttled
        else:
            self._send(run, env)
        # a Stop request is read at least every _STOP_POLL seconds, whatever the throttle
        self._quiet_until = min(run.next_progress_at, now + _STOP_POLL)
        self._quiet_last = env.end_iteration - 1
        return self._stop_requested(run, env)

    def _stop_requested(self, run: Run, env: CallbackEnv) -> bool:
        """On a Stop request before the last iteration, complete the run (``"requested"``)."""
        if env.iteration >= env.end_iteration - 1 or not run.should_stop:
            return False
        self._complete(None)
        return run.finished is not None

    def _send(self, run: Run, env: CallbackEnv) -> None:
        """Send iteration ``env.iteration`` (already counted) with its results."""
        self._unsent = False
        results = env.evaluation_result_list or []
        metrics = eval_metrics((r[0], r[1], r[2]) for r in results)
        if not metrics:
            run.update_metrics({})
            return
        run.epoch_end(env.iteration - env.begin_iteration,
                      loss=next(iter(metrics.values())),
                      accuracy=error_accuracy(metrics, str(results[-1][0])), metrics=metrics)

    def _finish(self, env: CallbackEnv) -> None:
        if env.iteration >= env.end_iteration - 1:  # _complete never raises
            self._complete(None)

    def _stopped(self, env: CallbackEnv, stop: EarlyStopException) -> None:
        best = [(r[0], r[1], r[2]) for r in getattr(stop, "best_score", None) or []]
        score = eval_metrics(best[-1:]) if best else {}
        early = env.iteration < env.end_iteration - 1
        self._complete("early_stopping" if early else None,
                       validation_score=next(iter(score.values()), None),
                       best=eval_metrics(best))

    @never_raises
    def _complete(self, reason: str | None, validation_score: float | None = None,
                  best: dict[str, float] | None = None) -> None:
        run = self._run
        self._restore()
        if not self.reporting(run):
            return
        if self._unsent and self._last is not None:  # the last iteration reaches the series
            self._send(run, self._last)
        metrics = best or run.progress_event().metrics or {}
        primary = next((k.split("-", 1)[0] for k in reversed(metrics)), None)
        if validation_score is None and primary is not None:
            last = [v for k, v in metrics.items() if k.startswith(primary + "-")]
            validation_score = last[0] if last else None
        completion: dict[str, Any] = {"final_accuracy": error_accuracy(metrics, primary),
                                      "validation_score": validation_score,
                                      "model_size": _booster_bytes(self._model) if wants_size(
                                          self.measure_size, _now() - self._fit_started) else None}
        run.complete(**completion, stop_reason=reason)
        _open_runs.forget(run)

    # ------------------------------------------------------------------ failures

    def fails_on(self, exc: BaseException) -> bool:
        """Any exception but LightGBM's early-stopping signal (its way to end a training)."""
        return not isinstance(exc, EarlyStopException)



class _Guarded:
    """An after-iteration callback whose early stop or exception reaches the adapter."""

    def __init__(self, callback: Callable[[CallbackEnv], None],
                 stopped: Callable[[CallbackEnv, EarlyStopException], None],
                 fail: Callable[[BaseException], None]) -> None:
        self.callback = callback
        self.order = getattr(callback, "order", 0)
        self.before_iteration = False
        self._stopped = stopped
        self._fail = fail

    def __call__(self, env: CallbackEnv) -> None:
        try:
            self.callback(env)
        except EarlyStopException as stop:
            _quietly(self._stopped, env, stop)
            raise
        except BaseException as exc:
            _quietly(self._fail, exc)
            raise


def _quietly(report: Callable[..., None], *args: Any) -> None:
    with contextlib.suppress(Exception):  # the framework's own exception is what goes on
        report(*args)


def _booster_bytes(model: Any) -> int | None:
    """Bytes of ``model.model_to_string()`` (what ``save_model`` writes), serialized once.

    ``model_to_string`` serializes a model over 1 MiB twice (the first call sizes its buffer)
    and copies the text through Python; LightGBM's C function gives the length alone. Falls
    back to ``model_to_string`` where that function cannot be reached.
    """
    try:
        return _text_length(model)
    except Exception:
        pass
    try:
        return len(model.model_to_string().encode())
    except Exception:  # a CVBooster's several models, or a freed booster
        return None


def _text_length(model: Any) -> int:
    """The length ``model_to_string`` would have, from one call of LightGBM's C function."""
    from lightgbm import basic

    length = ctypes.c_int64(0)
    buffer = ctypes.create_string_buffer(1)  # too small: the text is measured, not copied
    basic._safe_call(basic._LIB.LGBM_BoosterSaveModelToString(  # type: ignore[attr-defined]
        model._handle, ctypes.c_int(0), ctypes.c_int(model.best_iteration),
        ctypes.c_int(0), ctypes.c_int64(1), ctypes.byref(length), buffer))
    if length.value <= 1:
        raise ValueError("LightGBM measured an empty model")
    # the C length counts the terminating NUL; model_to_string appends the pandas categories
    return length.value - 1 + len(basic._dump_pandas_categorical(model.pandas_categorical))
