"""A dashboard's view of the demo: a real ``/ws`` subscriber that notes what arrives.

The demo checks with it that every event type of the protocol reached the dashboard side (not
just left the training side), and waits on it for the server's own events (``health_change``,
``system_alert``). It reconnects with ``?since=`` like the dashboard does, so nothing is missed.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

__all__ = ["DashboardWatcher"]


class DashboardWatcher:
    """Subscribe to the server on a background thread and count the live events by type.

    Args:
        ws_url: The server's subscribe endpoint (``ws://host:port/ws``).
    """

    def __init__(self, ws_url: str) -> None:
        self.ws_url = ws_url
        self.counts: Counter[str] = Counter()
        self.health: str | None = None
        self.last_seq: int | None = None
        self.alerts: list[dict[str, Any]] = []
        self.connected = threading.Event()
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: str | None = None

    def start(self, timeout: float = 10.0) -> DashboardWatcher:
        """Connect (on the background thread) and wait until the snapshot arrived.

        Raises:
            TimeoutError: No snapshot within ``timeout`` seconds.
        """
        self._thread = threading.Thread(target=self._run, name="mlops-hooks-demo-watcher",
                                        daemon=True)
        self._thread.start()
        if not self.connected.wait(timeout):
            raise TimeoutError(f"no snapshot from {self.ws_url} within {timeout:g}s "
                               f"({self.error or 'no answer'})")
        return self

    def stop(self) -> None:
        """Close the subscription and end the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=3.0)

    def seen(self, kind: str) -> int:
        """How many live ``kind`` events arrived so far."""
        with self._changed:
            return self.counts[kind]

    def wait_for(self, condition: Callable[[DashboardWatcher], bool], timeout: float) -> bool:
        """Wait until ``condition(self)`` holds (checked at every event) or ``timeout``.

        Returns:
            Whether the condition holds.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while not condition(self):
                left = deadline - time.monotonic()
                if left <= 0 or self._stop.is_set():
                    return condition(self)
                self._changed.wait(min(left, 0.5))
            return True

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        from websockets.exceptions import ConnectionClosed
        from websockets.sync.client import connect

        delay = 0.2
        while not self._stop.is_set():
            url = self.ws_url if self.last_seq is None else f"{self.ws_url}?since={self.last_seq}"
            try:
                with connect(url, compression=None, proxy=None, open_timeout=5,
                             max_size=None, close_timeout=1) as ws:
                    delay = 0.2
                    while not self._stop.is_set():
                        try:
                            raw = ws.recv(timeout=0.25)
                        except TimeoutError:
                            continue
                        self._on_message(raw)
            except (OSError, ConnectionClosed) as exc:
                self.error = f"{type(exc).__name__}: {exc}"
            self._stop.wait(delay)
            delay = min(delay * 2, 2.0)

    def _on_message(self, raw: str | bytes) -> None:
        try:
            message = json.loads(raw)
        except ValueError:
            return
        if not isinstance(message, dict):
            return
        kind = message.get("type")
        with self._changed:
            if kind == "snapshot":
                health = message.get("health") or {}
                self.health = health.get("current_health", self.health)
                self.last_seq = message.get("seq", self.last_seq)
                self.connected.set()
            elif kind == "replay" or not isinstance(kind, str):
                return
            elif isinstance(message.get("seq"), int):
                self.last_seq = message["seq"]
                self.counts[kind] += 1
                if kind in ("health_change", "system_metrics"):
                    self.health = message.get("current_health", self.health)
                elif kind == "system_alert":
                    self.alerts.append(message.get("alert") or {})
            self._changed.notify_all()
