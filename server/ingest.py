"""Ingest: from a publisher's message to a broadcast record.

:meth:`Ingest.submit` fills a missing ``timestamp`` and hands the event to the backend, which
numbers it (or recognises its ``event_id``). Every new record then comes back through
:meth:`Ingest.deliver`, in ``seq`` order and synchronously, where it is folded into the state,
noted for history, passed to the server-side plugins (``mlops_<type>`` and ``mlops_event``)
and to the alert rules (:mod:`mlops_hooks.server.alerts`), and broadcast. Because that is one
synchronous step per record, a subscriber registered between two records sees a snapshot and a
live stream that neither overlap nor leave a gap.

With a shared backend (``redis://``) every server of a fleet delivers every record, but only the
server that accepted the event (:attr:`Record.local`; for an event a server raises itself, that
server) passes it to its plugins: a plugin's hook runs once per event across the fleet.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import NamedTuple

import msgspec

from mlops_hooks import events as ev
from mlops_hooks import protocol
from mlops_hooks.formatting import iso_utc
from mlops_hooks.manager import PluginManager
from mlops_hooks.server.alerts import Alerts
from mlops_hooks.server.backends.base import Backend, Published
from mlops_hooks.server.backends.memory import MemoryBackend
from mlops_hooks.server.ops.metrics import Metrics
from mlops_hooks.server.state.liveness import MAX_CARRIED, Carrier
from mlops_hooks.server.state.runwatch import RunWatch
from mlops_hooks.server.state.state import State
from mlops_hooks.server.state.store import History, Store
from mlops_hooks.server.stream.hub import Hub
from mlops_hooks.server.stream.record import Record

__all__ = ["CRASH_GAP", "Ingest", "Outcome", "client_refusal"]

log = logging.getLogger("mlops_hooks.server")
#: After a crash an in-process backend numbers this far past the history's last ``seq``: the
#: ``seq`` of events broadcast but not yet written (at most one per concurrent publisher, as
#: each waits for the commit before its acknowledgement) are never given out again.
CRASH_GAP = 10_000
_decode_any = msgspec.json.Decoder().decode


def client_refusal(event: ev.Event) -> str | None:
    """Why a client may not publish ``event`` (``None``: it may).

    ``run_state`` is raised by the server only: a publisher that sent one could mark any run
    crashed or finished.
    """
    if event.type == "run_state":
        return "run_state events are raised by the server; publishers cannot send them"
    return None


class Outcome(NamedTuple):
    """How the server answers one ``/ws/publish`` message.

    Attributes:
        text: The reply to send (:mod:`mlops_hooks.protocol`'s ``ack``, ``error`` or ``pong``).
        retry: It refuses an event the backend could not store right now (``retry: true``).
        run_id: The accepted event's ``run_id`` (which run the connection carries).
    """

    text: str
    retry: bool = False
    run_id: str | None = None


class Ingest:
    """Validated events in, sequenced records out to state, history, plugins and the hub.

    Args:
        backend: Numbers and streams the events.
        state: The current-state model.
        hub: The fan-out engine.
        store: History (``None``: nothing is persisted).
        metrics: Counters.
        plugins: Server-side plugin manager (``None``: no hooks are called).
        watch: Raises the runs' ``run_state`` events (default: the default settings).
        alerts: The alert rules, shown every record (``None``: no rules).
    """

    def __init__(self, backend: Backend, state: State, hub: Hub, store: Store | None,
                 metrics: Metrics, plugins: PluginManager | None,
                 watch: RunWatch | None = None, *, alerts: Alerts | None = None) -> None:
        self.backend = backend
        self.state = state
        self.hub = hub
        self.store = store
        self.metrics = metrics
        self.plugins = plugins
        self.alerts = alerts
        self.watch = watch or RunWatch(state, grace=5.0, factor=5.0, floor=30.0)
        self._raising: set[asyncio.Task[None]] = set()
        self._derived: list[ev.Event] = []  # raised by records, not published yet
        self._state_failed = False
        #: Called with every delivered event and whether this server accepted it (a fleet's
        #: Stop requests reach the server holding the run's publisher this way).
        self.observers: list[Callable[[ev.Event, bool], None]] = []
        self._commit: tuple[Future[None], asyncio.Future[None]] | None = None

    async def start(self, history: History) -> None:
        """Start the backend, numbering after the history's last ``seq``."""
        last_seq = history.last_seq
        if history.unclean and isinstance(self.backend, MemoryBackend):
            last_seq += CRASH_GAP
            log.warning("mlops-hooks: the previous server process did not stop cleanly; "
                        "numbering resumes at seq %d", last_seq + 1)
        await self.backend.start(self.deliver, last_seq=last_seq, seen=history.event_ids,
                                 origin=history.server_id)

    async def submit(self, event: ev.Event, *, durable: bool = True) -> Published:
        """Accept one validated event.

        Args:
            event: The event (its ``timestamp`` is filled in when absent; its ``seq`` is set).
            durable: Return only once the event is in the history database (what an
                acknowledgement promises); ``False`` leaves that wait to the caller
                (:meth:`committed`), which lets a publisher's acknowledgements be pipelined.

        Returns:
            Its ``seq``, and whether it was a duplicate of an earlier ``event_id``.

        Raises:
            ConnectionError: The backend cannot accept events right now.
        """
        if event.timestamp is None:
            event.timestamp = iso_utc()
        result = await self.backend.publish(event)
        if self._derived:  # what it changed (a run's state) follows it at once
            await self._publish_derived()
        if durable:  # acknowledged means written: it survives a kill -9
            await self.committed()
        if result.duplicate:
            self.metrics.duplicates += 1
        return result

    def committed(self) -> asyncio.Future[None]:
        """Resolves once everything accepted so far is in the history database.

        Callers waiting for the same commit share one wake-up of the event loop; each gets its
        own shield, so a caller that is cancelled (its client left) cancels nobody else's wait.
        """
        if self.store is None:
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done
        pending = self.store.commit()
        if self._commit is None or self._commit[0] is not pending:
            self._commit = (pending, asyncio.wrap_future(pending))
        return asyncio.shield(self._commit[1])

    def deliver(self, record: Record) -> None:
        """Apply one new record: state, history, plugins, alert rules, then every subscriber.

        The alert rules see every record, on every server of a fleet (a rule's state follows
        the whole stream); the alerts they raise are submitted later by a task, with ids
        derived from the record, so a fleet stores each alert once.
        """
        event = record.event
        if event is None:  # a backend that streams text only
            event = ev.decode(record.text)
        self.metrics.events_in[record.type] += 1
        changes: list[ev.RunState] = []
        try:
            prior = self.watch.before(event)
            data = _decode_any(record.text)
            self.state.apply(event, data)
            changes = self.watch.after(event, data, prior, time.monotonic())
        except Exception:  # a state bug must not stop the broadcast
            if not self._state_failed:
                self._state_failed = True
                log.exception("mlops-hooks: applying %s (seq %s) to the state failed",
                              record.type, record.seq)
        if self.store is not None:
            self.store.note(record.seq, event.event_id)
        for observe in self.observers:
            observe(event, record.local)
        if self.plugins is not None and record.local:  # once per event across a fleet
            self.plugins.dispatch(event)
        if self.alerts is not None:
            self.alerts.observe(event, record.seq, local=record.local)
        self.hub.broadcast(record)
        self.raise_events(changes)

    def raise_events(self, events: list[ev.RunState]) -> None:
        """Submit events the server raises itself (run states) right after the current record.

        A :meth:`submit` in progress publishes them before it returns (with the in-memory
        backend they take the ``seq`` right after their cause); otherwise a task does.
        """
        if not events:
            return
        self._derived.extend(events)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # applied outside the server's loop (a test): nobody to tell
            self._derived.clear()
            return
        task = loop.create_task(self._publish_derived())
        self._raising.add(task)
        task.add_done_callback(self._raising.discard)

    async def _publish_derived(self) -> None:
        while self._derived:
            event = self._derived.pop(0)
            if event.timestamp is None:
                event.timestamp = iso_utc()
            try:
                await self.backend.publish(event)
            except ConnectionError as exc:  # the timers raise theirs again; ends are not
                log.warning("mlops-hooks: %s of run %s not published: %s", event.type,
                            event.run_id, exc)

    async def handle_message(self, text: str, *, durable: bool = True,
                             carrier: Carrier | None = None) -> Outcome:
        """Handle one ``/ws/publish`` message; returns the one reply to send.

        Args:
            text: The message: an event, or ``{"type": "ping", "id": X}`` (with ``runs``: a
                heartbeat).
            durable: See :meth:`submit` (``False``: await :meth:`committed` before sending).
            carrier: The connection's :class:`Carrier` (heartbeats update it).

        Returns:
            An ``ack`` (with ``duplicate: true`` for a known ``event_id``), a ``pong``, or an
            ``error`` naming the problem (with ``retry: true`` when the backend could not store
            the event right now).
        """
        try:
            event = ev.decode(text)
        except ev.EventError as exc:
            return Outcome(self._not_an_event(text, exc, carrier))
        refused = client_refusal(event)
        if refused is not None:
            self.metrics.rejected["invalid_event"] += 1
            return Outcome(protocol.error(refused, "type", event.event_id))
        try:
            result = await self.submit(event, durable=durable)
        except ConnectionError as exc:
            self.metrics.rejected["backend_unavailable"] += 1
            return Outcome(protocol.error(f"the server cannot accept events right now: {exc}",
                                          None, event.event_id, retry=True), retry=True)
        return Outcome(protocol.ack(result.seq, event.event_id, duplicate=result.duplicate),
                       run_id=event.run_id)

    def _not_an_event(self, text: str, exc: ev.EventError, carrier: Carrier | None) -> str:
        try:
            raw = _decode_any(text)
        except (msgspec.DecodeError, RecursionError):  # not JSON, or nested past the limit
            raw = None
        if isinstance(raw, dict) and raw.get("type") == "ping":
            runs = raw.get("runs")
            if runs is None:
                return protocol.pong(raw.get("id"))
            if not isinstance(runs, list) or len(runs) > MAX_CARRIED or not all(
                    isinstance(r, str) and 0 < len(r) <= 512 for r in runs):
                self.metrics.rejected["invalid_event"] += 1
                return protocol.error(f"a heartbeat's runs must be a list of at most "
                                      f"{MAX_CARRIED} run ids (1-512 characters)", "runs")
            if carrier is not None:
                self.raise_events(self.watch.heartbeat(carrier, runs))
            return protocol.pong(raw.get("id"))
        self.metrics.rejected["invalid_event"] += 1
        if isinstance(raw, list):
            return protocol.error("one event per message, got a JSON array; send each event as "
                                 "its own message (or POST the array to /api/events)", "")
        event_id = raw.get("event_id") if isinstance(raw, dict) else None
        return protocol.error(str(exc), exc.field, event_id if isinstance(event_id, str) else None)
