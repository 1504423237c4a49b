"""Health from resource samples: thresholds with hysteresis, ``health_change`` and alerts.

Each resource (CPU, memory, disk) has a warning and a critical threshold. A level is entered
when the value reaches its threshold and left only when the value falls
:data:`HYSTERESIS` points below it, so a value hovering at a threshold does not flap. Overall
health is the worst resource's level. :meth:`HealthTracker.update` returns the events a sample
causes: ``health_change`` when overall health moves, ``system_alert`` when a resource gets
worse (``resource_warning``) or recovers (``resource_recovered``, low priority, auto-dismissed).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from mlops_hooks import events as ev
from mlops_hooks.formatting import iso_utc

__all__ = ["HYSTERESIS", "LEVELS", "RESOURCES", "HealthTracker", "Resource"]

#: The spec's health levels, best first (an index is a level).
LEVELS: tuple[ev.Health, ...] = ("healthy", "warning", "critical")
HYSTERESIS = 5.0


@dataclass(frozen=True)
class Resource:
    """How one resource is judged and what to do about it."""

    field: str
    label: str
    warning: float
    critical: float
    action: str
    actions: tuple[str, ...]


RESOURCES = (
    Resource("cpu_percent", "CPU", 80.0, 95.0,
             "Consider scaling resources or reducing concurrent training jobs",
             ("Scale Resources", "Reduce Concurrent Jobs")),
    Resource("memory_percent", "Memory", 85.0, 95.0,
             "Free memory: reduce batch size or stop idle processes",
             ("Scale Resources", "Optimize Models", "Reduce Batch Size")),
    Resource("disk_percent", "Disk", 90.0, 97.0,
             "Free disk space: remove old checkpoints, datasets and logs",
             ("Clean Up Checkpoints", "Expand Storage")),
)


def _noun(resource: Resource) -> str:
    return resource.label if resource.label.isupper() else resource.label.lower()


class HealthTracker:
    """Turns successive samples into health levels and the events they cause."""

    def __init__(self) -> None:
        self.levels = dict.fromkeys((r.field for r in RESOURCES), 0)
        self.health: ev.Health = "healthy"
        self._ids = itertools.count(1)

    def _level(self, resource: Resource, value: float, current: int) -> int:
        thresholds = (resource.warning, resource.critical)
        raw = sum(1 for t in thresholds if value >= t)
        if raw >= current:
            return raw
        # Going down: leave each level only HYSTERESIS points below its threshold.
        level = current
        while level > raw and value < thresholds[level - 1] - HYSTERESIS:
            level -= 1
        return level

    def update(self, sample: dict[str, float]) -> list[ev.Event]:
        """Judge one sample.

        Args:
            sample: ``cpu_percent``, ``memory_percent``, ``disk_percent`` (missing ones are
                skipped).

        Returns:
            The events to publish (possibly none).
        """
        events: list[ev.Event] = []
        for resource in RESOURCES:
            value = sample.get(resource.field)
            if value is None:
                continue
            before = self.levels[resource.field]
            after = self._level(resource, value, before)
            if after != before:
                self.levels[resource.field] = after
                events.append(self._alert(resource, value, before, after))
        worst = max(self.levels.values())
        health = LEVELS[worst]
        if health != self.health:
            events.insert(0, self._change(health, sample))
            self.health = health
        return events

    def _worst(self) -> Resource | None:
        worst = max(RESOURCES, key=lambda r: self.levels[r.field])
        return worst if self.levels[worst.field] else None

    def _change(self, health: ev.Health, sample: dict[str, float]) -> ev.HealthChange:
        worst = self._worst()
        metrics = {r.field: round(sample[r.field], 1) for r in RESOURCES if r.field in sample}
        if worst is None:
            reason = "Resource usage back to normal"
            action = None
        else:
            value = sample.get(worst.field, 0.0)
            level = "Critical" if self.levels[worst.field] == 2 else "High"
            reason = f"{level} {worst.label} usage detected ({value:.1f}%)"
            action = worst.action
        return ev.HealthChange(current_health=health,
                               previous_health=self.health,
                               reason=reason, metrics=metrics, recommended_action=action)

    def _alert(self, resource: Resource, value: float, before: int,
               after: int) -> ev.SystemAlert:
        stamp = iso_utc()
        alert_id = f"alert_{stamp[:10].replace('-', '')}_{resource.field}_{next(self._ids)}"
        if after > before:
            threshold = resource.critical if after == 2 else resource.warning
            alert = ev.Alert(
                id=alert_id,
                title=f"{'Critical' if after == 2 else 'High'} {resource.label} Usage",
                message=f"System {_noun(resource)} usage above {threshold:.0f}% "
                        f"({value:.1f}%)",
                alert_type="resource_warning",
                priority="high" if after == 2 else "medium",
                source="monitoring_service", timestamp=stamp, auto_dismiss=False,
                actions=list(resource.actions))
        else:
            alert = ev.Alert(
                id=alert_id,
                title=f"{resource.label} Usage {'Back to Normal' if after == 0 else 'Reduced'}",
                message=f"System {_noun(resource)} usage is down to {value:.1f}%",
                alert_type="resource_recovered", priority="low",
                source="monitoring_service", timestamp=stamp, auto_dismiss=True, actions=[])
        return ev.SystemAlert(alert=alert)
