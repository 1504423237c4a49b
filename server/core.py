"""The parts of one server, wired together, started and stopped in order."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from mlops_hooks.manager import PluginManager
from mlops_hooks.server.alerts import Alerts
from mlops_hooks.server.backends import Backend, create_backend
from mlops_hooks.server.config import ServerConfig
from mlops_hooks.server.ingest import Ingest
from mlops_hooks.server.ops.controls import Controls
from mlops_hooks.server.ops.metrics import Metrics
from mlops_hooks.server.security import Guard
from mlops_hooks.server.state import held
from mlops_hooks.server.state.runwatch import RunWatch
from mlops_hooks.server.state.state import State
from mlops_hooks.server.state.store import History, Store
from mlops_hooks.server.stream.hub import Hub

__all__ = ["Background", "Core"]

#: Makes the coroutines of a core's background tasks (monitor, stall watchdog, ...).
Background = Callable[["Core"], Iterable[Coroutine[Any, Any, None]]]

log = logging.getLogger("mlops_hooks.server")


class Core:
    """Config, guard, metrics, backend, state, hub, history, ingest and monitor of one server.

    Args:
        config: The settings.
        plugins: Server-side plugin manager (``None``: no hooks).
        backend: A backend to use instead of the one ``config.backend`` names.

    Raises:
        ValueError: ``config.backend`` names an unknown or unavailable backend, or a notifier
            URL is bad (or Apprise is missing for ``--notify``).
    """

    def __init__(self, config: ServerConfig, *, plugins: PluginManager | None = None,
                 backend: Backend | None = None) -> None:
        self.config = config
        self.guard = Guard(config)
        self.metrics = Metrics()
        self.backend = backend or create_backend(config.backend, replay_size=config.replay_size)
        self.store = Store(config.db_path)
        self.state = State(listener=self.store)
        self.hub = Hub(self.metrics, max_bytes=config.queue_max_bytes,
                       max_events=config.queue_max_events)
        self.plugins = plugins
        self.alerts = Alerts(config.alerts, config.link_base)
        self.watch = RunWatch(self.state, grace=config.crash_grace, factor=config.stall_factor,
                              floor=config.stall_floor,
                              heartbeat_timeout=config.heartbeat_timeout)
        self.watch.on_held = lambda runs: self.store.meta_changed(held.KEY, held.encode(runs))
        self.ingest = Ingest(self.backend, self.state, self.hub, self.store, self.metrics,
                             plugins, self.watch, alerts=self.alerts)
        self.publishers = 0
        #: Open publisher connections by run, for Stop requests (``POST /api/runs/{id}/stop``).
        self.controls = Controls()
        self.ingest.observers.append(self.controls.observe)
        #: Secret header value of the monitor's loopback probe (not counted as a publisher).
        self.probe_secret: str | None = None
        self.started_at = time.time()
        #: Durations (ms) of recent API requests, for ``api_response_time_ms``.
        self.api_times: deque[float] = deque(maxlen=200)
        #: Round trips (ms) of recent WebSocket pings, for ``ws_response_time_ms``.
        self.ws_times: deque[float] = deque(maxlen=50)
        self._tasks: list[asyncio.Task[None]] = []
        self.metrics.gauge("mlops_hooks_publishers", "Connected WebSocket publishers.",
                           lambda: [({}, float(self.publishers))])
        self.metrics.gauge("mlops_hooks_runs_carried",
                           "Runs the heartbeats of this server's publishers list (liveness).",
                           lambda: [({}, float(len(set().union(
                               *(c.runs for c in self.watch.liveness.carriers)))))])
        self.metrics.gauge("mlops_hooks_connections", "Open WebSocket connections.",
                           lambda: [({}, float(self.connections))])
        self.metrics.gauge("mlops_hooks_backend_up",
                           "1 while the event backend accepts events (e.g. Redis reachable).",
                           lambda: [({"backend": self.backend.name},
                                     self._backend_fact("connected", 1.0))])
        self.metrics.gauge("mlops_hooks_backend_reconnects",
                           "Times the event backend reconnected since the server started.",
                           lambda: [({"backend": self.backend.name},
                                     self._backend_fact("reconnects", 0.0))])

        self.metrics.gauge("mlops_hooks_notifications",
                           "Alert notifications per notifier and outcome (delivered, failed "
                           "after its retries, dropped, retried).",
                           lambda: [({"notifier": name, "outcome": outcome}, float(count))
                                    for name, counts in self.alerts.dispatcher.counts().items()
                                    for outcome, count in counts.items()])

    def _backend_fact(self, name: str, default: float) -> float:
        value = self.backend.describe().get(name, default)
        return float(value) if isinstance(value, (bool, int, float)) else default

    @property
    def connections(self) -> int:
        """Open WebSocket connections (subscribers and publishers)."""
        return len(self.hub) + self.publishers

    async def start(self, background: Background | None = None) -> None:
        """Read history, start the backend, then the background tasks.

        Args:
            background: Makes the background tasks' coroutines for this core (the app passes
                :func:`mlops_hooks.server.ops.monitor.background_tasks`); ``None``: none.
        """
        history: History = await asyncio.wrap_future(self.store.open())
        self.state.load(last_seq=history.last_seq, runs=history.runs, models=history.models,
                        activity=history.activity)
        # A live run nobody carries again is crashed: alone, every live run; in a fleet, only
        # those this server's connections carried (other servers answer for the rest).
        held_runs = None if self.backend.name == "memory" else \
            await asyncio.wrap_future(self.store.query(held.read))
        await self.ingest.start(history)  # with Redis: caught up with the fleet's stream
        self.watch.restore(held_runs)
        # alerts are not acknowledged to anyone: they ride on the next commit of the history
        self.alerts.start(functools.partial(self.ingest.submit, durable=False))
        if background is not None:
            loop = asyncio.get_running_loop()
            self._tasks = [loop.create_task(coro) for coro in background(self)]

    async def stop(self) -> None:
        """Stop background tasks and the backend; write the remaining history."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:
                log.exception("mlops-hooks: a background task failed")
        self._tasks = []
        await self.alerts.stop()
        for subscriber in list(self.hub.subscribers):
            await self.hub.remove(subscriber)
        await self.backend.close()
        await asyncio.to_thread(self.store.close)
