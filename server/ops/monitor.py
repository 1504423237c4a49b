"""Background work of a server: system metrics, health, the stall watchdog, event-loop lag.

* Every ``metrics_interval`` seconds: psutil samples CPU, memory and disk (on a worker thread),
  the loopback probe measures WebSocket and API round trips, and a ``system_metrics`` event
  with every field of the spec is published; health thresholds may add ``health_change`` and
  ``system_alert`` events (:mod:`mlops_hooks.server.ops.health`).
* The stall watchdog: a ``running`` run without any event for ``stall_timeout`` seconds is
  reported with a ``system_alert`` (``alert_type: "training_stalled"``, with the run's
  ``run_id``), which marks it ``stalled``, and an activity entry. That covers a training
  process killed by SIGKILL or the OOM killer, which no callback can report.
* Run states (:mod:`mlops_hooks.server.state.runwatch`): every 0.2 s, the runs whose process
  vanished (``crashed``) or whose steps stopped (``stalled``) get their ``run_state`` event.
* Event-loop lag, for ``/metrics``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from mlops_hooks import events as ev
from mlops_hooks.formatting import format_duration, iso_utc
from mlops_hooks.server.ops.health import HealthTracker
from mlops_hooks.server.ops.probe import Probe
from mlops_hooks.server.state.state import STALLED_ALERT

if TYPE_CHECKING:
    from mlops_hooks.server.core import Core

__all__ = ["background_tasks", "check_stalls", "sample_resources", "system_metrics",
           "watch_runs", "watch_stalls"]

log = logging.getLogger("mlops_hooks.server")
LAG_PERIOD = 0.5
#: Seconds between two looks at the runs' liveness and stall timers (a state change reaches
#: subscribers well within a second of its deadline).
RUN_PERIOD = 0.2


def _disk_path(core: Core) -> str:
    path = Path(core.config.db_path if core.config.db_path != ":memory:" else os.getcwd())
    for candidate in (path, *path.parents):
        if candidate.exists():
            return str(candidate)
    return os.path.abspath(os.sep)


def sample_resources(disk_path: str) -> dict[str, float]:
    """CPU (since the previous call), memory and disk usage in percent (blocking)."""
    return {
        "cpu_percent": round(min(100.0, psutil.cpu_percent(interval=None)), 1),
        "memory_percent": round(psutil.virtual_memory().percent, 1),
        "disk_percent": round(psutil.disk_usage(disk_path).percent, 1),
    }


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 1) if values else None


def system_metrics(core: Core, sample: dict[str, float], health: ev.Health,
                   api_ms: float | None, ws_ms: float | None) -> ev.SystemMetrics:
    """Build the ``system_metrics`` event from a sample and the server's state."""
    accuracy = core.state.current_accuracy()
    rate = core.state.predictions_per_minute()
    return ev.SystemMetrics(
        current_accuracy=accuracy, model_accuracy=accuracy,
        predictions_per_minute=rate, prediction_rate=rate,
        current_health=health,
        cpu_percent=sample["cpu_percent"], memory_percent=sample["memory_percent"],
        disk_percent=sample["disk_percent"], active_connections=core.connections,
        api_response_time_ms=api_ms, ws_response_time_ms=ws_ms)


async def _sample_loop(core: Core) -> None:
    interval = core.config.metrics_interval
    tracker = HealthTracker()
    disk = _disk_path(core)
    probe = None
    if core.config.probe and core.config.port:
        probe = Probe(core.config.host, core.config.port, core.config.token)
        core.probe_secret = probe.secret
    await asyncio.to_thread(psutil.cpu_percent, None)  # start the CPU measurement window
    api_ms: float | None = None
    ws_ms: float | None = None
    try:
        while True:
            await asyncio.sleep(interval)
            sample = await asyncio.to_thread(sample_resources, disk)
            if probe is not None:
                measured = await probe.ws_round_trip()
                if measured is not None:
                    core.ws_times.append(measured)
                await probe.http_round_trip()
            recent = list(core.api_times)
            core.api_times.clear()
            api_ms = _mean(recent) if recent else api_ms
            ws_ms = _mean(list(core.ws_times)[-5:]) if core.ws_times else ws_ms
            changes = tracker.update(sample)
            await _submit(core, system_metrics(core, sample, tracker.health, api_ms, ws_ms))
            for event in changes:
                await _submit(core, event)
    finally:
        if probe is not None:
            await probe.close()


