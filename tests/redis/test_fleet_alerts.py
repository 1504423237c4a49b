"""A fleet sharing Redis: both servers evaluate the rules, the alert is stored and notified once."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.alerts.receiver import Receiver
from tests.live_server import LiveServer
from tests.redis.fleet import healthz, running, wait_until
from tests.redis_server import RedisServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def _metric(server: LiveServer, prefix: str) -> float:
    text = httpx.get(server.http_url + "/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(prefix))


def test_a_fleet_stores_and_notifies_each_alert_once(tmp_path: Path,
                                                     redis_server: RedisServer) -> None:
    with Receiver() as receiver:
        args = ["--backend", redis_server.url, "--metrics-interval", "0", "--stall-timeout", "0",
                "--webhook", receiver.url()]
        with running(LiveServer(tmp_path / "a", extra_args=args),
                     LiveServer(tmp_path / "b", extra_args=args)) as (a, b):
            response = httpx.post(a.http_url + "/api/events", timeout=10, json=[
                {"type": "training_progress", "run_id": "r-f", "stage": "model_training",
                 "current_step": 1, "current_loss": 0.5},
                {"type": "training_failed", "run_id": "r-f", "error": "boom",
                 "error_code": "RUNTIME_ERROR"}])
            assert response.status_code == 200, response.text
            [body] = receiver.wait_for("/hook", 1)
            # both servers raised it; the second store was recognised as a duplicate
            wait_until(lambda: sum(_metric(s, "mlops_hooks_duplicates_total")
                                   for s in (a, b)) >= 1, 20, "the second server's duplicate")
            # progress, failure, the run_state both servers derive (stored once), the alert
            wait_until(lambda: healthz(a)["seq"] == healthz(b)["seq"] == 4, 20, "seq 4")
            for server in (a, b):
                alerts = httpx.get(server.http_url + "/api/monitoring/system",
                                   timeout=10).json()["alerts"]
                assert [x["alert_type"] for x in alerts] == ["run_failed"]
            delivered = sum(_metric(s, 'mlops_hooks_notifications{notifier="webhook-1",'
                                       'outcome="delivered"}') for s in (a, b))
    assert body["rule"] == "failed" and body["run"]["run_id"] == "r-f"
    assert len(receiver.on("/hook")) == 1 and delivered == 1


def test_a_fleet_notifies_a_watchdog_stall_once_and_clears_it_once(
        tmp_path: Path, redis_server: RedisServer) -> None:
    with Receiver() as receiver:
        args = ["--backend", redis_server.url, "--metrics-interval", "0", "--stall-timeout", "1",
                "--stall-floor", "600", "--webhook", receiver.url()]
        with running(LiveServer(tmp_path / "a", extra_args=args),
                     LiveServer(tmp_path / "b", extra_args=args)) as (a, b):
            def step(n: int) -> None:
                response = httpx.post(a.http_url + "/api/events", timeout=10, json={
                    "type": "training_progress", "run_id": "r-s", "stage": "model_training",
                    "current_step": n})
                assert response.status_code == 200, response.text

            step(1)
            step(2)
            # both watchdogs raise the same alert (one stored); both adopt it, one notifies
            [body] = receiver.wait_for("/hook", 1)
            step(3)  # steps resume: both servers clear it with the same event (one stored)

            def alert_types(server: LiveServer) -> list[str]:
                alerts = httpx.get(server.http_url + "/api/monitoring/system",
                                   timeout=10).json()["alerts"]
                return [x["alert_type"] for x in alerts]

            wait_until(lambda: all(alert_types(s) == ["alert_cleared"] for s in (a, b)), 20,
                       "the stall cleared on both servers")
            wait_until(lambda: healthz(a)["seq"] == healthz(b)["seq"], 20, "the same stream")
            seq = healthz(a)["seq"]
            delivered = sum(_metric(s, 'mlops_hooks_notifications{notifier="webhook-1",'
                                       'outcome="delivered"}') for s in (a, b))
    # progress x2, the watchdog's alert and its activity, stalled, progress, running, clear
    assert seq == 8
    assert body["rule"] == "stall" and body["alert"]["source"] == "stall_watchdog"
    assert len(receiver.on("/hook")) == 1 and delivered == 1
