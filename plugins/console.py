"""Built-in console plugin: one concise line per meaningful change of a run.

Stage changes, epoch ends, completion and failure each print one line on stderr; throttled
progress between them prints nothing, so a run of a million steps prints a few dozen lines.
Disable it with ``MLOPS_HOOKS_DISABLE=console``. Under zero-code attach (``MLOPS_HOOKS_AUTO=1``)
it is off unless ``MLOPS_HOOKS_CONSOLE=1``: a user who attached nothing in code hears nothing
unless something is wrong.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO

from mlops_hooks import events as ev
from mlops_hooks.manager import hookimpl

__all__ = ["ConsolePlugin", "make_plugin"]


class ConsolePlugin:
    """Print one line per stage change, epoch end, completion and failure.

    Args:
        stream: Where lines go (default: ``sys.stderr`` at the time of writing).
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._last: dict[str, tuple[str, int | None]] = {}

    def _write(self, line: str) -> None:
        stream = self._stream or sys.stderr
        stream.write(f"[mlops] {line}\n")

    @hookimpl
    def mlops_training_progress(self, event: ev.TrainingProgress) -> None:
        """Print when the stage or the epoch changed since the last line of this run."""
        key = event.run_id or ""
        state = (event.stage, event.current_epoch)
        if self._last.get(key) == state:
            return
        previous = self._last.get(key)
        self._last[key] = state
        if previous is not None and previous[0] == event.stage and event.current_epoch is None:
            return
        parts = [event.model_name or key, event.message or event.stage]
        if event.current_loss is not None:
            parts.append(f"loss {event.current_loss:.4g}")
        if event.estimated_time_remaining is not None and event.progress not in (None, 100):
            parts.append(f"ETA {int(event.estimated_time_remaining)}s")
        self._write(" | ".join(parts))

    @hookimpl
    def mlops_training_completed(self, event: ev.TrainingCompleted) -> None:
        """Print the completion summary."""
        self._last.pop(event.run_id or "", None)
        extra = f", accuracy {event.final_accuracy:.4g}" if event.final_accuracy is not None \
            else ""
        self._write(f"{event.model_name or event.run_id} | {event.message} "
                    f"({event.training_time}{extra})")

    @hookimpl
    def mlops_training_failed(self, event: ev.TrainingFailed) -> None:
        """Print the failure with its code and first suggestion."""
        self._last.pop(event.run_id or "", None)
        hint = f" - try: {event.suggestions[0]}" if event.suggestions else ""
        self._write(f"{event.model_name or event.run_id} | FAILED [{event.error_code}] at "
                    f"{event.stage_failed} {event.progress_when_failed}%: {event.error}{hint}")

    @hookimpl
    def mlops_model_deployed(self, event: ev.ModelDeployed) -> None:
        """Print the deployment."""
        self._write(f"deployed {event.model_name} {event.model_version or ''}".rstrip())


def _on(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def make_plugin() -> ConsolePlugin | None:
    """Factory used by the plugin manager (``None``: off under auto-attach by default)."""
    if _on("MLOPS_HOOKS_AUTO") and not _on("MLOPS_HOOKS_CONSOLE"):
        return None
    return ConsolePlugin()
