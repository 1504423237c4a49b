"""Series storage: appended in stream order, bounded, the same whatever the batching."""

from __future__ import annotations

import random
import sqlite3

from mlops_hooks.server.state import series as series_module
from mlops_hooks.server.state.series import (
    EXACT_POINTS,
    MAX_POINTS,
    SeriesWriter,
    min_max_buckets,
)
from mlops_hooks.server.state.store import Store


def _db() -> sqlite3.Connection:
    db = sqlite3.connect(":memory:", isolation_level=None)
    db.executescript("CREATE TABLE runs (run_id TEXT PRIMARY KEY);" + series_module.SCHEMA)
    return db


def _points(db: sqlite3.Connection, key: str = "loss") -> list[tuple[int, float]]:
    (series_id,) = db.execute("SELECT id FROM series WHERE key = ?", (key,)).fetchone()
    return [(step, value) for step, value in series_module.read_points(db, series_id)]


def _all(db: sqlite3.Connection) -> list[tuple[str, str, int, float]]:
    return [(run_id, key, step, value) for series_id, run_id, key in db.execute(
        "SELECT id, run_id, key FROM series ORDER BY run_id, key").fetchall()
        for step, value in series_module.read_points(db, series_id)]


def _write(writer: SeriesWriter, db: sqlite3.Connection,
           points: list[tuple[str, str, int, float]]) -> None:
    writer.write(db, [(run_id, step, {key: value}) for run_id, key, step, value in points])


def _wave(n: int) -> list[tuple[str, str, int, float]]:
    rng = random.Random(16)
    return [("r", "loss", i, round(rng.uniform(-1, 1) + 1000 / (i + 1), 6)) for i in range(n)]


def test_min_max_buckets_keep_each_ranges_extremes():
    points = [(i, (i * 7919) % 1000) for i in range(10_000)]
    kept = min_max_buckets(points, 100)
    assert len(kept) <= 200 and kept == sorted(kept)
    for b in range(100):
        inside = [p for p in points if int(p[0] / 100) == b]
        assert min(inside, key=lambda p: p[1]) in kept and max(inside, key=lambda p: p[1]) in kept
    assert min_max_buckets(points[:150], 100) == points[:150]  # few points: all kept


def test_a_long_series_stays_bounded_with_its_newest_points_exact():
    db = _db()
    writer = SeriesWriter()
    points = _wave(7_000)
    _write(writer, db, points)
    stored = _points(db)
    assert len(stored) <= MAX_POINTS and writer.compactions > 1
    assert stored[-EXACT_POINTS:] == [(s, v) for _, _, s, v in points[-EXACT_POINTS:]]
    values = [v for *_, v in points]
    assert stored[0] == (0, values[0])  # the first bucket's highest point is the first one
    assert min(values) in [v for _, v in stored] and max(values) in [v for _, v in stored]
    assert db.execute("SELECT n, last_step, last_value FROM series").fetchone() == (
        len(stored), 6_999, values[-1])


def test_the_stored_series_does_not_depend_on_batching_or_restarts():
    points = _wave(5_500)
    one = _db()
    _write(SeriesWriter(), one, points)
    rng = random.Random(3)
    other = _db()
    start = 0
    while start < len(points):
        size = rng.choice([1, 7, 50, 333, 999])
        _write(SeriesWriter(), other, points[start:start + size])  # a fresh writer: a restart
        start += size
    assert _points(one) == _points(other)


def test_a_repeated_or_earlier_step_replaces_its_value_and_counts_once():
    db = _db()
    writer = SeriesWriter()
    _write(writer, db, [("r", "loss", 1, 1.0), ("r", "loss", 2, 2.0), ("r", "loss", 2, 2.5)])
    _write(writer, db, [("r", "loss", 2, 3.0), ("r", "loss", 1, 0.5), ("r", "loss", 0, 9.0)])
    assert _points(db) == [(0, 9.0), (1, 0.5), (2, 3.0)]
    assert db.execute("SELECT n FROM series").fetchone() == (3,)


