"""Run history in SQLite: the run rows written by the store, and the reads of ``/api/runs``.

Every run the server has seen (the newest :data:`~.store.KEEP` ``["runs"]``, not only those in
memory) has a row in ``runs`` (status, model name, group, start and end, progress, final
accuracy, indexed for the listing's order and filters), its merged ``run_params`` and its metric
series (:mod:`.series`). The ``read_*`` functions run on the store's reader thread
(:meth:`~.store.Store.query`) and return the shapes of docs/protocol.md.
"""

from __future__ import annotations

import base64
import binascii
import sqlite3
from datetime import datetime
from typing import Any

import msgspec

from mlops_hooks.server.state.series import read_points

__all__ = ["MAX_PARAMS", "RUN_UPSERT", "merge_params", "migrate", "read_group", "read_run",
           "read_runs", "read_series", "run_row"]

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.decode

#: Columns added to ``runs`` by schema 2 (run history), with their SQL types.
_RUN_COLUMNS = {"started_at": "TEXT NOT NULL DEFAULT ''", "ended_at": "TEXT", "grp": "TEXT",
                "progress": "REAL", "final_accuracy": "REAL", "group_size": "INTEGER"}
_INDEXES = """
CREATE INDEX IF NOT EXISTS runs_started ON runs (started_at DESC, run_id DESC);
CREATE INDEX IF NOT EXISTS runs_group ON runs (grp, started_at DESC, run_id DESC);
CREATE INDEX IF NOT EXISTS runs_status ON runs (status, started_at DESC, run_id DESC);
CREATE INDEX IF NOT EXISTS runs_seq ON runs (seq);
"""
#: What a run row keeps of an earlier write of the same run (a run evicted from memory and seen
#: again keeps its start and group).
RUN_UPSERT = (" ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq, status = excluded.status,"
              " model_name = COALESCE(excluded.model_name, runs.model_name),"
              " updated = excluded.updated, data = excluded.data,"
              " started_at = CASE WHEN runs.started_at != '' THEN runs.started_at"
              " ELSE excluded.started_at END,"
              " ended_at = excluded.ended_at, grp = COALESCE(excluded.grp, runs.grp),"
              " progress = excluded.progress, final_accuracy = excluded.final_accuracy,"
              " group_size = COALESCE(excluded.group_size, runs.group_size)")
#: Keys a run's merged params (and its metadata) keep at most; later new keys are dropped.
MAX_PARAMS = 1024
#: The run states, as ``GET /api/groups/{group}`` counts them.
_STATUSES = ("running", "stalled", "completed", "failed")
_COLUMNS = ("r.run_id, r.model_name, r.status, r.started_at, r.ended_at, r.progress, "
            "r.final_accuracy, r.grp, r.updated, p.params, r.group_size")


# --------------------------------------------------------------------------- writing (store thread)


def migrate(db: sqlite3.Connection) -> None:
    """Bring ``runs`` to schema 2 (a schema 1 run's start is taken from its last update)."""
    have = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
    missing = [(name, kind) for name, kind in _RUN_COLUMNS.items() if name not in have]
    for name, kind in missing:
        db.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")
    if any(name == "started_at" for name, _ in missing):
        db.execute("UPDATE runs SET started_at = COALESCE(updated, '') WHERE started_at = ''")
    db.executescript(_INDEXES)


def run_row(run_id: str, seq: int, run: dict[str, Any]) -> tuple[Any, ...]:
    """The ``runs`` row of a ``RunState`` dict (a completed run is at 100 %)."""
    progress = run.get("progress")
    completed = run.get("completed")
    percent = progress.get("progress") if isinstance(progress, dict) else None
    if run.get("status") == "completed":
        percent = 100
    accuracy = completed.get("final_accuracy") if isinstance(completed, dict) else None
    return (run_id, seq, run.get("status"), run.get("model_name"), run.get("updated"),
            _encode(run).decode(), run.get("started_at") or "", run.get("ended_at"),
            run.get("group"), percent, accuracy, run.get("group_size"))


