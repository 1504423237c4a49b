"""The adapter base: what every framework adapter shares, so each stays a thin translation.

Adapters translate framework hooks into :class:`mlops_hooks.run.Run` calls (the logic all
frameworks share, progress, ETA, stages, throttling, error codes, is the run's). This module
holds the rest they have in common: :class:`Adapter` (constructor options checked at once, the
run built from them, the guard "is there a run to report to"), :class:`FailsOnExit` (``with
callback:`` reports the block's exception), never-raising hooks, metric
lookup, and model sizes (a torch module's tensors, Keras weights, a pickled estimator).
"""

from __future__ import annotations

import functools
import math
import pickle
import re
import sys
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from math import prod
from types import TracebackType
from typing import Any, TypeGuard, TypeVar

from mlops_hooks.formatting import to_float
from mlops_hooks.run import Emit, Run
from mlops_hooks.run.params import (
    flatten,
    probe_git,
    resolve_group,
    resolve_group_size,
    send_params,
)

__all__ = [
    "Adapter",
    "FailsOnExit",
    "check_emit",
    "check_metric_names",
    "check_name",
    "check_throttle",
    "first_metric",
    "fraction",
    "keras_weights_bytes",
    "missing_framework",
    "never_raises",
    "pickled_size",
    "torch_module_bytes",
]

F = TypeVar("F", bound=Callable[..., Any])
_C = TypeVar("_C", bound="FailsOnExit")


def missing_framework(framework: str, extra: str, error: ImportError) -> ImportError:
    """Build the ImportError raised when an adapter's framework is not installed.

    Args:
        framework: What is missing, as users know it (``"PyTorch Lightning"``).
        extra: The ``mlops-hooks`` extra that installs it (``"lightning"``).
        error: The original import error (kept as the cause).

    Returns:
        An ImportError whose message names the extra to install.
    """
    message = (f"mlops_hooks.plugins.{extra} needs {framework}, which is not installed "
               f"({error}); install it with: pip install 'mlops-hooks[{extra}]'")
    result = ImportError(message)
    result.__cause__ = error
    return result


def check_name(name: object) -> str | None:
    """Return ``name`` if it is None or a non-empty string.

    Raises:
        ValueError: ``name`` is something else.
    """
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise ValueError(f"name must be a non-empty string or None, got {name!r}")
    return name


def check_throttle(throttle: object) -> float:
    """Return ``throttle`` as seconds.

    Raises:
        ValueError: ``throttle`` is not a number >= 0.
    """
    if (isinstance(throttle, bool) or not isinstance(throttle, (int, float))
            or not throttle >= 0 or math.isinf(throttle)):
        raise ValueError(f"throttle must be a finite number of seconds >= 0, got {throttle!r}")
    return float(throttle)


def check_emit(emit: object) -> Emit | None:
    """Return ``emit`` if it is None or callable.

    Raises:
        TypeError: ``emit`` is not callable.
    """
    if emit is not None and not callable(emit):
        raise TypeError(f"emit must be a callable taking an event (e.g. pm.dispatch) or None, "
                        f"got {type(emit).__name__}")
    return emit


def check_metric_names(argument: str, names: str | Iterable[str]) -> tuple[str, ...]:
    """Normalise a metric name or a sequence of names (tried in order).

    Raises:
        ValueError: A name is empty or not a string, or no name was given.
    """
    values = (names,) if isinstance(names, str) else tuple(names)
    bad = [n for n in values if not isinstance(n, str) or not n.strip()]
    if bad or not values:
        raise ValueError(f"{argument} must be a metric name or a non-empty sequence of names, "
                         f"got {names!r}")
    return values


def first_metric(metrics: Mapping[str, Any], names: Sequence[str]) -> Any:
    """Return the value of the first of ``names`` present in ``metrics``, else None."""
    for name in names:
        value = metrics.get(name)
        if value is not None:
            return value
    return None


def fraction(value: object) -> float | None:
    """``value`` as a float if it lies in 0-1 (an accuracy), else None."""
    number = to_float(value)
    return number if number is not None and 0.0 <= number <= 1.0 else None


