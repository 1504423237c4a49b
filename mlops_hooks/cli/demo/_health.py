"""The health stage: make the server's monitor see high CPU, then see it recover.

``health_change`` and ``system_alert`` come from the server's own monitor, which samples CPU,
memory and disk and compares them with its thresholds (CPU warning at 80%). Training on a
small machine often crosses it already; if it has not, this stage runs one busy process per
core until the monitor reports the change, then stops them and waits for the recovery.

On a machine where that cannot raise the system-wide CPU figure above the threshold (a
container limited to a few cores of a large host), the stage sends a ``health_change`` and a
``system_alert`` itself, labelled as simulated by the demo in their text and ``source``, so the
dashboard still shows how they look without pretending the host was busy.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable

from mlops_hooks import events as ev
from mlops_hooks.api import emit
from mlops_hooks.cli.demo._watch import DashboardWatcher
from mlops_hooks.formatting import iso_utc

__all__ = ["DEMO_SOURCE", "exercise_health", "saw_resource_events"]

#: ``source`` of the alert the demo sends when it has to simulate one.
DEMO_SOURCE = "mlops-hooks demo (simulated)"
_BURN = ("import sys, time\n"
         "end = time.monotonic() + float(sys.argv[1])\n"
         "while time.monotonic() < end:\n"
         "    pass\n")


def saw_resource_events(watcher: DashboardWatcher) -> bool:
    """Whether the dashboard got both a ``health_change`` and a ``system_alert``."""
    return watcher.counts["health_change"] > 0 and watcher.counts["system_alert"] > 0


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _simulate() -> None:
    stamp = iso_utc()
    reason = ("Demo: simulated high CPU usage (the demo's load could not raise this machine's "
              "CPU figure above the monitor's 80% threshold)")
    emit(ev.HealthChange(current_health="warning", previous_health="healthy", reason=reason,
                         metrics=None, recommended_action="Nothing to do: this is the demo"))
    emit(ev.SystemAlert(alert=ev.Alert(
        id=f"alert_demo_{uuid.uuid4().hex[:10]}", title="Demo: simulated high CPU usage",
        message=reason, alert_type="resource_warning", priority="low", source=DEMO_SOURCE,
        timestamp=stamp, auto_dismiss=True, actions=[])))
    emit(ev.HealthChange(current_health="healthy", previous_health="warning",
                         reason="Demo: end of the simulated high CPU usage", metrics=None))


def exercise_health(watcher: DashboardWatcher, *, spike_timeout: float,
                    recovery_timeout: float, progress: Callable[[str], None]) -> str:
    """Make sure the dashboard has seen ``health_change`` and ``system_alert``.

    Args:
        watcher: The demo's subscriber.
        spike_timeout: Longest the load runs, in seconds.
        recovery_timeout: Longest to wait afterwards for health to be ``healthy`` again.
        progress: Called with a short status text.

    Returns:
        What happened, for the stage's summary line.
    """
    how = "the monitor had already reported high resource usage during the work"
    if not saw_resource_events(watcher):
        cores = _cores()
        progress(f"{cores} busy process(es) until the monitor notices")
        burners = [subprocess.Popen([sys.executable, "-c", _BURN, f"{spike_timeout:g}"],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, start_new_session=True)
                   for _ in range(cores)]
        try:
            noticed = watcher.wait_for(saw_resource_events, spike_timeout)
        finally:
            for proc in burners:
                proc.kill()
            for proc in burners:
                proc.wait()
        if noticed:
            how = f"a CPU load spike on {cores} core(s) crossed the monitor's threshold"
        else:
            _simulate()
            watcher.wait_for(saw_resource_events, 5.0)
            return "simulated (labelled as such): this machine's CPU could not be raised enough"
    if recovery_timeout > 0 and watcher.health != "healthy":
        progress(f"health is {watcher.health}: waiting for the monitor to see it recover")
        if watcher.wait_for(lambda w: w.health == "healthy", recovery_timeout):
            how += ", then recover"
    return f"{how} (health now {watcher.health or 'unknown'})"
