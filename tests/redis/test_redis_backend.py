"""RedisBackend in-process against a real redis-server: numbering, idempotency, replay, outages."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import pytest
import redis as redis_sync

from mlops_hooks import events as ev
from mlops_hooks.server.backends import Backend, Record, create_backend
from mlops_hooks.server.backends.redis import RedisBackend
from tests.redis_server import RedisServer

pytestmark = pytest.mark.timeout(60)


class Sink:
    """A ``deliver`` callback that keeps what it gets."""

    def __init__(self) -> None:
        self.records: list[Record] = []

    def __call__(self, record: Record) -> None:
        self.records.append(record)

    @property
    def seqs(self) -> list[int]:
        return [r.seq for r in self.records]

    @property
    def texts(self) -> list[str]:
        return [r.text for r in self.records]


def activity(n: int, event_id: str | None = None) -> ev.Event:
    return ev.from_dict({
        "type": "activity_update", "event_id": event_id,
        "timestamp": "2025-12-06T10:30:00.000Z",
        "activity": {"id": f"act_{n}", "title": f"step {n}", "description": "d",
                     "user": "test", "action_type": "test", "status": "completed",
                     "timestamp": "2025-12-06T10:30:00.000Z"}})


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.01)


def run(coro: Awaitable[None]) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


async def started(url: str, sink: Sink | None = None, **kwargs: object) -> RedisBackend:
    backend = RedisBackend(url, **kwargs)  # type: ignore[arg-type]
    await backend.start(sink if sink is not None else Sink())
    return backend


def test_create_backend_picks_redis_by_scheme(redis_server: RedisServer) -> None:
    backend = create_backend(redis_server.url, replay_size=123)
    assert isinstance(backend, RedisBackend)
    assert isinstance(backend, Backend)
    assert backend.replay_size == 123
    assert backend.describe()["connected"] is False  # not started yet


def test_publish_numbers_in_order_and_delivers_once(redis_server: RedisServer) -> None:
    async def main() -> None:
        sink = Sink()
        backend = await started(redis_server.url, sink)
        results = [await backend.publish(activity(i)) for i in range(20)]
        assert [r.seq for r in results] == list(range(1, 21))
        assert not any(r.duplicate for r in results)
        # publish returns once this server delivered the record (read-your-writes)
        assert sink.seqs == list(range(1, 21))
        assert backend.last_seq == 20
        assert ev.decode(sink.records[4].text).seq == 5
        facts = backend.describe()
        assert facts["connected"] is True and facts["last_error"] is None
        assert facts["published"] == 20
        # concurrent calls are numbered in call order, sent in a few pipelined batches
        batches = backend.describe()["publish_batches"]
        burst = await asyncio.gather(*(backend.publish(activity(i)) for i in range(100)))
        assert [r.seq for r in burst] == list(range(21, 121))
        assert backend.describe()["publish_batches"] - batches < 10  # type: ignore[operator]
        await backend.close()
    run(main())


def test_two_servers_share_one_order_and_one_idempotency_space(redis_server: RedisServer) -> None:
    async def main() -> None:
        sink_a, sink_b = Sink(), Sink()
        a = await started(redis_server.url, sink_a)
        b = await started(redis_server.url, sink_b)
        # 200 events published concurrently through both servers
        results = await asyncio.gather(*(
            (a if i % 2 else b).publish(activity(i, event_id=f"id-{i}")) for i in range(200)))
        assert sorted(r.seq for r in results) == list(range(1, 201))
        await until(lambda: len(sink_a.records) == 200 and len(sink_b.records) == 200)
        assert sink_a.seqs == sink_b.seqs == list(range(1, 201))
        assert sink_a.texts == sink_b.texts  # byte-identical records on both servers
        # a re-sent event gets its original seq from either server, and is not delivered again
        first = results[7]
        again_a = await a.publish(activity(7, event_id="id-7"))
        again_b = await b.publish(activity(7, event_id="id-7"))
        assert (again_a.seq, again_a.duplicate) == (first.seq, True)
        assert (again_b.seq, again_b.duplicate) == (first.seq, True)
        # A marker published after both: one stream, so a duplicate would be delivered before it.
        marker = await b.publish(activity(200, event_id="marker"))
        assert (marker.seq, marker.duplicate) == (201, False)
        await until(lambda: sink_a.seqs[-1:] == sink_b.seqs[-1:] == [201])
        assert sink_a.seqs == sink_b.seqs == list(range(1, 202))  # nothing delivered twice
        await a.close()
        await b.close()
    run(main())


def test_an_emptied_script_cache_never_refuses_part_of_a_batch(
        redis_server: RedisServer) -> None:
    """Redis forgot its scripts (restarted, or a fleet's first batches) while two servers
    publish at once: every event is stored, in call order. (One server's SCRIPT LOAD landing
    in the middle of the other's batch once made only the head of that batch fail.)"""
    flusher = redis_sync.Redis.from_url(redis_server.url)

    async def main() -> None:
        a, b = await started(redis_server.url), await started(redis_server.url)
        try:
            for round_ in range(10):
                flusher.script_flush()
                burst = await asyncio.gather(*(
                    (a if i % 2 else b).publish(activity(i)) for i in range(400)))
                assert sorted(r.seq for r in burst) == list(range(400 * round_ + 1,
                                                                   400 * round_ + 401))
        finally:
            await a.close()
            await b.close()
    try:
        run(main())
    finally:
        flusher.close()


def test_a_late_server_catches_up_before_start_returns(redis_server: RedisServer) -> None:
    async def main() -> None:
        a = await started(redis_server.url)
        for i in range(30):
            await a.publish(activity(i))
        late = Sink()
        b = await started(redis_server.url, late)
        assert late.seqs == list(range(1, 31))  # already delivered when start() returned
        # a server restarted with history resumes after its last seq
        resumed = Sink()
        c = RedisBackend(redis_server.url)
        await c.start(resumed, last_seq=25)
        assert resumed.seqs == [26, 27, 28, 29, 30]
        for backend in (a, b, c):
            await backend.close()
    run(main())


def test_history_raises_the_shared_counter_and_its_event_ids_are_known(
        redis_server: RedisServer) -> None:
    async def main() -> None:
        backend = RedisBackend(redis_server.url)
        await backend.start(Sink(), last_seq=500, seen=[("old-1", 480), ("old-2", 499)])
        assert (await backend.publish(activity(1))).seq == 501
        known = await backend.publish(activity(2, event_id="old-2"))
        assert (known.seq, known.duplicate) == (499, True)
        await backend.close()
    run(main())


def test_replay_from_ring_and_from_stream_and_none_when_trimmed(
        redis_server: RedisServer) -> None:
    async def main() -> None:
        sink = Sink()
        a = await started(redis_server.url, sink)
        for i in range(40):
            await a.publish(activity(i))
        ring = await a.replay(10, 20)
        assert ring is not None and [r.seq for r in ring] == list(range(11, 21))
        assert [r.text for r in ring] == sink.texts[10:20]
        assert await a.replay(40, 40) == []
        assert await a.replay(35, 99) == sink.records[35:]  # upto clamps to what was delivered
        # a server whose ring does not reach back reads the shared stream
        b = RedisBackend(redis_server.url)
        await b.start(Sink(), last_seq=40)
        for i in range(3):
            await a.publish(activity(100 + i))
        await until(lambda: b.last_seq == 43)
        streamed = await b.replay(5, 43)
        assert streamed is not None and [r.seq for r in streamed] == list(range(6, 44))
        assert [r.text for r in streamed[:35]] == sink.texts[5:40]
        await a.close()
        await b.close()

        # a short stream (MAXLEN ~ 10) cannot replay from the beginning: None -> snapshot
        small_sink = Sink()
        small = RedisBackend(redis_server.url + "?prefix=small", replay_size=10)
        await small.start(small_sink)
        for i in range(300):
            await small.publish(activity(i))
        other = RedisBackend(redis_server.url + "?prefix=small", replay_size=10)
        await other.start(Sink(), last_seq=300)
        assert await other.replay(0, 300) is None
        length = redis_sync.Redis.from_url(redis_server.url).xlen("{small}:stream")
        assert length < 300  # trimmed (approximately, as MAXLEN ~ does)
        tail = await small.replay(295, 300)
        assert tail is not None and [r.seq for r in tail] == [296, 297, 298, 299, 300]
        await small.close()
        await other.close()
    run(main())


def test_prefixes_keep_fleets_apart(redis_server: RedisServer) -> None:
    async def main() -> None:
        blue = await started(redis_server.url + "?prefix=blue")
        green = await started(redis_server.url + "?prefix=green")
        assert (await blue.publish(activity(1, "same"))).seq == 1
        result = await green.publish(activity(1, "same"))
        assert (result.seq, result.duplicate) == (1, False)
        await blue.close()
        await green.close()
    run(main())


def test_outage_refuses_events_reports_and_resumes(redis_aof: RedisServer,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        sink = Sink()
        backend = await started(redis_aof.url, sink, backoff_cap=0.5)
        for i in range(5):
            await backend.publish(activity(i, f"before-{i}"))
        redis_aof.kill()
        with pytest.raises(ConnectionError, match=r"Redis at redis://127\.0\.0\.1:\d+/0 did not"):
            await backend.publish(activity(99, "during"))
        await until(lambda: backend.describe()["connected"] is False)
        facts = backend.describe()
        assert facts["last_error"] and facts["publish_errors"] == 1
        # the replay ring keeps serving while Redis is away
        assert [r.seq for r in await backend.replay(2, 5) or []] == [3, 4, 5]
        redis_aof.start()
        await until(lambda: backend.describe()["connected"] is True)
        assert backend.describe()["reconnects"] == 1
        resent = await backend.publish(activity(99, "during"))  # the publisher's resend
        assert (resent.seq, resent.duplicate) == (6, False)
        assert sink.seqs == [1, 2, 3, 4, 5, 6]
        await backend.close()
    with caplog.at_level(logging.WARNING, logger="mlops_hooks.server"):
        run(main())
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "is unavailable" in messages and "reconnected to Redis" in messages


def test_start_without_redis_serves_and_connects_later(redis_server: RedisServer) -> None:
    async def main() -> None:
        redis_server.kill()
        sink = Sink()
        backend = await started(redis_server.url, sink, backoff_cap=0.3)
        assert backend.describe()["connected"] is False
        with pytest.raises(ConnectionError):
            await backend.publish(activity(1))
        redis_server.start()
        await until(lambda: backend.describe()["connected"] is True)
        assert (await backend.publish(activity(2))).seq == 1
        await backend.close()
    run(main())


def test_redis_that_lost_its_data_does_not_reuse_seqs(redis_server: RedisServer,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        sink = Sink()
        backend = await started(redis_server.url, sink, backoff_cap=0.3)
        for i in range(10):
            await backend.publish(activity(i))
        redis_server.restart()  # no persistence: the stream and the counter are gone
        await until(lambda: backend.describe()["reconnects"] == 1)
        assert (await backend.publish(activity(10))).seq == 11
        assert sink.seqs == list(range(1, 12))
        await backend.close()
    with caplog.at_level(logging.WARNING, logger="mlops_hooks.server"):
        run(main())
    assert "Redis lost data" in caplog.text


def test_a_foreign_entry_in_the_stream_is_skipped(redis_server: RedisServer,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        sink = Sink()
        backend = await started(redis_server.url, sink)
        await backend.publish(activity(1))
        client = redis_sync.Redis.from_url(redis_server.url)
        client.set("{mlops-hooks}:seq", 2)
        client.xadd("{mlops-hooks}:stream", {"d": b'{"type": "nonsense"}'}, id="2-0")
        client.close()
        assert (await backend.publish(activity(3))).seq == 3
        assert sink.seqs == [1, 3]
        await backend.close()
    with caplog.at_level(logging.ERROR, logger="mlops_hooks.server"):
        run(main())
    assert "stream entry 2" in caplog.text and "is not an event" in caplog.text


def test_closed_backend_refuses_events(redis_server: RedisServer) -> None:
    async def main() -> None:
        backend = await started(redis_server.url)
        await backend.close()
        with pytest.raises(ConnectionError, match="not running"):
            await backend.publish(activity(1))
        again = await started(redis_server.url)
        with pytest.raises(RuntimeError, match="already started"):
            await again.start(Sink())
        await again.close()
    run(main())
