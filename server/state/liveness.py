"""Liveness: which runs a publisher connection carries, and runs whose process vanished.

A publisher's background thread lists its open runs in every ping (``{"type": "ping", "id":
X, "runs": [...]}``, about every 5 s: the heartbeat, docs/protocol.md). A :class:`Carrier` is one
``/ws/publish`` connection and the runs its latest heartbeat listed. When the connection closes,
or its heartbeats stop for :data:`HEARTBEAT_TIMEOUT` seconds, each run it carried and no other
connection carries becomes an *orphan*; an orphan still not carried ``grace`` seconds later is
due to be reported ``crashed`` (the caller checks that the run has not ended). A publisher that
reconnects within the grace (a network blip, a server restart) lists the run again and it is
no orphan any more.

Pure bookkeeping: every method takes the time (``time.monotonic()``) and returns at once.
"""

from __future__ import annotations

from collections.abc import Iterable

from mlops_hooks.formatting import format_duration

__all__ = ["HEARTBEAT_TIMEOUT", "MAX_CARRIED", "Carrier", "Liveness"]

#: Seconds without a heartbeat after which an open connection no longer carries its runs
#: (publishers send one about every 5 s).
HEARTBEAT_TIMEOUT = 30.0
#: Runs one heartbeat may list.
MAX_CARRIED = 64


class Carrier:
    """One publisher connection: the runs of its latest heartbeat, and when it came."""

    __slots__ = ("beat_at", "runs")

    def __init__(self, now: float) -> None:
        self.runs: frozenset[str] = frozenset()
        self.beat_at = now


class Liveness:
    """The carriers of this server and the orphaned runs waiting out their grace.

    Args:
        grace: Seconds an orphaned run has to be carried again before it is reported.
        heartbeat_timeout: Seconds without a heartbeat after which a connection's runs are
            orphaned; also what runs left live by a restart wait for their publishers (plus
            the grace). Default :data:`HEARTBEAT_TIMEOUT`.

    Raises:
        ValueError: ``grace`` is not a number >= 0, or ``heartbeat_timeout`` not one > 0.
    """

    def __init__(self, grace: float, heartbeat_timeout: float = HEARTBEAT_TIMEOUT) -> None:
        if isinstance(grace, bool) or not isinstance(grace, (int, float)) or not grace >= 0:
            raise ValueError(f"the crash grace must be a number of seconds >= 0, got {grace!r}")
        if isinstance(heartbeat_timeout, bool) or not isinstance(heartbeat_timeout, (int, float)) \
                or not heartbeat_timeout > 0 or heartbeat_timeout == float("inf"):
            raise ValueError("the heartbeat timeout must be a number of seconds > 0, got "
                             f"{heartbeat_timeout!r}")
        self.grace = float(grace)
        self.heartbeat_timeout = float(heartbeat_timeout)
        self.carriers: set[Carrier] = set()
        #: run_id -> (deadline, why it was orphaned)
        self.orphans: dict[str, tuple[float, str]] = {}
        #: Orphans of :meth:`restored` (any later event of the run clears them: :meth:`heard`).
        self.restored_runs: set[str] = set()
        #: The runs :meth:`held` answers may have changed since the caller last read them.
        self.changed = False

    def connect(self, now: float) -> Carrier:
        """A publisher connection opened; it carries nothing until its first heartbeat."""
        carrier = Carrier(now)
        self.carriers.add(carrier)
        return carrier

    def heartbeat(self, carrier: Carrier, runs: Iterable[str], now: float) -> list[str]:
        """``carrier`` lists ``runs`` now.

        Returns:
            The runs it carries that no connection of this server carried a moment ago (a
            publisher that reconnected, or a new run).
        """
        listed = frozenset(runs)
        fresh = [r for r in listed if r not in carrier.runs and not self.carried(r)]
        self.changed = self.changed or listed != carrier.runs
        carrier.runs = listed
        carrier.beat_at = now
        for run_id in listed:
            self.orphans.pop(run_id, None)
            self.restored_runs.discard(run_id)
        return fresh

    def disconnect(self, carrier: Carrier, now: float) -> None:
        """A publisher connection closed: its runs are orphaned unless carried elsewhere."""
        self.carriers.discard(carrier)
        self._orphan(carrier.runs, now, "its publisher's connection closed")
        carrier.runs = frozenset()

    def carried(self, run_id: str) -> bool:
        """Whether an open connection's latest heartbeat lists ``run_id``."""
        return any(run_id in c.runs for c in self.carriers)

    def restored(self, runs: Iterable[str], now: float) -> None:
        """Runs that were live when this server last stopped: orphans until a heartbeat.

        They get the heartbeat timeout plus the grace (their publishers reconnect with
        backoff).
        """
        deadline = now + self.heartbeat_timeout
        for run_id in runs:
            if not self.carried(run_id) and run_id not in self.orphans:
                self.orphans[run_id] = (deadline + self.grace,
                                        "no publisher carried it after the server restarted")
                self.restored_runs.add(run_id)
                self.changed = True

    def heard(self, run_id: str) -> None:
        """An event of ``run_id`` arrived: if it waited since a restart, it is alive somewhere.

        (With a shared backend its publisher may have reconnected to another server, whose
        heartbeats this server never sees; that server watches the run from now on.)
        """
        if run_id in self.restored_runs:
            self.restored_runs.discard(run_id)
            self.orphans.pop(run_id, None)
            self.changed = True

    def ended(self, run_id: str) -> None:
        """The run ended: nothing to report about it."""
        if self.orphans.pop(run_id, None) is not None:
            self.changed = True
        self.restored_runs.discard(run_id)

    def held(self) -> frozenset[str]:
        """The runs this server answers for: carried by its connections, or orphans waiting.

        What a restarted server restores (a connection closing while the server stops moves
        its runs from carried to orphaned: the answer stays the same).
        """
        return frozenset(self.orphans).union(*(c.runs for c in self.carriers))

    def due(self, now: float) -> list[tuple[str, str]]:
        """Runs to report as crashed at ``now``, with the reason.

        A connection silent for the heartbeat timeout orphans its runs first (it carries them
        again with its next heartbeat).
        """
        for carrier in self.carriers:
            if carrier.runs and now - carrier.beat_at >= self.heartbeat_timeout:
                runs, carrier.runs = carrier.runs, frozenset()
                self._orphan(runs, now, "no heartbeat from its publisher for "
                             f"{format_duration(now - carrier.beat_at)}")
        out = [(run_id, why) for run_id, (deadline, why) in self.orphans.items()
               if deadline <= now]
        for run_id, _ in out:
            del self.orphans[run_id]
            self.restored_runs.discard(run_id)
            self.changed = True
        return out

    def _orphan(self, runs: Iterable[str], now: float, why: str) -> None:
        for run_id in runs:
            if not self.carried(run_id):
                self.orphans[run_id] = (now + self.grace, why)
                self.restored_runs.discard(run_id)
