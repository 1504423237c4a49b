"""The built-in publisher: how events leave a training or serving process for the server.

``emit()`` in the training thread only appends ``(event, time.time())`` to an in-memory inbox
(about a microsecond, whether the server is up, slow or down; ``benchmarks/emit_cost.py``): a
``collections.deque`` (atomic ``append``: no lock, no thread woken; 0.37 µs, vs 0.50 µs with a
lock, +0.9 µs to set a ``threading.Event``), checked against the buffer size so a stalled
background thread cannot let it grow without bound. One background thread per process
owns one WebSocket to ``/ws/publish`` and does the rest: timestamps and idempotency keys,
validation, a bounded buffer that drops superseded progress first and never lifecycle events,
pipelined sends, acknowledgements, reconnects with exponential backoff and full jitter, and
resending what the server has not acknowledged (see :mod:`mlops_hooks._publisher.worker`).

Connection changes go to the ``mlops_connection_change`` hook, from the background thread:
``connected`` (with ``latency_ms`` and ``quality`` from a ping/pong, again when the quality level
changes), ``disconnected``, ``error`` (with the ``delay`` to the next attempt), ``reconnecting``
and, once after five failures in a row, ``max_reconnect_attempts`` (retrying goes on at the
capped delay). Invalid events are dropped before sending, one warning per kind of problem.

Nothing starts until the first event: no thread, no socket. A forked child drops the parent's
state, never touches its socket, and starts its own thread on its first event. Once every run
has ended and the server was never reached, the runs go to disk and the thread ends (it starts
again on the next event); ``MLOPS_HOOKS_MODE=offline`` writes every run to disk
(:mod:`mlops_hooks._publisher.disk.spool`). At exit the publisher waits up to
``MLOPS_HOOKS_FLUSH_TIMEOUT`` seconds (default 5) for a server it reached; what is not
delivered is kept under ``MLOPS_HOOKS_DIR`` and one line says where. Clocks are bound at import.
Example: ``pm.register(Publisher("ws://127.0.0.1:8001/ws", buffer_size=50_000), name="mine")``.
"""

from __future__ import annotations

import atexit
import encodings.idna  # noqa: F401 - see _start()
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from mlops_hooks import events as ev
from mlops_hooks._publisher.buffer import is_droppable
from mlops_hooks._publisher.config import (
    DEFAULT_BUFFER,
    DEFAULT_FLUSH_TIMEOUT,
    DEFAULT_URL,
    Settings,
    env_float,
    env_int,
    publish_url,
    server_base,
)
from mlops_hooks._publisher.disk import offline
from mlops_hooks._publisher.disk.mode import is_offline
from mlops_hooks._publisher.disk.spool import OfflineWorker, Spooler, settle
from mlops_hooks._publisher.mailbox import (
    URGENT_CLASSES,
    FlushMarker,
    Mailbox,
    overflow_warning,
)
from mlops_hooks._publisher.oneshot import Ack, DeliveryError, acknowledged
from mlops_hooks._publisher.worker import Worker
from mlops_hooks.manager import PluginManager, hookimpl, registered_in

__all__ = ["DEFAULT_URL", "Ack", "DeliveryError", "Publisher", "deliver", "make_plugin",
           "publish_url", "server_base"]

_time = time.time  # clocks bound at import: patching the time module never reaches us
_monotonic = time.monotonic
_GIVE_UP_POLL = 0.02  # at exit: how often to look whether the server was found unreachable


