"""SQLite history: runs (params, series), models, deployments, activity, seq and event ids.

Every database call runs on one dedicated thread (``sqlite3`` connections belong to the thread
that opened them), so the event loop never waits on the disk. The loop only records what
changed (:class:`~mlops_hooks.server.state.state.StateListener` methods, :meth:`Store.note`); the
thread writes it in batches, keeping the newest state of each run and model. A failing disk is
reported once and never stops the server.

Crash safety (``kill -9``): ingest waits for :meth:`Store.commit` before acknowledging an event
(one group commit for everything noted meanwhile, without the batch delay), so an acknowledged
event's ``seq``, ``event_id`` and state changes are on disk and a re-sent event is recognised
after a restart. A ``clean`` flag in ``meta`` tells the next start whether this process closed
the database (:attr:`History.unclean`).

Reads (:meth:`Store.query`, for ``GET /api/runs``) see everything noted before them: they wait
for pending changes to be committed, then run on a reader thread of their own (a file database
in WAL mode serves them beside the writer; an in-memory one serves them on the writer's thread).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError, ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from mlops_hooks.server.config import IDEMPOTENCY_WINDOW
from mlops_hooks.server.state import history as run_history
from mlops_hooks.server.state import series as series_module
from mlops_hooks.server.state.series import SeriesWriter

__all__ = ["History", "Store"]

T = TypeVar("T")

log = logging.getLogger("mlops_hooks.server")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (run_id TEXT PRIMARY KEY, seq INTEGER NOT NULL,
    status TEXT, model_name TEXT, updated TEXT, data TEXT NOT NULL,
    started_at TEXT NOT NULL DEFAULT '', ended_at TEXT, grp TEXT, progress REAL,
    final_accuracy REAL, group_size INTEGER);
CREATE TABLE IF NOT EXISTS models (model_id TEXT PRIMARY KEY, seq INTEGER NOT NULL,
    data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS deployments (seq INTEGER PRIMARY KEY, model_id TEXT,
    data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS activity (seq INTEGER PRIMARY KEY, id TEXT, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS event_ids (event_id TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS run_params (run_id TEXT PRIMARY KEY, params TEXT NOT NULL,
    metadata TEXT NOT NULL);
""" + series_module.SCHEMA
#: Rows kept per table (older ones are pruned).
#: ``event_ids``: the idempotency window, as long as the backends' (re-sends are recognised
#: after a restart as before it).
KEEP = {"runs": 1000, "activity": 10_000, "event_ids": IDEMPOTENCY_WINDOW,
        "deployments": 10_000}
LOAD_RUNS = 50
LOAD_ACTIVITY = 500
#: Seconds the writer waits to gather a batch.
BATCH_DELAY = 0.2
#: Rows waiting for a slow disk beyond this are dropped (oldest first): memory stays bounded.
MAX_PENDING_ROWS = 50_000
#: Appended rows: table -> the head of its INSERT and its number of columns.
_APPEND = {
    "activity": ("INSERT OR REPLACE INTO activity (seq, id, data) VALUES ", 3),
    "deployments": ("INSERT OR REPLACE INTO deployments (seq, model_id, data) VALUES ", 3),
    "event_ids": ("INSERT OR REPLACE INTO event_ids (event_id, seq) VALUES ", 2),
    "runs": ("INSERT INTO runs (run_id, seq, status, model_name, updated, data, started_at, "
             "ended_at, grp, progress, final_accuracy, group_size) VALUES ", 12),
    "models": ("INSERT OR REPLACE INTO models (model_id, seq, data) VALUES ", 3),
    "meta": ("INSERT OR REPLACE INTO meta (key, value) VALUES ", 2),
}
#: Bound parameters per statement (SQLite's historical limit is 999).
_MAX_PARAMS = 999
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.decode


@dataclass
class History:
    """What a restarted server starts from."""

    last_seq: int = 0
    runs: list[dict[str, Any]] = field(default_factory=list)
    models: list[dict[str, Any]] = field(default_factory=list)
    activity: list[dict[str, Any]] = field(default_factory=list)
    event_ids: list[tuple[str, int]] = field(default_factory=list)
    #: The previous process did not close the database (it crashed or was killed).
    unclean: bool = False
    #: This server's identity, kept in the database: the same across restarts, distinct for
    #: every server of a fleet (each has its own history).
    server_id: str = ""


