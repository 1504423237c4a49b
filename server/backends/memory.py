"""The in-memory backend: one process, one stream, a bounded replay ring and an LRU of keys."""

from __future__ import annotations

import itertools
from collections import OrderedDict, deque
from collections.abc import Iterable

from mlops_hooks import events as ev
from mlops_hooks.server.backends.base import Deliver, Published
from mlops_hooks.server.config import IDEMPOTENCY_WINDOW
from mlops_hooks.server.stream.record import Record, make_record

__all__ = ["MemoryBackend"]


class MemoryBackend:
    """Sequence events in-process; keep the last ``replay_size`` records for ``?since=``.

    Args:
        replay_size: Records kept for replay.
        idempotency_size: ``event_id`` keys remembered (least recently used are forgotten).

    Raises:
        ValueError: A size is not a positive integer.
    """

    name = "memory"

    def __init__(self, replay_size: int = 10_000,
                 idempotency_size: int = IDEMPOTENCY_WINDOW) -> None:
        for label, value in (("replay_size", replay_size), ("idempotency_size", idempotency_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{label} must be a positive integer, got {value!r}")
        self._ring: deque[Record] = deque(maxlen=replay_size)
        self._seen: OrderedDict[str, int] = OrderedDict()
        self._seen_max = idempotency_size
        self._seq = 0
        self._deliver: Deliver | None = None

    @property
    def last_seq(self) -> int:
        """The highest ``seq`` assigned so far."""
        return self._seq

    async def start(
        self, deliver: Deliver, *, last_seq: int = 0, seen: Iterable[tuple[str, int]] = (),
        origin: str = "",
    ) -> None:
        """Start streaming to ``deliver``, numbering after ``last_seq`` (every record is local)."""
        self._deliver = deliver
        self._seq = max(self._seq, last_seq)
        for event_id, seq in seen:
            self._remember(event_id, seq)

    async def close(self) -> None:
        """Stop streaming (records already kept stay readable)."""
        self._deliver = None

    def _remember(self, event_id: str, seq: int) -> None:
        self._seen[event_id] = seq
        self._seen.move_to_end(event_id)
        if len(self._seen) > self._seen_max:
            self._seen.popitem(last=False)

    async def publish(self, event: ev.Event) -> Published:
        """Number ``event`` and deliver it, or return the original ``seq`` of a known key.

        Raises:
            ConnectionError: The backend is not started (or already closed).
        """
        deliver = self._deliver
        if deliver is None:
            raise ConnectionError("the memory backend is not running")
        if event.event_id is not None:
            known = self._seen.get(event.event_id)
            if known is not None:
                self._seen.move_to_end(event.event_id)
                return Published(known, duplicate=True)
        self._seq += 1
        record = make_record(event, self._seq)
        # The ring keeps the encoded forms only: the decoded event is needed just once, now.
        self._ring.append(Record(record.seq, record.type, record.key, record.text, record.nbytes,
                                 None, record.local, record.message, record.frame))
        if event.event_id is not None:
            self._remember(event.event_id, record.seq)
        deliver(record)
        return Published(record.seq)

    async def replay(self, after: int, upto: int) -> list[Record] | None:
        """Records with ``after < seq <= upto``; ``None`` when the ring no longer has them all."""
        upto = min(upto, self._seq)
        if after >= upto:
            return []
        oldest = self._ring[0].seq if self._ring else self._seq + 1
        if after + 1 < oldest:
            return None
        # Every assigned seq enters the ring, so positions are contiguous.
        return list(itertools.islice(self._ring, after + 1 - oldest, upto + 1 - oldest))

    def describe(self) -> dict[str, object]:
        """Name, last seq and the replay window."""
        return {
            "backend": self.name,
            "last_seq": self._seq,
            "replay_from": self._ring[0].seq if self._ring else None,
            "replay_size": self._ring.maxlen,
        }
