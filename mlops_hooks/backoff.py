"""Reconnect delays and connection quality, shared by the publisher and the Redis backend.

Delays follow "exponential backoff with full jitter" (the AWS architecture blog's name for it):
the *n*-th failed attempt in a row waits a uniformly random time between 0 and
``min(cap, base * 2 ** (n - 1))``. Spreading retries over the whole interval keeps many
publishers (DDP ranks, a fleet of jobs) from reconnecting in lockstep after a server restart.
Once ``max_attempts`` attempts have failed in a row the ceiling is the cap itself: a training
process never gives up (that would lose the run), it keeps retrying at the capped delay.
"""

from __future__ import annotations

import random

__all__ = ["QUALITY_LEVELS", "Backoff", "quality"]

#: The spec's connection quality levels, best first.
QUALITY_LEVELS = ("excellent", "good", "fair", "poor")


def quality(latency_ms: float) -> str:
    """Classify a ping/pong round trip as the spec does.

    Args:
        latency_ms: Round-trip time in milliseconds.

    Returns:
        ``excellent`` (< 50 ms), ``good`` (50-150), ``fair`` (150-300) or ``poor`` (> 300).

    Example:
        >>> quality(12.5), quality(50), quality(299.9), quality(301)
        ('excellent', 'good', 'fair', 'poor')
    """
    if latency_ms < 50:
        return "excellent"
    if latency_ms < 150:
        return "good"
    if latency_ms <= 300:
        return "fair"
    return "poor"


class Backoff:
    """Reconnect delays: exponential, full jitter, capped.

    Args:
        base: Ceiling of the first delay, in seconds.
        cap: Largest ceiling, in seconds.
        max_attempts: Failures in a row after which the ceiling is ``cap`` outright.
        rng: Source of randomness (seeded per process by the publisher).

    Raises:
        ValueError: ``base`` or ``cap`` is negative, or ``cap < base``.
    """

    def __init__(self, base: float, cap: float, max_attempts: int = 5,
                 rng: random.Random | None = None) -> None:
        if base < 0 or cap < base:
            raise ValueError(f"need 0 <= base <= cap, got base={base!r} cap={cap!r}")
        self.base = base
        self.cap = cap
        self.max_attempts = max_attempts
        self.rng = rng or random.Random()

    def ceiling(self, failures: int) -> float:
        """The largest delay after ``failures`` failed attempts in a row (``failures >= 1``)."""
        if failures > self.max_attempts:
            return self.cap
        return min(self.cap, self.base * 2.0 ** max(0, failures - 1))

    def delay(self, failures: int) -> float:
        """A random delay in ``[0, ceiling(failures)]``, in seconds."""
        return self.rng.uniform(0.0, self.ceiling(failures))