async def _submit(core: Core, event: ev.Event) -> bool:
    """Publish a server-made event; while the backend refuses events (Redis away), skip it."""
    try:
        await core.ingest.submit(event)
    except ConnectionError as exc:
        log.debug("mlops-hooks: %s not published: %s", event.type, exc)
        return False
    return True


def _stall_events(run_id: str, name: str | None, silent: float,
                  last: str | None = None) -> list[ev.Event]:
    stamp = iso_utc()
    label = f"{name} ({run_id})" if name and name != run_id else run_id
    text = (f"No event from run {label} for {format_duration(silent)}: the training process "
            "may have been killed (SIGKILL, out of memory) or be hung")
    alert = ev.Alert(
        id=f"alert_{stamp[:10].replace('-', '')}_{uuid.uuid4().hex[:10]}",
        title="Training Run Stalled", message=text, alert_type=STALLED_ALERT,
        priority="high", source="stall_watchdog", timestamp=stamp, auto_dismiss=False,
        actions=["Check the Training Process", "Check Memory (OOM Killer)", "Restart Training"])
    activity = ev.Activity(
        id=f"act_{stamp[:10].replace('-', '')}_{uuid.uuid4().hex[:10]}",
        title="Model Training Stalled", description=text, user="system",
        action_type="training_stalled", status="stalled", timestamp=stamp,
        severity_level="warning", duration=None,
        metadata={"run_id": run_id, "model_name": name, "silent_seconds": round(silent, 1)})
    # Keys derived from the run's last event: every server of a fleet (--backend redis://)
    # watches the same runs, and the shared idempotency space keeps one alert per stall.
    key = f"{run_id}:{last or ''}"
    return [ev.SystemAlert(run_id=run_id, alert=alert, event_id=f"stall:{key}"),
            ev.ActivityUpdate(run_id=run_id, activity=activity, event_id=f"stall-activity:{key}")]


async def check_stalls(core: Core, now: float, timeout: float) -> list[str]:
    """One pass of the stall watchdog at ``now`` (``time.monotonic()``).

    Every ``running`` run silent for ``timeout`` seconds or more gets its alert and activity
    entry (which mark it ``stalled``, so a later pass does not alert it again).

    Returns:
        The run ids alerted in this pass.
    """
    alerted: list[str] = []
    for run in list(core.state.runs.values()):
        silent = now - run.seen_at
        if run.status == "running" and silent >= timeout:
            for event in _stall_events(run.run_id, run.model_name, silent, run.updated):
                if not await _submit(core, event):
                    break
            else:
                alerted.append(run.run_id)
    return alerted


async def watch_stalls(core: Core) -> None:
    """Mark running runs without events for ``stall_timeout`` seconds as stalled, forever."""
    timeout = core.config.stall_timeout
    period = min(max(timeout / 4, 0.05), 5.0)
    while True:
        await asyncio.sleep(period)
        await check_stalls(core, time.monotonic(), timeout)


async def watch_runs(core: Core) -> None:
    """Raise the timers' run states (``crashed``, ``stalled``) every :data:`RUN_PERIOD`, forever."""
    while True:
        await asyncio.sleep(RUN_PERIOD)
        for event in core.watch.tick(time.monotonic()):
            await _submit(core, event)


async def _measure_lag(core: Core) -> None:
    while True:
        started = time.perf_counter()
        await asyncio.sleep(LAG_PERIOD)
        lag = max(0.0, time.perf_counter() - started - LAG_PERIOD)
        core.metrics.loop_lag = lag
        core.metrics.loop_lag_max = max(core.metrics.loop_lag_max, lag)


async def _guarded(name: str, work: Callable[[Core], Coroutine[Any, Any, None]],
                   core: Core) -> None:
    try:
        await work(core)
    except asyncio.CancelledError:
        raise
    except Exception:  # a monitor bug must not take the server down
        log.exception("mlops-hooks: the %s task stopped", name)


def background_tasks(core: Core) -> list[Coroutine[Any, Any, None]]:
    """The coroutines a server runs in the background, as its config asks."""
    tasks = [_guarded("event-loop lag", _measure_lag, core),
             _guarded("run states", watch_runs, core)]
    if core.config.metrics_interval > 0:
        tasks.append(_guarded("system metrics", _sample_loop, core))
    if core.config.stall_timeout > 0:
        tasks.append(_guarded("stall watchdog", watch_stalls, core))
    return tasks
