from __future__ import annotations

import asyncio

from mlops_hooks import events as ev
from mlops_hooks.server.ops.metrics import Metrics
from mlops_hooks.server.stream.hub import BATCH_BYTES, Hub
from mlops_hooks.server.stream.record import control, make_record

SEQ = iter(range(1, 10_000))


def rec(event: ev.Event):
    return make_record(event, next(SEQ))


def prog(run: str, pct: float) -> ev.Event:
    return ev.TrainingProgress(run_id=run, progress=pct, stage="model_training")


def act(n: int, size: int = 0) -> ev.Event:
    return ev.ActivityUpdate(activity=ev.Activity(id=f"a{n}", title="t",
                                                  description="x" * size or None))


class Client:
    """A fake connection: ``gate`` closed means the client is not reading."""

    def __init__(self) -> None:
        self.got: list[str] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def send(self, message: dict) -> None:
        await self.gate.wait()
        assert message["type"] == "websocket.send"
        self.got.append(message["text"])


def run(coro):
    return asyncio.run(coro)


def test_lifecycle_in_order_and_progress_coalesced_while_behind():
    async def scenario():
        hub = Hub(Metrics())
        client = Client()
        client.gate.clear()
        sub = hub.add(client.send)
        sub.start()
        records = [rec(prog("r1", 1)), rec(act(1)), rec(prog("r1", 2)), rec(prog("r2", 1)),
                   rec(act(2)), rec(prog("r1", 3)), rec(ev.SystemMetrics(cpu_percent=1)),
                   rec(ev.SystemMetrics(cpu_percent=2))]
        for r in records:
            hub.broadcast(r)
        client.gate.set()
        for _ in range(50):
            await asyncio.sleep(0)
        await hub.remove(sub)
        return records, client.got, hub.metrics

    records, got, metrics = run(scenario())
    sent = [r for r in records if r.text in got]
    assert [r.seq for r in sent] == sorted(r.seq for r in sent)
    kinds = [(r.type, getattr(r.event, "run_id", None)) for r in sent]
    assert kinds.count(("activity_update", None)) == 2
    assert sent[-1].event.cpu_percent == 2  # type: ignore[union-attr]
    assert records[5] in sent  # r1's newest survives ...
    assert records[0] not in sent and records[2] not in sent  # ... the two before it do not
    assert records[3] in sent  # another run's progress is its own key
    assert metrics.coalesced["training_progress"] == 2
    assert metrics.coalesced["system_metrics"] == 1


def test_a_blocked_subscriber_never_delays_another_and_is_closed_over_budget():
    async def scenario():
        hub = Hub(Metrics(), max_bytes=20_000, max_events=1000)
        stuck, fast = Client(), Client()
        stuck.gate.clear()
        a, b = hub.add(stuck.send), hub.add(fast.send)
        a.start()
        b.start()
        for i in range(40):
            hub.broadcast(rec(act(i, size=1000)))
            await asyncio.sleep(0)
        await asyncio.sleep(0)
        return a, b, fast, hub

    a, b, fast, hub = run(scenario())
    assert len(fast.got) == 40
    assert a.slow and not b.slow
    assert a.nqueued == 0 and a.nbytes == 0  # memory released at once
    assert hub.metrics.closed_slow == 1 and hub.metrics.dropped > 0


def test_event_budget_also_closes():
    async def scenario():
        hub = Hub(Metrics(), max_events=5)
        client = Client()
        client.gate.clear()
        sub = hub.add(client.send)
        sub.start()
        for i in range(10):
            hub.broadcast(rec(act(i)))
        await asyncio.sleep(0)
        return sub

    assert run(scenario()).slow


def test_prime_skips_live_events_already_covered_and_keeps_order():
    async def scenario():
        hub = Hub(Metrics())
        client = Client()
        sub = hub.add(client.send)
        covered, live = rec(act(1)), rec(act(2))
        hub.broadcast(covered)
        hub.broadcast(live)
        sub.prime([control('{"type":"snapshot"}', "snapshot")], covered.seq)
        sub.start()
        for _ in range(10):
            await asyncio.sleep(0)
        await hub.remove(sub)
        return client.got, live

    got, live = run(scenario())
    assert got == ['{"type":"snapshot"}', live.text]


def test_coalesce_drops_replayed_state_superseded_by_queued_live_state():
    async def scenario():
        hub = Hub(Metrics())
        sub = hub.add(Client().send)
        old, newer_replayed, live = rec(prog("r", 1)), rec(prog("r", 2)), rec(prog("r", 3))
        other = rec(prog("q", 1))
        hub.broadcast(live)
        return sub.coalesce([old, other, newer_replayed]), other

    kept, other = run(scenario())
    assert kept == [other]


def test_types_filter_and_queue_depth():
    async def scenario():
        hub = Hub(Metrics())
        only = hub.add(Client().send, frozenset({"activity_update"}))
        every = hub.add(Client().send)
        hub.broadcast(rec(prog("r", 1)))
        hub.broadcast(rec(act(1)))
        return only, every, hub

    only, every, hub = run(scenario())
    assert only.nqueued == 1 and every.nqueued == 2
    assert hub.queue_depth() == (3, 2)


