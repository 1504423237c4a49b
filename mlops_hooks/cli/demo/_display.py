"""The demo's terminal display: one live status line on a terminal, plain lines otherwise.

Stages print a permanent line when they finish; while one runs, a status line is redrawn a few
times a second (stage, bar, percent, epoch, loss, ETA, events seen by the dashboard). When
stdout is not a terminal (CI logs, pipes) the status line is replaced by a plain line whenever
something meaningful changes (a new epoch, another 10%), at most one a second.

Training runs feed the display through :class:`ProgressPlugin`, an ordinary training-side
plugin (``mlops_training_progress``), the same way any third-party plugin would.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from collections.abc import Callable, Hashable
from typing import TextIO

from mlops_hooks import events as ev
from mlops_hooks.formatting import format_duration
from mlops_hooks.manager import hookimpl

__all__ = ["Display", "ProgressPlugin"]

REFRESH_SECONDS = 0.2
PLAIN_MIN_GAP = 1.0
BAR_WIDTH = 20


def _can_encode(stream: TextIO, text: str) -> bool:
    try:
        text.encode(getattr(stream, "encoding", None) or "ascii")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


class Display:
    """Stage lines and a live status line.

    Args:
        stream: Where to write (default: ``sys.stdout``).
        tty: Redraw a status line in place; default: whether ``stream`` is a terminal.
        stages: How many numbered stages there are.
        footer: Called at each redraw for a short text shown at the end of the status line.
    """

    def __init__(self, stream: TextIO | None = None, *, tty: bool | None = None,
                 stages: int = 1, footer: Callable[[], str] | None = None) -> None:
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self.stages = stages
        self.footer = footer
        fancy = _can_encode(self.stream, "█░✓✗·")
        self.ok, self.bad = ("✓", "✗") if fancy else ("ok", "FAILED")
        self.dot = "·" if fancy else "-"
        self.fill, self.empty = ("█", "░") if fancy else ("#", ".")
        self._lock = threading.RLock()
        self._number = 0
        self._title = ""
        self._short = ""
        self._percent: float | None = None
        self._detail = ""
        self._started = 0.0
        self._drawn = ""
        self._plain_key: Hashable = None
        self._plain_at = 0.0
        self._active = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if self.tty:
            self._thread = threading.Thread(target=self._loop, name="mlops-hooks-demo-display",
                                            daemon=True)
            self._thread.start()

    # ------------------------------------------------------------------ writing

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # the terminal went away: the demo goes on
            pass

    def _clear(self) -> None:
        if self.tty and self._drawn:
            self._write("\r\x1b[2K")
            self._drawn = ""

    def line(self, text: str = "") -> None:
        """Print a permanent line (above the status line)."""
        with self._lock:
            self._clear()
            self._write(text + "\n")
            if self.tty and self._active:
                self._draw()

    # ------------------------------------------------------------------ stages

    def begin(self, title: str, short: str | None = None) -> None:
        """Start the next numbered stage.

        Args:
            title: Its title (on the permanent lines).
            short: A short name for the status line (default: the title).
        """
        with self._lock:
            self._number += 1
            self._title = title
            self._short = short or title
            self._percent = None
            self._detail = ""
            self._started = time.monotonic()
            self._active = True
            self._plain_key = None
            if self.tty:
                self._draw()
            else:
                self._write(f"{self._prefix()} {title} ...\n")

    def update(self, percent: float | None = None, detail: str | None = None,
               key: Hashable = None) -> None:
        """Update the running stage's status.

        Args:
            percent: Progress of the stage, 0-100, if known.
            detail: Short text after the bar (epoch, loss, ETA, counts).
            key: In plain mode a line is printed when this changes (default: every 10%).
        """
        with self._lock:
            if not self._active:
                return
            if percent is not None:
                self._percent = max(0.0, min(100.0, float(percent)))
            if detail is not None:
                self._detail = detail
            if self.tty:
                return  # the redraw thread picks it up
            if key is None:
                key = None if self._percent is None else int(self._percent // 10)
            now = time.monotonic()
            if key is not None and key != self._plain_key and now - self._plain_at >= \
                    PLAIN_MIN_GAP:
                self._plain_key, self._plain_at = key, now
                self._write(f"      {self._status_text()}\n")

    def done(self, summary: str, *, ok: bool = True) -> None:
        """Finish the running stage with a permanent line."""
        with self._lock:
            if not self._active:
                return
            self._active = False
            elapsed = format_duration(time.monotonic() - self._started)
            mark = self.ok if ok else self.bad
            self._clear()
            self._write(f"{self._prefix()} {self._title}: {mark} {summary} ({elapsed})\n")

    def close(self) -> None:
        """Stop redrawing (the last status line is cleared)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=1.0)
        with self._lock:
            self._clear()
            self._active = False

    # ------------------------------------------------------------------ rendering

    def _prefix(self) -> str:
        return f"[{self._number}/{self.stages}]"

    def _status_text(self) -> str:
        parts = []
        if self._percent is not None:
            filled = round(self._percent / 100 * BAR_WIDTH)
            bar = self.fill * filled + self.empty * (BAR_WIDTH - filled)
            parts.append(f"{bar} {self._percent:5.1f}%")
        if self._detail:
            parts.append(self._detail)
        return f" {self.dot} ".join(parts)

    def _draw(self) -> None:
        text = f"{self._prefix()} {self._short}  {self._status_text()}"
        width = shutil.get_terminal_size((100, 24)).columns - 1
        if self.footer is not None:
            try:
                extra = self.footer()
            except Exception:
                extra = ""
            if extra and len(text) + len(extra) + 4 <= width:
                text += f"  {self.dot} {extra}"
        if len(text) > width:
            text = text[: max(0, width - 1)] + "…"
        if text != self._drawn:
            self._write("\r\x1b[2K" + text)
            self._drawn = text

    def _loop(self) -> None:
        while not self._stop.wait(REFRESH_SECONDS):
            with self._lock:
                if self._active:
                    self._draw()


def describe_progress(event: ev.TrainingProgress, dot: str = "·") -> str:
    """The status text of a ``training_progress`` event: epoch, loss, ETA or its message."""
    parts: list[str] = []
    if event.stage != "model_training":
        parts.append(ev.STAGE_TEXT.get(event.stage, event.stage))
    if event.current_epoch is not None:
        total = f"/{event.total_epochs}" if event.total_epochs else ""
        parts.append(f"epoch {event.current_epoch}{total}")
    elif event.message and event.stage == "model_training":
        parts.append(event.message.split(" - ", 1)[-1])
    if event.current_loss is not None:
        parts.append(f"loss {event.current_loss:.4g}")
    if event.current_accuracy is not None:
        parts.append(f"acc {event.current_accuracy:.3f}")
    eta = event.estimated_time_remaining
    if eta is not None and (event.progress or 0) < 100:
        parts.append(f"ETA {format_duration(eta)}")
    return f" {dot} ".join(parts)


class ProgressPlugin:
    """A training-side plugin that shows the current run's progress on the :class:`Display`.

    Args:
        display: Where to show it.
    """

    def __init__(self, display: Display) -> None:
        self.display = display

    @hookimpl
    def mlops_training_progress(self, event: ev.TrainingProgress) -> None:
        """Show stage, percent, epoch, loss and ETA."""
        detail = describe_progress(event, self.display.dot)
        self.display.update(percent=event.progress, detail=detail, key=event.current_epoch)
