from __future__ import annotations

import sqlite3
import threading

import pytest

from mlops_hooks.server.state import store as store_module
from mlops_hooks.server.state.store import Store


def _open(path) -> Store:
    store = Store(str(path))
    store.open().result()
    return store


def test_history_survives_reopening(tmp_path):
    db = tmp_path / "nested" / "history.sqlite3"
    store = _open(db)
    for i in range(5):
        store.run_changed({"run_id": "r", "status": "running", "progress": {"progress": i}}, i)
    store.model_changed({"model_id": "m", "status": "active"}, 6)
    store.deployment_added({"type": "model_deployed", "model_id": "m"}, 6)
    store.activity_added({"id": "a1", "title": "one"}, 7)
    store.activity_added({"id": "a2", "title": "two"}, 8)
    store.note(9, "evt-9")
    store.close()
    again = Store(str(db))
    loaded = again.open().result()
    again.close()
    assert loaded.last_seq == 9
    assert loaded.runs == [{"run_id": "r", "status": "running", "progress": {"progress": 4}}]
    assert loaded.models == [{"model_id": "m", "status": "active"}]
    assert [a["id"] for a in loaded.activity] == ["a2", "a1"]
    assert loaded.event_ids == [("evt-9", 9)]


def test_writes_are_batched_off_the_calling_thread(tmp_path):
    store = _open(tmp_path / "h.sqlite3")
    # Hold the store's thread, so the batch cannot start while the changes come in, however
    # slowly this thread runs.
    gate = threading.Event()
    held = store._executor.submit(gate.wait)
    for i in range(1000):
        store.run_changed({"run_id": "r", "n": i}, i)
    assert store.writes == 0  # nothing was written on the calling thread
    gate.set()
    held.result()
    store.flush().result()
    assert store.writes == 1  # a thousand changes of one run: one write of its newest state
    store.close()
    again = Store(str(tmp_path / "h.sqlite3"))
    assert again.open().result().runs == [{"run_id": "r", "n": 999}]
    again.close()


def test_memory_database(tmp_path):
    store = Store(":memory:")
    assert store.open().result().last_seq == 0
    store.note(3, None)
    store.close()


def test_a_file_that_is_not_a_database_is_reported(tmp_path):
    bad = tmp_path / "not.sqlite3"
    bad.write_bytes(b"this is not sqlite" * 100)
    store = Store(str(bad))
    with pytest.raises(sqlite3.DatabaseError):
        store.open().result()
    store.close()


def test_a_failing_write_is_reported_once_and_the_store_goes_on(tmp_path, caplog):
    store = _open(tmp_path / "h.sqlite3")

    def broken() -> None:
        assert store._db is not None
        store._db.execute("DROP TABLE runs")

    store._executor.submit(broken).result()
    store.run_changed({"run_id": "r"}, 1)
    store.flush().result()
    store.run_changed({"run_id": "r"}, 2)
    store.flush().result()
    # the disk recovers (the table is back): later changes are written again
    store._executor.submit(lambda: store._db.executescript(store_module._SCHEMA)).result()
    store.activity_added({"id": "a"}, 3)
    store.run_changed({"run_id": "r", "status": "running"}, 4)
    store.close()
    assert sum("writing history" in r.message for r in caplog.records) == 1
    again = Store(str(tmp_path / "h.sqlite3"))
    loaded = again.open().result()
    again.close()
    assert [a["id"] for a in loaded.activity] == ["a"]
    assert loaded.runs == [{"run_id": "r", "status": "running"}] and loaded.last_seq == 4


def test_pending_rows_are_bounded_when_the_disk_stalls(tmp_path, monkeypatch, caplog):
    from mlops_hooks.server.state import store as store_module

    monkeypatch.setattr(store_module, "MAX_PENDING_ROWS", 10)
    store = _open(tmp_path / "h.sqlite3")
    blocker = store._executor.submit(store._closing.wait, 5)  # the writer thread is busy
    for i in range(25):
        store.activity_added({"id": f"a{i}"}, i + 1)
    assert store.dropped == 15
    store._closing.set()
    blocker.result()
    store.close()
    again = Store(str(tmp_path / "h.sqlite3"))
    assert [a["id"] for a in again.open().result().activity][:2] == ["a24", "a23"]
    again.close()
    assert any("not keeping up" in r.message for r in caplog.records)