def test_a_snapshot_larger_than_the_budget_does_not_close_the_subscriber():
    async def scenario():
        hub = Hub(Metrics(), max_bytes=1000)
        client = Client()
        client.gate.clear()
        sub = hub.add(client.send)
        sub.prime([control('{"type":"snapshot","pad":"' + "x" * 5000 + '"}', "snapshot")], 0)
        sub.start()
        hub.broadcast(rec(act(1)))
        assert not sub.slow
        client.gate.set()
        for _ in range(10):
            await asyncio.sleep(0)
        assert sub.allowance == 0 and len(client.got) == 2
        for i in range(20):  # once the snapshot is out, the budget applies again
            hub.broadcast(rec(act(i, size=100)))
        return sub

    assert run(scenario()).slow


class Sink:
    """A fake frame sink: ``full`` means the transport takes nothing more for now."""

    def __init__(self, room: int = 1 << 30) -> None:
        self.writes: list[bytes] = []
        self.room = room  # bytes taken before the transport reports full
        self.open = True
        self.drain = asyncio.Event()
        self.drain.set()

    def ready(self) -> bool:
        return self.open and self.drain.is_set()

    def write(self, data: bytes) -> None:
        assert self.ready(), "written while not ready"
        self.writes.append(data)
        self.room -= len(data)
        if self.room <= 0:
            self.drain.clear()

    async def drained(self) -> bool:
        await self.drain.wait()
        return self.open

    def texts(self) -> list[str]:
        """The text messages written, parsed back out of the frames."""
        data, texts = b"".join(self.writes), []
        while data:
            assert data[0] == 0x81  # FIN + text, unmasked
            size, start = data[1], 2
            if size == 126:
                size, start = int.from_bytes(data[2:4], "big"), 4
            elif size == 127:
                size, start = int.from_bytes(data[2:10], "big"), 10
            texts.append(data[start:start + size].decode())
            data = data[start + size:]
        return texts


async def turns(n: int = 5) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def test_a_sink_gets_one_write_per_turn_with_every_frame_queued_in_it():
    async def scenario():
        hub = Hub(Metrics())
        sink, client = Sink(), Client()
        sub = hub.add(client.send, sink=sink)
        sub.prime([control('{"type":"snapshot"}', "snapshot")], 0)
        sub.start()
        await turns()
        first = [rec(act(i)) for i in range(5)]
        for r in first:
            hub.broadcast(r)
        await turns()
        hub.broadcast(second := rec(act(9)))
        await turns()
        await hub.remove(sub)
        return sink, client, first, second, hub.metrics

    sink, client, first, second, metrics = run(scenario())
    assert client.got == []  # nothing goes through the ASGI send
    assert len(sink.writes) == 3  # the snapshot, the five events of one turn, the last one
    assert sink.texts() == ['{"type":"snapshot"}', *(r.text for r in first), second.text]
    assert metrics.events_out["activity_update"] == 6 and metrics.events_out["snapshot"] == 1


def test_a_full_sink_waits_while_its_queue_coalesces_and_then_drains_in_order():
    async def scenario():
        hub = Hub(Metrics())
        sink = Sink(room=1)  # full after the first write
        sub = hub.add(Client().send, sink=sink)
        sub.start()
        hub.broadcast(first := rec(act(0)))
        await turns()
        assert not sink.ready() and len(sink.writes) == 1
        behind = [rec(prog("r", 1)), rec(act(1)), rec(prog("r", 2)), rec(act(2))]
        for r in behind:
            hub.broadcast(r)
        await turns()
        assert len(sink.writes) == 1 and sub.nqueued == 3  # r's first progress coalesced
        sink.room = 1 << 30
        sink.drain.set()  # the transport drained: the writer task takes over
        await turns()
        await hub.remove(sub)
        return sink, first, behind, hub.metrics

    sink, first, behind, metrics = run(scenario())
    assert sink.texts() == [first.text, behind[1].text, behind[2].text, behind[3].text]
    assert metrics.coalesced["training_progress"] == 1


def test_a_sink_backlog_goes_out_in_bounded_writes_and_a_full_one_is_closed_with_4008():
    async def scenario():
        hub = Hub(Metrics(), max_bytes=400 * 1024)
        sink = Sink(room=3 * BATCH_BYTES)
        sub = hub.add(Client().send, sink=sink)
        sub.start()
        for i in range(100):
            hub.broadcast(rec(act(i, size=2000)))
        await turns()
        sizes = [len(w) for w in sink.writes]
        written = len(sink.texts())
        for i in range(200):  # the transport stays full: the queue passes its budget
            hub.broadcast(rec(act(i, size=2000)))
        await turns()
        return sub, sizes, written, hub.metrics

    sub, sizes, written, metrics = run(scenario())
    assert len(sizes) == 3 and all(s <= BATCH_BYTES + 2100 for s in sizes)
    assert 0 < written < 100
    assert sub.slow and sub.task is not None and sub.task.cancelled()
    assert metrics.closed_slow == 1


def test_the_writer_of_a_sink_that_closes_while_full_ends():
    async def scenario():
        hub = Hub(Metrics())
        sink = Sink(room=1)
        sub = hub.add(Client().send, sink=sink)
        task = sub.start()
        hub.broadcast(rec(act(0)))
        hub.broadcast(rec(act(1)))
        await turns()
        hub.broadcast(rec(act(2)))
        await turns()
        sink.open = False
        sink.drain.set()  # a lost connection wakes the waiting writer
        await turns()
        done = task.done()
        await hub.remove(sub)
        return done

    assert run(scenario()) is True  # the writer ended
