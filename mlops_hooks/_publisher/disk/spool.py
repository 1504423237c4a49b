"""Runs kept on disk by the background thread: offline mode, spilling, and retiring the thread.

:class:`Spooler` is the online worker with three additions:

* **spill**: when the buffer is full while there is no connection (the server stayed down past
  ``MLOPS_HOOKS_BUFFER`` events), the buffered events go to their runs' directories
  (:mod:`.offline`) instead of being dropped, and every later event of those runs follows them
  there (so each run's file stays in order; ``mlops-hooks sync`` sends it later);
* **retire**: once every run it carried has ended and the server was never reached, what is
  queued goes to disk and the thread ends (the publisher starts a new one on the next event), so
  no thread outlives a fit against a dead server and exit is immediate;
* the runs it carries (:class:`~.mailbox.Runs`, shared by the threads one after another).

:class:`OfflineWorker` (``MLOPS_HOOKS_MODE=offline``) never connects: every event goes to disk,
and the thread retires once every run has ended.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from mlops_hooks import events as ev
from mlops_hooks._publisher.buffer import Entry
from mlops_hooks._publisher.config import Settings
from mlops_hooks._publisher.disk import offline
from mlops_hooks._publisher.disk.mode import runs_dir
from mlops_hooks._publisher.mailbox import ENDS, Mailbox
from mlops_hooks._publisher.wire import Invalid, prepare
from mlops_hooks._publisher.worker import Worker

__all__ = ["OfflineWorker", "Spooler", "settle"]

_told: list[bool] = []  # the process printed its one line about runs kept on disk
_OFFLINE_POLL = 0.1  # seconds between writes in offline mode (an ending run wakes it at once)
_BATCH = 1024  # events written to disk at once, at most
_SETTLE = 0.5  # seconds a run's end waits, at most, for a thread about to retire


class Spooler(Worker):
    """The online worker, with spilling to disk and retirement (see the module docstring).

    Args:
        settings: The publisher's settings.
        mailbox: Shared with the training thread.
        notify: Called on every connection state change.
        warn: Writes one warning line.
        retire: Called from this thread when it may end; the publisher returns True when it
            has let go of the thread (nothing arrived meanwhile), then the thread ends.
    """

    how = "spilled"

    def __init__(self, settings: Settings, mailbox: Mailbox,
                 notify: Callable[[str, dict[str, object]], None],
                 warn: Callable[[str], None], retire: Callable[[], bool]) -> None:
        super().__init__(settings, mailbox, notify, warn)
        self.retire = retire
        self.runs = mailbox.runs
        if mailbox.unreachable:  # the thread before this one retired: the server was down
            self.failures, self.last_error = 1, mailbox.unreachable
        self.spilled: set[str | None] = set()  # runs written to disk from now on
        self.to_disk: list[tuple[int, bytes]] = []  # (emission number, wire message)
        self.kept = 0  # events written to disk
        self.dirs: list[Path] = []  # the run directories written, in first-use order
        self.retired = False

    def run(self) -> None:
        """The worker's loop, ending early once it may retire (see :meth:`may_retire`)."""
        while not self.stopping:
            try:
                self.drain()
                if self.may_retire():
                    self.put_on_disk(self.buffer.clear())
                    self.tell()
                    if self.retire():
                        self.retired = True
                        self.mailbox.unreachable = self.last_error or "no reply"
                        break
                if self.connection_due():
                    self.session()
            except Exception as exc:  # a bug here must never end delivery for the process
                self.report_bug(exc)
                self.failed(self.failures + 1, exc)
        self.shutdown()
        if self.retired:
            self.state = "idle"

    def tell(self) -> None:
        """The one line a process prints when its runs went to disk unsent (the first time)."""
        if self.kept and not _told:
            _told.append(True)
            where = self.dirs[0] if len(self.dirs) == 1 else runs_dir()
            self._warn(f"mlops-hooks: {self.s.url} was never reached ({self.last_error}); "
                       f"the run is kept in {where} ('mlops-hooks sync {runs_dir()}' sends it "
                       "later)")

    def may_retire(self) -> bool:
        """Every run ended, the server never reached, nothing left in the inbox."""
        return (self.runs.all_ended and not self.reached and self.failures > 0
                and not self.mailbox.inbox and not self.sent)

    def drain(self) -> None:
        """Move the inbox to the buffer (or to disk), then write what goes to disk."""
        super().drain()
        if self.to_disk:
            self.write()

    def admit(self, entry: Entry) -> list[Entry]:
        """Buffer a new event, or send it to disk (its run spilled, or the buffer is full)."""
        event = entry.event
        assert event is not None
        self.runs.observe(event)
        if event.run_id in self.spilled:
            self.to_disk_later(entry)
            return []
        if self.conn is None and len(self.buffer) + self.outstanding >= self.buffer.capacity:
            self.spill()
            if event.run_id in self.spilled:
                self.to_disk_later(entry)
                return []
        return self.buffer.add(entry, self.outstanding)

    def spill(self) -> None:
        """The buffer is full and the server unreachable: its runs go to disk from now on."""
        entries = self.buffer.clear()
        if not _told:
            _told.append(True)
            self._warn(f"mlops-hooks: {len(entries)} events are waiting for {self.s.url} "
                       f"({self.last_error or 'server unreachable'}); their runs are written to "
                       f"{runs_dir()} from now on ('mlops-hooks sync {runs_dir()}' sends them "
                       "later)")
        for entry in entries:
            if entry.event is not None:
                self.spilled.add(entry.event.run_id)
            self.to_disk_later(entry)

    def to_disk_later(self, entry: Entry) -> None:
        """Queue ``entry`` for the next write (prepared: timestamp and ``event_id``)."""
        payload = entry.payload
        if payload is None and entry.event is not None:
            try:
                payload = prepare(entry.event, entry.enqueued, self.ids)[0]
            except Invalid as exc:
                self.counts["invalid"] += 1
                self.warn_once(exc.key, f"mlops-hooks: dropped an invalid event: {exc}")
                return
        if payload is not None:
            self.to_disk.append((entry.n, payload))
            if len(self.to_disk) >= _BATCH:  # a long drain: memory stays bounded
                self.write()

    def write(self) -> None:
        """Write the queued events to their runs' directories (one warning if that fails)."""
        batch, self.to_disk = self.to_disk, []
        self.keep([payload for _, payload in batch])

    def keep(self, payloads: list[bytes]) -> None:
        """Append ``payloads`` to their runs' files."""
        payloads = [p for p in payloads if p]
        if not payloads:
            return
        try:
            for path in offline.keep(payloads, how=self.how):
                if path not in self.dirs:
                    self.dirs.append(path)
            self.kept += len(payloads)
        except OSError as exc:
            self.warn_once("disk", f"mlops-hooks: cannot write runs under {runs_dir()}: {exc}; "
                                   f"{len(payloads)} event(s) lost")

    def put_on_disk(self, entries: list[Entry]) -> None:
        """Write ``entries`` (and whatever was queued for disk before them) now."""
        for entry in entries:
            self.to_disk_later(entry)
        self.write()

    def oldest_pending(self) -> float:
        """As the worker's, counting the events still to be written to disk."""
        oldest = super().oldest_pending()
        return min(oldest, self.to_disk[0][0]) if self.to_disk else oldest


