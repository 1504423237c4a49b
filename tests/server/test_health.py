from __future__ import annotations

from mlops_hooks import events as ev
from mlops_hooks.server.ops.health import HYSTERESIS, HealthTracker


def sample(cpu=10.0, mem=10.0, disk=10.0):
    return {"cpu_percent": cpu, "memory_percent": mem, "disk_percent": disk}


def test_steady_healthy_sends_nothing():
    tracker = HealthTracker()
    assert tracker.update(sample()) == [] and tracker.update(sample()) == []


def test_crossing_warning_then_critical_then_back():
    tracker = HealthTracker()
    first = tracker.update(sample(cpu=85.4, mem=72.1))
    change, alert = first
    assert isinstance(change, ev.HealthChange) and isinstance(alert, ev.SystemAlert)
    assert (change.current_health, change.previous_health) == ("warning", "healthy")
    assert change.reason == "High CPU usage detected (85.4%)"
    assert change.recommended_action == \
        "Consider scaling resources or reducing concurrent training jobs"
    assert change.metrics == sample(cpu=85.4, mem=72.1)
    assert alert.alert.priority == "medium" and alert.alert.alert_type == "resource_warning"
    assert alert.alert.actions == ["Scale Resources", "Reduce Concurrent Jobs"]
    assert alert.alert.auto_dismiss is False
    critical = tracker.update(sample(cpu=97))
    assert critical[0].current_health == "critical"  # type: ignore[union-attr]
    assert critical[1].alert.priority == "high"  # type: ignore[union-attr]
    back = tracker.update(sample(cpu=20))
    assert back[0].current_health == "healthy"  # type: ignore[union-attr]
    assert back[1].alert.alert_type == "resource_recovered"  # type: ignore[union-attr]
    assert back[1].alert.auto_dismiss is True  # type: ignore[union-attr]
    assert back[0].recommended_action is None  # type: ignore[union-attr]


def test_hysteresis_keeps_a_hovering_value_from_flapping():
    tracker = HealthTracker()
    raised = tracker.update(sample(mem=86))
    assert [type(e) for e in raised] == [ev.HealthChange, ev.SystemAlert]
    assert tracker.health == "warning"
    assert tracker.update(sample(mem=84)) == []  # below 85 but not by HYSTERESIS
    assert tracker.update(sample(mem=86)) == []
    change, alert = tracker.update(sample(mem=85 - HYSTERESIS - 0.1))  # now it recovers
    assert isinstance(change, ev.HealthChange) and isinstance(alert, ev.SystemAlert)
    assert (change.previous_health, change.current_health) == ("warning", "healthy")
    assert alert.alert.alert_type == "resource_recovered" and tracker.health == "healthy"


def test_overall_health_is_the_worst_resource():
    tracker = HealthTracker()
    tracker.update(sample(disk=98))
    events = tracker.update(sample(disk=98, cpu=85))
    assert tracker.health == "critical"
    assert [type(e) for e in events] == [ev.SystemAlert]  # CPU alert only: health unchanged
