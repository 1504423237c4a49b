"""Why a kill -9 loses and repeats nothing: commit before ack, the clean flag, no seq reuse."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import websockets

from mlops_hooks.server.ingest import CRASH_GAP
from mlops_hooks.server.state.store import Store
from tests.live_server import LiveServer
from tests.redis.fleet import lifecycle_event

pytestmark = pytest.mark.timeout(60)


def stored_ids(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as db:
        return dict(db.execute("SELECT event_id, seq FROM event_ids").fetchall())


def test_commit_writes_at_once_and_concurrent_commits_share_one(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"

    async def main() -> None:
        store = Store(str(path))
        await asyncio.wrap_future(store.open())
        store.note(1, "first")
        await asyncio.wrap_future(store.commit())
        assert stored_ids(path) == {"first": 1}  # on disk, visible to another connection
        before = store.writes
        for i in range(2, 52):
            store.note(i, f"id-{i}")
        await asyncio.gather(*(asyncio.wrap_future(store.commit()) for _ in range(50)))
        assert len(stored_ids(path)) == 51
        assert store.writes - before < 50  # group commit: far fewer writes than waiters
        await asyncio.to_thread(store.close)
        # after close a commit has nothing left to wait for
        await asyncio.wait_for(asyncio.wrap_future(store.commit()), 5)
    asyncio.run(main())


def test_the_clean_flag_tells_a_crash_from_a_stop(tmp_path: Path) -> None:
    path = str(tmp_path / "history.sqlite3")
    first = Store(path)
    assert first.open().result().unclean is False  # a new database
    first.close()
    crash = ("import os, sys; from mlops_hooks.server.state.store import Store; "
             "h = Store(sys.argv[1]).open().result(); print(h.unclean, flush=True); os._exit(0)")
    ran = subprocess.run([sys.executable, "-c", crash, path], capture_output=True, text=True,
                         timeout=30, check=True)
    assert ran.stdout.strip() == "False"  # the previous process closed it; this one does not
    third = Store(path)
    assert third.open().result().unclean is True
    third.close()


def test_after_a_kill_numbering_skips_ahead_and_acked_events_are_known(tmp_path: Path) -> None:
    server = LiveServer(tmp_path, extra_args=["--metrics-interval", "0", "--stall-timeout", "0"])

    async def publish(events: list[dict[str, object]]) -> list[dict[str, object]]:
        async with websockets.connect(server.publish_url) as ws:
            for event in events:
                await ws.send(json.dumps(event))
            return [json.loads(await ws.recv()) for _ in events]

    with server:
        acks = asyncio.run(publish([lifecycle_event(i, event_id=f"k-{i}") for i in range(50)]))
        assert [a["seq"] for a in acks] == list(range(1, 51))
        server.kill()  # at once: no wait for the history's batch cycle
        # every acknowledged event is already on disk
        assert stored_ids(Path(server.db)) == {f"k-{i}": i + 1 for i in range(50)}
        server.start()
        again = asyncio.run(publish([lifecycle_event(7, event_id="k-7"),
                                     lifecycle_event(99, event_id="k-99")]))
        assert again[0] == {"type": "ack", "seq": 8, "event_id": "k-7", "duplicate": True}
        assert again[1]["seq"] == 50 + CRASH_GAP + 1  # never a seq given out before the kill
        health = httpx.get(server.http_url + "/healthz", timeout=10).json()
        assert health["seq"] == 50 + CRASH_GAP + 1
        server.stop()
        server.start()  # a clean stop: numbering simply continues
        assert asyncio.run(publish([lifecycle_event(100)]))[0]["seq"] == 50 + CRASH_GAP + 2
    assert "did not stop cleanly" in server.log()