class Store:
    """The history database, written from its own thread.

    Args:
        path: SQLite file (parent directories are created) or ``":memory:"``.

    Raises:
        sqlite3.Error: From :meth:`open` when the file cannot be opened or is not a database.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlops-hooks-db")
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._runs: dict[str, tuple[int, dict[str, Any]]] = {}
        self._models: dict[str, tuple[int, dict[str, Any]]] = {}
        self._rows: list[tuple[str, tuple[Any, ...]]] = []
        self._series = SeriesWriter()
        self._reader: ThreadPoolExecutor | None = None
        self._reader_db: sqlite3.Connection | None = None
        self._busy = False
        self._sql: dict[tuple[str, int], str] = {}
        self._seq = 0
        self._scheduled = False
        self._failed = False
        self._flushes = 0
        self._closing = threading.Event()
        self._urgent = threading.Event()
        self._waiters: list[Future[None]] = []
        self.writes = 0
        #: Rows dropped because the disk did not keep up.
        self.dropped = 0
        self._warned_drop = False

    # ------------------------------------------------------------------ lifecycle (loop side)

    def open(self) -> Future[History]:
        """Open the database and read the history (runs on the store's thread)."""
        return self._executor.submit(self._open)

    def close(self) -> None:
        """Write everything pending and close the database (blocks until done)."""
        self._closing.set()  # a batch waiting for company is written at once
        self._urgent.set()
        try:
            if self._reader is not None:
                self._reader.submit(self._close_reader).result()
                self._reader.shutdown(wait=True)
            self._executor.submit(self._flush, 0.0).result()
            self._executor.submit(self._close).result()
        finally:
            self._executor.shutdown(wait=True)

    def flush(self) -> Future[None]:
        """Write everything pending now."""
        return self._executor.submit(self._flush, 0.0)

    def commit(self) -> Future[None]:
        """A future resolved once everything noted so far is committed (no batch delay).

        Concurrent callers share one commit, and one future until the writer picks it up (so a
        burst of acknowledgements wakes the event loop once); a failing disk resolves it too
        (reported once).
        """
        with self._lock:
            if self._waiters:  # not picked up yet: the coming commit covers this caller too
                return self._waiters[0]
            future: Future[None] = Future()
            self._waiters.append(future)
            self._urgent.set()
            try:
                self._schedule()
            except RuntimeError:  # closed: close() wrote everything
                self._waiters.remove(future)
                future.set_result(None)
        return future

    def query(self, read: Callable[[sqlite3.Connection], T]) -> Future[T]:
        """Run ``read`` on a database connection once everything noted so far is committed.

        Args:
            read: Called with a connection, on a thread of the store; must only read.

        Returns:
            Its result (or its exception).
        """
        if self.path == ":memory:":  # one connection: read on the writer's thread, in order
            with self._lock:
                if self._scheduled:
                    self._urgent.set()
            return self._executor.submit(self._read_here, read)
        if self._reader is None:
            self._reader = ThreadPoolExecutor(max_workers=1,
                                              thread_name_prefix="mlops-hooks-db-read")
        return self._reader.submit(self._read_after_writes, read)

    def _read_here(self, read: Callable[[sqlite3.Connection], T]) -> T:
        if self._db is None:
            raise sqlite3.OperationalError("the history database is closed")
        return read(self._db)

    def _read_after_writes(self, read: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            pending = self._scheduled or self._busy or bool(self._waiters)
        if pending:
            self.commit().result()
        if self._reader_db is None:
            uri = Path(os.path.abspath(self.path)).as_uri() + "?mode=ro"
            db = sqlite3.connect(uri, uri=True, isolation_level=None)
            db.execute("PRAGMA busy_timeout = 5000")
            self._reader_db = db
        self._reader_db.execute("BEGIN")  # one snapshot for all of the read's statements
        try:
            return read(self._reader_db)
        finally:
            self._reader_db.execute("COMMIT")

    def _close_reader(self) -> None:
        if self._reader_db is not None:
            self._reader_db.close()
            self._reader_db = None

    # ------------------------------------------------------------------ changes (loop side)

    def _schedule(self) -> None:
        # Called with the lock held.
        if not self._scheduled:
            self._scheduled = True
            self._executor.submit(self._flush, BATCH_DELAY)

    def run_changed(self, run: dict[str, Any], seq: int) -> None:
        """Keep the newest state of a run."""
        with self._lock:
            self._runs[run["run_id"]] = (seq, run)
            self._schedule()

    def model_changed(self, model: dict[str, Any], seq: int) -> None:
        """Keep the newest state of a model."""
        with self._lock:
            self._models[model["model_id"]] = (seq, model)
            self._schedule()

    def activity_added(self, activity: dict[str, Any], seq: int) -> None:
        """Append an activity entry."""
        self._row("activity", (seq, activity.get("id"), _encode(activity).decode()))

    def deployment_added(self, event: dict[str, Any], seq: int) -> None:
        """Append a ``model_deployed`` event."""
        self._row("deployments", (seq, event.get("model_id") or event.get("model_name"),
                                  _encode(event).decode()))

    def points_added(self, run_id: str, step: int, values: dict[str, float]) -> None:
        """Append one point to each named series of a run (in stream order)."""
        self._row("points", (run_id, step, values))

    def params_added(self, run_id: str, params: dict[str, Any],
                     metadata: dict[str, Any]) -> None:
        """Merge a ``run_params`` event's params (later keys win) and metadata (first wins)."""
        self._row("params", (run_id, params, metadata))

    def meta_changed(self, key: str, value: str) -> None:
        """Keep ``value`` under ``key`` in the ``meta`` table (the newest wins)."""
        self._row("meta", (key, value))

    def note(self, seq: int, event_id: str | None) -> None:
        """Remember the stream position (and the event's idempotency key)."""
        with self._lock:
            self._seq = max(self._seq, seq)
            if event_id is not None:
                self._rows.append(("event_ids", (event_id, seq)))
                self._trim()
            self._schedule()

    def _row(self, table: str, params: tuple[Any, ...]) -> None:
        with self._lock:
            self._rows.append((table, params))
            self._trim()
            self._schedule()

    def _trim(self) -> None:
        # Called with the lock held.
        excess = len(self._rows) - MAX_PENDING_ROWS
        if excess > 0:
            del self._rows[:excess]
            self.dropped += excess
            if not self._warned_drop:
                self._warned_drop = True
                log.warning("mlops-hooks: the history database at %s is not keeping up; the "
                            "oldest unwritten rows are dropped", self.path)

    # ------------------------------------------------------------------ store thread

    def _open(self) -> History:
        if self.path != ":memory:":
            parent = os.path.dirname(os.path.abspath(self.path))
            os.makedirs(parent, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None)
        try:
            if self.path != ":memory:":
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            run_history.migrate(db)
            series_module.migrate(db)
            db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', '3')")
            history = self._read(db)
            clean = db.execute("SELECT value FROM meta WHERE key = 'clean'").fetchone()
            history.unclean = clean is not None and clean[0] != "1"
            db.execute("INSERT OR REPLACE INTO meta VALUES ('clean', '0')")
            db.execute("INSERT OR IGNORE INTO meta VALUES ('server_id', ?)", (uuid.uuid4().hex,))
            history.server_id = db.execute(
                "SELECT value FROM meta WHERE key = 'server_id'").fetchone()[0]
        except sqlite3.Error:
            db.close()
            raise
        self._db = db
        return history

    @staticmethod
    def _read(db: sqlite3.Connection) -> History:
        history = History()
        row = db.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()
        seqs = [int(row[0])] if row else []
        for table in ("runs", "models", "activity", "deployments", "event_ids"):
            found = db.execute(f"SELECT MAX(seq) FROM {table}").fetchone()[0]
            if found is not None:
                seqs.append(int(found))
        history.last_seq = max(seqs, default=0)
        runs = db.execute("SELECT data FROM runs ORDER BY seq DESC LIMIT ?", (LOAD_RUNS,))
        history.runs = [_decode(r[0]) for r in runs.fetchall()][::-1]
        models = db.execute("SELECT data FROM models ORDER BY seq")
        history.models = [_decode(r[0]) for r in models.fetchall()]
        acts = db.execute("SELECT data FROM activity ORDER BY seq DESC LIMIT ?", (LOAD_ACTIVITY,))
        history.activity = [_decode(r[0]) for r in acts.fetchall()]
        ids = db.execute("SELECT event_id, seq FROM event_ids ORDER BY seq")
        history.event_ids = [(str(a), int(b)) for a, b in ids.fetchall()]
        return history

    def _flush(self, delay: float) -> None:
        if delay and not self._closing.is_set():
            self._urgent.wait(delay)  # a commit() or close() cuts the batch delay short
        with self._lock:
            self._scheduled = False
            self._urgent.clear()
            waiters, self._waiters = self._waiters, []
            runs, self._runs = self._runs, {}
            models, self._models = self._models, {}
            rows, self._rows = self._rows, []
            seq = self._seq
            self._busy = True
        try:
            self._write(runs, models, rows, seq)
        finally:
            self._busy = False
            for waiter in waiters:
                with suppress(InvalidStateError):  # its waiter was cancelled
                    waiter.set_result(None)

    def _write(self, runs: dict[str, tuple[int, dict[str, Any]]],
               models: dict[str, tuple[int, dict[str, Any]]],
               rows: list[tuple[str, tuple[Any, ...]]], seq: int) -> None:
        db = self._db
        if db is None or not (runs or models or rows or seq):
            return
        grouped: dict[str, list[tuple[Any, ...]]] = {}
        if runs:
            grouped["runs"] = [run_history.run_row(k, s, r) for k, (s, r) in runs.items()]
        if models:
            grouped["models"] = [(k, s, _encode(m).decode()) for k, (s, m) in models.items()]
        for table, row in rows:  # order kept within each table
            grouped.setdefault(table, []).append(row)
        points = grouped.pop("points", None)
        params = grouped.pop("params", None)
        try:
            db.execute("BEGIN")
            for table, batch in grouped.items():
                self._insert(db, table, batch)
            if points:
                self._series.write(db, points)
            if params:
                run_history.merge_params(db, params)
            if seq:
                db.execute("INSERT OR REPLACE INTO meta VALUES ('last_seq', ?)", (str(seq),))
            self._flushes += 1
            if self._flushes % 50 == 1:
                self._prune(db)
            db.execute("COMMIT")
            self.writes += 1
        except sqlite3.Error as exc:
            self._series.forget()
            if db.in_transaction:
                db.execute("ROLLBACK")
            if not self._failed:
                self._failed = True
                log.error("mlops-hooks: writing history to %s failed: %s (the server goes on; "
                          "further errors are not reported)", self.path, exc)

    def _insert(self, db: sqlite3.Connection, table: str, batch: list[tuple[Any, ...]]) -> None:
        """Insert ``batch`` with as few statements as the parameter limit allows.

        Each statement is one step of SQLite and one release of the GIL by this thread (a row
        per statement made the event loop's thread give the GIL back to it for every row).
        """
        head, width = _APPEND[table]
        per = _MAX_PARAMS // width
        for start in range(0, len(batch), per):
            chunk = batch[start:start + per]
            sql = self._sql.get((table, len(chunk)))
            if sql is None:
                group = "(" + ", ".join("?" * width) + ")"
                sql = head + ", ".join([group] * len(chunk))
                if table == "runs":
                    sql += run_history.RUN_UPSERT
                self._sql[(table, len(chunk))] = sql
            db.execute(sql, [value for row in chunk for value in row])

    def _prune(self, db: sqlite3.Connection) -> None:
        for table, keep in KEEP.items():
            db.execute(
                f"DELETE FROM {table} WHERE seq < (SELECT MIN(seq) FROM "
                f"(SELECT seq FROM {table} ORDER BY seq DESC LIMIT ?))", (keep,))
        db.execute("DELETE FROM run_params WHERE run_id NOT IN (SELECT run_id FROM runs)")
        if SeriesWriter.prune(db):
            self._series.forget()

    def _close(self) -> None:
        if self._db is not None:
            with suppress(sqlite3.Error):  # already reported by the writer
                self._db.execute("INSERT OR REPLACE INTO meta VALUES ('clean', '1')")
            self._db.close()
            self._db = None