class OfflineWorker(Spooler):
    """``MLOPS_HOOKS_MODE=offline``: every event goes to its run's directory; no connection."""

    how = "offline"

    def run(self) -> None:
        """Write what arrives every 100 ms; retire once every run has ended."""
        self.state = "offline"
        mailbox = self.mailbox
        while not self.stopping:
            try:
                self.drain()
                if self.markers:
                    self.check_markers()
                if self.runs.all_ended and not mailbox.inbox and self.retire():
                    self.retired = True
                    break
                self.sleep(_OFFLINE_POLL)
            except Exception as exc:  # never end the thread on a bug
                self.report_bug(exc)
        if not self.retired:  # closed: what is still in the inbox goes to disk too
            self.drain()
        self.shutdown()
        self.state = "idle" if self.retired else "closed"

    def admit(self, entry: Entry) -> list[Entry]:
        """Every event goes to disk."""
        assert entry.event is not None
        self.runs.observe(entry.event)
        self.to_disk_later(entry)
        return []


def settle(worker: Worker | None, thread: threading.Thread | None, event: ev.Event) -> None:
    """After a run's last events, give a thread about to retire a moment to do so.

    Called by ``emit`` on its slow path (a run's end, or a thread to wake or start). Waits only
    when the thread will retire: the server was never reached (or offline mode) and ``event``
    ends the last open run or belongs to a run that has ended; then no thread of ours outlives
    the fit that ended the run. At most 0.5 s, never on the background thread itself.

    Args:
        worker: The publisher's worker (``None`` before the first event).
        thread: Its thread.
        event: The event just queued.
    """
    if (not isinstance(worker, Spooler) or thread is None or event.run_id is None
            or thread is threading.current_thread()):
        return
    if not isinstance(worker, OfflineWorker) and (worker.reached or not worker.failures):
        return
    runs = worker.runs
    if type(event) in ENDS:
        if len(runs.open) > 1 or (runs.open and event.run_id not in runs.open):
            return
    elif runs.open or event.run_id not in runs.closed:
        return
    thread.join(_SETTLE)
