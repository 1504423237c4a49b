"""Delivering notifications: one bounded queue and one thread per notifier, with retries.

:meth:`Dispatcher.enqueue` only puts the notification in each notifier's queue
(``put_nowait``: a full queue drops it and counts it), so the event loop never waits for a
receiver. Each notifier's thread calls its ``mlops_notify``; an exception is retried with
exponential backoff and full jitter (:class:`mlops_hooks.backoff.Backoff`) up to ``retries``
times, then the notification is dropped with a log line. Stopping the dispatcher interrupts a
backoff wait at once.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from dataclasses import dataclass
from typing import Any

import pluggy

from mlops_hooks.backoff import Backoff

__all__ = ["Dispatcher", "Notification", "Notifier"]

log = logging.getLogger("mlops_hooks.server")


@dataclass(frozen=True)
class Notification:
    """What a notifier is told (the arguments of ``mlops_notify``)."""

    alert: dict[str, Any]
    run: dict[str, Any]
    link: str
    rule: str
    value: float | str | None

    def kwargs(self) -> dict[str, Any]:
        """The hook's keyword arguments."""
        return {"alert": self.alert, "run": self.run, "link": self.link, "rule": self.rule,
                "value": self.value}


class Notifier:
    """One notifier's queue, thread and counters.

    Args:
        name: The plugin's name (for logs and ``/metrics``).
        impl: Its ``mlops_notify`` implementation.
        backoff: Delays between attempts.
        retries: Attempts after the first.
        queue_size: Notifications waiting at most; more are dropped.
    """

    def __init__(self, name: str, impl: pluggy.HookImpl, backoff: Backoff, retries: int,
                 queue_size: int) -> None:
        self.name = name
        self.impl = impl
        self.backoff = backoff
        self.retries = retries
        self.queue: queue.Queue[Notification | None] = queue.Queue(maxsize=queue_size)
        self.counts = {"delivered": 0, "failed": 0, "dropped": 0, "retried": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"mlops-notify-{name}",
                                        daemon=True)

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def put(self, note: Notification) -> None:
        """Queue ``note`` without waiting (dropped and counted when the queue is full)."""
        try:
            self.queue.put_nowait(note)
        except queue.Full:
            self.counts["dropped"] += 1
            log.warning("mlops-hooks: notifier %s is behind; alert %s dropped", self.name,
                        note.alert.get("id"))

    def stop(self, timeout: float) -> None:
        """Stop after the current attempt (waits at most ``timeout`` seconds)."""
        self._stop.set()
        with contextlib.suppress(queue.Full):
            self.queue.put_nowait(None)
        failed = self.counts["failed"]
        if self._thread.is_alive():
            self._thread.join(timeout)
        lost = self.counts["failed"] - failed + self.queue.qsize()
        if lost:
            log.warning("mlops-hooks: notifier %s: %d alerts not delivered at shutdown",
                        self.name, lost)

    def _call(self, note: Notification) -> None:
        args = note.kwargs()
        self.impl.function(**{k: args[k] for k in self.impl.argnames})

    def _run(self) -> None:
        while True:  # what was queued before stop() is still tried once
            note = self.queue.get()
            if note is None:
                return
            self._deliver(note)

    def _deliver(self, note: Notification) -> None:
        failures = 0
        while True:
            try:
                self._call(note)
            except Exception as exc:
                failures += 1
                if failures > self.retries or self._stop.is_set():
                    self.counts["failed"] += 1
                    if not self._stop.is_set():  # at shutdown: one line for all, in stop()
                        log.warning("mlops-hooks: notifier %s gave up on alert %s after %d "
                                    "attempts: %s", self.name, note.alert.get("id"), failures,
                                    exc)
                    return
                self.counts["retried"] += 1
                if self._stop.wait(self.backoff.delay(failures)):
                    self.counts["failed"] += 1
                    return
                continue
            self.counts["delivered"] += 1
            return


class Dispatcher:
    """Every notifier's worker.

    Args:
        plugins: A pluggy manager holding the ``mlops_notify`` implementations.
        retries: Attempts after the first, per notification and notifier.
        backoff: Delays between attempts.
        queue_size: Each notifier's queue bound.
    """

    def __init__(self, plugins: pluggy.PluginManager, *, retries: int, backoff: Backoff,
                 queue_size: int) -> None:
        self.plugins = plugins
        self.notifiers = [Notifier(impl.plugin_name, impl, backoff, retries, queue_size)
                          for impl in plugins.hook.mlops_notify.get_hookimpls()]
        self._started = False

    def start(self) -> None:
        """Start each notifier's thread."""
        if not self._started:
            self._started = True
            for notifier in self.notifiers:
                notifier.start()

    def enqueue(self, note: Notification) -> None:
        """Hand ``note`` to every notifier (returns at once)."""
        for notifier in self.notifiers:
            notifier.put(note)

    def stop(self, timeout: float = 2.0) -> None:
        """Stop every notifier (an attempt in flight may finish within its own timeout)."""
        if self._started:
            for notifier in self.notifiers:
                notifier.stop(timeout)

    def counts(self) -> dict[str, dict[str, int]]:
        """Per notifier: ``delivered``, ``failed``, ``dropped``, ``retried``."""
        return {n.name: dict(n.counts) for n in self.notifiers}
