"""Server-side hooks run once per event across a fleet: on the server that accepted it."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from mlops_hooks import events as ev
from mlops_hooks.manager import create_plugin_manager
from mlops_hooks.server.backends import MemoryBackend, Published, make_record
from mlops_hooks.server.state.store import Store
from tests.live_server import LiveServer
from tests.redis.fleet import running
from tests.redis_server import RedisServer, redis_server
from tests.server.conftest import ServerRecorder, activity

__all__ = ["redis_server"]  # a fixture (fails or skips without redis-server)


class ForeignBackend(MemoryBackend):
    """Delivers, after each event, one record another server of a fleet accepted."""

    async def publish(self, event: ev.Event) -> Published:
        result = await super().publish(event)
        foreign = ev.from_dict(activity(100 + result.seq))
        self._seq += 1
        assert self._deliver is not None
        self._deliver(make_record(foreign, self._seq, local=False))
        return result


def test_hooks_skip_records_another_server_accepted(make_client):
    recorder = ServerRecorder()
    pm = create_plugin_manager("server", builtins=False, entrypoints=False)
    pm.register(recorder, name="recorder")
    client = make_client(plugins=pm, backend=ForeignBackend())
    with client.websocket_connect("/ws") as sub:
        sub.receive_json()
        assert client.post("/api/events", json=[activity(1), activity(2)]).status_code == 200
        seen = [sub.receive_json()["activity"]["id"] for _ in range(4)]
    assert seen == ["act_1", "act_101", "act_2", "act_103"]  # everything is broadcast ...
    assert [e.activity.id for e in recorder.events] == ["act_1", "act_2"]  # ... hooked: its own


def test_the_server_identity_is_kept_in_the_history_database(tmp_path):
    def server_id(path: Path) -> str:
        store = Store(str(path))
        try:
            return store.open().result().server_id
        finally:
            store.close()

    first = server_id(tmp_path / "a.sqlite3")
    assert len(first) == 32 and server_id(tmp_path / "a.sqlite3") == first
    assert server_id(tmp_path / "b.sqlite3") != first


def _hooked(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _wait(predicate: Any, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_a_redis_fleet_hooks_each_event_once_on_the_server_that_accepted_it(
        tmp_path: Path, redis_server: RedisServer) -> None:
    servers = [LiveServer(tmp_path / name,
                          env={"MLOPS_HOOKS_JSONL": str(tmp_path / f"{name}.jsonl")},
                          extra_args=["--backend", redis_server.url, "--metrics-interval", "0",
                                      "--stall-timeout", "1", "--upload-dir",
                                      str(tmp_path / name / "uploads")])
               for name in ("a", "b")]
    a, b = servers
    with running(a, b):
        with connect(a.publish_url) as pub:  # two events through a's WebSocket ...
            for n in (1, 2):
                pub.send(json.dumps(activity(n) | {"event_id": f"via-a-{n}"}))
                assert json.loads(pub.recv(timeout=10))["type"] == "ack"
        events = [activity(n) | {"event_id": f"via-b-{n}"} for n in (3, 4)]
        events.append({"type": "training_progress", "run_id": "silent", "progress": 5,
                       "stage": "model_training", "event_id": "via-b-5"})
        assert httpx.post(b.http_url + "/api/events", json=events).status_code == 200  # ... 3 via b
        # the run falls silent: both servers' watchdogs raise the stall; one alert is stored,
        # and one run_state "stalled" (both servers derive it from the alert; same event_id)
        _wait(lambda: any(r["type"] == "system_alert" for s in ("a", "b")
                          for r in _hooked(tmp_path / f"{s}.jsonl")), "the stall alert")
        for server in servers:
            _wait(lambda s=server: httpx.get(s.http_url + "/healthz").json()["seq"] == 8,
                  "both servers delivered all 8 events")
    hooked = {name: _hooked(tmp_path / f"{name}.jsonl") for name in ("a", "b")}
    accepted = {name: [r["event_id"] for r in rows if r["event_id"].startswith("via-")]
                for name, rows in hooked.items()}
    assert accepted == {"a": ["via-a-1", "via-a-2"], "b": ["via-b-3", "via-b-4", "via-b-5"]}
    stalls = [r["type"] for rows in hooked.values() for r in rows
              if not r["event_id"].startswith("via-")]
    assert sorted(stalls) == ["activity_update", "run_state", "system_alert"]  # once each
    every = [r["seq"] for rows in hooked.values() for r in rows]
    assert sorted(every) == list(range(1, 9))  # each of the 8 events hooked exactly once
