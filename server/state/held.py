"""The runs a server answers for, kept in its history so a restart knows them again.

A server raises ``crashed`` only for runs its own publisher connections carried
(:mod:`.liveness`). When it stops, those connections close with it; after the restart it reads
them back (``meta`` key :data:`KEY`) and gives each that is still live the heartbeat timeout
plus the grace to be carried again or heard from (:meth:`.runwatch.RunWatch.restore`). With a
shared backend (Redis) that is what keeps a restarted server from crashing the runs other
servers of the fleet carry; a server alone restores every live run of its history.
"""

from __future__ import annotations

import sqlite3

import msgspec

__all__ = ["KEY", "MAX_HELD", "encode", "read"]

#: The ``meta`` key.
KEY = "held_runs"
#: Run ids kept at most (a larger set is cut: those runs are not restored).
MAX_HELD = 10_000

_decode = msgspec.json.Decoder(list[str]).decode


def encode(runs: frozenset[str]) -> str:
    """The ``meta`` value for ``runs`` (sorted, at most :data:`MAX_HELD`)."""
    return msgspec.json.encode(sorted(runs)[:MAX_HELD]).decode()


def read(db: sqlite3.Connection) -> list[str]:
    """The runs the previous process answered for (none when unknown or unreadable)."""
    row = db.execute("SELECT value FROM meta WHERE key = ?", (KEY,)).fetchone()
    if row is None:
        return []
    try:
        return _decode(row[0])[:MAX_HELD]
    except (msgspec.DecodeError, msgspec.ValidationError):
        return []
