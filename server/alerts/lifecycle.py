"""Rules on a run's life: stalled, failed or crashed, finished (opt-in)."""

from __future__ import annotations

from dataclasses import dataclass

from mlops_hooks import events as ev
from mlops_hooks.server.alerts.finding import Finding, Rule
from mlops_hooks.server.alerts.training import NUMERICAL_ERROR

__all__ = ["END_STATES", "Failed", "Finished", "Stall", "ended"]

#: ``run_state`` states that end a run.
END_STATES = frozenset({"finished", "failed", "interrupted", "killed", "crashed"})


def ended(event: ev.Event) -> bool:
    """Whether ``event`` ends its run (``training_completed``/``_failed``, an end state)."""
    if isinstance(event, (ev.TrainingCompleted, ev.TrainingFailed)):
        return True
    return isinstance(event, ev.RunState) and event.state in END_STATES


def _label(event: ev.Event) -> str:
    name = getattr(event, "model_name", None)
    run_id = event.run_id or ""
    return f"{name} ({run_id})" if name and name != run_id else run_id


#: Words of the reason of a ``stalled`` the stall watchdog caused (server/state/runwatch.py);
#: its own ``training_stalled`` alert is that stall's one alert.
WATCHDOG = "stall watchdog"
#: ``alert_type`` and ``source`` of the stall watchdog's alert (server/ops/monitor.py).
WATCHDOG_ALERT, WATCHDOG_SOURCE = "training_stalled", "stall_watchdog"


class Stall(Rule[None]):
    """The run stalled; cleared by ``running`` or an end. One alert per stall, either path's.

    A stall the step clock finds (``run_state: stalled``, no step for k x the median step time)
    raises this rule's ``run_stalled`` alert. The stall watchdog (``--stall-timeout``: no event
    at all) raises and stores its own ``training_stalled`` alert: the rule makes that the
    episode's alert (notified once, cleared like its own), and the ``stalled`` it causes says
    nothing more.
    """

    name = "stall"
    watches = frozenset({"run_state", "training_completed", "training_failed", "system_alert"})
    alert_type = "run_stalled"

    def new_state(self) -> None:
        """No state: the run's state says it all."""

    def observe(self, event: ev.Event) -> list[Finding]:
        """Fire on ``stalled``; clear on anything else that says where the run is."""
        if event.run_id is None:
            return []
        if isinstance(event, ev.SystemAlert):
            alert = event.alert
            if event.clears is None and alert.alert_type == WATCHDOG_ALERT \
                    and alert.source == WATCHDOG_SOURCE:
                return [Finding(self.name, event.run_id, True, alert.title, alert.message or "",
                                "stalled", alert=alert)]
            return []
        if isinstance(event, ev.RunState):
            if event.state == "stalled" and WATCHDOG in (event.reason or ""):
                return []  # the stall watchdog's own system_alert is the episode's
            if event.state == "stalled":
                why = f": {event.reason}" if event.reason else ""
                return [self.fire(event.run_id, "Training Run Stalled",
                                  f"Run {_label(event)} stalled{why}", "stalled",
                                  actions=("Check the Training Process",
                                           "Check Memory (OOM Killer)"))]
            return [self.clear(event.run_id)]
        if ended(event):
            return [self.clear(event.run_id)]
        return []


@dataclass
class _Ended:
    failed: bool = False


class Failed(Rule[_Ended]):
    """The run failed (``training_failed``) or crashed (``run_state`` failed/crashed).

    One alert per run: a ``run_state: failed`` that follows the run's own ``training_failed``
    says nothing new, and a numerical failure is the ``loss_nan`` rule's alert.
    """

    name = "failed"
    watches = frozenset({"training_failed", "run_state"})
    alert_type = "run_failed"

    def new_state(self) -> _Ended:
        """Not failed yet."""
        return _Ended()

    def observe(self, event: ev.Event) -> list[Finding]:
        """Fire once per failure; a run that is ``running`` again may fail again."""
        if event.run_id is None:
            return []
        if isinstance(event, ev.TrainingFailed):
            run = self.state(event.run_id)
            already, run.failed = run.failed, True
            if already or event.error_code == NUMERICAL_ERROR:
                return []
            return [self.fire(event.run_id, "Training Run Failed",
                              f"Run {_label(event)} failed ({event.error_code}): {event.error}",
                              event.error_code, actions=tuple(event.suggestions[:3]))]
        if isinstance(event, ev.RunState):
            run = self.state(event.run_id)
            if event.state == "running":
                run.failed = False
                return [self.clear(event.run_id)]
            if event.state in ("failed", "crashed") and not run.failed:
                run.failed = True
                why = f": {event.reason}" if event.reason else ""
                title = "Training Run Crashed" if event.state == "crashed" else \
                    "Training Run Failed"
                return [self.fire(event.run_id, title, f"Run {_label(event)} {event.state}{why}",
                                  event.state, actions=("Check the Training Process",))]
        return []


class Finished(Rule[None]):
    """The run finished (opt-in: off by default)."""

    name = "finished"
    watches = frozenset({"training_completed", "run_state"})
    alert_type = "run_finished"

    def new_state(self) -> None:
        """No state."""

    def observe(self, event: ev.Event) -> list[Finding]:
        """Fire on ``training_completed`` (or ``run_state: finished``)."""
        if event.run_id is None:
            return []
        if isinstance(event, ev.TrainingCompleted):
            score = f" (final accuracy {event.final_accuracy:.4g})" \
                if event.final_accuracy is not None else ""
            why = f", stopped by {event.stop_reason}" if event.stop_reason else ""
            return [self.fire(event.run_id, "Training Run Finished",
                              f"Run {_label(event)} finished{score}{why}",
                              event.final_accuracy if event.final_accuracy is not None
                              else "finished")]
        if isinstance(event, ev.RunState) and event.state == "finished":
            return [self.fire(event.run_id, "Training Run Finished",
                              f"Run {_label(event)} finished", "finished")]
        return []
