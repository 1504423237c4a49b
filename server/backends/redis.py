"""The Redis backend: several servers share one ordered stream and one idempotency space.

``mlops-hooks serve --backend redis://host:port/db`` on each server of a fleet. Publishing runs
one Lua script (:data:`~._redis_support.PUBLISH_LUA`) that recognises a known ``event_id``, or
numbers the event (``INCR``) and appends it to a Redis Stream (``XADD ... MAXLEN ~``) — atomic,
so every server sees one ``seq`` order and a re-sent event gets its original ``seq`` whichever
server it reaches. Every server consumes the stream with ``XREAD BLOCK`` from the last ``seq``
it delivered and hands each record to its state and subscribers in ``seq`` order, so every
server's state converges and a subscriber anywhere sees the same sequence. ``?since=`` replay
comes from this server's ring of recent records, else from the stream (``XRANGE``).

When Redis goes away the server keeps serving its subscribers (and replays from its ring),
reports the outage in :meth:`RedisBackend.describe` (``/healthz``, ``/metrics``), refuses new
events with :class:`ConnectionError` (the publisher keeps them and resends: nothing is
acknowledged that Redis did not store) and reconnects with exponential backoff; consumption
resumes after the last delivered ``seq``. Acknowledged events survive a Redis *crash* only if
Redis persists them (``appendonly yes``, ``appendfsync always`` for no loss at all).
"""

from __future__ import annotations

import asyncio
import bisect
import heapq
import itertools
import logging
import uuid
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from mlops_hooks import events as ev
from mlops_hooks.backoff import Backoff
from mlops_hooks.formatting import iso_utc
from mlops_hooks.server.backends._redis_batch import Batcher
from mlops_hooks.server.backends._redis_support import (
    FLOOR_LUA,
    PUBLISH_LUA,
    parse_redis_url,
    record_seq,
    seq_of,
)
from mlops_hooks.server.backends.base import Deliver, Published
from mlops_hooks.server.config import IDEMPOTENCY_WINDOW
from mlops_hooks.server.stream.record import Record, make_record

__all__ = ["RedisBackend"]

log = logging.getLogger("mlops_hooks.server")

#: Entries read per ``XREAD``.
BATCH = 1000
#: Longest ``XREAD BLOCK``, in milliseconds (kept under the socket timeout).
BLOCK_MS = 2000
#: Seconds :meth:`RedisBackend.publish` waits for its record to come back through this
#: server's consumer before acknowledging anyway (the event is stored either way).
ECHO_TIMEOUT = 5.0
#: Seconds between refreshes of the stream's length and first ``seq`` (for ``describe``).
STATS_EVERY = 2.0
#: What a lost, refused or failing Redis raises.
FAILURES: tuple[type[BaseException], ...] = (RedisError, OSError, asyncio.TimeoutError)


