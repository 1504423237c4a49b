"""The background thread that owns the publisher's WebSocket.

Why a plain thread and websockets' *sync* client rather than a private asyncio loop: the
publisher's whole job is one ordered stream on one socket, which a single loop of blocking calls
with timeouts expresses directly (``send``, ``recv(timeout)``, wait on an event); there is no
event loop to create, close and keep away from ``fork`` (a child that closed an inherited loop
would unregister the parent's descriptors from their shared epoll set), and waking an asyncio
loop from the training thread costs a self-pipe write per call (measured 3.6 µs warm, ~17 µs
after an idle period) where this design never wakes anything on the hot path.

The training thread only appends ``(event, time.time())`` to :attr:`Mailbox.inbox`. This thread
looks at the inbox every ``poll_interval`` (20 ms) while events flow; idle, it reads the socket
every ``_LIVE_WAIT`` while a run is open (a Stop request is noticed at once) and otherwise sleeps
until woken (:attr:`Mailbox.fast` false: the next ``emit`` wakes it). It moves events into the
bounded :class:`~.buffer.EventBuffer`, prepares each on first send (timestamp, idempotency key,
validation), keeps up to ``max_inflight`` unacknowledged (pipelined), matches the in-order
replies, and on a lost connection requeues every unacknowledged event and reconnects with
backoff (``event_id`` makes resends exactly-once). :mod:`.spool` adds runs kept on disk.

Replies: an ``ack`` settles its event; an ``error`` with ``retry: true`` (from older servers:
naming no field) means the server could not store the event right now (its backend is down): the
event is kept, the connection is reopened with backoff, and events go one at a time until one is
stored, so nothing overtakes the refused event; any other ``error`` settles its event as rejected
(one warning per kind).
"""

from __future__ import annotations

import collections
import contextlib
import os
import time
from collections.abc import Callable
from typing import cast

from websockets.sync.client import ClientConnection

from mlops_hooks._publisher.buffer import Entry, EventBuffer
from mlops_hooks._publisher.carried import OpenRuns
from mlops_hooks._publisher.config import Settings
from mlops_hooks._publisher.connection import (
    BROKEN,
    Ping,
    ProtocolError,
    Stalled,
    Unavailable,
    clean_close,
    describe,
    open_connection,
)
from mlops_hooks._publisher.control import notice
from mlops_hooks._publisher.mailbox import URGENT_CLASSES, FlushMarker, Mailbox, overflow_warning
from mlops_hooks._publisher.system import SystemSampler
from mlops_hooks._publisher.wire import EventIds, Invalid, prepare
from mlops_hooks.backoff import Backoff, quality
from mlops_hooks.protocol import decode_reply, retryable
from mlops_hooks.protocol import ping as encode_ping

__all__ = ["Worker"]

_now = time.monotonic  # bound at import: a test patching the time module never feeds this thread
_IDLE_AFTER = 1.0  # seconds without traffic before the thread sleeps until woken
_LIVE_WAIT = 0.05  # the socket read of an idle thread while a run is open (Stop requests)
_FLUSH_RETRY = 0.25  # largest reconnect delay while someone waits in flush()


