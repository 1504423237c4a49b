"""What the W&B-style API accepts but cannot honour: one warning per feature, never an error.

Artifacts, media (images, tables, histograms, ...), model watching, file saving and the
like have no place in a run's events. Each is accepted (a stand-in object is returned where
W&B returns one) and warns once per process, naming the feature.
"""

from __future__ import annotations

import sys
import threading
import warnings
from typing import Any

__all__ = ["Unsupported", "stand_in", "warn_once"]

_warned: set[str] = set()
_lock = threading.Lock()


def warn_once(feature: str, detail: str = "it is accepted and ignored") -> None:
    """Warn once per process that ``feature`` is not supported (never raises)."""
    with _lock:
        if feature in _warned:
            return
        _warned.add(feature)
    message = f"mlops_hooks.wandb: {feature} is not supported by mlops-hooks; {detail}"
    try:
        warnings.warn(message, UserWarning, stacklevel=3)
    except Exception:  # warnings turned into errors must not stop training
        sys.stderr.write(message + "\n")


class Unsupported:
    """A stand-in for an unsupported W&B object: calls, attributes and items all return one.

    Args:
        feature: The W&B name it stands for (``"wandb.Artifact"``).
    """

    def __init__(self, feature: str) -> None:
        object.__setattr__(self, "_feature", feature)

    def __call__(self, *args: Any, **kwargs: Any) -> Unsupported:
        """Warn once and return another stand-in."""
        warn_once(self._feature)
        return Unsupported(self._feature)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return Unsupported(f"{self._feature}.{name}")

    def __setattr__(self, name: str, value: Any) -> None:
        warn_once(self._feature)

    def __getitem__(self, key: Any) -> Unsupported:
        return self

    def __setitem__(self, key: Any, value: Any) -> None:
        warn_once(self._feature)

    def __iter__(self) -> Any:
        return iter(())

    def __enter__(self) -> Unsupported:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"<unsupported {self._feature}>"


def stand_in(feature: str) -> Any:
    """A stand-in for ``feature`` (a class or function of W&B), warning once when used."""
    return Unsupported(feature)
