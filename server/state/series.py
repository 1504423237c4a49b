"""Metric series in SQLite: appended point by point, each bounded by min/max buckets.

Runs on the store's thread (:class:`~mlops_hooks.server.state.store.Store`), inside its write
transaction. A series holds at most :data:`MAX_POINTS` points. When a point would make it
:data:`MAX_POINTS` + 1, the series is compacted at once: its newest :data:`EXACT_POINTS` points
(by step) stay exact, and the older ones are split into :data:`BUCKETS` buckets of equal step
width, each keeping its lowest and its highest point (the first of equal values). A long run
keeps the envelope of its whole history and its recent points exactly.

Compaction depends only on the series' own points, taken in stream order, never on how the
points were batched: every server of a fleet (each deriving the series from the same stream)
and a restarted server hold the same points.
"""

from __future__ import annotations

import sqlite3
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["BUCKETS", "EXACT_POINTS", "MAX_POINTS", "MAX_SERIES_PER_RUN", "SCHEMA",
           "SeriesWriter", "min_max_buckets"]

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
CREATE TABLE IF NOT EXISTS points (series_id INTEGER NOT NULL, step INTEGER NOT NULL,
    value, PRIMARY KEY (series_id, step)) WITHOUT ROWID;
"""
_ROWS_PER_INSERT = 999 // 3


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


def _each(points: Iterable[tuple[str, int, dict[str, Any]]]
          ) -> Iterator[tuple[str, str, int, Any]]:
    for run_id, step, values in points:
        for key, value in values.items():
            yield run_id, key, step, value


class _Series:
    __slots__ = ("id", "last_step", "last_value", "n", "pending")

    def __init__(self, series_id: int, n: int, last_step: int | None, last_value: Any) -> None:
        self.id = series_id
        self.n = n
        self.last_step = last_step
        self.last_value = last_value
        #: Points of the current batch not inserted yet: step -> value (the later one wins).
        self.pending: dict[int, Any] = {}


class SeriesWriter:
    """Appends points to series and keeps each within :data:`MAX_POINTS` (store thread only)."""

    def __init__(self) -> None:
        self._cache: OrderedDict[tuple[str, str], _Series] = OrderedDict()
        self._full: set[str] = set()
        self.compactions = 0

    def forget(self) -> None:
        """Drop the cached counters (after a rollback or a prune)."""
        self._cache.clear()
        self._full.clear()

    def write(self, db: sqlite3.Connection,
              points: Iterable[tuple[str, int, dict[str, Any]]]) -> None:
        """Add ``(run_id, step, {key: value})`` points, in order, in the caller's transaction.

        A step a series already has gets the new value (the later point wins).
        """
        cache = self._cache
        touched: dict[tuple[str, str], _Series] = {}
        for run_id, key, step, value in _each(points):
            series = cache.get((run_id, key))
            if series is None:
                series = self._series(db, run_id, key)
                if series is None:
                    continue
            touched[(run_id, key)] = series
            pending = series.pending
            if step in pending:
                pass
            elif series.last_step is None or step > series.last_step:
                series.n += 1
                series.last_step = step
            elif step != series.last_step and db.execute(
                    "SELECT 1 FROM points WHERE series_id = ? AND step = ?",
                    (series.id, step)).fetchone() is None:
                series.n += 1
            pending[step] = value
            series.last_value = value
            if series.n > MAX_POINTS:
                self._insert(db, [series])
                self._compact(db, series)
        self._insert(db, touched.values())
        db.executemany("UPDATE series SET n = ?, last_step = ?, last_value = ? WHERE id = ?",
                       [(s.n, s.last_step, s.last_value, s.id) for s in touched.values()])
        for name in touched:  # least recently written first out of the cache
            cache.move_to_end(name)
        while len(cache) > CACHED_SERIES:
            cache.popitem(last=False)

    def _series(self, db: sqlite3.Connection, run_id: str, key: str) -> _Series | None:
        """Load or create the series ``(run_id, key)`` into the cache (``None``: over the cap)."""
        row = db.execute("SELECT id, n, last_step, last_value FROM series "
                         "WHERE run_id = ? AND key = ?", (run_id, key)).fetchone()
        if row is None:
            if run_id in self._full:
                return None
            count = db.execute("SELECT COUNT(*) FROM series WHERE run_id = ?",
                               (run_id,)).fetchone()[0]
            if count >= MAX_SERIES_PER_RUN:
                self._full.add(run_id)
                return None
            cursor = db.execute("INSERT INTO series (run_id, key) VALUES (?, ?)", (run_id, key))
            row = (cursor.lastrowid, 0, None, None)
        series = self._cache[(run_id, key)] = _Series(int(row[0]), int(row[1]), row[2], row[3])
        return series

    @staticmethod
    def _insert(db: sqlite3.Connection, touched: Iterable[_Series]) -> None:
        rows: list[tuple[int, int, Any]] = []
        for s in touched:
            if s.pending:
                sid = s.id
                rows += [(sid, step, value) for step, value in s.pending.items()]
                s.pending = {}
        for start in range(0, len(rows), _ROWS_PER_INSERT):
            chunk = rows[start:start + _ROWS_PER_INSERT]
            db.execute("INSERT OR REPLACE INTO points (series_id, step, value) VALUES "
                       + ", ".join(["(?, ?, ?)"] * len(chunk)),
                       [value for row in chunk for value in row])

    def _compact(self, db: sqlite3.Connection, series: _Series) -> None:
        rows = db.execute("SELECT step, value FROM points WHERE series_id = ? ORDER BY step",
                          (series.id,)).fetchall()
        older, exact = rows[:-EXACT_POINTS], rows[-EXACT_POINTS:]
        kept = min_max_buckets([(int(s), v) for s, v in older], BUCKETS)
        db.execute("DELETE FROM points WHERE series_id = ? AND step < ?",
                   (series.id, exact[0][0]))
        series.pending = dict(kept)
        self._insert(db, [series])
        series.n = len(kept) + len(exact)
        self.compactions += 1

    @staticmethod
    def prune(db: sqlite3.Connection) -> int:
        """Delete the series of runs no longer in the ``runs`` table; how many went."""
        gone = [r[0] for r in db.execute(
            "SELECT id FROM series WHERE run_id NOT IN (SELECT run_id FROM runs)").fetchall()]
        for start in range(0, len(gone), 900):
            chunk = gone[start:start + 900]
            marks = ", ".join("?" * len(chunk))
            db.execute(f"DELETE FROM points WHERE series_id IN ({marks})", chunk)
            db.execute(f"DELETE FROM series WHERE id IN ({marks})", chunk)
        return len(gone)
