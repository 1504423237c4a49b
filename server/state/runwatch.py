"""Run states: which ``run_state`` events the server raises, and when.

Two sources of state changes, both turned into ``run_state`` events that the caller submits
through the ingest path like any published event (so the hub, the history, the server-side
hooks and every server of a fleet see them):

* **The stream itself** (:meth:`RunWatch.after`): an event that changes its run's ``status``
  (not its first: a new run is ``running`` without saying so; ``training_completed``: ``finished``;
  ``training_failed``: ``failed``, ``interrupted`` or ``killed`` by its ``error_code``; a step
  of a stalled or crashed run: ``running`` again; the start of a new attempt of an ended run,
  an ``activity_update`` ``training_start`` timed after the run's end: ``running`` again,
  reopened (:meth:`.RunState.reopen`); the stall watchdog's alert: ``stalled``).
  Every server derives the same change from the same record; the ``event_id``
  (``run-state:<seq of the cause>:<run_id>``) makes the fleet store it once.
* **Timers** (:meth:`RunWatch.tick`): ``stalled`` (no step for k x the run's median step time,
  :mod:`.stalls`) and ``crashed`` (its publisher's connection closed or went silent and did
  not come back within the grace, :mod:`.liveness`). A heartbeat that lists a crashed run
  again makes it ``running`` (:meth:`RunWatch.heartbeat`). After a restart, runs the history
  shows live are orphans until carried again or heard from (:meth:`RunWatch.restore`); the
  runs this server answers for are kept in the history for that (:attr:`RunWatch.on_held`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from mlops_hooks import events as ev
from mlops_hooks.server.state.liveness import HEARTBEAT_TIMEOUT, Carrier, Liveness
from mlops_hooks.server.state.runs import RunState, state_name
from mlops_hooks.server.state.stalls import StepClock
from mlops_hooks.server.state.state import State, run_key

__all__ = ["LIVE", "REOPENED", "RETRY_AFTER", "RunWatch"]

#: Statuses of a run that is (supposed to be) training.
LIVE = ("running", "stalled")
#: Seconds before a timer's state change that has not come back through the stream is raised
#: again (the backend was down).
RETRY_AFTER = 5.0
#: Event types that can change a run's status (the last three only with a ``run_id``).
_RUN_TYPES = frozenset({"training_progress", "training_completed", "training_failed",
                        "run_params", "system_alert", "run_state", "activity_update"})
#: The reason of the ``running`` raised when an ended run reopens.
REOPENED = "a new attempt of the run started"
_REASONS = {"finished": "training completed",
            "stalled": "no event from the run for the stall watchdog's timeout"}


def _concerns_run(event: ev.Event) -> bool:
    return event.type in _RUN_TYPES and (event.run_id is not None or event.type.startswith(
        "training_"))


def _key(run_id: str, cause: object) -> str:
    """An ``event_id`` for a state change (at most 512 characters, the cause first)."""
    return f"run-state:{cause}:{run_id}"[:512]


def _reason(run: RunState, prior: str | None, event: ev.Event) -> str:
    status = run.status
    if event.type == "training_failed" and run.failed is not None:
        code = run.failed.get("error_code") or "TRAINING_ERROR"
        return f"{code}: {str(run.failed.get('error') or '')[:400]}".rstrip(": ")
    if status == "completed" and run.completed is not None and run.completed.get("stop_reason"):
        return f"training completed (stop_reason: {run.completed['stop_reason']})"
    if status == "running" and event.type == "activity_update":
        return REOPENED  # ``previous`` names the end it had
    if status == "running" and prior is not None:
        return "steps resumed" if prior == "stalled" else "the run reported progress again"
    return _REASONS.get(state_name(status), status)


class RunWatch:
    """Raises the ``run_state`` events of the runs in ``state``.

    Args:
        state: The server's state (its runs' statuses are the truth this compares against).
        grace: Seconds a run whose publisher left has to be carried again before ``crashed``.
        heartbeat_timeout: Seconds without a heartbeat before a connection's runs are orphaned
            (see :class:`~.liveness.Liveness`).
        factor: Stall factor ``k`` (times the median step time).
        floor: Stall floor in seconds.

    Raises:
        ValueError: A setting is out of range (named).
    """

    def __init__(self, state: State, *, grace: float, factor: float, floor: float,
                 heartbeat_timeout: float = HEARTBEAT_TIMEOUT) -> None:
        self.state = state
        self.liveness = Liveness(grace, heartbeat_timeout)
        self.steps = StepClock(factor, floor)
        self._raised: dict[tuple[str, str], float] = {}
        #: Told the runs this server answers for when they change (checked every tick): the
        #: core keeps them in the history, for :meth:`restore` after a restart.
        self.on_held: Callable[[frozenset[str]], object] | None = None

    # ------------------------------------------------------------------ the stream

    def before(self, event: ev.Event) -> str | None:
        """The status of ``event``'s run before it is applied (``None``: a new run)."""
        if not _concerns_run(event):
            return None
        run = self.state.runs.get(run_key(event))
        return None if run is None else run.status

    def after(self, event: ev.Event, data: dict[str, Any], prior: str | None,
              now: float) -> list[ev.RunState]:
        """What ``event`` (just applied to the state) changed: at most one ``run_state``."""
        key = run_key(event)
        run = self.state.runs.get(key) if _concerns_run(event) else None
        if run is None:
            return []
        if event.type == "run_state":
            self._raised = {k: t for k, t in self._raised.items() if k[0] != key}
            return []
        if event.type != "system_alert":  # the run's own event (alerts are the server's)
            self.liveness.heard(key)  # waiting since a restart: its publisher is back
        if event.type == "training_progress" and not run.finished:
            self.steps.progress(key, data, now)
        if run.finished or (prior != run.status and event.type == "activity_update"):
            self.steps.forget(key)  # ended, or reopened: a new attempt times its own steps
            self.liveness.ended(key)  # (an orphan of the ended attempt's connection goes)
        if prior is None or prior == run.status:  # a run's first event says it runs already
            return []
        if prior == "crashed" and run.status == "running" and self._pending(key, now):
            return []  # a heartbeat's `running` of this run is on its way: one is enough
        return [self._event(run, state_name(run.status), _reason(run, prior, event),
                            state_name(prior) if prior else None, _key(key, event.seq))]

    # ------------------------------------------------------------------ publishers

    def connect(self) -> Carrier:
        """A publisher connection opened."""
        return self.liveness.connect(time.monotonic())

    def disconnect(self, carrier: Carrier) -> None:
        """A publisher connection closed."""
        self.liveness.disconnect(carrier, time.monotonic())

    def heartbeat(self, carrier: Carrier, runs: Iterable[str]) -> list[ev.RunState]:
        """A heartbeat listed ``runs``: a crashed one among them is ``running`` again."""
        out = []
        now = time.monotonic()
        for run_id in self.liveness.heartbeat(carrier, runs, now):
            run = self.state.runs.get(run_id)
            if run is not None and run.status == "crashed":
                self._raised[(run_id, "running")] = now
                out.append(self._event(run, "running", "its publisher is connected again",
                                       "crashed", None))
        return out

    def restore(self, held: Iterable[str] | None = None) -> None:
        """After a restart: runs left live must be carried again within the timeout + grace.

        Args:
            held: Only these runs (those the previous process's connections carried, when
                servers share a backend); ``None``: every live run (a server alone).
        """
        only = None if held is None else frozenset(held)
        self.liveness.restored([r.run_id for r in self.state.runs.values()
                                if r.status in LIVE and (only is None or r.run_id in only)],
                               time.monotonic())

    # ------------------------------------------------------------------ timers

    def tick(self, now: float) -> list[ev.RunState]:
        """Runs that crashed or stalled by ``now`` (each raised again only after a while)."""
        if self.liveness.changed and self.on_held is not None:
            self.liveness.changed = False
            self.on_held(self.liveness.held())
        out: list[ev.RunState] = []
        for run_id, why in self.liveness.due(now):
            run = self.state.runs.get(run_id)
            if run is not None and run.status in LIVE and self._due(run_id, "crashed", now):
                out.append(self._event(run, "crashed", f"the process vanished: {why} and it did "
                                       f"not come back within {self.liveness.grace:g} s",
                                       state_name(run.status),
                                       _key(run_id, f"crashed:{self.state.seq}")))
        crashed = {e.run_id for e in out}
        for run in list(self.state.runs.values()):
            if run.status != "running" or run.run_id in crashed:
                continue
            quiet = self.steps.stalled(run.run_id, now)
            if quiet is not None and self._due(run.run_id, "stalled", now):
                cause = (run.progress or {}).get("seq")
                out.append(self._event(run, "stalled", quiet, "running",
                                       _key(run.run_id, f"stalled:{cause}")))
        return out

    def _pending(self, run_id: str, now: float) -> bool:
        """Whether a ``running`` raised for ``run_id`` has not come back through the stream."""
        raised = self._raised.get((run_id, "running"))
        return raised is not None and now - raised < RETRY_AFTER

    def _due(self, run_id: str, state: str, now: float) -> bool:
        raised = self._raised.get((run_id, state))
        if raised is not None and now - raised < RETRY_AFTER:
            return False
        self._raised[(run_id, state)] = now
        if len(self._raised) > 1024:
            self._raised = {k: t for k, t in self._raised.items() if now - t < RETRY_AFTER}
        return True

    @staticmethod
    def _event(run: RunState, state: str, reason: str, previous: str | None,
               event_id: str | None) -> ev.RunState:
        return ev.RunState(run_id=run.run_id, state=state,  # type: ignore[arg-type]
                           previous=previous,  # type: ignore[arg-type]
                           reason=reason[:1000], model_name=run.model_name, event_id=event_id)
