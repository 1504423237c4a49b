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

__all__ = ["ENDS", "URGENT_CLASSES", "FlushMarker", "Mailbox", "Runs", "overflow_warning"]

#: Events that end a run: they wake the thread and cut a reconnect delay short.
URGENT_CLASSES = frozenset({ev.TrainingCompleted, ev.TrainingFailed})
#: Events that end their run.
ENDS = (ev.TrainingCompleted, ev.TrainingFailed)


class Runs:
    """The runs a worker carries: which are open, and whether one has ended."""

    __slots__ = ("closed", "ended", "open")

    def __init__(self) -> None:
        self.open: set[str] = set()
        self.closed: set[str] = set()
        self.ended = False

    def observe(self, event: ev.Event) -> None:
        """Note one event (training_completed/failed close its run; progress reopens one)."""
        run_id = event.run_id
        if run_id is None:
            return
        if type(event) in ENDS:
            self.open.discard(run_id)
            self.closed.add(run_id)
            self.ended = True
        elif run_id not in self.closed or type(event) is ev.TrainingProgress:
            self.closed.discard(run_id)
            self.open.add(run_id)

    @property
    def all_ended(self) -> bool:
        """A run has ended and none is open."""
        return self.ended and not self.open


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
        runs: The runs the background threads carried (one thread after another).
        unreachable: Why the server could not be reached, once a thread retired for that
            (empty until then); the next thread starts from there.
    """

    __slots__ = ("dropping", "fast", "inbox", "runs", "unreachable", "wake")

    def __init__(self) -> None:
        self.inbox: collections.deque[Any] = collections.deque()
        self.wake = threading.Event()
        self.fast = False
        self.dropping = False  # events have been dropped (warned once, by whoever dropped first)
        self.runs = Runs()
        self.unreachable = ""


def overflow_warning(capacity: int, url: str, reason: str | None) -> str:
    """The one line a process prints when it first drops events for lack of room."""
    return (f"mlops-hooks: {capacity} events are waiting for {url} "
            f"({reason or 'server slow or unreachable'}); dropping superseded progress/metrics "
            "events from now on, lifecycle events are kept (MLOPS_HOOKS_BUFFER sets the room)")
