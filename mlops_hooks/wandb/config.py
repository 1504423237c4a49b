"""``wandb.config`` and ``run.summary``: dict-like objects with attribute access.

:class:`Config` holds the run's configuration; every change is passed to ``on_change`` (the run
sends it as parameters, nested dicts flattened with ``.``). :class:`Summary` holds each key's
final value: the last logged one unless set explicitly.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator, Mapping
from typing import Any

__all__ = ["Config", "Summary", "as_mapping"]


def as_mapping(values: object, what: str = "config") -> dict[str, Any]:
    """``values`` as a dict: a mapping, an ``argparse.Namespace`` or an object's ``__dict__``.

    Raises:
        TypeError: ``values`` is none of these.
    """
    if values is None:
        return {}
    if isinstance(values, Mapping):
        return {str(k): v for k, v in values.items()}
    if isinstance(values, argparse.Namespace) or hasattr(values, "__dict__"):
        return {str(k): v for k, v in vars(values).items() if not str(k).startswith("_")}
    raise TypeError(f"{what} must be a dict, an argparse.Namespace or an object with "
                    f"attributes, got {type(values).__name__}")


class _AttrDict:
    """Dict access and attribute access to the same items."""

    def __init__(self) -> None:
        object.__setattr__(self, "_items", {})

    _items: dict[str, Any]

    def _set(self, values: Mapping[str, Any]) -> None:
        self._items.update(values)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self._items[name]
        except KeyError:
            raise AttributeError(f"{type(self).__name__} has no key {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self._set({name: value})

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._set({str(key): value})

    def __delitem__(self, key: str) -> None:
        del self._items[key]

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return repr(self._items)

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key``, else ``default``."""
        return self._items.get(key, default)

    def keys(self) -> list[str]:
        """The keys."""
        return list(self._items)

    def values(self) -> list[Any]:
        """The values."""
        return list(self._items.values())

    def items(self) -> list[tuple[str, Any]]:
        """The ``(key, value)`` pairs."""
        return list(self._items.items())

    def as_dict(self) -> dict[str, Any]:
        """A copy of the items as a plain dict."""
        return dict(self._items)


class Config(_AttrDict):
    """The run's configuration (``wandb.config``): ``config.lr``, ``config["lr"]``, ``update``.

    Args:
        on_change: Called with the keys that changed (and their values) after each change.
    """

    def __init__(self, on_change: Callable[[dict[str, Any]], None] | None = None) -> None:
        super().__init__()
        object.__setattr__(self, "_on_change", on_change)

    _on_change: Callable[[dict[str, Any]], None] | None

    def _set(self, values: Mapping[str, Any]) -> None:
        changed = {k: v for k, v in values.items() if k not in self._items
                   or self._items[k] is not v}
        self._items.update(values)
        if changed and self._on_change is not None:
            self._on_change(changed)

    def update(self, d: object = None, allow_val_change: bool | None = None,
               **kwargs: Any) -> None:
        """Set several keys: ``d`` (a dict, ``argparse.Namespace`` or object) and ``kwargs``.

        Raises:
            TypeError: ``d`` is not one of these.
        """
        values = as_mapping(d)
        values.update(kwargs)
        self._set(values)

    def setdefaults(self, d: object) -> None:
        """Set the keys of ``d`` that are not set yet (W&B's ``config.setdefaults``)."""
        self._set({k: v for k, v in as_mapping(d).items() if k not in self._items})

    def persist(self) -> None:
        """Accepted for W&B compatibility (every change is sent already)."""


class Summary(_AttrDict):
    """Each key's final value (``run.summary``): the last logged value unless set here.

    Keys set by the script (``summary["best"] = 0.9``, ``update``) are :attr:`explicit`; the
    run sends them as its last point when it finishes.
    """

    def __init__(self) -> None:
        super().__init__()
        object.__setattr__(self, "_explicit", set())

    _explicit: set[str]

    def _set(self, values: Mapping[str, Any]) -> None:
        self._items.update(values)
        self._explicit.update(values)

    def logged(self, values: Mapping[str, Any]) -> None:
        """Take logged values as the latest (keys the script set explicitly are kept)."""
        explicit = self._explicit
        if explicit:
            values = {k: v for k, v in values.items() if k not in explicit}
        self._items.update(values)

    @property
    def explicit(self) -> dict[str, Any]:
        """The values the script set (not merely logged)."""
        return {k: self._items[k] for k in self._explicit if k in self._items}

    def update(self, d: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        """Set several final values."""
        values = dict(d or {})
        values.update(kwargs)
        self._set({str(k): v for k, v in values.items()})
