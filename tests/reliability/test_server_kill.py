"""kill -9 the server in the middle of a real Lightning run, restart it: nothing lost, none twice.

The training is a real subprocess (``lightning_run.py``: ``Trainer.fit`` with ``MLOpsCallback``
and the built-in publisher, configured by ``MLOPS_HOOKS_URL``). A ledger plugin in it names
every emitted event (``event_id``); the server records every event it delivers (its built-in
JSONL plugin, unbuffered) and keeps its history in SQLite. After the crash and restart:

* the training exits 0 having run every epoch, its publisher dropped and refused nothing;
* every emitted event was stored exactly once, including those emitted while the server was
  down (the publisher buffered and re-sent them), and ``seq`` never went backwards;
* the server's plugins saw every event once, except an event in flight at the kill: delivered
  (to plugins and subscribers) but not yet in SQLite, so not acknowledged; the publisher sends it
  again (or, on Redis, the restarted server reads it again from the stream) and it is delivered
  once more after the restart. Nothing acknowledged is ever delivered twice;
* the SQLite history has the completed run and every event's idempotency key.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.live_server import LiveServer
from tests.redis.fleet import wait_until
from tests.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("lightning_run.py")
RUN_ID = "kill9-run"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    lines = path.read_bytes().split(b"\n")
    return [json.loads(line) for line in lines if line.strip()]


def start_training(tmp_path: Path, url: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MLOPS_HOOKS_URL": url,
           "MLOPS_HOOKS_DISABLE": "console", "RUN_ID": RUN_ID, "EPOCHS": "8",
           "STEP_SLEEP": "0.04", "MLOPS_HOOKS_FLUSH_TIMEOUT": "30"}
    env.pop("MLOPS_HOOKS_JSONL", None)
    log = open(tmp_path / "training.log", "wb")  # noqa: SIM115 - owned by the process
    proc = subprocess.Popen([sys.executable, str(SCRIPT), str(tmp_path / "ledger.jsonl"),
                             str(tmp_path / "result.json")], env=env, stdout=log,
                            stderr=subprocess.STDOUT, cwd=tmp_path)
    log.close()
    return proc


def progress_seen(ledger: list[dict[str, Any]]) -> float:
    return max((e.get("progress") or 0.0 for e in ledger), default=0.0)


@pytest.mark.timeout(150)
@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_kill9_mid_training_loses_nothing_and_duplicates_nothing(
        tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> None:
    extra = ["--metrics-interval", "0", "--stall-timeout", "0"]
    if backend == "redis":
        redis: RedisServer = request.getfixturevalue("redis_aof")
        extra += ["--backend", redis.url]
    received = tmp_path / "server-events.jsonl"
    server = LiveServer(tmp_path / "server", env={"MLOPS_HOOKS_JSONL": str(received)},
                        extra_args=extra)
    server.start()
    ledger_path = tmp_path / "ledger.jsonl"
    training = start_training(tmp_path, server.ws_url)
    try:
        # 1. the run is well under way and the server has its events
        wait_until(lambda: progress_seen(read_jsonl(ledger_path)) >= 20, 90, "progress 20%")
        wait_until(lambda: len(read_jsonl(received)) >= 10, 30, "events at the server")
        server.kill()  # SIGKILL: no shutdown, no flush, no close frames
        killed_at = time.time()
        delivered_before_kill = len(read_jsonl(received))
        emitted_before_kill = len(read_jsonl(ledger_path))
        # 2. the training goes on while the server is gone; the publisher buffers
        wait_until(lambda: len(read_jsonl(ledger_path)) >= emitted_before_kill + 8, 60,
                   "events emitted during the outage")
        restarted_at = time.time()
        server.start()  # same port, same database
        running_at_restart = training.poll() is None
        assert training.wait(120) == 0, (tmp_path / "training.log").read_text()[-3000:]
    finally:
        if training.poll() is None:
            training.kill()
            training.wait()

    # the training finished unaffected: every epoch, every event accepted, nothing dropped
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["epochs"] == 8 and result["global_step"] == 80
    assert result["flushed"] is True
    publisher = result["publisher"]
    assert publisher["dropped"] == publisher["invalid"] == publisher["rejected"] == 0
    assert publisher["buffered"] == 0 and publisher["reconnects"] >= 1

    ledger = read_jsonl(ledger_path)
    emitted = [e["event_id"] for e in ledger]
    during_outage = [e["event_id"] for e in ledger if killed_at <= e["t"] <= restarted_at]
    assert len(during_outage) >= 8
    assert running_at_restart, "the run ended before the server was back: make it longer"
    assert ledger[-1]["type"] == "activity_update" and "training_completed" in \
        [e["type"] for e in ledger[-3:]]

    # every emitted event reached the server exactly once, in emission order, seq increasing
    # (the publisher's own samples of the machine, host_metrics, and what the server raises
    # itself, run_state and the alert rules' system_alert, are not in the training's ledger)
    rows = [r for r in read_jsonl(received)
            if r.get("run_id") == RUN_ID and r.get("type") not in ("host_metrics", "run_state")
            and r.get("alert", {}).get("source") != "alert_rules"]
    ids = [r["event_id"] for r in rows]
    before_kill = {r["event_id"] for r in read_jsonl(received)[:delivered_before_kill]}
    repeated = {k: n for k, n in Counter(ids).items() if n > 1}
    # again only what was in flight at the kill: delivered once before it and once after
    assert set(repeated.values()) <= {2} and set(repeated) <= before_kill, repeated
    assert len(repeated) <= 16, f"more in flight than a commit batch: {repeated}"
    last = {r["event_id"]: i for i, r in enumerate(rows)}  # the delivery the history kept
    rows = [r for i, r in enumerate(rows) if last[r["event_id"]] == i]
    ids = [r["event_id"] for r in rows]
    assert ids == emitted, f"missing: {sorted(set(emitted) - set(ids))[:10]}"
    seqs = [r["seq"] for r in read_jsonl(received)]
    assert seqs == sorted(seqs), "seq went backwards"
    by_seq: dict[int, set[str]] = {}
    for r in read_jsonl(received):
        by_seq.setdefault(r["seq"], set()).add(r.get("event_id") or "")
    assert all(len(v) == 1 for v in by_seq.values()), "one seq for two events"

    # the restarted server's state and SQLite history have the whole run
    models = httpx.get(server.http_url + "/api/models", timeout=10).json()
    run = next(r for r in models["runs"] if r["run_id"] == RUN_ID)
    assert run["status"] == "completed" and run["completed"]["event_id"] == \
        next(e["event_id"] for e in ledger if e["type"] == "training_completed")
    server.stop()  # graceful: history written
    with sqlite3.connect(server.db) as db:
        status, data = db.execute("SELECT status, data FROM runs WHERE run_id = ?",
                                  (RUN_ID,)).fetchone()
        assert status == "completed" and json.loads(data)["progress"]["progress"] == 100
        stored = dict(db.execute("SELECT event_id, seq FROM event_ids WHERE event_id LIKE ?",
                                 (RUN_ID + ":%",)).fetchall())
        assert stored == {r["event_id"]: r["seq"] for r in rows}
        activity_ids = [json.loads(d)["id"] for (d,) in db.execute(
            "SELECT data FROM activity ORDER BY seq").fetchall()]
        assert len(activity_ids) == len(set(activity_ids)), "an activity stored twice"
        run_activities = [r["activity"]["id"] for r in rows if r["type"] == "activity_update"]
        assert set(run_activities) <= set(activity_ids)
