"""What every framework adapter shares: argument checks, never-raising hooks, metric lookup.

Adapters translate framework hooks into :class:`mlops_hooks.run.Run` calls; this module only
holds the glue they have in common so each adapter stays a thin translation layer.
"""

from __future__ import annotations

import functools
import math
import sys
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from mlops_hooks.formatting import to_float
from mlops_hooks.run import Emit

__all__ = [
    "check_emit",
    "check_metric_names",
    "check_name",
    "check_throttle",
    "first_metric",
    "fraction",
    "missing_framework",
    "never_raises",
]

F = TypeVar("F", bound=Callable[..., Any])


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