class Worker:
    """The state and loop of the background thread (one per process).

    Args:
        settings: The publisher's settings.
        mailbox: Shared with the training thread.
        notify: Called with ``(state, detail)`` on every connection state change.
        warn: Writes one warning line (to stderr).
    """

    def __init__(self, settings: Settings, mailbox: Mailbox,
                 notify: Callable[[str, dict[str, object]], None],
                 warn: Callable[[str], None]) -> None:
        self.s = settings
        self.mailbox = mailbox
        self._notify = notify
        self._warn = warn
        self.buffer = EventBuffer(settings.buffer_size)
        self.sent: collections.deque[Entry | Ping] = collections.deque()
        self.outstanding = 0
        self.ids = EventIds()
        self.backoff = Backoff(settings.backoff_base, settings.backoff_cap,
                               settings.max_reconnect_attempts)
        self.conn: ClientConnection | None = None
        self.state = "idle"
        self.stopping = False
        self.failures = 0
        self.unavailable = 0  # events refused in a row because the server could not store them
        self.attempted = False
        self.reached = False  # a connection was opened once: the server exists
        self.next_attempt = 0.0
        self.last_attempt = 0.0
        self.urgent = False
        self.markers: list[FlushMarker] = []
        self.n = 0
        self.last_activity = _now()
        self.next_ping = 0.0
        self.ping_ids = 0
        self.counts = {"sent": 0, "acked": 0, "duplicates": 0, "invalid": 0, "rejected": 0,
                       "reconnects": 0, "pongs": 0}
        self.latency_ms: float | None = None
        self.quality: str | None = None
        self.last_seq: int | None = None
        self.last_event_id: str | None = None
        self.last_error: str | None = None
        self.last_rejection: str | None = None
        self._warned: set[str] = set()
        self.system = SystemSampler(settings.system_interval)  # 0: does nothing
        self.open_runs = OpenRuns()  # listed in each ping: the heartbeat

    # ------------------------------------------------------------------ loop

    def run(self) -> None:
        """The thread's body: until :attr:`stopping`, keep the stream flowing."""
        while not self.stopping:
            try:
                self.drain()
                if self.connection_due():
                    self.session()
            except Exception as exc:  # a bug here must never end delivery for the process
                self.report_bug(exc)
                self.failed(self.failures + 1, exc)
        self.shutdown()

    def report_bug(self, exc: BaseException) -> None:
        """One line for an unexpected exception (delivery goes on)."""
        self.warn_once("bug", f"mlops-hooks: publisher error {describe(exc)} (recovering; "
                              "please report this)")

    def drain(self) -> None:
        """Move everything from the inbox into the buffer (applying the drop policy)."""
        inbox = self.mailbox.inbox
        moved = False
        self.system.tick(inbox)  # never raises
        while inbox:
            item = inbox.popleft()
            if type(item) is tuple:
                self.n += 1
                event = item[0]
                self.system.observe(event, item[1])
                if self.open_runs.observe(event):  # a new run: tell the server at once
                    self.next_ping = 0.0
                if self.admit(Entry(self.n, event, item[1])) and not self.mailbox.dropping:
                    self.mailbox.dropping = True  # never reached: the exit line tells
                    if self.reached:
                        self._warn(overflow_warning(self.buffer.capacity, self.s.url,
                                                    self.last_error))
                if type(event) in URGENT_CLASSES:
                    self.urgent = True
            else:
                item.target = self.n
                self.markers.append(item)
                self.urgent = True
            moved = True
        if moved:
            self.last_activity = _now()
        if self.markers:
            self.check_markers()

    def admit(self, entry: Entry) -> list[Entry]:
        """Buffer a new event; return the entries dropped (:mod:`.spool` spills instead)."""
        return self.buffer.add(entry, self.outstanding)

    def oldest_pending(self) -> float:
        """Emission number of the oldest event not yet settled (``inf`` when none)."""
        for item in self.sent:
            if type(item) is Entry:
                return item.n
        n = self.buffer.peek_n()
        return float("inf") if n is None else n

    def check_markers(self) -> None:
        """Release the flush() callers whose events are all settled."""
        oldest = self.oldest_pending()
        keep = []
        for marker in self.markers:
            if marker.target < oldest:
                marker.delivered = True
                marker.done.set()
            else:
                keep.append(marker)
        self.markers = keep

    def sleep(self, seconds: float) -> None:
        """Wait up to ``seconds`` for a wake-up (an urgent event, a flush, close)."""
        if seconds > 0:
            self.mailbox.wake.wait(seconds)
        self.mailbox.wake.clear()

    # ------------------------------------------------------------------ connecting

    def connection_due(self) -> bool:
        """While disconnected: whether to attempt now; if not, wait a little."""
        now = _now()
        due = self.next_attempt
        if self.markers:
            due = min(due, self.last_attempt + _FLUSH_RETRY)
        if self.urgent or now >= due:
            return True
        self.sleep(min(self.s.poll_interval * 5, due - now))
        return False

    def session(self) -> None:
        """One connection: handshake, a ping whose pong proves the protocol, then the stream.

        The connection is a context manager (closed on the way out, whatever happens); a
        broken connection requeues what was not acknowledged and schedules a reconnect.
        """
        self.urgent = False
        self.last_attempt = _now()
        attempt = self.failures + 1
        if self.attempted:
            self.notify("reconnecting", attempt=attempt)
        self.attempted = True
        with contextlib.ExitStack() as stack:
            try:
                conn = stack.enter_context(open_connection(self.s))
                self.conn = conn
                ping = self.make_ping()
                conn.send(self.ping_message(ping), text=True)
                reply = decode_reply(conn.recv(self.s.open_timeout, decode=False))
                if reply.type != "pong" or reply.id != ping.id:
                    raise ProtocolError(f"expected a pong to ping {ping.id}, got {reply.type!r}")
            except Exception as exc:
                self.conn = None
                self.failed(attempt, exc)
                return
            self.failures = 0
            self.reached = True
            self.measure(ping)
            self.state = "connected"
            self.next_ping = _now() + self.s.ping_interval
            self.notify("connected", attempt=attempt, latency_ms=self.latency_ms,
                        quality=self.quality)
            try:
                while not self.stopping:
                    self.drain()
                    self.pump(conn)
            except BROKEN as exc:
                self.lost(exc)
            except Exception as exc:
                self.report_bug(exc)
                self.lost(exc)
            finally:
                self.conn = None

    def failed(self, attempt: int, exc: BaseException) -> None:
        """Record a failed attempt and schedule the next one."""
        self.failures += 1
        self.last_error = describe(exc)
        delay = self.backoff.delay(self.failures)
        self.next_attempt = _now() + delay
        self.state = "error"
        self.notify("error", attempt=attempt, error=self.last_error, delay=round(delay, 3))
        if self.failures == self.s.max_reconnect_attempts:
            self.state = "max_reconnect_attempts"
            self.notify("max_reconnect_attempts", attempt=attempt, error=self.last_error,
                        delay=round(delay, 3), max_delay=self.s.backoff_cap)

    def lost(self, exc: BaseException) -> None:
        """The open connection broke: requeue everything unacknowledged, schedule a reconnect."""
        unacked = [item for item in self.sent if type(item) is Entry]
        self.sent.clear()
        self.outstanding = 0
        self.buffer.requeue(unacked)
        self.counts["reconnects"] += 1
        self.last_error = describe(exc)
        if not clean_close(exc):
            self.notify("error", error=self.last_error)
        self.state = "disconnected"
        self.failures = 0
        if isinstance(exc, Unavailable):
            # Back off like failed attempts, and send one event at a time until one is stored:
            # with a full window, events behind a refused one could be stored before it.
            self.unavailable += 1
        delay = self.backoff.delay(max(1, self.unavailable))
        self.next_attempt = _now() + delay
        self.notify("disconnected", error=self.last_error, delay=round(delay, 3),
                    resending=len(unacked))

    def shutdown(self) -> None:
        """The thread is ending (the connection, if any, is already closed)."""
        if self.state == "connected":
            self.state = "disconnected"
            self.notify("disconnected", reason="publisher closed")
        self.state = "closed"
        for marker in self.markers:
            marker.done.set()  # not delivered: release the flush() caller
        self.markers = []

    def abandon(self) -> None:
        """In a forked child: let go of the parent's socket without touching the connection."""
        conn, self.conn = self.conn, None
        if conn is None:
            return
        with contextlib.suppress(OSError):
            os.close(conn.socket.detach())

    # ------------------------------------------------------------------ connected

    def pump(self, conn: ClientConnection) -> None:
        """One round on an open connection: ping when due, send, read replies or idle."""
        now = _now()
        if now >= self.next_ping:
            ping = self.make_ping()
            self.sent.append(ping)
            conn.send(self.ping_message(ping), text=True)
            self.next_ping = now + self.s.ping_interval
        self.send_window(conn, now)
        if not self.sent:
            self.idle(conn, now)
            return
        if now - self.sent[0].sent_at > self.s.reply_timeout:
            raise Stalled(f"no reply from the server in {self.s.reply_timeout:g}s")
        try:
            data = conn.recv(self.s.poll_interval, decode=False)
        except TimeoutError:
            return
        while True:
            self.handle(data)
            try:
                data = conn.recv(0, decode=False)
            except TimeoutError:
                break
        if self.markers:
            self.check_markers()

    def send_window(self, conn: ClientConnection, now: float) -> None:
        """Send buffered events while fewer than ``max_inflight`` await their ack."""
        settled = False
        window = 1 if self.unavailable else self.s.max_inflight
        while self.outstanding < window:
            entry = self.buffer.pop()
            if entry is None:
                break
            if entry.payload is None:
                assert entry.event is not None
                try:
                    entry.payload, entry.event_id = prepare(entry.event, entry.enqueued, self.ids)
                except Invalid as exc:
                    self.counts["invalid"] += 1
                    settled = True
                    self.warn_once(exc.key, f"mlops-hooks: dropped an invalid event (never "
                                            f"sent): {exc}")
                    continue
                entry.event = None
            entry.sent_at = now
            self.sent.append(entry)
            self.outstanding += 1
            conn.send(entry.payload, text=True)
            self.counts["sent"] += 1
        if settled and self.markers:
            self.check_markers()

    def idle(self, conn: ClientConnection, now: float) -> None:
        """Nothing in flight: a short ``recv`` while events flow or a run is open, else sleep.

        A sleep ends with a look at the connection, so a closed one is noticed while idle too.
        """
        mailbox = self.mailbox
        until_ping = max(0.0, self.next_ping - now)
        if (busy := now - self.last_activity < _IDLE_AFTER) or self.open_runs.runs:
            wait = min(self.s.poll_interval if busy else _LIVE_WAIT, until_ping)
        else:
            mailbox.fast = False
            mailbox.wake.clear()
            if not mailbox.inbox:
                mailbox.wake.wait(min(_IDLE_AFTER, until_ping))
            mailbox.fast = True
            wait = 0.0
        try:
            data = conn.recv(wait, decode=False)
        except TimeoutError:
            return
        self.handle(data)  # nothing is in flight: a protocol error unless it is a notice

    def handle(self, data: bytes) -> None:
        """Match one reply to the oldest message in flight."""
        reply = decode_reply(data)
        if reply.type not in ("ack", "error", "pong"):  # a notice (control), not a reply
            return notice(reply.type, data, self.mailbox)
        if not self.sent:
            raise ProtocolError(f"{reply.type!r} received with nothing in flight")
        head = self.sent[0]
        if type(head) is Ping:
            if reply.type == "ack" or (reply.type == "pong" and reply.id != head.id):
                raise ProtocolError(f"expected the pong to ping {head.id}, got {data[:200]!r}")
            self.sent.popleft()
            if reply.type == "pong":
                self.measure(head)
            return
        entry = cast(Entry, head)
        if reply.type == "pong" or (reply.event_id is not None
                                    and reply.event_id != entry.event_id):
            raise ProtocolError(f"expected the reply to event {entry.event_id}, "
                                 f"got {data[:200]!r}")
        if reply.type == "error" and retryable(reply):
            raise Unavailable(f"the server could not take an event: {reply.error}")
        self.sent.popleft()
        self.outstanding -= 1
        if reply.type == "ack":
            self.counts["acked"] += 1
            self.unavailable = 0
            self.counts["duplicates"] += reply.duplicate
            self.last_seq = reply.seq
            self.last_event_id = entry.event_id
        else:
            self.counts["rejected"] += 1
            self.last_rejection = reply.error or "rejected"
            self.warn_once(f"server:{reply.field}", "mlops-hooks: the server rejected an event "
                                                    f"({entry.event_id}): {reply.error}")
        entry.payload = None

    # ------------------------------------------------------------------ helpers

    def make_ping(self) -> Ping:
        self.ping_ids += 1
        return Ping(self.ping_ids, _now())

    def ping_message(self, ping: Ping) -> bytes:
        return encode_ping(ping.id, self.open_runs.ids())

    def measure(self, ping: Ping) -> None:
        """Record a round trip; report a change of quality level."""
        self.counts["pongs"] += 1
        self.latency_ms = round((_now() - ping.sent_at) * 1000.0, 3)
        level = quality(self.latency_ms)
        changed = self.quality is not None and level != self.quality
        self.quality = level
        if changed:
            self.notify("connected", latency_ms=self.latency_ms, quality=level)

    def notify(self, state: str, **detail: object) -> None:
        detail = {"url": self.s.url, **detail, "buffered": len(self.buffer) + self.outstanding}
        self._notify(state, detail)

    def warn_once(self, key: str, line: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self._warn(line)

    def pending(self) -> int:
        """Events buffered or in flight."""
        return len(self.buffer) + self.outstanding