def merge_params(db: sqlite3.Connection, batch: list[tuple[Any, ...]]) -> None:
    """Merge ``(run_id, params, metadata)`` into ``run_params``, in order.

    Later params win; metadata keeps its first values and gains the keys it lacks.
    """
    merged: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for run_id, params, metadata in batch:
        known = merged.get(run_id)
        if known is None:
            row = db.execute("SELECT params, metadata FROM run_params WHERE run_id = ?",
                             (run_id,)).fetchone()
            known = (_decode(row[0]), _decode(row[1])) if row else ({}, {})
        new_params = dict(known[0])
        for key, value in params.items():
            if key in new_params or len(new_params) < MAX_PARAMS:
                new_params[key] = value
        new_meta = dict(known[1])
        for key, value in metadata.items():
            if key not in new_meta and len(new_meta) < MAX_PARAMS:
                new_meta[key] = value
        merged[run_id] = (new_params, new_meta)
    db.executemany("INSERT OR REPLACE INTO run_params (run_id, params, metadata) VALUES (?, ?, ?)",
                   [(k, _encode(p).decode(), _encode(m).decode()) for k, (p, m) in merged.items()])


# --------------------------------------------------------------------------- reading


def encode_cursor(started_at: str, run_id: str) -> str:
    """The opaque ``next_cursor`` after the run ``(started_at, run_id)``."""
    return base64.urlsafe_b64encode(_encode([started_at, run_id])).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str]:
    """The position a ``next_cursor`` names.

    Raises:
        ValueError: It is not a cursor this server made.
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        started_at, run_id = _decode(raw)
    except (binascii.Error, msgspec.DecodeError, ValueError, TypeError):
        raise ValueError(f"cursor {cursor[:64]!r} is not a next_cursor of this server") from None
    if not isinstance(started_at, str) or not isinstance(run_id, str):
        raise ValueError(f"cursor {cursor[:64]!r} is not a next_cursor of this server")
    return started_at, run_id


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    try:
        delta = (datetime.fromisoformat(end.replace("Z", "+00:00"))
                 - datetime.fromisoformat(start.replace("Z", "+00:00")))
    except (ValueError, TypeError):
        return None
    return round(delta.total_seconds(), 3)


def _run(row: tuple[Any, ...], last: dict[str, Any]) -> dict[str, Any]:
    (run_id, model_name, status, started, ended, progress, accuracy, group, updated, params,
     group_size) = row
    return {
        "run_id": run_id,
        "model_name": model_name,
        "status": status,
        "started_at": started or None,
        "ended_at": ended,
        "progress": progress,
        "final_accuracy": accuracy,
        "params": _decode(params) if params else {},
        "group": group,
        "group_size": group_size,
        "last_metrics": last,
        "duration_s": _seconds(started, ended or updated),
    }


def _last_metrics(db: sqlite3.Connection, run_ids: list[str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {r: {} for r in run_ids}
    if run_ids:
        marks = ", ".join("?" * len(run_ids))
        for run_id, key, value in db.execute(
                f"SELECT run_id, key, last_value FROM series WHERE run_id IN ({marks}) "
                "ORDER BY run_id, key", run_ids):
            found[run_id][key] = value
    return found


def read_runs(db: sqlite3.Connection, *, statuses: tuple[str, ...] = (), q: str | None = None,
              group: str | None = None, limit: int = 50,
              cursor: tuple[str, str] | None = None) -> dict[str, Any]:
    """``GET /api/runs``: newest first (start time, then ``run_id``), filtered, one page.

    Args:
        db: A connection to the history.
        statuses: Keep runs in one of these states (all when empty).
        q: Keep runs whose model name or ``run_id`` contains it (ignoring ASCII case).
        group: Keep the runs of this group.
        limit: Runs per page.
        cursor: Start after this ``(started_at, run_id)`` (from :func:`decode_cursor`).
    """
    where: list[str] = []
    args: list[Any] = []
    if statuses:
        where.append(f"r.status IN ({', '.join('?' * len(statuses))})")
        args += statuses
    if group is not None:
        where.append("r.grp = ?")
        args.append(group)
    if q:
        where.append("(instr(lower(r.run_id), lower(?)) > 0 "
                     "OR instr(lower(COALESCE(r.model_name, '')), lower(?)) > 0)")
        args += [q, q]
    if cursor is not None:
        where.append("(r.started_at, r.run_id) < (?, ?)")
        args += cursor
    sql = (f"SELECT {_COLUMNS} FROM runs r LEFT JOIN run_params p ON p.run_id = r.run_id "
           + ("WHERE " + " AND ".join(where) + " " if where else "")
           + "ORDER BY r.started_at DESC, r.run_id DESC LIMIT ?")
    rows = db.execute(sql, [*args, limit + 1]).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    last = _last_metrics(db, [r[0] for r in rows])
    return {"runs": [_run(r, last[r[0]]) for r in rows],
            "next_cursor": encode_cursor(rows[-1][3], rows[-1][0]) if more else None}


def read_run(db: sqlite3.Connection, run_id: str) -> dict[str, Any] | None:
    """``GET /api/runs/{run_id}``: the run with its metadata and series keys (``None``: unknown)."""
    row = db.execute(f"SELECT {_COLUMNS}, p.metadata FROM runs r LEFT JOIN run_params p "
                     "ON p.run_id = r.run_id WHERE r.run_id = ?", (run_id,)).fetchone()
    if row is None:
        return None
    last = _last_metrics(db, [run_id])[run_id]
    run = _run(row[:-1], last)
    run["metadata"] = _decode(row[-1]) if row[-1] else {}
    run["series_keys"] = sorted(last)
    # the highest step any series reached: where a resumed run continues (the W&B shim)
    run["last_step"] = db.execute("SELECT MAX(last_step) FROM series WHERE run_id = ?",
                                  (run_id,)).fetchone()[0]
    return {"run": run}


def read_group(db: sqlite3.Connection, group: str) -> dict[str, Any] | None:
    """``GET /api/groups/{group}``: its runs counted by status, planned, best so far.

    ``planned`` is the ``group_size`` of the group's newest run that has one; ``best`` the run
    with the highest final accuracy. ``None`` when no run of the history is in ``group``.
    """
    counts = dict(db.execute("SELECT status, COUNT(*) FROM runs WHERE grp = ? GROUP BY status",
                             (group,)).fetchall())
    if not counts:
        return None
    planned = db.execute("SELECT group_size FROM runs WHERE grp = ? AND group_size IS NOT NULL "
                         "ORDER BY started_at DESC, run_id DESC LIMIT 1", (group,)).fetchone()
    best = db.execute("SELECT run_id, model_name, final_accuracy FROM runs WHERE grp = ? AND "
                      "final_accuracy IS NOT NULL ORDER BY final_accuracy DESC, started_at, "
                      "run_id LIMIT 1", (group,)).fetchone()
    by_status = {status: int(counts.get(status, 0)) for status in _STATUSES}
    return {"group": group, "runs": sum(by_status.values()), "counts": by_status,
            "planned": planned[0] if planned else None,
            "best": {"run_id": best[0], "model_name": best[1], "final_accuracy": best[2]}
            if best else None}


def read_series(db: sqlite3.Connection, run_id: str, keys: list[str] | None,
                max_keys: int) -> dict[str, Any] | None:
    """``GET /api/runs/{run_id}/metrics``: ``[step, value]`` lists sorted by step.

    Args:
        db: A connection to the history.
        run_id: The run.
        keys: The series wanted (unknown ones are left out); ``None``: every series, up to
            ``max_keys`` of them in key order (``"truncated": true`` when some are left out).
        max_keys: Series returned at most.

    Returns:
        ``None`` when the run is unknown.
    """
    if db.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is None:
        return None
    if keys is None:
        found = db.execute("SELECT id, key FROM series WHERE run_id = ? ORDER BY key LIMIT ?",
                           (run_id, max_keys + 1)).fetchall()
    else:
        marks = ", ".join("?" * len(keys))
        found = db.execute(f"SELECT id, key FROM series WHERE run_id = ? AND key IN ({marks}) "
                           "ORDER BY key", (run_id, *keys)).fetchall()
    body: dict[str, Any] = {"run_id": run_id, "series": {}}
    if len(found) > max_keys:
        found = found[:max_keys]
        body["truncated"] = True
    for series_id, key in found:
        body["series"][key] = read_points(db, series_id)
    return body
