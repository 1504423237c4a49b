"""The rules engine: findings in, ``system_alert`` events (and notifications) out.

For each key (rule, run, subject) an alert is *open* from the finding that fires it to the
finding that clears it: a firing finding of an open key is the same episode and raises
nothing; a key that cleared less than ``cooldown_s`` ago does not fire again (the episode is
suppressed, counted in :attr:`AlertEngine.suppressed`). A finding that carries an alert the
server already stored (the stall watchdog's) opens the episode with that alert: it is notified
and nothing new is raised. Clearing an open alert raises a second
``system_alert`` that names the alert it closes in ``clears`` (docs/protocol.md); rules whose
condition belongs to a live run (stall, throughput, host and GPU) are also cleared when the run
ends. Ids derive from the record's ``seq``, so every server of a fleet, evaluating the same
stream, raises the same event (``event_id``) and the shared idempotency keeps one.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, NamedTuple

import msgspec

from mlops_hooks import events as ev
from mlops_hooks.formatting import iso_utc
from mlops_hooks.server.alerts.config import AlertConfig
from mlops_hooks.server.alerts.dispatch import Notification
from mlops_hooks.server.alerts.finding import Finding, Rule
from mlops_hooks.server.alerts.host import GpuIdle, GpuMemory, HostMemory
from mlops_hooks.server.alerts.lifecycle import Failed, Finished, Stall, ended
from mlops_hooks.server.alerts.training import Divergence, LossNan, Plateau, Throughput

__all__ = ["CLEARED", "RULE_CLASSES", "SOURCE", "AlertEngine", "Raised"]

#: ``alert.source`` of the rules' alerts.
SOURCE = "alert_rules"
#: ``alert.alert_type`` of an alert that clears another.
CLEARED = "alert_cleared"
#: Keys remembered for the cool-down, and open alerts kept, at most.
MAX_KEYS = 10_000

RULE_CLASSES: dict[str, type[Rule[Any]]] = {
    cls.name: cls for cls in (LossNan, Divergence, Plateau, Stall, Throughput, Failed,
                              Finished, HostMemory, GpuMemory, GpuIdle)}

Key = tuple[str, str, str]


class Raised(NamedTuple):
    """A ``system_alert`` to publish, and what to notify once it is stored (clears: nothing)."""

    event: ev.SystemAlert
    notification: Notification | None
    #: ``event`` is already stored (the stall watchdog's alert): notify it, submit nothing.
    stored: bool = False


class _Open(NamedTuple):
    alert_id: str
    title: str


class AlertEngine:
    """Evaluates the enabled rules on every event and tracks each alert's episode.

    Args:
        config: The rules' settings.
        link: The URL of a run's page, from its ``run_id``.
        clock: Seconds, for the cool-down (``time.monotonic``).
    """

    def __init__(self, config: AlertConfig, *, link: Callable[[str], str] = lambda run: "",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rules: list[Rule[Any]] = [RULE_CLASSES[name](config.rule(name))
                                       for name in config.enabled()]
        self._by_name = {rule.name: rule for rule in self.rules}
        self._by_type: dict[str, list[Rule[Any]]] = {}
        for rule in self.rules:
            for kind in rule.watches:
                self._by_type.setdefault(kind, []).append(rule)
        for kind in ("training_completed", "training_failed", "run_state"):
            self._by_type.setdefault(kind, [])  # a run's end clears open alerts
        self.cooldown = config.cooldown
        self.link = link
        self.clock = clock
        self.suppressed = 0
        self._open: OrderedDict[Key, _Open] = OrderedDict()
        self._cleared: OrderedDict[Key, float] = OrderedDict()
        self._names: OrderedDict[str, str] = OrderedDict()

    def observe(self, event: ev.Event, seq: int | None) -> list[Raised]:
        """The alerts ``event`` (stored with ``seq``) raises or clears; usually none."""
        rules = self._by_type.get(event.type)
        if rules is None or event.run_id is None:
            return []
        name = getattr(event, "model_name", None)
        if isinstance(name, str):
            self._names[event.run_id] = name
            self._names.move_to_end(event.run_id)
            if len(self._names) > MAX_KEYS:
                self._names.popitem(last=False)
        out: list[Raised] = []
        for rule in rules:
            for finding in rule.observe(event):
                raised = self._apply(rule, finding, event, seq)
                if raised is not None:
                    out.append(raised)
        if ended(event):
            for key in [k for k in self._open if k[1] == event.run_id
                        and self._by_name[k[0]].clears_at_end]:
                out.append(self._clear(key, event, seq, "the run ended"))
        return out

    def _apply(self, rule: Rule[Any], finding: Finding, event: ev.Event,
               seq: int | None) -> Raised | None:
        key = (finding.rule, finding.run_id, finding.subject)
        if not finding.firing:
            return self._clear(key, event, seq, "back to normal") if key in self._open else None
        if key in self._open:
            return None  # the same episode
        cleared = self._cleared.get(key)
        if finding.alert is None and cleared is not None \
                and self.clock() - cleared < self.cooldown:
            self.suppressed += 1
            return None  # (an alert already stored is the episode's whatever the cool-down)
        alert_id, event_id = self._ids(key, event, seq, "fire")
        alert = finding.alert or ev.Alert(
            id=alert_id, title=finding.title, message=finding.message,
            alert_type=rule.alert_type, priority=rule.priority,  # type: ignore[arg-type]
            source=SOURCE, timestamp=iso_utc(), auto_dismiss=False,
            actions=list(finding.actions))
        self._open[key] = _Open(alert.id, alert.title)
        if len(self._open) > MAX_KEYS:
            self._open.popitem(last=False)
        link = self.link(finding.run_id)
        run = {"run_id": finding.run_id, "model_name": self._names.get(finding.run_id),
               "url": link}
        note = Notification(alert=msgspec.to_builtins(alert), run=run, link=link,
                            rule=finding.rule, value=finding.value)
        if finding.alert is not None and isinstance(event, ev.SystemAlert):
            return Raised(event, note, stored=True)
        return Raised(ev.SystemAlert(run_id=finding.run_id, alert=alert, event_id=event_id),
                      note)

    def _clear(self, key: Key, event: ev.Event, seq: int | None, why: str) -> Raised:
        opened = self._open.pop(key)
        self._cleared[key] = self.clock()
        self._cleared.move_to_end(key)
        if len(self._cleared) > MAX_KEYS:
            self._cleared.popitem(last=False)
        alert_id, event_id = self._ids(key, event, seq, "clear")
        subject = f" ({key[2]})" if key[2] else ""
        alert = ev.Alert(id=alert_id, title=f"Cleared: {opened.title}",
                         message=f"{opened.title}{subject} in run {key[1]}: {why}",
                         alert_type=CLEARED, priority="low", source=SOURCE,
                         timestamp=iso_utc(), auto_dismiss=True, actions=[])
        return Raised(ev.SystemAlert(run_id=key[1], alert=alert, event_id=event_id,
                                     clears=opened.alert_id), None)

    @staticmethod
    def _ids(key: Key, event: ev.Event, seq: int | None, what: str) -> tuple[str, str]:
        digest = hashlib.sha1(f"{what}|{key[0]}|{key[1]}|{key[2]}|{seq}|{event.event_id}"
                              .encode(), usedforsecurity=False).hexdigest()[:16]
        day = (event.timestamp or iso_utc())[:10].replace("-", "")
        return f"alert_{day}_{key[0]}_{digest}", f"alert-{what}:{digest}"

    def open_alerts(self) -> dict[Key, str]:
        """The open alerts: ``(rule, run_id, subject)`` → alert id."""
        return {key: opened.alert_id for key, opened in self._open.items()}