def never_raises(hook: F) -> F:
    """Decorate an adapter hook so a bug in monitoring never reaches the training loop.

    The first exception of each hook is reported as a warning naming the hook; training goes
    on. ``BaseException`` (KeyboardInterrupt, SystemExit) is never swallowed.
    """
    reported: list[bool] = []

    @functools.wraps(hook)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            return hook(*args, **kwargs)
        except Exception as exc:
            if not reported:
                reported.append(True)
                try:
                    warnings.warn(f"mlops-hooks: {hook.__qualname__} failed and was skipped: "
                                  f"{type(exc).__name__}: {exc} (training goes on)",
                                  RuntimeWarning, stacklevel=2)
                except Exception:  # warnings turned into errors must not stop training
                    sys.stderr.write(f"mlops-hooks: {hook.__qualname__} failed: {exc!r}\n")
            return None

    return guarded  # type: ignore[return-value]


def _warn(message: str) -> None:
    try:
        warnings.warn(message, RuntimeWarning, stacklevel=3)
    except Exception:  # warnings turned into errors must not stop training
        sys.stderr.write(message + "\n")


class FailsOnExit:
    """Mixin: ``with callback:`` around a fit reports an exception of the block as a failure.

    For frameworks whose loop has no exception hook the adapter can use. The exception goes to
    the adapter's ``_fail`` (which never raises), then surfaces unchanged.
    """

    def __enter__(self: _C) -> _C:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is not None and self.fails_on(exc):
            self._fail(exc)

    def fails_on(self, exc: BaseException) -> bool:
        """Whether ``exc`` ending the block is the run's failure (any exception, by default)."""
        return True

    def _fail(self, exc: BaseException) -> None:
        """Report ``exc`` as the run's failure (the adapter's own; it never raises)."""
        raise NotImplementedError