class Publisher:
    """Send every event of this process to the server, without ever blocking the caller.

    Args:
        url: The server (``ws://host:port/ws``; ``http(s)://`` and ``…/ws/publish`` work too).
            Defaults to ``MLOPS_HOOKS_URL``, else ``ws://127.0.0.1:8001/ws``.
        token: Bearer token for the handshake; defaults to ``MLOPS_HOOKS_TOKEN``.
        buffer_size: Events kept while undelivered before the oldest progress/metrics events
            are dropped; defaults to ``MLOPS_HOOKS_BUFFER``, else 10,000.
        flush_timeout: Seconds :meth:`flush`, :meth:`close` and the exit flush wait by default;
            defaults to ``MLOPS_HOOKS_FLUSH_TIMEOUT``, else 5.
        plugin_manager: Where connection changes are reported; by default the process-wide
            training manager, when this publisher is registered there.
        **tuning: Further :class:`~mlops_hooks._publisher.config.Settings` fields
            (``max_inflight``, ``backoff_base``, ``backoff_cap``, ``ping_interval``,
            ``reply_timeout``, ``open_timeout``, ``poll_interval``, ...).

    Raises:
        ValueError: A setting (argument or environment variable) is invalid; the message names
            it.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        token: str | None = None,
        buffer_size: int | None = None,
        flush_timeout: float | None = None,
        plugin_manager: PluginManager | None = None,
        **tuning: Any,
    ) -> None:
        raw_url = url or os.environ.get("MLOPS_HOOKS_URL", "").strip() or DEFAULT_URL
        self.settings = Settings(
            url=publish_url(raw_url),
            token=token if token is not None else (os.environ.get("MLOPS_HOOKS_TOKEN") or None),
            buffer_size=buffer_size if buffer_size is not None
            else env_int("MLOPS_HOOKS_BUFFER", DEFAULT_BUFFER),
            flush_timeout=flush_timeout if flush_timeout is not None
            else env_float("MLOPS_HOOKS_FLUSH_TIMEOUT", DEFAULT_FLUSH_TIMEOUT),
            **tuning,
        )
        self.offline = is_offline()  # MLOPS_HOOKS_MODE: runs go to MLOPS_HOOKS_DIR, no socket
        self.plugin_manager = plugin_manager
        self._inbox_limit = self.settings.buffer_size
        self._closed = False
        self._fresh_state()
        _instances.add(self)

    def _fresh_state(self) -> None:
        """Nothing started (construction, and in a forked child)."""
        self._lock = threading.Lock()
        self._mailbox = Mailbox()
        self._worker: Worker | None = None
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._exit_done = False
        self._hot_dropped = 0

    def __repr__(self) -> str:
        return f"<Publisher {self.settings.url} {self.status()['state']}>"

    # ------------------------------------------------------------------ the hot path

    @hookimpl
    def mlops_event(self, event: ev.Event, side: str) -> None:
        """Queue ``event`` for the server (the whole cost ``emit()`` pays for publishing)."""
        mailbox = self._mailbox
        inbox = mailbox.inbox
        if len(inbox) < self._inbox_limit:
            inbox.append((event, _time()))
            if mailbox.fast and type(event) not in URGENT_CLASSES:
                return
            self._kick()
            settle(self._worker, self._thread, event)  # a run's end: the thread may retire
        else:
            self._overflow(event)

    def publish(self, event: ev.Event) -> None:
        """Queue ``event`` for the server directly (without the plugin manager).

        Args:
            event: Any event of :mod:`mlops_hooks.events`.
        """
        self.mlops_event(event, "training")

    def _kick(self) -> None:
        """Start the background thread on the first event, or wake it."""
        if self._closed:
            self._mailbox.inbox.clear()
            return
        if self._thread is not None:
            self._mailbox.wake.set()
            return
        self._start_once()

    def _start_once(self) -> None:
        with self._lock:
            if self._closed:
                self._mailbox.inbox.clear()
            elif self._thread is None:
                self._start()
            else:
                self._mailbox.wake.set()

    def _overflow(self, event: ev.Event) -> None:
        """The inbox is full: the background thread is behind (or gone).

        New progress/metrics events are dropped without taking a lock (the drop count is
        approximate when several threads emit at once); every 1024th drop, and every lifecycle
        event, checks that the thread is alive and wakes it. Lifecycle events are kept up to
        four times the limit.
        """
        if is_droppable(event):
            self._hot_dropped += 1
            if self._hot_dropped & 1023 != 1:
                return
        with self._lock:
            if self._closed:
                self._mailbox.inbox.clear()
                return
            if self._pid and self._pid != os.getpid():  # forked without the at-fork hooks
                self._after_fork_in_child()
            thread = self._thread
            if thread is None or not thread.is_alive():
                self._start()
            self._mailbox.wake.set()
            inbox = self._mailbox.inbox
            if not is_droppable(event):
                if len(inbox) < 4 * self._inbox_limit:
                    inbox.append((event, _time()))
                    return
                self._hot_dropped += 1
            first = not self._mailbox.dropping
            self._mailbox.dropping = True
        worker = self._worker
        if first and worker is not None and worker.reached:  # never reached: the exit line
            _warn(overflow_warning(self._inbox_limit, self.settings.url, worker.last_error))

    def _start(self) -> None:
        """Start this process's background thread (called with the lock held).

        The thread must never import anything lazily: a fork while it holds a module's import
        lock leaves the child with a lock no thread of its own can release. That is why
        ``encodings.idna`` (which ``getaddrinfo`` would import on the first connection) is
        imported with this module; without it a DataLoader worker forked during the parent's
        first connection could never resolve a host name ("unknown encoding: idna").
        """
        kind = OfflineWorker if self.offline else Spooler
        worker = kind(self.settings, self._mailbox, self._notify, _warn, self._retire)
        thread = threading.Thread(target=worker.run, name="mlops-hooks-publisher", daemon=True)
        self._worker, self._thread, self._pid = worker, thread, os.getpid()
        self._mailbox.fast = True
        thread.start()
        atexit.register(self._at_exit)
        mp = sys.modules.get("multiprocessing")
        if mp is not None and mp.parent_process() is not None:
            from multiprocessing import util  # children end with os._exit: no atexit there

            util.Finalize(self, self._at_exit, exitpriority=100)

    def _retire(self) -> bool:
        """From the thread: let it end unless an event arrived (it starts again on the next)."""
        with self._lock:
            mailbox, thread, self._thread = self._mailbox, self._thread, None
            mailbox.fast = False  # from now on emit() takes the lock and sees no thread
            if mailbox.inbox or self._closed:
                self._thread, mailbox.fast = thread, True
                return False
        atexit.unregister(self._at_exit)
        return True

    # ------------------------------------------------------------------ flush and close

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event emitted so far is acknowledged (or dropped as invalid).

        Args:
            timeout: Seconds to wait at most; defaults to the flush timeout (5 s).

        Returns:
            True when everything was delivered in time; False otherwise (the events stay
            queued and delivery goes on in the background).
        """
        return self._flush(timeout)

    def _flush(self, timeout: float | None, give_up: Callable[[], bool] | None = None) -> bool:
        """:meth:`flush`, which also stops waiting as soon as ``give_up()`` is true."""
        if self._thread is None or self._pid != os.getpid():
            return True
        if self._closed:
            return bool(self.status()["buffered"] == 0)
        if threading.current_thread() is self._thread:
            return False  # called from a connection hook: waiting on ourselves would hang
        wait = self.settings.flush_timeout if timeout is None else max(0.0, timeout)
        marker = FlushMarker()
        self._mailbox.inbox.append(marker)
        self._mailbox.wake.set()
        if give_up is None:
            marker.done.wait(wait)
            return marker.delivered
        end = _monotonic() + wait
        while not marker.done.wait(min(_GIVE_UP_POLL, max(0.0, end - _monotonic()))):
            if give_up() or _monotonic() >= end:
                break
        return marker.delivered

    def close(self, timeout: float | None = None) -> bool:
        """Flush for up to ``timeout`` seconds, then stop the thread and close the connection.

        Events emitted after ``close()`` are ignored.

        Args:
            timeout: Seconds to wait for delivery; defaults to the flush timeout.

        Returns:
            True when everything was delivered.
        """
        return self._close(timeout, join=self.settings.open_timeout + 2.0)

    def _close(self, timeout: float | None, join: float,
               give_up: Callable[[], bool] | None = None) -> bool:
        delivered = self._flush(timeout, give_up)
        with self._lock:
            self._closed = True
            worker, thread = self._worker, self._thread
            if thread is None or self._pid != os.getpid():
                self._mailbox.inbox.clear()
                return delivered
            self._mailbox.fast = False
        assert worker is not None
        worker.stopping = True
        self._mailbox.wake.set()
        if thread is not threading.current_thread():
            thread.join(join)  # a connection attempt in progress may outlast this (daemon)
        atexit.unregister(self._at_exit)
        return delivered

    def _at_exit(self) -> None:
        """Interpreter (or multiprocessing child) exit: bounded flush, at most one line.

        A server never reached is not waited for (once one attempt has failed); what is not
        delivered is kept on disk (:mod:`~mlops_hooks._publisher.disk.offline`).
        """
        worker = self._worker
        if self._exit_done or worker is None or self._pid != os.getpid() or self._closed:
            return
        self._exit_done = True
        timeout = self.settings.flush_timeout
        try:
            if self._close(timeout, join=0.5,
                           give_up=lambda: not worker.reached and worker.failures > 0):
                return
        except KeyboardInterrupt:  # Ctrl-C while waiting at exit: stop waiting, keep the rest
            pass
        dropped = self.status()["dropped"]
        payloads = offline.undelivered(worker)
        if not payloads and not dropped:
            return
        kept = offline.keep_and_say(payloads, len(payloads))
        lost = f"; {dropped} superseded progress/metrics event(s) dropped" if dropped else ""
        why = worker.last_error or "no reply from the server"
        if not worker.reached:
            _warn(f"mlops-hooks: {self.settings.url} was never reached ({why}); {kept}{lost}")
        else:
            _warn(f"mlops-hooks: events not delivered to {self.settings.url} within "
                  f"{timeout:g}s at exit ({why}); {kept}{lost}; set MLOPS_HOOKS_FLUSH_TIMEOUT "
                  "to wait longer")

    # ------------------------------------------------------------------ state

    def status(self) -> dict[str, Any]:
        """A snapshot of the publisher's state and counters.

        Returns:
            ``state`` (``idle`` before the first event, then the last connection state or
            ``closed``), ``url``, ``buffered`` (events not yet acknowledged), ``inflight``,
            ``sent``, ``acked``, ``duplicates``, ``dropped``, ``invalid``, ``rejected``,
            ``reconnects``, ``pongs`` (latency probes answered), ``latency_ms``, ``quality``,
            ``last_seq``, ``last_event_id``, ``last_error``, ``last_rejection``.
        """
        worker = self._worker if self._pid == os.getpid() else None
        result: dict[str, Any] = {"state": "closed" if self._closed else "idle",
                                  "url": self.settings.url}
        queued = sum(type(item) is tuple for item in list(self._mailbox.inbox))
        if worker is None:
            result.update(buffered=queued, inflight=0, sent=0, acked=0,
                          duplicates=0, dropped=self._hot_dropped, invalid=0, rejected=0,
                          reconnects=0, pongs=0, latency_ms=None, quality=None, last_seq=None,
                          last_event_id=None, last_error=None, last_rejection=None)
            return result
        if not self._closed:
            result["state"] = worker.state
        result.update(worker.counts)
        result.update(
            buffered=worker.pending() + queued,
            inflight=worker.outstanding,
            dropped=worker.buffer.dropped + self._hot_dropped,
            latency_ms=worker.latency_ms, quality=worker.quality, last_seq=worker.last_seq,
            last_event_id=worker.last_event_id, last_error=worker.last_error,
            last_rejection=worker.last_rejection,
        )
        return result

    def _notify(self, state: str, detail: dict[str, object]) -> None:
        pm = self.plugin_manager or registered_in(self)
        if pm is not None:
            pm.notify_connection(state, detail)

    def _after_fork_in_child(self) -> None:
        worker = self._worker
        self._fresh_state()
        if worker is not None:
            worker.abandon()


