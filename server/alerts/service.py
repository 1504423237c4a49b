"""The alerts of one server: the engine, the notifiers, and raising alerts off ingest's path.

:meth:`Alerts.observe` is called by ingest for every record it delivers (published events and
the server's own alike) and only evaluates the rules (microseconds). The ``system_alert`` events
that raises are submitted by a task, outside ingest's synchronous step; once one is stored (and
was not a duplicate: in a fleet, the first server to store it notifies), its notification is
queued for every notifier (:class:`~mlops_hooks.server.alerts.dispatch.Dispatcher`). Nothing of
this waits for a receiver.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol
from urllib.parse import quote

import pluggy

from mlops_hooks import events as ev
from mlops_hooks.backoff import Backoff
from mlops_hooks.server.alerts.apprise_notifier import AppriseNotifier
from mlops_hooks.server.alerts.config import AlertConfig
from mlops_hooks.server.alerts.dispatch import Dispatcher
from mlops_hooks.server.alerts.engine import AlertEngine, Raised
from mlops_hooks.server.alerts.hookspec import NOTIFIER_GROUP, NotifierSpec
from mlops_hooks.server.alerts.webhook import WebhookNotifier

__all__ = ["MAX_PENDING", "Alerts", "Stored", "notifier_plugins"]

log = logging.getLogger("mlops_hooks.server")
#: Alert submissions in flight at most; past it new alerts are dropped (and logged).
MAX_PENDING = 256


class Stored(Protocol):
    """What submitting an event returns (ingest's ``Published``)."""

    @property
    def duplicate(self) -> bool:
        """The event was stored before (its ``event_id`` is known)."""


Submit = Callable[[ev.Event], Awaitable[Stored]]


def notifier_plugins(config: AlertConfig, *, entry_points: bool = True) -> pluggy.PluginManager:
    """A pluggy manager with the configured notifiers (and third-party ones).

    Raises:
        ValueError: A bad ``--webhook``/``--notify`` URL, or Apprise missing for ``--notify``.
    """
    plugins = pluggy.PluginManager("mlops_hooks")
    plugins.add_hookspecs(NotifierSpec)
    timeout = float(config.sections["notify"]["timeout_s"])
    for i, url in enumerate(config.webhooks):
        plugins.register(WebhookNotifier(url, timeout), name=f"webhook-{i + 1}")
    for i, url in enumerate(config.notify_urls):
        notifier = AppriseNotifier(url)
        plugins.register(notifier, name=f"apprise-{i + 1}-{notifier.scheme}")
    if entry_points:
        try:
            plugins.load_setuptools_entrypoints(NOTIFIER_GROUP)
        except Exception:  # a broken third-party notifier must not keep the server down
            log.exception("mlops-hooks: loading the notifiers of entry-point group %s failed",
                          NOTIFIER_GROUP)
    return plugins


class Alerts:
    """A server's alert rules and notifiers.

    Args:
        config: Rules and notifier settings.
        public_url: Base of the links to run pages (``http://host:port``).
        plugins: The notifiers (default: :func:`notifier_plugins` of ``config``).

    Raises:
        ValueError: A notifier cannot be built (see :func:`notifier_plugins`).
    """

    def __init__(self, config: AlertConfig, public_url: str,
                 plugins: pluggy.PluginManager | None = None) -> None:
        base = public_url.rstrip("/")
        self.engine = AlertEngine(config, link=lambda run: f"{base}/runs/{quote(run, safe='')}")
        notify = config.sections["notify"]
        self.dispatcher = Dispatcher(
            plugins if plugins is not None else notifier_plugins(config),
            retries=int(notify["retries"]), queue_size=int(notify["queue_size"]),
            backoff=Backoff(float(notify["backoff_base_s"]), max(
                float(notify["backoff_base_s"]), float(notify["backoff_cap_s"]))))
        self.raised = 0
        self.dropped = 0
        self.failed = False
        self._submit: Submit | None = None
        self._pending: set[asyncio.Task[None]] = set()

    def start(self, submit: Submit) -> None:
        """Start the notifiers; alerts are submitted with ``submit`` (ingest's)."""
        self._submit = submit
        self.dispatcher.start()

    async def stop(self) -> None:
        """Let alerts in flight be stored, then stop the notifiers (bounded waits)."""
        if self._pending:
            await asyncio.wait(list(self._pending), timeout=2.0)
        await asyncio.to_thread(self.dispatcher.stop)

    def observe(self, event: ev.Event, seq: int | None, *, local: bool = True) -> None:
        """Evaluate the rules on one delivered event; never raises, never waits.

        ``local``: this server stored the event (in a fleet, every server sees every record;
        an alert the server raised itself, the stall watchdog's, is notified by the one that
        stored it).
        """
        try:
            raised = self.engine.observe(event, seq)
        except Exception:  # a rule bug must not stop ingest
            if not self.failed:
                self.failed = True
                log.exception("mlops-hooks: the alert rules failed on %s (seq %s)", event.type,
                              seq)
            return
        for item in [r for r in raised if r.stored]:  # stored already: notify it, once
            if local and item.notification is not None:
                self.dispatcher.enqueue(item.notification)
        raised = [r for r in raised if not r.stored]
        if not raised or self._submit is None:
            return
        if len(self._pending) >= MAX_PENDING:
            self.dropped += len(raised)
            log.warning("mlops-hooks: %d alerts dropped: too many in flight", len(raised))
            return
        task = asyncio.get_running_loop().create_task(self._raise(raised))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _raise(self, raised: list[Raised]) -> None:
        assert self._submit is not None
        for item in raised:
            try:
                stored = await self._submit(item.event)
            except ConnectionError as exc:
                log.warning("mlops-hooks: alert %s not stored: %s", item.event.alert.id, exc)
                continue
            self.raised += 1
            if item.notification is not None and not stored.duplicate:
                self.dispatcher.enqueue(item.notification)
