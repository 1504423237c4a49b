from __future__ import annotations

from mlops_hooks import events as ev
from mlops_hooks._publisher.buffer import Entry, EventBuffer, is_droppable
from tests.spec_examples import optional_keys, payload_examples

_n = 0


def entry(event: ev.Event) -> Entry:
    global _n
    _n += 1
    return Entry(_n, event, 0.0)


def progress(i: int, run: str = "r") -> ev.TrainingProgress:
    return ev.TrainingProgress(stage="model_training", progress=i % 101, run_id=run,
                               message=f"p{i}")


def activity(i: int) -> ev.ActivityUpdate:
    return ev.ActivityUpdate(activity=ev.Activity(id=f"a{i}", title="t"))


def drain(buffer: EventBuffer) -> list[Entry]:
    out = []
    while (item := buffer.pop()) is not None:
        out.append(item)
    return out


def label(e: Entry) -> str:
    event = e.event
    if isinstance(event, ev.TrainingProgress):
        return str(event.message)
    if isinstance(event, ev.ActivityUpdate):
        return event.activity.id
    return event.type if event else "?"


#: Whether each event type of the spec may be dropped when the buffer is full.
DROPPABLE = {
    "model_deployed": False,
    "model_status_change": False,
    "prediction_volume": True,  # without a milestone; with one it is kept (below)
    "training_progress": True,
    "training_completed": False,
    "training_failed": False,
    "system_metrics": True,
    "health_change": False,
    "file_validated": False,
    "upload_progress": True,
    "activity_update": False,
    "system_alert": False,
}


def test_which_events_may_be_dropped():
    assert set(DROPPABLE) == set(ev.EVENT_TYPES)
    assert {kind for kind, droppable in DROPPABLE.items() if not droppable} \
        == ev.LIFECYCLE_TYPES - {"run_params", "run_state"}
    assert "run_params" in ev.LIFECYCLE_TYPES  # the extension is lifecycle too
    assert not is_droppable(ev.RunParams(run_id="r1", params={"lr": 0.1}))
    examples = {e["type"]: e for e in payload_examples()}
    optional = optional_keys()
    assert set(examples) == set(ev.EVENT_TYPES)
    for kind, droppable in DROPPABLE.items():
        left_out = optional.get(kind, set()) | {"milestone_reached"}
        example = {k: v for k, v in examples[kind].items() if k not in left_out}
        assert is_droppable(ev.from_dict(example)) is droppable, kind
    # a milestone is never superseded by a later count
    milestone = ev.from_dict(examples["prediction_volume"])
    assert milestone.milestone_reached == 5000 and is_droppable(milestone) is False


def test_order_is_kept_when_nothing_is_dropped():
    buffer = EventBuffer(100)
    items = [entry(progress(i)) if i % 3 else entry(activity(i)) for i in range(50)]
    for item in items:
        assert buffer.add(item) == []
    assert len(buffer) == 50
    assert drain(buffer) == items
    assert len(buffer) == 0


def test_full_buffer_drops_the_oldest_progress_and_keeps_lifecycle_in_order():
    buffer = EventBuffer(5)
    buffer.add(entry(activity(0)))
    p1, p2, p3 = (entry(progress(i)) for i in range(1, 4))
    for item in (p1, p2, p3):
        buffer.add(item)
    buffer.add(entry(ev.TrainingCompleted(run_id="r")))
    assert buffer.add(entry(progress(5))) == [p1]  # the oldest progress made way
    assert buffer.add(entry(activity(6))) == [p2]
    assert p1.dead and p2.dead and buffer.dropped == 2
    assert [label(e) for e in drain(buffer)] == ["a0", "p3", "training_completed", "p5", "a6"]


def test_new_progress_is_dropped_when_only_lifecycle_events_wait():
    buffer = EventBuffer(3)
    for i in range(3):
        buffer.add(entry(activity(i)))
    newest = entry(progress(9))
    assert buffer.add(newest) == [newest] and newest.dead
    # lifecycle events are kept beyond the capacity ...
    buffer.add(entry(activity(3)))
    assert len(buffer) == 4
    assert [label(e) for e in drain(buffer)] == ["a0", "a1", "a2", "a3"]


def test_hard_limit_bounds_even_lifecycle_events():
    buffer = EventBuffer(2, hard_limit=4)
    for i in range(10):
        buffer.add(entry(activity(i)))
    assert len(buffer) == 4
    assert [label(e) for e in drain(buffer)] == ["a6", "a7", "a8", "a9"]


def test_milestones_are_kept_like_lifecycle_events():
    buffer = EventBuffer(2)
    buffer.add(entry(ev.PredictionVolume(total_predictions=1000, milestone_reached=1000)))
    buffer.add(entry(ev.PredictionVolume(total_predictions=1001)))
    buffer.add(entry(ev.PredictionVolume(total_predictions=1002)))
    kept = drain(buffer)
    assert [e.event.total_predictions for e in kept] == [1000, 1002]


def test_outstanding_events_count_towards_the_capacity():
    buffer = EventBuffer(4)
    for i in range(3):
        buffer.add(entry(progress(i)), outstanding=2)
    assert len(buffer) == 2
    assert [label(e) for e in drain(buffer)] == ["p1", "p2"]


def test_requeue_puts_unacknowledged_events_back_in_front_in_order():
    buffer = EventBuffer(10)
    first = [entry(progress(i)) for i in range(3)]
    for item in first:
        buffer.add(item)
    sent = [buffer.pop(), buffer.pop()]
    later = entry(activity(7))
    buffer.add(later, outstanding=2)
    buffer.requeue(sent)
    assert buffer.peek_n() == first[0].n
    assert drain(buffer) == [*first, later]


def test_requeued_progress_can_be_dropped_again_and_the_index_stays_consistent():
    buffer = EventBuffer(3)
    items = [entry(progress(i)) for i in range(3)]
    for item in items:
        buffer.add(item)
    sent = [buffer.pop() for _ in range(3)]
    buffer.requeue(sent)
    buffer.add(entry(progress(3)))
    assert [label(e) for e in drain(buffer)] == ["p1", "p2", "p3"]


def test_a_long_outage_keeps_memory_bounded():
    buffer = EventBuffer(100)
    for i in range(20_000):
        buffer.add(entry(progress(i)) if i % 100 else entry(activity(i)))
    # 200 lifecycle events (under the hard limit of 400) are all kept; progress made way
    assert len(buffer) == 200
    assert len(buffer._entries) <= 2 * len(buffer) + 65  # dead entries are compacted away
    assert len(buffer._droppable) <= len(buffer)
    assert [label(e) for e in drain(buffer)] == [f"a{i}" for i in range(0, 20_000, 100)]


def test_clear_returns_the_live_entries():
    buffer = EventBuffer(2)
    for i in range(4):
        buffer.add(entry(progress(i)))
    assert [label(e) for e in buffer.clear()] == ["p2", "p3"]
    assert len(buffer) == 0 and buffer.pop() is None and buffer.peek_n() is None
