"""The ordered batcher behind the Redis backend's publishing (no Redis needed)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from mlops_hooks.server.backends._redis_batch import Batcher

pytestmark = pytest.mark.timeout(30)


def test_calls_are_sent_in_order_in_batches_and_answered_one_by_one() -> None:
    sent: list[list[int]] = []

    async def send(calls: Sequence[Any]) -> list[Any]:
        sent.append(list(calls))
        await asyncio.sleep(0.01)  # a round trip
        return [ValueError(f"bad {c}") if c == 13 else c * 10 for c in calls]

    async def main() -> None:
        batcher = Batcher(send, max_batch=8)
        futures = [batcher.submit(i) for i in range(20)]
        results = await asyncio.gather(*futures, return_exceptions=True)
        assert [r for r in results if not isinstance(r, Exception)] == \
            [i * 10 for i in range(20) if i != 13]
        assert isinstance(results[13], ValueError) and str(results[13]) == "bad 13"
        assert [c for batch in sent for c in batch] == list(range(20))  # order kept
        assert [len(b) for b in sent] == [8, 8, 4] and batcher.batches == 3
    asyncio.run(main())


def test_a_failed_batch_fails_its_calls_and_the_next_batch_still_runs() -> None:
    attempts = 0

    async def send(calls: Sequence[Any]) -> list[Any]:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise ConnectionError("redis is down")
        return list(calls)

    async def main() -> None:
        batcher = Batcher(send)
        first = batcher.submit("a")
        with pytest.raises(ConnectionError, match="redis is down"):
            await first
        assert await batcher.submit("b") == "b"
    asyncio.run(main())


def test_close_fails_what_is_queued_or_in_flight_and_skips_gone_callers() -> None:
    release = asyncio.Event()

    async def send(calls: Sequence[Any]) -> list[Any]:
        await release.wait()
        return list(calls)

    async def main() -> None:
        batcher = Batcher(send, max_batch=1)
        in_flight, queued, gone = (batcher.submit(n) for n in ("x", "y", "z"))
        gone.cancel()
        await asyncio.sleep(0.01)
        await batcher.close(ConnectionError("closed"))
        for future in (in_flight, queued):
            with pytest.raises(ConnectionError, match="closed"):
                await future
        assert gone.cancelled()
    asyncio.run(main())
