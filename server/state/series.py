"""Metric series in SQLite: packed :data:`CHUNK_POINTS` points a row, bounded by min/max buckets.

Runs on the store's thread (:class:`~mlops_hooks.server.state.store.Store`), inside its write
transaction. A series holds at most :data:`MAX_POINTS` points. When a point would make it
:data:`MAX_POINTS` + 1, the series is compacted at once: its newest :data:`EXACT_POINTS` points
(by step) stay exact, and the older ones are split into :data:`BUCKETS` buckets of equal step
width, each keeping its lowest and its highest point (the first of equal values). A long run
keeps the envelope of its whole history and its recent points exactly.

Compaction depends only on the series' own points, taken in stream order, never on how the
points were batched: every server of a fleet (each deriving the series from the same stream)
and a restarted server hold the same points.

Storage: a series' points are packed as MessagePack ``[[step, value], ...]``, sorted: full
chunks in ``chunks`` (``series_id``, ``first_step``), non-overlapping, and the newest, open chunk
in ``tails`` (one row per series, all of them side by side, so a write dirties few pages). A
new step is appended to the open chunk, kept in memory and stored once per write (a row per
series per batch instead of a row per point); once it holds :data:`CHUNK_POINTS` points it
moves to ``chunks`` and a new one starts; a step before the open chunk goes into the chunk whose
range holds it.
"""

from __future__ import annotations

import bisect
import sqlite3
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from typing import Any

import msgspec

__all__ = [
    "BUCKETS",
    "CHUNK_POINTS",
    "EXACT_POINTS",
    "MAX_POINTS",
    "MAX_SERIES_PER_RUN",
    "SCHEMA",
    "SeriesWriter",
    "find_series",
    "migrate",
    "min_max_buckets",
    "read_points",
]

#: Points a series holds at most (and the most ``GET /api/runs/{id}/metrics`` returns per key).
MAX_POINTS = 2000
#: The newest points of a series that compaction never touches.
EXACT_POINTS = 1000
#: Buckets the older points are reduced to (two points each at most).
BUCKETS = 250
#: Series kept per run; points of further keys are ignored.
MAX_SERIES_PER_RUN = 512
#: Series whose counters the writer keeps in memory (the rest are read back when needed).
CACHED_SERIES = 20_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS series (id INTEGER PRIMARY KEY, run_id TEXT NOT NULL,
    key TEXT NOT NULL, n INTEGER NOT NULL DEFAULT 0, last_step INTEGER,
    last_value, UNIQUE (run_id, key));
