"""The functions a training or serving script calls: ``emit`` and ``emit_dict``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlops_hooks import events as ev
from mlops_hooks.manager import get_plugin_manager

__all__ = ["emit", "emit_dict"]


def emit(event: ev.Event) -> None:
    """Send ``event`` to every plugin of this process (the publisher forwards it to the server).

    Never blocks and never raises because of a plugin.

    Raises:
        TypeError: ``event`` is not an event object (use :func:`emit_dict` for dicts).
    """
    if not isinstance(event, ev.Event):
        raise TypeError(
            f"emit() takes an event from mlops_hooks.events, got {type(event).__name__}; "
            "use emit_dict() for a dict"
        )
    get_plugin_manager("training").dispatch(event)


def emit_dict(data: Mapping[str, Any]) -> ev.Event:
    """Validate a dict shaped like the wire format and emit it; return the event.

    Raises:
        EventError: The dict is not a valid event; the message names the field.
    """
    event = ev.from_dict(dict(data))
    get_plugin_manager("training").dispatch(event)
    return event
