"""The idempotency window is the same on disk as in memory (issue 22, item 9).

Before, history kept ~10,000 ``event_id`` values while memory kept 100,000: after a restart
an older re-send within the window was broadcast again.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from mlops_hooks.server.config import IDEMPOTENCY_WINDOW
from tests.live_server import LiveServer
from tests.server.live import QUIET

pytestmark = pytest.mark.timeout(120)


def post(server: LiveServer, events: list[dict[str, str]]) -> dict[str, list[int]]:
    response = httpx.post(server.http_url + "/api/events", json=events, timeout=60)
    assert response.status_code == 200, response.text
    body: dict[str, list[int]] = response.json()
    return body


def metrics(event_id: str) -> dict[str, str]:
    return {"type": "system_metrics", "event_id": event_id}


def test_a_resend_within_the_window_is_recognised_after_a_restart(tmp_path: Path) -> None:
    assert IDEMPOTENCY_WINDOW >= 100_000
    server = LiveServer(tmp_path, extra_args=list(QUIET))
    with server:
        first = post(server, [metrics("e-00000")])["seqs"][0]
        for start in range(1, 12_001, 4000):  # 12,000 more: past the old 10,000 on disk
            post(server, [metrics(f"e-{i:05d}") for i in range(start, start + 4000)])
        for i in range(60):  # many commits: history prunes its tables now and then
            post(server, [metrics(f"late-{i}")])
        server.stop()
        server.start()
        again = post(server, [metrics("e-00000"), metrics("e-06000"), metrics("new")])
    assert again["duplicates"] == [0, 1], again
    assert again["seqs"][0] == first
