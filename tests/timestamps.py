"""Checks for the ISO-8601 UTC timestamps a server or a publisher fills in."""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta, timezone

__all__ = ["assert_iso_utc_between"]

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
ISO_UTC_MS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")


def assert_iso_utc_between(stamp: str, before: float, after: float) -> None:
    """``stamp`` is ISO-8601 UTC with milliseconds, taken between ``before`` and ``after``.

    ``before`` and ``after`` are ``time.time()`` read by the test around what made the stamp
    (a server on this machine, or the publisher); stamps are truncated to the millisecond.
    """
    assert ISO_UTC_MS.fullmatch(stamp), stamp
    when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    ms = (when - EPOCH) // timedelta(milliseconds=1)  # exact integers: no float rounding
    assert math.floor(before * 1000) <= ms <= math.floor(after * 1000), (before, stamp, after)
