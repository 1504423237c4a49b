from __future__ import annotations

import asyncio

from mlops_hooks import events as ev
from mlops_hooks.server.backends.base import control, make_record
from mlops_hooks.server.hub import Hub
from mlops_hooks.server.metrics import Metrics

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
