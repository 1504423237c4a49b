"""What a rule reports: a :class:`Finding`, and the base of every rule.

A rule looks at one event at a time and says, for a run (and a *subject* within it: a GPU, a
host), whether its condition holds (``firing``) or no longer holds (a clear). It does not decide
whether that is news: the engine (:mod:`mlops_hooks.server.alerts.engine`) turns a firing
finding into an alert once per episode, honours the cool-down, and turns a clear of an open
alert into a clearing ``system_alert``. Rules are cheap (a few dictionary look-ups per event)
and keep bounded state per run.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Generic, TypeVar

from mlops_hooks import events as ev

__all__ = ["MAX_RUNS", "Finding", "Rule", "loss_of"]

#: Runs a rule keeps state for; the least recently seen is forgotten past it.
MAX_RUNS = 1000

T = TypeVar("T")


@dataclass(frozen=True)
class Finding:
    """One rule's verdict on one event.

    Attributes:
        rule: The rule's name (``divergence``).
        run_id: The run.
        firing: The condition holds (``False``: it no longer does).
        title: The alert's title (firing findings).
        message: The alert's message: what happened, with the value.
        value: The value that tripped the rule (a loss, a percentage, a state).
        subject: What in the run it is about (``gpu0@node-3``), ``""`` for the run itself.
        actions: Suggested actions.
        alert: An alert the server already raised and stored for this condition (the stall
            watchdog's): the engine makes it the episode's alert and notifies it, raising none.
    """

    rule: str
    run_id: str
    firing: bool
    title: str = ""
    message: str = ""
    value: float | str | None = None
    subject: str = ""
    actions: tuple[str, ...] = ()
    alert: ev.Alert | None = None


class Rule(Generic[T]):
    """A rule: its settings and bounded per-run state (``T``).

    Args:
        settings: The rule's section of :class:`~mlops_hooks.server.alerts.config.AlertConfig`.
    """

    name = ""
    #: The ``alert_type`` of its alerts.
    alert_type = ""
    #: An open alert of this rule is cleared when its run ends (a condition of a live run).
    clears_at_end = False
    #: The event types the rule looks at (the engine shows it no others).
    watches: frozenset[str] = frozenset()

    def __init__(self, settings: dict[str, bool | int | float | str]) -> None:
        self.settings = settings
        self.priority = str(settings["priority"])
        self._runs: OrderedDict[str, T] = OrderedDict()

    def observe(self, event: ev.Event) -> list[Finding]:
        """The findings ``event`` causes (none for most events)."""
        raise NotImplementedError

    def new_state(self) -> T:
        """A run's state before its first event."""
        raise NotImplementedError

    def state(self, run_id: str) -> T:
        """The state of ``run_id`` (created on first use; the oldest run beyond the cap goes)."""
        found = self._runs.get(run_id)
        if found is None:
            found = self._runs[run_id] = self.new_state()
            if len(self._runs) > MAX_RUNS:
                self._runs.popitem(last=False)
        else:
            self._runs.move_to_end(run_id)
        return found

    def fire(self, run_id: str, title: str, message: str, value: float | str | None,
             subject: str = "", actions: tuple[str, ...] = ()) -> Finding:
        """A firing finding of this rule."""
        return Finding(self.name, run_id, True, title, message, value, subject, actions)

    def clear(self, run_id: str, subject: str = "") -> Finding:
        """A clearing finding of this rule."""
        return Finding(self.name, run_id, False, subject=subject)


def loss_of(event: ev.TrainingProgress) -> float | None:
    """The training loss a progress event carries (``current_loss``, else ``metrics.loss``)."""
    if event.current_loss is not None:
        return float(event.current_loss)
    if event.metrics and "loss" in event.metrics:
        return float(event.metrics["loss"])
    return None