def test_series_survive_reopening_and_go_with_pruned_runs(tmp_path, monkeypatch):
    path = str(tmp_path / "h.sqlite3")
    store = Store(path)
    store.open().result()
    store.run_changed({"run_id": "old", "status": "completed"}, 1)
    store.points_added("old", 1, {"loss": 1.0})
    store.params_added("old", {"lr": 0.1}, {"host": "a"})
    for i in range(3):
        store.run_changed({"run_id": "new", "status": "running"}, 2 + i)
        store.points_added("new", i, {"loss": float(i), "acc": i / 10})
    store.close()
    again = Store(path)
    again.open().result()
    rows = again.query(_all).result()
    assert rows == [("new", "acc", 0, 0.0), ("new", "acc", 1, 0.1), ("new", "acc", 2, 0.2),
                    ("new", "loss", 0, 0.0), ("new", "loss", 1, 1.0), ("new", "loss", 2, 2.0),
                    ("old", "loss", 1, 1.0)]
    monkeypatch.setitem(again.__class__.__dict__["_prune"].__globals__["KEEP"], "runs", 1)
    again._flushes = 0  # the next write prunes
    again.note(10, None)
    again.flush().result()
    left = again.query(lambda db: (
        db.execute("SELECT DISTINCT run_id FROM series").fetchall(),
        db.execute("SELECT run_id FROM run_params").fetchall(),
        len(_all(db)), db.execute("SELECT COUNT(*) FROM tails").fetchone())).result()
    again.close()
    assert left == ([("new",)], [], 6, (2,))


def test_a_schema_1_database_is_migrated(tmp_path):
    from mlops_hooks.server.state import history

    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "INSERT INTO meta VALUES ('schema', '1');"
        "CREATE TABLE runs (run_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, status TEXT, "
        "model_name TEXT, updated TEXT, data TEXT NOT NULL);"
        "INSERT INTO runs VALUES ('r0', 3, 'completed', 'Net', '2025-12-06T10:00:00.000Z', "
        "'{\"run_id\": \"r0\", \"status\": \"completed\"}');")
    old.commit()
    old.close()
    store = Store(str(path))
    store.open().result()
    body = store.query(history.read_runs).result()
    store.close()
    assert [(r["run_id"], r["status"], r["started_at"], r["params"]) for r in body["runs"]] == [
        ("r0", "completed", "2025-12-06T10:00:00.000Z", {})]


def test_points_are_packed_a_chunk_a_row_and_earlier_steps_go_into_their_chunk():
    db = _db()
    writer = SeriesWriter()
    size = series_module.CHUNK_POINTS
    _write(writer, db, [("r", "loss", 2 * i, float(i)) for i in range(size * 2 + 5)])
    # two full chunks, and the open one of the newest points
    assert db.execute("SELECT COUNT(*) FROM chunks").fetchone() == (2,)
    assert db.execute("SELECT COUNT(*) FROM tails").fetchone() == (1,)
    # an odd step inside the first chunk, one before every chunk, one replacing a stored step
    _write(SeriesWriter(), db, [("r", "loss", 3, -1.0), ("r", "loss", -4, -2.0),
                                ("r", "loss", 2 * size, -3.0)])
    stored = _points(db)
    expected = {2 * i: float(i) for i in range(size * 2 + 5)} | {3: -1.0, -4: -2.0,
                                                                 2 * size: -3.0}
    assert stored == sorted(expected.items())
    assert db.execute("SELECT n FROM series").fetchone() == (len(expected),)
    assert db.execute("SELECT MIN(first_step), COUNT(*) FROM chunks").fetchone() == (-4, 2)


def test_a_schema_2_database_has_its_points_packed(tmp_path):
    from mlops_hooks.server.state import history

    path = tmp_path / "v2.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE runs (run_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, status TEXT, "
        "model_name TEXT, updated TEXT, data TEXT NOT NULL);"
        "INSERT INTO runs VALUES ('r0', 3, 'running', 'Net', '2025-12-06T10:00:00.000Z', "
        "'{\"run_id\": \"r0\", \"status\": \"running\"}');"
        "CREATE TABLE series (id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, key TEXT NOT NULL, "
        "n INTEGER NOT NULL DEFAULT 0, last_step INTEGER, last_value, UNIQUE (run_id, key));"
        "INSERT INTO series VALUES (1, 'r0', 'loss', 300, 299, 0.5);"
        "CREATE TABLE points (series_id INTEGER NOT NULL, step INTEGER NOT NULL, value, "
        "PRIMARY KEY (series_id, step)) WITHOUT ROWID;")
    old.executemany("INSERT INTO points VALUES (1, ?, ?)", [(s, 1 / (s + 1)) for s in range(300)])
    old.commit()
    old.close()
    store = Store(str(path))
    store.open().result()
    store.points_added("r0", 300, {"loss": 0.25})
    body = store.query(lambda db: history.read_series(db, "r0", None, 64)).result()
    tables = store.query(lambda db: [r[0] for r in db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table'")]).result()
    store.close()
    assert body["series"]["loss"] == [[s, 1 / (s + 1)] for s in range(300)] + [[300, 0.25]]
    assert "points" not in tables
