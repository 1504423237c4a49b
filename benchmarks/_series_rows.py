"""The run history's previous series writer, one SQLite row per point: the ingest baseline.

``benchmarks/run_history.py`` runs the server's ingest with it (``--series rows``) beside the
current writer (points packed a chunk a row), interleaved, so the two are compared in the same
run. Same bound, same compaction, same answers; only the storage differs.
"""

from __future__ import annotations

import sqlite3
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from typing import Any

from mlops_hooks.server.state.series import (
    BUCKETS,
    CACHED_SERIES,
    EXACT_POINTS,
    MAX_POINTS,
    find_series,
    min_max_buckets,
)

__all__ = ["RowPerPointWriter"]

POINTS = ("CREATE TABLE IF NOT EXISTS points (series_id INTEGER NOT NULL, step INTEGER NOT NULL, "
          "value, PRIMARY KEY (series_id, step)) WITHOUT ROWID")
_ROWS_PER_INSERT = 999 // 3


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


class RowPerPointWriter:
    """The previous writer: one ``points`` row per point (baseline of the ingest benchmark)."""

    def __init__(self) -> None:
        self._created = False
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
        if not self._created:
            db.execute(POINTS)  # in the store's transaction
            self._created = True
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
        row = find_series(db, self._full, run_id, key)
        if row is None:
            return None
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
        db.execute(POINTS)
        gone = [r[0] for r in db.execute(
            "SELECT id FROM series WHERE run_id NOT IN (SELECT run_id FROM runs)").fetchall()]
        for start in range(0, len(gone), 900):
            chunk = gone[start:start + 900]
            marks = ", ".join("?" * len(chunk))
            db.execute(f"DELETE FROM points WHERE series_id IN ({marks})", chunk)
            db.execute(f"DELETE FROM series WHERE id IN ({marks})", chunk)
        return len(gone)
