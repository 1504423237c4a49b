"""Human formatting shared by every producer of events (durations, sizes, times)."""

from __future__ import annotations

import math
import time
from datetime import datetime, timezone

__all__ = ["format_bytes", "format_duration", "format_rate", "iso_utc", "to_float"]


def format_duration(seconds: float) -> str:
    """Format a duration like the spec's ``training_time``: ``'4m 23s'``, ``'1h 2m 5s'``.

    Example:
        >>> format_duration(263.4)
        '4m 23s'
        >>> format_duration(0.42)
        '0.4s'
    """
    if seconds < 0 or not math.isfinite(seconds):
        raise ValueError(f"duration must be a finite number >= 0, got {seconds!r}")
    if seconds < 10:
        return f"{seconds:.1f}s"
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m {secs}s"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


_UNITS = ("B", "KB", "MB", "GB", "TB")


def format_bytes(size: float) -> str:
    """Format a byte count like the spec's ``model_size``: ``'2.3MB'`` (powers of 1024).

    Example:
        >>> format_bytes(2411724)
        '2.3MB'
    """
    if size < 0 or not math.isfinite(size):
        raise ValueError(f"size must be a finite number of bytes >= 0, got {size!r}")
    value = float(size)
    for unit in _UNITS:
        if value < 1024 or unit == _UNITS[-1]:
            return f"{int(value)}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def format_rate(bytes_per_second: float) -> str:
    """Format a transfer rate like the spec's ``upload_speed``: ``'2.1 MB/s'``."""
    text = format_bytes(max(0.0, bytes_per_second))
    number = text.rstrip("KMGTB")
    return f"{number} {text[len(number):]}/s"


_wall = time.time  # bound at import: code that patches the time module never feeds us


def iso_utc(epoch_seconds: float | None = None) -> str:
    """ISO-8601 UTC time with millisecond precision and a ``Z`` suffix."""
    t = _wall() if epoch_seconds is None else epoch_seconds
    stamp = datetime.fromtimestamp(t, tz=timezone.utc).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def to_float(value: object) -> float | None:
    """Convert a loss or metric (float, NumPy scalar, 0-d tensor) to a finite float, or None."""
    if value is None:
        return None
    try:
        result = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, RuntimeError):
        return None
    return result if math.isfinite(result) else None
