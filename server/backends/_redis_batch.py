"""Ordered batching of Redis calls: many publishes, one round trip (and one AOF fsync).

:meth:`Batcher.submit` queues a call *synchronously*, in the order it is made, and returns a
future for its reply. One flusher task sends everything queued as one pipeline (commands run in
order on one connection), then the next batch. With ``appendfsync always`` Redis fsyncs once per
batch instead of once per event; a publisher's pipelined events no longer wait for each other's
round trips; and the ``seq`` order is the order of the calls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

__all__ = ["Batcher"]

#: Calls sent in one pipeline at most.
MAX_BATCH = 256

Send = Callable[[Sequence[Any]], Awaitable[Sequence[Any]]]


class Batcher:
    """Queue calls in order, send them in batches, hand each caller its own reply.

    Args:
        send: Sends a batch of call arguments; returns one reply per call (an exception
            instance for a call that failed alone) or raises for the whole batch.
        max_batch: Calls per batch at most.
    """

    def __init__(self, send: Send, max_batch: int = MAX_BATCH) -> None:
        self._send = send
        self._max_batch = max_batch
        self._queue: list[tuple[Any, asyncio.Future[Any]]] = []
        self._sending: list[tuple[Any, asyncio.Future[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self.batches = 0

    def submit(self, call: Any) -> asyncio.Future[Any]:
        """Queue ``call`` now; the future gets its reply, or the exception that failed it."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append((call, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush())
        return future

    async def _flush(self) -> None:
        while self._queue:
            batch = self._sending = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
            try:
                replies = await self._send([call for call, _ in batch])
            except Exception as exc:  # the whole batch failed (Redis unreachable, ...)
                # Calls queued behind it fail too, even if Redis is back by now: a caller's
                # later event must never be stored before its refused one.
                batch += self._queue
                self._queue = []
                replies = [exc] * len(batch)
            self.batches += 1
            self._sending = []
            for (_, future), reply in zip(batch, replies, strict=True):
                if future.done():  # its caller went away
                    continue
                if isinstance(reply, BaseException):
                    future.set_exception(reply)
                else:
                    future.set_result(reply)

    async def close(self, error: BaseException) -> None:
        """Stop sending; fail what is still queued with ``error``."""
        flusher, self._flusher = self._flusher, None
        queued, self._queue = self._sending + self._queue, []
        self._sending = []
        if flusher is not None and not flusher.done():
            flusher.cancel()
            await asyncio.gather(flusher, return_exceptions=True)
        for _, future in queued:
            if not future.done():
                future.set_exception(error)
