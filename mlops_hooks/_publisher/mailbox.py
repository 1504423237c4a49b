"""What the training thread and the background thread share: the mailbox and flush markers.

The training thread only ever appends to :attr:`Mailbox.inbox` (``deque.append`` is atomic in
CPython: no lock) and, rarely, sets :attr:`Mailbox.wake`; the background thread takes from the
left. A forked child gets a new mailbox (the parent's is left alone).
"""

from __future__ import annotations

import collections
import threading
from typing import Any

from mlops_hooks import events as ev

__all__ = ["URGENT_CLASSES", "FlushMarker", "Mailbox", "overflow_warning"]

#: Events that end a run: they wake the thread and cut a reconnect delay short.
URGENT_CLASSES = frozenset({ev.TrainingCompleted, ev.TrainingFailed})


class FlushMarker:
    """Placed in the inbox by ``flush()``; set once everything emitted before it is settled."""

    __slots__ = ("delivered", "done", "target")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.delivered = False
        self.target = 0


class Mailbox:
    """What the training thread shares with the background thread.

    Attributes:
        inbox: ``(event, time.time())`` tuples and :class:`FlushMarker` objects, in order.
        wake: Set to wake the background thread early.
        fast: True while the background thread polls the inbox on its own; when false,
            ``emit`` must set :attr:`wake`.
        dropping: Set when the first event is dropped for lack of room (one warning per
            process, whichever side drops first).
    """

    __slots__ = ("dropping", "fast", "inbox", "wake")

    def __init__(self) -> None:
        self.inbox: collections.deque[Any] = collections.deque()
        self.wake = threading.Event()
        self.fast = False
        self.dropping = False  # events have been dropped (warned once, by whoever dropped first)


def overflow_warning(capacity: int, url: str, reason: str | None) -> str:
    """The one line a process prints when it first drops events for lack of room."""
    return (f"mlops-hooks: {capacity} events are waiting for {url} "
            f"({reason or 'server slow or unreachable'}); dropping superseded progress/metrics "
            "events from now on, lifecycle events are kept (MLOPS_HOOKS_BUFFER sets the room)")