CREATE TABLE IF NOT EXISTS chunks (series_id INTEGER NOT NULL, first_step INTEGER NOT NULL,
    data BLOB NOT NULL, PRIMARY KEY (series_id, first_step)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tails (series_id INTEGER PRIMARY KEY, data BLOB NOT NULL);
"""
#: Points packed in one ``chunks`` row as a series grows (a chunk that takes an earlier step
#: later may hold more).
CHUNK_POINTS = 128
_pack = msgspec.msgpack.Encoder().encode
_unpack = msgspec.msgpack.decode


def find_series(db: sqlite3.Connection, full: set[str], run_id: str,
                key: str) -> tuple[Any, ...] | None:
    """The row ``(id, n, last_step, last_value)`` of series ``(run_id, key)``, made if new.

    ``None`` when the run already has :data:`MAX_SERIES_PER_RUN` series (the run is added to
    ``full``, so later keys of it cost no count).
    """
    row = db.execute("SELECT id, n, last_step, last_value FROM series "
                     "WHERE run_id = ? AND key = ?", (run_id, key)).fetchone()
    if row is not None:
        return tuple(row)
    if run_id in full:
        return None
    count = db.execute("SELECT COUNT(*) FROM series WHERE run_id = ?", (run_id,)).fetchone()[0]
    if count >= MAX_SERIES_PER_RUN:
        full.add(run_id)
        return None
    cursor = db.execute("INSERT INTO series (run_id, key) VALUES (?, ?)", (run_id, key))
    return (cursor.lastrowid or 0, 0, None, None)


def _full_chunks(db: sqlite3.Connection, series_id: int) -> list[list[Any]]:
    points: list[list[Any]] = []
    for (data,) in db.execute("SELECT data FROM chunks WHERE series_id = ? ORDER BY first_step",
                              (series_id,)):
        points += _unpack(data)
    return points


def read_points(db: sqlite3.Connection, series_id: int) -> list[list[Any]]:
    """Every ``[step, value]`` of a series, sorted by step."""
    points = _full_chunks(db, series_id)
    tail = db.execute("SELECT data FROM tails WHERE series_id = ?", (series_id,)).fetchone()
    return points + _unpack(tail[0]) if tail else points


def migrate(db: sqlite3.Connection) -> None:
    """Pack the points of a schema-2 database (one row per point) into ``chunks``."""
    if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'points'"
                  ).fetchone() is None:
        return
    rows: dict[int, list[list[Any]]] = {}
    for series_id, step, value in db.execute(
            "SELECT series_id, step, value FROM points ORDER BY series_id, step"):
        rows.setdefault(series_id, []).append([step, value])
    db.executemany("INSERT OR REPLACE INTO chunks (series_id, first_step, data) VALUES (?, ?, ?)",
                   [(sid, part[0][0], _pack(part)) for sid, points in rows.items()
                    for part in _parts(points)])
    db.execute("DROP TABLE points")


def _parts(points: list[list[Any]]) -> Iterator[list[list[Any]]]:
    for start in range(0, len(points), CHUNK_POINTS):
        yield points[start:start + CHUNK_POINTS]


def min_max_buckets(points: list[tuple[int, Any]], buckets: int) -> list[tuple[int, Any]]:
    """The lowest and highest point of each of ``buckets`` equal step ranges.

    Args:
        points: ``(step, value)`` sorted by step.
        buckets: How many ranges ``points``' steps are split into.

    Returns:
        At most ``2 * buckets`` of ``points``, sorted by step.
    """
    if len(points) <= 2 * buckets:
        return list(points)
    first, last = points[0][0], points[-1][0]
    width = (last - first + 1) / buckets
    lows: dict[int, tuple[int, Any]] = {}
    highs: dict[int, tuple[int, Any]] = {}
    for point in points:
        index = int((point[0] - first) / width)
        low = lows.get(index)
        if low is None or point[1] < low[1]:
            lows[index] = point
        high = highs.get(index)
        if high is None or point[1] > high[1]:
            highs[index] = point
    return sorted(set(lows.values()) | set(highs.values()))


class _Series:
    __slots__ = ("id", "last_step", "last_value", "n", "tail", "write")

    def __init__(self, series_id: int, n: int, last_step: int | None, last_value: Any) -> None:
        self.id = series_id
        self.n = n
        self.last_step = last_step
        self.last_value = last_value
        #: The open chunk's points (``None``: not read yet).
        self.tail: list[list[Any]] | None = None
        #: The last :meth:`SeriesWriter.write` that touched it.
        self.write = 0


class SeriesWriter:
    """Appends points to series and keeps each within :data:`MAX_POINTS` (store thread only).

    Points are packed :data:`CHUNK_POINTS` to a row: a series' newest chunk is kept in memory
    and stored once per write, whatever the number of points it took.
    """

    def __init__(self) -> None:
        #: run_id -> key -> series, least recently written run first.
        self._runs: OrderedDict[str, dict[str, _Series]] = OrderedDict()
        self._cached = 0
        self._full: set[str] = set()
        self._writes = 0
        self.compactions = 0

    def forget(self) -> None:
        """Drop the cached counters (after a rollback or a prune)."""
        self._runs.clear()
        self._cached = 0
        self._full.clear()

    def write(self, db: sqlite3.Connection,
              points: Iterable[tuple[str, int, dict[str, Any]]]) -> None:
        """Add ``(run_id, step, {key: value})`` points, in order, in the caller's transaction.

        A step a series already has gets the new value (the later point wins).
        """
        self._writes += 1
        mark = self._writes
        runs = self._runs
        touched: list[_Series] = []
        written: set[str] = set()
        for run_id, step, values in points:
            cached = runs.get(run_id)
            if cached is None:
                cached = runs[run_id] = {}
            written.add(run_id)
            for key, value in values.items():
                series = cached.get(key)
                if series is None:
                    series = self._series(db, cached, run_id, key)
                    if series is None:
                        continue
                if series.write != mark:
                    series.write = mark
                    touched.append(series)
                tail = series.tail
                if tail is None:
                    tail = self._load_tail(db, series)
                last = series.last_step
                if last is None or step > last:
                    if len(tail) >= CHUNK_POINTS:  # the chunk is full: store it, start the next
                        db.execute("INSERT OR REPLACE INTO chunks (series_id, first_step, data) "
                                   "VALUES (?, ?, ?)", (series.id, tail[0][0], _pack(tail)))
                        series.tail = tail = []
                    tail.append([step, value])
                    series.n += 1
                    series.last_step = step
                elif step == last and tail:
                    tail[-1][1] = value
                else:
                    self._earlier(db, series, step, value)
                series.last_value = value
                if series.n > MAX_POINTS:
                    self._compact(db, series)
        db.executemany("INSERT OR REPLACE INTO tails (series_id, data) VALUES (?, ?)",
                       [(s.id, _pack(s.tail)) for s in touched if s.tail])
        db.executemany("UPDATE series SET n = ?, last_step = ?, last_value = ? WHERE id = ?",
                       [(s.n, s.last_step, s.last_value, s.id) for s in touched])
        for run_id in written:  # least recently written first out of the cache
            runs.move_to_end(run_id)
        while self._cached > CACHED_SERIES and len(runs) > 1:
            self._cached -= len(runs.popitem(last=False)[1])

    def _series(self, db: sqlite3.Connection, cached: dict[str, _Series], run_id: str,
                key: str) -> _Series | None:
        """Load or create the series ``(run_id, key)`` into the cache (``None``: over the cap)."""
        row = find_series(db, self._full, run_id, key)
        if row is None:
            return None
        series = _Series(int(row[0]), int(row[1]), row[2], row[3])
        if series.n == 0 and series.last_step is None:
            series.tail = []  # new: no tail stored yet
        cached[key] = series
        self._cached += 1
        return series

    @staticmethod
    def _load_tail(db: sqlite3.Connection, series: _Series) -> list[list[Any]]:
        row = db.execute("SELECT data FROM tails WHERE series_id = ?", (series.id,)).fetchone()
        series.tail = _unpack(row[0]) if row else []
        return series.tail

    def _earlier(self, db: sqlite3.Connection, series: _Series, step: int, value: Any) -> None:
        """Put a point before the series' newest step into the chunk whose range holds it."""
        tail = series.tail or []
        row = None
        if not tail or step < tail[0][0]:
            row = db.execute("SELECT first_step, data FROM chunks WHERE series_id = ? AND "
                             "first_step <= ? ORDER BY first_step DESC LIMIT 1",
                             (series.id, step)).fetchone() or db.execute(
                "SELECT first_step, data FROM chunks WHERE series_id = ? ORDER BY first_step "
                "LIMIT 1", (series.id,)).fetchone()
        chunk: list[list[Any]] = tail if row is None else _unpack(row[1])
        index = bisect.bisect_left(chunk, step, key=lambda point: point[0])
        if index < len(chunk) and chunk[index][0] == step:
            chunk[index][1] = value
        else:
            chunk.insert(index, [step, value])
            series.n += 1
        if row is None:
            series.tail = chunk  # stored with the other open chunks at the end of the write
            return
        if row[0] != chunk[0][0]:
            db.execute("DELETE FROM chunks WHERE series_id = ? AND first_step = ?",
                       (series.id, row[0]))
        db.execute("INSERT OR REPLACE INTO chunks (series_id, first_step, data) VALUES (?, ?, ?)",
                   (series.id, chunk[0][0], _pack(chunk)))

    def _compact(self, db: sqlite3.Connection, series: _Series) -> None:
        rows = _full_chunks(db, series.id) + (series.tail or [])
        older, exact = rows[:-EXACT_POINTS], rows[-EXACT_POINTS:]
        kept = [list(p) for p in min_max_buckets([(int(s), v) for s, v in older], BUCKETS)]
        points = kept + exact
        db.execute("DELETE FROM chunks WHERE series_id = ?", (series.id,))
        db.execute("DELETE FROM tails WHERE series_id = ?", (series.id,))
        parts = list(_parts(points))
        db.executemany("INSERT INTO chunks (series_id, first_step, data) VALUES (?, ?, ?)",
                       [(series.id, part[0][0], _pack(part)) for part in parts[:-1]])
        series.tail = parts[-1]
        series.n = len(points)
        self.compactions += 1

    @staticmethod
    def prune(db: sqlite3.Connection) -> int:
        """Delete the series of runs no longer in the ``runs`` table; how many went."""
        gone = [r[0] for r in db.execute(
            "SELECT id FROM series WHERE run_id NOT IN (SELECT run_id FROM runs)").fetchall()]
        for start in range(0, len(gone), 900):
            chunk = gone[start:start + 900]
            marks = ", ".join("?" * len(chunk))
            db.execute(f"DELETE FROM chunks WHERE series_id IN ({marks})", chunk)
            db.execute(f"DELETE FROM tails WHERE series_id IN ({marks})", chunk)
            db.execute(f"DELETE FROM series WHERE id IN ({marks})", chunk)
        return len(gone)
