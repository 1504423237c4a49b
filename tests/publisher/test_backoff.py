from __future__ import annotations

import random

import pytest

from mlops_hooks.backoff import Backoff, quality


def test_ceilings_double_until_the_cap_and_stay_there_after_max_attempts():
    backoff = Backoff(0.5, 5.0, max_attempts=5)
    assert [backoff.ceiling(n) for n in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    early = Backoff(0.1, 30.0, max_attempts=3)
    assert [early.ceiling(n) for n in (1, 2, 3, 4, 10)] == [0.1, 0.2, 0.4, 30.0, 30.0]


def test_delays_are_full_jitter_within_the_ceiling():
    backoff = Backoff(1.0, 8.0, rng=random.Random(7))
    for failures in range(1, 10):
        delays = [backoff.delay(failures) for _ in range(300)]
        ceiling = backoff.ceiling(failures)
        assert all(0.0 <= d <= ceiling for d in delays)
        # spread over the whole interval, not bunched at the top (that is what jitter is for)
        assert min(delays) < 0.1 * ceiling and max(delays) > 0.9 * ceiling


def test_bad_backoff_parameters_are_rejected():
    with pytest.raises(ValueError, match="base <= cap"):
        Backoff(2.0, 1.0)


@pytest.mark.parametrize(
    ("latency", "level"),
    [(0.2, "excellent"), (49.99, "excellent"), (50, "good"), (149.9, "good"), (150, "fair"),
     (300, "fair"), (300.1, "poor"), (5000, "poor")],
)
def test_quality_levels_follow_the_spec(latency, level):
    assert quality(latency) == level
