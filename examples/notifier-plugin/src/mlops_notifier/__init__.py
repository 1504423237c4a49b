"""mlops-notifier: training failures and deployments to a file and/or a webhook.

An example of a third-party mlops-hooks plugin, installed as its own distribution and found
through the ``mlops_hooks`` entry-point group. Hooks run on the caller's thread (a training
loop, or the server's event loop), so they only build a small record and put it on a bounded
queue; one background thread per destination writes the file or POSTs to the webhook. A full
queue drops the record (counted) rather than wait.

Settings come from the environment (the plugin manager instantiates the class without
arguments): ``MLOPS_NOTIFIER_FILE``, ``MLOPS_NOTIFIER_WEBHOOK`` and ``MLOPS_NOTIFIER_SIDE``
(``server`` by default, ``training`` or ``any``).
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import mlops_hooks
from mlops_hooks import events as ev

__all__ = ["Notifier"]
__version__ = "0.1.0"

SIDES = ("server", "training", "any")
QUEUE_SIZE = 1000
EXIT_WAIT_SECONDS = 3.0


class _Sink:
    """A bounded queue drained by one daemon thread that calls ``deliver`` per record."""

    def __init__(self, name: str, deliver: Callable[[dict[str, Any]], None]) -> None:
        self.name = name
        self.deliver = deliver
        self.queue: queue.Queue[dict[str, Any] | None] = queue.Queue(QUEUE_SIZE)
        self.dropped = 0
        self.failed = 0
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def put(self, record: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1
            return
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, daemon=True,
                                                    name=f"mlops-notifier-{self.name}")
                    self._thread.start()

    def _run(self) -> None:
        while True:
            record = self.queue.get()
            try:
                if record is None:
                    return
                self.deliver(record)
            except Exception as exc:
                self.failed += 1
                if self.failed == 1:  # one line, not one per notification
                    sys.stderr.write(f"mlops-notifier: {self.name} failed: {exc} (further "
                                     "failures are not reported)\n")
            finally:
                self.queue.task_done()

    def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the queued records to be delivered."""
        deadline = time.monotonic() + timeout
        while self.queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.02)
        return not self.queue.unfinished_tasks


class Notifier:
    """Notify about ``training_failed`` and ``model_deployed``.

    Args:
        path: File to append JSON lines to (default: ``MLOPS_NOTIFIER_FILE``).
        webhook: URL to POST to (default: ``MLOPS_NOTIFIER_WEBHOOK``).
        side: ``server``, ``training`` or ``any`` (default: ``MLOPS_NOTIFIER_SIDE`` or
            ``server``): where notifications are sent from, so that a plugin installed in
            both processes notifies once.
        timeout: Seconds a webhook request may take.

    Raises:
        ValueError: ``side`` is not one of the three, or the webhook is not an http(s) URL.
    """

    def __init__(self, path: str | None = None, webhook: str | None = None,
                 side: str | None = None, timeout: float = 5.0) -> None:
        self.path = path or os.environ.get("MLOPS_NOTIFIER_FILE") or None
        self.webhook = webhook or os.environ.get("MLOPS_NOTIFIER_WEBHOOK") or None
        self.side = (side or os.environ.get("MLOPS_NOTIFIER_SIDE") or "server").strip().lower()
        if self.side not in SIDES:
            raise ValueError(f"MLOPS_NOTIFIER_SIDE must be one of {', '.join(SIDES)}, "
                             f"got {self.side!r}")
        if self.webhook is not None and not self.webhook.startswith(("http://", "https://")):
            raise ValueError(f"MLOPS_NOTIFIER_WEBHOOK must be an http(s) URL, "
                             f"got {self.webhook!r}")
        self.timeout = timeout
        self.sinks: list[_Sink] = []
        if self.path:
            self.sinks.append(_Sink("file", self._write))
        if self.webhook:
            self.sinks.append(_Sink("webhook", self._post))
        if self.sinks:
            atexit.register(self.close)

    # ------------------------------------------------------------------ hooks

    @mlops_hooks.hookimpl
    def mlops_training_failed(self, event: ev.TrainingFailed, side: str) -> None:
        """A run failed: say which, where, why and what to try."""
        if self._wanted(side):
            name = event.model_name or event.run_id or "a training run"
            hint = f" Try: {event.suggestions[0]}." if event.suggestions else ""
            self._notify(event, side, f"Training of {name} failed [{event.error_code}] at "
                                      f"{event.stage_failed} ({event.progress_when_failed}%): "
                                      f"{event.error}.{hint}")

    @mlops_hooks.hookimpl
    def mlops_model_deployed(self, event: ev.ModelDeployed, side: str) -> None:
        """A model went to production."""
        if self._wanted(side):
            words = ["Deployed", event.model_name]
            if event.model_version:
                words.append(event.model_version)
            if event.model_accuracy is not None:
                words.append(f"(accuracy {event.model_accuracy:.3f})")
            self._notify(event, side, " ".join(words))

    # ------------------------------------------------------------------ delivery

    def _wanted(self, side: str) -> bool:
        return bool(self.sinks) and self.side in ("any", side)

    def _notify(self, event: ev.Event, side: str, text: str) -> None:
        record = {"text": text, "side": side, "event": ev.to_dict(event)}
        for sink in self.sinks:
            sink.put(record)

    def _write(self, record: dict[str, Any]) -> None:
        assert self.path is not None
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")

    def _post(self, record: dict[str, Any]) -> None:
        assert self.webhook is not None
        request = urllib.request.Request(
            self.webhook, data=json.dumps(record).encode(), method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "mlops-notifier"})
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            response.read()

    def close(self, timeout: float = EXIT_WAIT_SECONDS) -> None:
        """Deliver what is queued (waiting at most ``timeout`` seconds in all)."""
        deadline = time.monotonic() + timeout
        for sink in self.sinks:
            sink.drain(max(0.0, deadline - time.monotonic()))