def _warn(line: str) -> None:
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):  # stderr closed at interpreter exit
        pass


_instances: weakref.WeakSet[Publisher] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for publisher in list(_instances):
        publisher._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def deliver(event: ev.Event, *, url: str | None = None, token: str | None = None,
            timeout: float | None = None) -> Ack:
    """Send one event through a private publisher and wait for the server's acknowledgement.

    The event takes the same path as ``emit()`` (queue, background thread, WebSocket); the
    publisher is closed before returning. This is what ``mlops-hooks emit`` does.

    Args:
        event: The event.
        url: The server; defaults to ``MLOPS_HOOKS_URL``, else ``ws://127.0.0.1:8001/ws``.
        token: Bearer token; defaults to ``MLOPS_HOOKS_TOKEN``.
        timeout: Seconds to wait; defaults to ``MLOPS_HOOKS_FLUSH_TIMEOUT``, else 5.

    Returns:
        The acknowledgement (``seq``, ``event_id``, ``duplicate``).

    Raises:
        DeliveryError: Not acknowledged within ``timeout`` (the message says why), or rejected.
        ValueError: A setting is invalid (``url``, ``timeout``, an environment variable).
    """
    publisher = Publisher(url, token=token, flush_timeout=timeout, backoff_cap=0.5)
    return acknowledged(publisher, event, publisher.settings.url,
                        publisher.settings.flush_timeout)


def make_plugin() -> Publisher | None:
    """Factory of the built-in ``publisher`` plugin (cheap: nothing starts before an event).

    Returns:
        A :class:`Publisher` configured from the environment, or ``None`` (with one line on
        stderr) when the configuration is invalid: a bad setting must not break training.
    """
    try:
        return Publisher()
    except ValueError as exc:
        _warn(f"mlops-hooks: publisher disabled: {exc}")
        return None