class Adapter:
    """Mixin of the three ``MLOpsCallback`` classes: their common options and run guards.

    Call :meth:`configure` from the constructor (it checks every option at once, before the
    framework calls anything), build each fit's run with :meth:`new_run`, and guard hooks with
    :meth:`reporting`.

    Attributes:
        name: What is trained (``None``: the adapter picks the model's name).
        model_id: Identifier of the produced model.
        run_id: Identifier of the run (``None``: generated per fit).
        throttle: Minimum seconds between progress events.
        emit: Where events go (``None``: the process's plugin manager).
    """

    name: str | None
    model_id: str | None
    run_id: str | None
    throttle: float
    emit: Emit | None

    def configure(self, name: object, *, model_id: object, run_id: object, throttle: object,
                  emit: object) -> None:
        """Check and keep the options every adapter takes.

        Raises:
            ValueError: A name is empty, or ``throttle`` is not a number of seconds >= 0.
            TypeError: ``emit`` is not callable.
        """
        self.name = check_name(name)
        self.model_id = check_name(model_id)
        self.run_id = check_name(run_id)
        self.throttle = check_throttle(throttle)
        self.emit = check_emit(emit)

    def new_run(self, default_name: str, *, run_id: str | None = None, throttle: bool = True,
                total_epochs: int | None = None, total_steps: int | None = None,
                steps_per_epoch: int | None = None, emit: Emit | None = None) -> Run:
        """A run with this adapter's options (``name`` or ``default_name``).

        Args:
            default_name: The name when none was given (the model's).
            run_id: Overrides the configured ``run_id`` (a checkpoint's).
            throttle: Use the configured throttle (``False``: the run's default).
            total_epochs: Epochs planned, if known.
            total_steps: Steps planned over the whole run, if known.
            steps_per_epoch: Steps per epoch, if known.
            emit: Overrides the configured ``emit`` (a worker relaying to its main process).
        """
        options: dict[str, Any] = {"throttle": self.throttle} if throttle else {}
        return Run(self.name or default_name, run_id=run_id or self.run_id,
                   model_id=self.model_id, emit=emit or self.emit, total_epochs=total_epochs,
                   total_steps=total_steps, steps_per_epoch=steps_per_epoch, **options)

    #: The user's ``params=`` (flattened) and ``group=``; set by :meth:`configure_params`
    #: (not ``params``: Keras callbacks have their own).
    user_params: Mapping[str, Any] = {}
    group: str | None = None
    #: The user's ``group_size=``, else ``MLOPS_HOOKS_GROUP_SIZE`` (read when configured).
    group_size: int | None = None

    def configure_params(self, params: object, group: object,
                         group_size: object = None) -> None:
        """Check and keep ``params=``, ``group=`` and ``group_size=``; start reading git's commit.

        Raises:
            TypeError: ``params`` is not a mapping.
            ValueError: ``group`` is not a non-empty string, or ``group_size`` (or
                ``MLOPS_HOOKS_GROUP_SIZE``) is not a positive integer.
        """
        if params is not None and not isinstance(params, Mapping):
            raise TypeError(f"params must be a mapping of names to values, got "
                            f"{type(params).__name__}")
        resolve_group(group)  # checked now, resolved (MLOPS_HOOKS_GROUP) when a run starts
        self.user_params = flatten(params or {})  # scalars: the callback stays picklable
        self.group = group if isinstance(group, str) else None
        self.group_size = resolve_group_size(group_size)
        probe_git()  # in the background, long before the run starts

    def send_params(self, run: Run, captured: Callable[[], Mapping[str, Any]], *,
                    default_group: str | None = None, later: bool = False,
                    group_size: int | None = None) -> None:
        """Send a ``run_params`` event for ``run``; never raises.

        Args:
            run: The started run.
            captured: Reads what the adapter sees of the framework (nested mappings are
                flattened); an exception in it is a warning, and the user's ``params=`` are
                sent anyway.
            default_group: The group when neither ``group=`` nor ``MLOPS_HOOKS_GROUP`` names
                one (a scikit-learn search's name).
            later: A later event of the run (scikit-learn's ``best_params_``): only
                ``captured``, without the metadata and the user's ``params=``.
            group_size: How many runs the group plans (a study's ``n_trials``), when known;
                else the user's ``group_size=`` (or ``MLOPS_HOOKS_GROUP_SIZE``).
        """
        merged: dict[str, Any] = {} if later else dict(self.user_params)
        try:
            with warnings.catch_warnings():  # a framework's own deprecations, not the user's
                warnings.simplefilter("ignore")
                flatten(captured(), out=merged)
        except Exception as exc:
            _warn(f"mlops-hooks: some of the run's parameters could not be read "
                       f"({type(exc).__name__}: {exc}); the others are sent")
        send_params(run, merged, group=resolve_group(self.group, default_group),
                    metadata=not later,
                    group_size=group_size or (None if later else self.group_size))

    @staticmethod
    def reporting(run: Run | None) -> TypeGuard[Run]:
        """There is a run, started and not finished, to report to."""
        return run is not None and run.active


def torch_module_bytes(module: Any) -> int | None:
    """Bytes of a torch module's parameters and buffers (what its checkpoint weighs)."""
    try:
        tensors = [*module.parameters(), *module.buffers()]
    except Exception:  # not a torch module
        return None
    return int(sum(t.numel() * t.element_size() for t in tensors))


def keras_weights_bytes(model: Any) -> int | None:
    """Bytes of a Keras model's weights (elements times the dtype width)."""
    try:
        total = 0
        for weight in model.weights:
            bits = re.search(r"\d+", str(weight.dtype))
            total += prod(weight.shape) * (int(bits.group()) // 8 if bits else 1)
        return total
    except Exception:
        return None


class _CountingFile:
    def __init__(self) -> None:
        self.size = 0

    def write(self, data: bytes) -> int:
        self.size += len(data)
        return len(data)


def pickled_size(estimator: Any) -> int | None:
    """Bytes of the pickled estimator (what a deployment loads), counted without a copy."""
    counter = _CountingFile()
    try:
        pickle.Pickler(counter, protocol=pickle.HIGHEST_PROTOCOL).dump(estimator)
    except Exception:  # unpicklable parts (open handles, lambdas): size unknown
        return None
    return counter.size