class RedisBackend:
    """Sequence, stream and deduplicate events in Redis, shared by every server on it.

    Args:
        url: ``redis://[user:password@]host[:port][/db][?prefix=NAME]`` (``rediss://`` for TLS);
            servers with the same Redis database and ``prefix`` share one stream.
        replay_size: Length the stream is trimmed to (``MAXLEN ~``) and records kept in this
            server's replay ring.
        idempotency_size: ``event_id`` keys remembered in Redis (the oldest are forgotten).
        max_connections: Size of the Redis connection pool.
        backoff_base: Ceiling of the first reconnect delay, in seconds.
        backoff_cap: Largest reconnect delay, in seconds.

    Raises:
        ValueError: The URL or a size is invalid (the message names it).
    """

    name = "redis"

    def __init__(self, url: str, *, replay_size: int = 10_000,
                 idempotency_size: int = IDEMPOTENCY_WINDOW, max_connections: int = 64,
                 backoff_base: float = 0.1, backoff_cap: float = 5.0) -> None:
        for label, value in (("replay_size", replay_size), ("idempotency_size", idempotency_size),
                             ("max_connections", max_connections)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{label} must be a positive integer, got {value!r}")
        self.target = parse_redis_url(url)
        self.replay_size = replay_size
        self.idempotency_size = idempotency_size
        self.max_connections = max_connections
        self._backoff = Backoff(backoff_base, backoff_cap)
        self._block_ms = max(100, min(BLOCK_MS, int(self.target.socket_timeout * 500)))
        self._ring: deque[Record] = deque(maxlen=replay_size)
        self._delivered = 0
        self._deliver: Deliver | None = None
        self._client: Redis | None = None
        self._publish: AsyncScript | None = None
        self._floor: AsyncScript | None = None
        self._task: asyncio.Task[None] | None = None
        self._batcher = Batcher(self._send_batch)
        self._closing = False
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._tie = itertools.count()
        self._backlog: list[tuple[str, int]] = []
        self._origin = b""
        self.connected = False
        self._ever_connected = False
        self.last_error: str | None = None
        self.last_error_at: str | None = None
        self.reconnects = 0
        self.failures = 0
        self.published = 0
        self.publish_errors = 0
        self.gaps = 0
        self._stream_length: int | None = None
        self._stream_first: int | None = None
        self._stats_at = 0.0

    # ------------------------------------------------------------------ lifecycle

    @property
    def last_seq(self) -> int:
        """The highest ``seq`` this server has delivered."""
        return self._delivered

    async def start(
        self, deliver: Deliver, *, last_seq: int = 0, seen: Iterable[tuple[str, int]] = (),
        origin: str = "",
    ) -> None:
        """Connect, catch up with the stream after ``last_seq``, then follow it.

        A Redis that cannot be reached does not stop the server: the outage is logged and
        reported by :meth:`describe`, and the backend keeps trying in the background.

        Args:
            deliver: Called once per record, in ``seq`` order, on the event loop.
            last_seq: The highest ``seq`` in this server's history (delivery resumes after it;
                the shared counter is raised to at least it).
            seen: ``(event_id, seq)`` pairs from history, added to the shared idempotency set.
            origin: This server's identity: stored with each event it publishes, so that only
                records it published are :attr:`~.base.Record.local` (``""``: a random one).

        Raises:
            RuntimeError: The backend is already started.
        """
        if self._task is not None:
            raise RuntimeError("the redis backend is already started")
        self._deliver = deliver
        self._closing = False
        self._delivered = max(self._delivered, last_seq)
        self._backlog = list(seen)
        self._origin = (origin or uuid.uuid4().hex).encode()
        pool = BlockingConnectionPool.from_url(
            self.target.url, max_connections=self.max_connections,
            timeout=self.target.socket_timeout, socket_timeout=self.target.socket_timeout,
            socket_connect_timeout=min(self.target.socket_timeout, 2.0),
            retry=Retry(NoBackoff(), 0))
        self._client = Redis(connection_pool=pool)
        self._publish = self._client.register_script(PUBLISH_LUA)
        self._floor = self._client.register_script(FLOOR_LUA)
        try:
            await self._connect()
            while await self._read(block=None):
                pass
        except FAILURES as exc:
            self._failed(exc)
        self._task = asyncio.get_running_loop().create_task(self._consume())

    async def close(self) -> None:
        """Stop following the stream and close the connections."""
        self._deliver = None
        self._closing = True
        await self._batcher.close(ConnectionError("the redis backend is closed"))
        task, self._task = self._task, None
        while task is not None and not task.done():
            # Python 3.11's wait_for (inside redis-py) can lose a cancellation that arrives as
            # a socket write completes; the loop also stops at its next turn (_closing).
            task.cancel()
            await asyncio.wait({task}, timeout=0.2)
        if task is not None and not task.cancelled():
            task.exception()  # retrieved (the consumer only ends by cancellation or closing)
        self._wake(None)
        client, self._client = self._client, None
        self._publish = self._floor = None
        if client is not None:
            await client.aclose()
            await client.connection_pool.aclose()
        self.connected = False

    # ------------------------------------------------------------------ publishing

    async def publish(self, event: ev.Event) -> Published:
        """Number ``event`` in Redis (or find its ``event_id``) and append it to the stream.

        Calls are queued in the order they are made and sent in pipelined batches
        (:mod:`._redis_batch`), so the ``seq`` order is the call order. Returns once this
        server has delivered the record (at most :data:`ECHO_TIMEOUT` seconds later), so a
        publisher's next read of this server includes it.

        Raises:
            ConnectionError: Redis did not store the event (unreachable, refusing writes, or
                the backend is not running); nothing was acknowledged.
        """
        if self._publish is None or self._deliver is None:
            raise ConnectionError("the redis backend is not running")
        event.seq = None  # the stream keeps events unnumbered; delivery stamps the seq
        has_id = event.event_id is not None
        args = ["1" if has_id else "0", event.event_id or "", ev.encode(event), self.replay_size,
                self._delivered, self.idempotency_size, self._origin]
        try:
            seq, duplicate = await self._batcher.submit((has_id, args))
        except ConnectionError:
            self.publish_errors += 1
            raise
        if not duplicate:
            self.published += 1
        await self._echo(seq)
        return Published(seq, duplicate)

    async def _send_batch(self, calls: Sequence[tuple[bool, list[Any]]]) -> list[Any]:
        """Run the publish script for each call, in order, in one pipeline."""
        client, script = self._client, self._publish
        if client is None or script is None:
            raise ConnectionError("the redis backend is not running")
        keys = list(self.target.keys)
        # A pooled connection may have gone stale (Redis restarted): a batch whose events all
        # have an event_id can be sent again safely (the script recognises them).
        attempts = 2 if all(has_id for has_id, _ in calls) else 1
        for attempt in range(1, attempts + 1):
            try:
                replies = await self._pipeline(client, script, keys, calls)
                break
            except FAILURES as exc:
                if attempt < attempts and isinstance(exc, (RedisConnectionError, OSError)):
                    continue
                raise self._refused(exc) from exc
        return [self._refused(r) if isinstance(r, Exception) else (int(r[0]), bool(int(r[1])))
                for r in replies]

    @staticmethod
    async def _pipeline(client: Redis, script: AsyncScript, keys: list[str],
                        calls: Sequence[tuple[bool, list[Any]]]) -> list[Any]:
        # The script is loaded at the head of every batch, on the same connection: a Redis
        # that restarted (empty script cache) never refuses part of a batch, which a
        # SCRIPT LOAD after a NoScriptError could not promise (another server's SCRIPT LOAD
        # may land in the middle of this pipeline, so only its tail would run).
        async with client.pipeline(transaction=False) as pipe:
            pipe.script_load(script.script)
            for _, args in calls:
                pipe.evalsha(script.sha, len(keys), *keys, *args)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        loaded, *replies = replies
        if isinstance(loaded, Exception):
            raise loaded
        return replies

    def _refused(self, exc: BaseException) -> ConnectionError:
        self._note(exc)
        return ConnectionError(f"Redis at {self.target.where} did not store the event "
                               f"({type(exc).__name__}: {exc})")

    async def _echo(self, seq: int) -> None:
        if seq <= self._delivered or self._task is None:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (seq, next(self._tie), future))
        await asyncio.wait({future}, timeout=ECHO_TIMEOUT)

    def _wake(self, upto: int | None) -> None:
        waiters = self._waiters
        while waiters and (upto is None or waiters[0][0] <= upto):
            future = heapq.heappop(waiters)[2]
            if not future.done():
                future.set_result(None)

    # ------------------------------------------------------------------ consuming

    async def _connect(self) -> None:
        """(Re)establish: raise the shared counter to what this server has seen, share its ids."""
        assert self._client is not None and self._floor is not None
        seq_key, stream_key, ids_key = self.target.keys
        before, _after = await self._floor(keys=[seq_key, stream_key], args=[self._delivered])
        # An absent counter is normal on first contact (a new Redis); after that it means loss.
        if int(before) < self._delivered and (int(before) >= 0 or self._ever_connected):
            log.warning("mlops-hooks: Redis at %s had numbered events up to %s but this server "
                        "has seen up to %s: Redis lost data (restarted without persistence?); "
                        "numbering continues after %s", self.target.where, max(int(before), 0),
                        self._delivered, self._delivered)
        while self._backlog:
            chunk = dict(self._backlog[:BATCH])
            await self._client.zadd(ids_key, chunk, nx=True)
            del self._backlog[:BATCH]
        if not self.connected:
            if self.last_error is not None:
                # idle pooled connections predate the outage: drop them, not the next publish
                await self._client.connection_pool.disconnect(inuse_connections=False)
                self.reconnects += 1
                log.warning("mlops-hooks: reconnected to Redis at %s; resuming after seq %d",
                            self.target.where, self._delivered)
            self.connected = True
            self._ever_connected = True
            self.failures = 0

    async def _read(self, block: int | None) -> int:
        """Deliver the next entries after the last delivered ``seq``; returns how many."""
        assert self._client is not None
        stream_key = self.target.keys[1]
        reply: Any = await self._client.xread({stream_key: f"{self._delivered}-0"},
                                              count=BATCH, block=block)
        count = 0
        streams = reply.items() if isinstance(reply, dict) else (reply or [])
        for _key, entries in streams:
            for entry_id, fields in entries:
                self._apply(seq_of(entry_id), fields)
                count += 1
        return count

    def _apply(self, seq: int, fields: dict[bytes, bytes]) -> None:
        if seq <= self._delivered:
            return
        previous, self._delivered = self._delivered, seq
        try:
            event = ev.decode(fields[b"d"])
        except (KeyError, ev.EventError) as exc:
            log.error("mlops-hooks: stream entry %s of %s is not an event (%s); skipped",
                      seq, self.target.where, exc)
            self._wake(seq)
            return
        if previous and seq > previous + 1:
            self.gaps += 1
            log.warning("mlops-hooks: seq %d-%d are not in the Redis stream (trimmed, or lost "
                        "by Redis); continuing at %d", previous + 1, seq - 1, seq)
        record = make_record(event, seq, local=fields.get(b"o") == self._origin)
        self._ring.append(record)
        deliver = self._deliver
        if deliver is not None:
            try:
                deliver(record)
            except Exception:  # the consumer must outlive a failing receiver
                log.exception("mlops-hooks: delivering seq %d failed", seq)
        self._wake(seq)

    async def _consume(self) -> None:
        while not self._closing:
            try:
                if not self.connected:
                    await self._connect()
                await self._read(block=self._block_ms)
                await self._refresh_stats()
            except FAILURES as exc:
                if not self._closing:  # close() disconnecting us is not an outage
                    self._failed(exc)
                    await asyncio.sleep(self._backoff.delay(self.failures))

    async def _refresh_stats(self) -> None:
        loop = asyncio.get_running_loop()
        if loop.time() - self._stats_at < STATS_EVERY or self._client is None:
            return
        self._stats_at = loop.time()
        stream_key = self.target.keys[1]
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.xlen(stream_key)
            pipe.xrange(stream_key, count=1)
            length, first = await pipe.execute()
        self._stream_length = int(length)
        self._stream_first = seq_of(first[0][0]) if first else None

    def _note(self, exc: BaseException) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"
        self.last_error_at = iso_utc()

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        self._note(exc)
        if self.connected or self.failures == 1:
            log.warning("mlops-hooks: Redis at %s is unavailable (%s); serving this server's "
                        "subscribers and reconnecting with backoff", self.target.where,
                        self.last_error)
        self.connected = False

    # ------------------------------------------------------------------ replay and facts

    async def replay(self, after: int, upto: int) -> list[Record] | None:
        """Records with ``after < seq <= upto``: from this server's ring, else from the stream.

        Returns:
            The records in order, or ``None`` when some are no longer kept (or Redis is needed
            and unavailable): the subscriber then gets a fresh snapshot.
        """
        upto = min(upto, self._delivered)
        if after >= upto:
            return []
        ring = self._ring
        if ring and ring[0].seq <= after + 1:
            start = bisect.bisect_right(ring, after, key=record_seq)
            end = bisect.bisect_right(ring, upto, key=record_seq)
            return list(itertools.islice(ring, start, end))
        client = self._client
        if client is None or upto - after > self.replay_size:
            return None
        try:
            entries: Any = await client.xrange(self.target.keys[1], min=f"{after + 1}-0",
                                               max=f"{upto}-0", count=upto - after)
        except FAILURES:
            return None
        if not entries or seq_of(entries[0][0]) != after + 1:
            return None
        try:
            return [make_record(ev.decode(fields[b"d"]), seq_of(entry_id))
                    for entry_id, fields in entries]
        except (KeyError, ev.EventError):
            return None

    def describe(self) -> dict[str, object]:
        """Connection state, outage facts and the replay window (``/healthz``, ``/metrics``)."""
        firsts = [s for s in (self._stream_first, self._ring[0].seq if self._ring else None)
                  if s is not None]
        return {
            "backend": self.name,
            "url": self.target.where,
            "stream": self.target.keys[1],
            "connected": self.connected,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "reconnects": self.reconnects,
            "last_seq": self._delivered,
            "replay_from": min(firsts) if firsts else None,
            "replay_size": self.replay_size,
            "stream_length": self._stream_length,
            "published": self.published,
            "publish_errors": self.publish_errors,
            "publish_batches": self._batcher.batches,
            "gaps": self.gaps,
        }
