"""The publisher's bounded buffer: events waiting to be sent, in emission order.

When the buffer holds ``capacity`` events and another arrives, the oldest *superseded* kind of
event goes first: ``training_progress`` (unless it reports a non-finite loss,
``loss_not_finite``), ``system_metrics``, ``upload_progress`` and ``prediction_volume`` without
a milestone (a newer one of the same kind says more). Lifecycle events
(:data:`mlops_hooks.events.LIFECYCLE_TYPES`) and milestones are never dropped in favour of
anything; only a process that piles up more than ``hard_limit`` of them while the server is
unreachable loses the oldest, so memory stays bounded whatever the script does. Dropping
removes events but never reorders them, so the order of a run's events is kept.

Dropped entries are marked dead and skipped (``O(1)``); the deque is compacted when the dead
outnumber the live, so a long outage costs amortised ``O(1)`` per event and bounded memory.
"""

from __future__ import annotations

from collections import deque

from mlops_hooks import events as ev

__all__ = ["DROPPABLE_TYPES", "Entry", "EventBuffer", "is_droppable"]

#: Event types a newer event of the same kind supersedes.
DROPPABLE_TYPES = frozenset(
    {"training_progress", "system_metrics", "upload_progress", "prediction_volume",
     "host_metrics"}
)
_DROPPABLE_CLASSES = frozenset(ev.ALL_EVENT_CLASSES[t] for t in DROPPABLE_TYPES)


def is_droppable(event: ev.Event) -> bool:
    """Whether ``event`` may be dropped when the buffer is full (progress and metrics)."""
    if type(event) not in _DROPPABLE_CLASSES:
        return False
    if isinstance(event, ev.TrainingProgress):  # a NaN/Inf loss is news (alerts), not state
        return event.loss_not_finite is None
    return not (isinstance(event, ev.PredictionVolume) and event.milestone_reached is not None)


class Entry:
    """One event on its way to the server.

    Attributes:
        n: Position in this process's emission order (1, 2, ...).
        event: The event as emitted (``None`` once dropped).
        enqueued: ``time.time()`` when it was emitted (its timestamp when it has none).
        droppable: Whether the drop policy may remove it.
        payload: The validated wire bytes, once prepared (kept for resending).
        event_id: Its idempotency key, once prepared.
        sent_at: ``time.monotonic()`` of the last send.
        dead: Dropped while waiting.
    """

    __slots__ = ("dead", "droppable", "enqueued", "event", "event_id", "n", "payload", "sent_at")

    def __init__(self, n: int, event: ev.Event, enqueued: float) -> None:
        self.n = n
        self.event: ev.Event | None = event
        self.enqueued = enqueued
        self.droppable = is_droppable(event)
        self.payload: bytes | None = None
        self.event_id: str | None = None
        self.sent_at = 0.0
        self.dead = False


class EventBuffer:
    """Events waiting to be sent, oldest first, bounded by the drop policy above.

    Args:
        capacity: Events kept before droppable ones are dropped (at least 1).
        hard_limit: Events kept at most, lifecycle included (default ``4 * capacity``).

    Attributes:
        dropped: Events dropped so far.
    """

    def __init__(self, capacity: int, hard_limit: int | None = None) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity!r}")
        self.capacity = capacity
        self.hard_limit = max(capacity, hard_limit or 4 * capacity)
        self._entries: deque[Entry] = deque()
        self._droppable: deque[Entry] = deque()
        self._live = 0
        self.dropped = 0

    def __len__(self) -> int:
        """Live (not dropped) entries waiting."""
        return self._live

    def add(self, entry: Entry, outstanding: int = 0) -> list[Entry]:
        """Append ``entry``, dropping per the policy; return the entries dropped.

        Args:
            entry: The newest event.
            outstanding: Events already sent and unacknowledged, which count towards the
                capacity (they come back here if the connection drops).

        Returns:
            The dropped entries (possibly ``entry`` itself), oldest first.
        """
        dropped: list[Entry] = []
        while self._live + outstanding >= self.capacity and self._droppable:
            dropped.append(self._kill(self._droppable.popleft()))
        if self._live + outstanding >= self.capacity and entry.droppable:
            entry.dead = True
            entry.event = None
            self.dropped += 1
            dropped.append(entry)
            return dropped
        while self._live + outstanding >= self.hard_limit and self._live:
            dropped.append(self._kill(self._first_live()))
        self._entries.append(entry)
        if entry.droppable:
            self._droppable.append(entry)
        self._live += 1
        if len(self._entries) > 2 * self._live + 64:
            self._entries = deque(e for e in self._entries if not e.dead)
        return dropped

    def pop(self) -> Entry | None:
        """Remove and return the oldest live entry, or ``None`` when empty."""
        entries = self._entries
        while entries:
            entry = entries.popleft()
            if entry.dead:
                continue
            if entry.droppable:
                self._droppable.popleft()  # the oldest droppable is this very entry
            self._live -= 1
            return entry
        return None

    def peek_n(self) -> int | None:
        """The emission number of the oldest live entry, or ``None`` when empty."""
        entries = self._entries
        while entries and entries[0].dead:
            entries.popleft()
        return entries[0].n if entries else None

    def requeue(self, entries: list[Entry]) -> None:
        """Put unacknowledged entries back in front, in order (after a lost connection).

        Args:
            entries: Entries older than everything buffered, oldest first.
        """
        for entry in reversed(entries):
            self._entries.appendleft(entry)
            if entry.droppable:
                self._droppable.appendleft(entry)
            self._live += 1

    def clear(self) -> list[Entry]:
        """Remove and return every live entry, oldest first."""
        live = [e for e in self._entries if not e.dead]
        self._entries.clear()
        self._droppable.clear()
        self._live = 0
        return live

    def _first_live(self) -> Entry:
        entry = self._entries[0]
        while entry.dead:
            self._entries.popleft()
            entry = self._entries[0]
        if entry.droppable:
            self._droppable.popleft()
        return entry

    def _kill(self, entry: Entry) -> Entry:
        """Drop a live entry that is in the buffer (it is skipped when reached)."""
        entry.dead = True
        entry.event = None
        entry.payload = None
        self._live -= 1
        self.dropped += 1
        return entry
