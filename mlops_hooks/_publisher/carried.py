"""The runs a publisher carries: what its heartbeat tells the server (docs/protocol.md).

Every ping the background thread sends lists the runs whose events went through this publisher
and that have not ended (``{"type": "ping", "id": X, "runs": [...]}``, about every 5 s, and at
once when a run opens). The
server reports a listed run ``crashed`` when the connection closes or its heartbeats stop and no
publisher lists the run again within its grace. Bookkeeping on the background thread only: the
training thread pays nothing.
"""

from __future__ import annotations

from mlops_hooks import events as ev

__all__ = ["MAX_CARRIED", "OpenRuns"]

#: Runs one heartbeat lists at most (the server's limit too); later ones are not listed.
MAX_CARRIED = 64
_END = (ev.TrainingCompleted, ev.TrainingFailed)


class OpenRuns:
    """Runs seen in the events passing through and not ended yet, oldest first."""

    __slots__ = ("runs",)

    def __init__(self) -> None:
        self.runs: dict[str, None] = {}

    def observe(self, event: ev.Event) -> bool:
        """Track ``event``'s run: open from its first event until its end.

        Returns:
            Whether a run opened (the next heartbeat should go out now).
        """
        run_id = event.run_id
        if run_id is None:
            return False
        if isinstance(event, _END):
            self.runs.pop(run_id, None)
        elif run_id not in self.runs and len(self.runs) < MAX_CARRIED and \
                isinstance(event, (ev.TrainingProgress, ev.RunParams)):
            self.runs[run_id] = None
            return True
        return False

    def ids(self) -> list[str]:
        """The open runs, for the next heartbeat."""
        return list(self.runs)
