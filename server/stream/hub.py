"""The fan-out engine: one bounded outgoing queue per subscriber.

:meth:`Hub.broadcast` is synchronous and O(subscribers): it appends a reference to the shared,
already-encoded :class:`Record` to each subscriber's queue. Nothing a subscriber does can delay
the publisher or another subscriber.

Writing, per connection:

* a connection that takes prebuilt frames (a :class:`~mlops_hooks.server.stream.frames.FrameSink`,
  offered by ``mlops-hooks serve``) is written by the hub itself, once per turn of the event
  loop: everything queued for it since the last turn goes out as one write of the records'
  shared frames, in batches of at most :data:`BATCH_BYTES`, as long as its transport takes
  data. A connection whose transport is full waits for it to drain in its own writer task
  while its queue keeps the policy below;
* any other connection has a writer task that awaits the ASGI ``send`` of each message.

Delivery policy, per subscriber:

* lifecycle events (``Record.key is None``) are always delivered, in ``seq`` order;
* superseded state (``training_progress`` per run, ``system_metrics``, ``upload_progress`` per
  file, ``prediction_volume`` per model) is coalesced: while an older event with the same key
  is still waiting, the newer one replaces it (and is sent at its own, later, position, so
  ``seq`` stays increasing);
* a subscriber whose queue still exceeds its byte or event budget is closed with code 4008 and
  a reason telling it to reconnect with ``?since=``; its queue is freed at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from mlops_hooks.server.ops.metrics import Metrics
from mlops_hooks.server.stream.record import Record

if TYPE_CHECKING:
    from mlops_hooks.server.stream.frames import FrameSink

__all__ = ["BATCH_BYTES", "Hub", "Subscriber"]

log = logging.getLogger("mlops_hooks.server")

#: Yield to the event loop after this many consecutive sends (fairness between writers).
_YIELD_EVERY = 32
#: Largest write of frames to one connection (a full transport pauses after it).
BATCH_BYTES = 64 * 1024

#: The connection's ASGI ``send``: it receives :attr:`Record.message` as it is.
Send = Callable[[dict[str, Any]], Awaitable[None]]


class Subscriber:
    """One subscriber's queue and writer.

    Args:
        hub: The hub it belongs to.
        send: The connection's ASGI ``send`` (raises when the client is gone).
        types: Event types to deliver (``None``: all); control messages always pass.
        sink: The connection's frame sink, when it has one: the hub then writes the records'
            frames to it directly and ``send`` carries no event.
    """

    __slots__ = ("_dirty", "_latest", "_live", "_primed", "_queue", "_wake", "allowance",
                 "closed", "hub", "last_seq", "nbytes", "nqueued", "send", "sink", "slow",
                 "task", "types")

    def __init__(self, hub: Hub, send: Send, types: frozenset[str] | None = None,
                 sink: FrameSink | None = None) -> None:
        self.hub = hub
        self.send = send
        self.types = types
        self.sink = sink
        self._queue: deque[Record] = deque()
        self._latest: dict[str, Record] = {}
        self._wake = asyncio.Event()
        self.nbytes = 0
        self.nqueued = 0
        self.last_seq = 0
        #: Bytes of the snapshot/replay still queued: they do not count against the budget.
        self.allowance = 0
        self._primed = 0
        self.slow = False
        #: Removed from the hub: nothing more is written.
        self.closed = False
        self._live = False
        self._dirty = False
        self.task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ producer side

    def offer(self, record: Record) -> None:
        """Queue ``record`` (coalescing superseded state); close the subscriber when over budget."""
        if self.slow:
            return
        key = record.key
        if key is not None:
            old = self._latest.get(key)
            if old is not None:
                self.nbytes -= old.nbytes
                self.nqueued -= 1
                self.hub.metrics.coalesced[old.type] += 1
            self._latest[key] = record
        self._queue.append(record)
        self.nbytes += record.nbytes
        self.nqueued += 1
        if self.nbytes > self.hub.max_bytes + self.allowance or \
                self.nqueued > self.hub.max_events + self._primed:
            self._overflow()
        elif self._live:
            if self.sink is None:
                self._wake.set()
            elif not self._dirty:
                self.hub.mark(self)

    def coalesce(self, records: Iterable[Record]) -> list[Record]:
        """Drop from ``records`` the state events superseded by a later one (there or queued)."""
        kept: list[Record] = []
        seen: set[str] = set()
        for record in reversed(list(records)):
            key = record.key
            if key is not None:
                if key in seen or key in self._latest:
                    self.hub.metrics.coalesced[record.type] += 1
                    continue
                seen.add(key)
            kept.append(record)
        kept.reverse()
        return kept

    def prime(self, records: Iterable[Record], last_seq: int, *, counted: bool = False) -> None:
        """Put ``records`` (snapshot or replay) ahead of the live events queued meanwhile.

        Args:
            records: What to send first, in order (pass replayed events through
                :meth:`coalesce` first).
            last_seq: The ``seq`` they bring the client to; queued live events at or below it
                are skipped (the handoff has no duplicate).
            counted: Their bytes count against the byte budget (the snapshot, which is
                bounded); otherwise they are allowed on top of it until sent.
        """
        for record in reversed(list(records)):
            if record.key is not None:
                self._latest.setdefault(record.key, record)
            self._queue.appendleft(record)
            self.nbytes += record.nbytes
            self.nqueued += 1
            if not counted:
                self.allowance += record.nbytes
            self._primed += 1
        self.last_seq = last_seq

    def push(self, record: Record) -> None:
        """Queue a control message (pong, error) behind what is already queued."""
        self.offer(record)

    def _overflow(self) -> None:
        self.slow = True
        self.hub.metrics.dropped += self.nqueued
        self.hub.metrics.closed_slow += 1
        self._queue.clear()
        self._latest.clear()
        self.nbytes = self.nqueued = 0
        if self.task is not None:
            self.task.cancel()

    # ------------------------------------------------------------------ writer side

    def start(self) -> asyncio.Task[None]:
        """Start writing (what :meth:`prime` queued goes first)."""
        sink = self.sink
        self.task = asyncio.get_running_loop().create_task(
            self._run() if sink is None else self._drain(sink))
        self._live = True
        if self.slow:
            self.task.cancel()
        elif sink is not None:
            self.hub.mark(self)
        return self.task

    def _next(self) -> Record | None:
        """Take the next queued record; ``None`` when it is not to be sent."""
        record = self._queue.popleft()
        if self._primed:
            self._primed -= 1
            if not self._primed:
                self.allowance = 0
        key = record.key
        if key is not None:
            latest = self._latest
            if latest.get(key) is not record:
                return None  # superseded while waiting
            del latest[key]
        self.nbytes -= record.nbytes
        self.nqueued -= 1
        seq = record.seq
        if seq:
            if seq <= self.last_seq:
                return None  # already covered by the snapshot or replay
            self.last_seq = seq
        return record

    def flush(self) -> bool:
        """Write the queued frames to the sink while it takes them; ``True`` once all are out."""
        sink, queue = self.sink, self._queue
        assert sink is not None
        if self.closed:
            return True
        out = self.hub.metrics.events_out
        while queue:
            if not sink.ready():
                return False
            parts: list[bytes] = []
            size = 0
            while queue and size < BATCH_BYTES:
                record = self._next()
                if record is not None:
                    parts.append(record.frame)
                    size += len(record.frame)
                    out[record.type] += 1
            if parts:
                sink.write(parts[0] if len(parts) == 1 else b"".join(parts))
        return True

    async def _drain(self, sink: FrameSink) -> None:
        """Writer of a sink connection: takes over while its transport is full."""
        wake = self._wake
        while True:
            wake.clear()
            if self.flush():
                await wake.wait()
            elif not await sink.drained():
                return  # the connection is closing

    async def _run(self) -> None:
        """Writer of a plain ASGI connection: one awaited ``send`` per message."""
        queue, wake, send = self._queue, self._wake, self.send
        out = self.hub.metrics.events_out
        burst = 0
        while True:
            if not queue:
                wake.clear()
                burst = 0
                await wake.wait()
                continue
            record = self._next()
            if record is None:
                continue
            await send(record.message)
            out[record.type] += 1
            burst += 1
            if burst >= _YIELD_EVERY:
                burst = 0
                await asyncio.sleep(0)


class Hub:
    """All subscribers of this server and the budgets they share.

    Args:
        metrics: Where counters go.
        max_bytes: Byte budget of one subscriber's queue.
        max_events: Message budget of one subscriber's queue.
    """

    def __init__(self, metrics: Metrics, *, max_bytes: int = 4 * 1024 * 1024,
                 max_events: int = 4096) -> None:
        self.metrics = metrics
        self.max_bytes = max_bytes
        self.max_events = max_events
        self.subscribers: set[Subscriber] = set()
        self._dirty: list[Subscriber] = []
        metrics.gauge("mlops_hooks_subscribers", "Connected subscribers.",
                      lambda: [({}, float(len(self.subscribers)))])
        metrics.gauge("mlops_hooks_queue_depth", "Messages waiting in subscriber queues.",
                      lambda: [({"stat": "total"}, float(self.queue_depth()[0])),
                               ({"stat": "max"}, float(self.queue_depth()[1]))])
        metrics.gauge("mlops_hooks_queue_bytes", "Bytes waiting in subscriber queues.",
                      lambda: [({"stat": "total"}, float(sum(s.nbytes for s in self.subscribers)))])

    def __len__(self) -> int:
        return len(self.subscribers)

    def add(self, send: Send, types: frozenset[str] | None = None,
            sink: FrameSink | None = None) -> Subscriber:
        """Register a subscriber; live records are queued for it from now on."""
        subscriber = Subscriber(self, send, types, sink)
        self.subscribers.add(subscriber)
        return subscriber

    async def remove(self, subscriber: Subscriber) -> None:
        """Unregister ``subscriber`` and stop its writer."""
        self.subscribers.discard(subscriber)
        subscriber.closed = True
        task = subscriber.task
        if task is None:
            return
        if not task.done():
            task.cancel()
        with suppress(asyncio.CancelledError, Exception):
            await task  # also retrieves the exception of a writer whose client went away

    def broadcast(self, record: Record) -> None:
        """Queue ``record`` for every subscriber that wants its type."""
        kind = record.type
        for subscriber in self.subscribers:
            types = subscriber.types
            if types is None or kind in types:
                subscriber.offer(record)

    def mark(self, subscriber: Subscriber) -> None:
        """Write ``subscriber``'s queue at the event loop's next turn (with others' writes)."""
        subscriber._dirty = True
        if not self._dirty:
            asyncio.get_running_loop().call_soon(self._flush)
        self._dirty.append(subscriber)

    def _flush(self) -> None:
        dirty, self._dirty = self._dirty, []
        for subscriber in dirty:
            subscriber._dirty = False
            try:
                if not subscriber.flush():
                    subscriber._wake.set()  # its writer waits for the transport to drain
            except Exception:  # a bug: lose this subscriber, never the others
                log.exception("mlops-hooks: writing to a subscriber failed")
                subscriber.closed = True
                if subscriber.task is not None:
                    subscriber.task.cancel()

    def queue_depth(self) -> tuple[int, int]:
        """(messages waiting in all queues, the longest queue)."""
        sizes = [s.nqueued for s in self.subscribers]
        return sum(sizes), max(sizes, default=0)
