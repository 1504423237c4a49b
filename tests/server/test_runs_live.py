"""Run history against a real server process: kept across ``kill -9``, read with a real client."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.live_server import LiveServer
from tests.server.live import publish, publisher

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]
QUIET = ["--metrics-interval", "0", "--stall-timeout", "0"]
PARAMS = {"type": "run_params", "run_id": "live-1", "model_name": "MLP", "group": "sweep",
          "params": {"lr": 0.01, "batch_size": 32, "optimizer": "sgd", "nesterov": True,
                     "scheduler": None},
          "metadata": {"host": "box", "pid": 7, "python": "3.11.7", "frameworks": {},
                       "command": "python train.py", "git": None},
          "timestamp": "2025-12-06T10:00:00Z"}


def _step(n: int) -> dict:
    return {"type": "training_progress", "run_id": "live-1", "stage": "model_training",
            "progress": min(100, n / 30), "current_step": n, "current_loss": round(1 / (n + 1), 6),
            "metrics": {"val_acc": round(n / 3000, 6)}, "timestamp": "2025-12-06T10:01:00Z"}


def _reads(server: LiveServer, **kwargs) -> tuple[dict, dict, dict]:
    with httpx.Client(base_url=server.http_url, timeout=20, **kwargs) as http:
        return (http.get("/api/runs").json(), http.get("/api/runs/live-1").json(),
                http.get("/api/runs/live-1/metrics").json())


def test_params_and_series_survive_kill_9(tmp_path):
    server = LiveServer(tmp_path, extra_args=QUIET)
    with server:
        async def send() -> None:
            async with publisher(server.publish_url) as pub:
                assert (await publish(pub, PARAMS))["type"] == "ack"
                for n in range(2600):  # past the bound: the series is compacted on the way
                    assert (await publish(pub, _step(n)))["type"] == "ack"
        asyncio.run(send())
        before = _reads(server)
        server.kill()  # SIGKILL: only what was acknowledged is promised
        server.start()
        after = _reads(server)
    runs, detail, metrics = after
    assert (runs, detail, metrics) == before
    assert [r["run_id"] for r in runs["runs"]] == ["live-1"]
    run = detail["run"]
    assert run["params"] == PARAMS["params"] and run["metadata"] == PARAMS["metadata"]
    assert run["group"] == "sweep" and run["started_at"] == "2025-12-06T10:00:00.000Z"
    assert run["series_keys"] == ["loss", "val_acc"]
    assert run["last_step"] == 2599  # the highest step of any series
    assert run["last_metrics"] == {"loss": round(1 / 2600, 6), "val_acc": round(2599 / 3000, 6)}
    newest = {"loss": [[n, round(1 / (n + 1), 6)] for n in range(1600, 2600)],
              "val_acc": [[n, round(n / 3000, 6)] for n in range(1600, 2600)]}
    for key, series in metrics["series"].items():
        assert len(series) <= 2000 and [s for s, _ in series] == sorted(s for s, _ in series)
        assert series[-1000:] == newest[key]
    assert metrics["series"]["loss"][0] == [0, 1.0]  # the first bucket's highest point


def test_a_live_server_with_a_subscriber_token_refuses_reads_without_it(tmp_path):
    with LiveServer(tmp_path, extra_args=[*QUIET, "--subscriber-token", "s3cret"]) as server:
        response = httpx.post(server.http_url + "/api/events", json=[PARAMS, _step(1)],
                              timeout=20)
        assert response.status_code == 200, response.text
        with httpx.Client(base_url=server.http_url, timeout=20) as http:
            for path in ("/api/runs", "/api/runs/live-1", "/api/runs/live-1/metrics"):
                refused = http.get(path)
                assert refused.status_code == 401
                assert "subscriber token" in refused.json()["error"]
            assert http.get("/api/runs?limit=0&token=s3cret").status_code == 400
            assert http.get("/api/runs/nope", params={"token": "s3cret"}).status_code == 404
        runs, detail, metrics = _reads(server, headers={"Authorization": "Bearer s3cret"})
        assert runs["runs"][0]["params"] == PARAMS["params"]
        assert detail["run"]["metadata"] == PARAMS["metadata"]
        assert metrics == {"run_id": "live-1", "series": {"loss": [[1, 0.5]],
                                                          "val_acc": [[1, 0.000333]]}}
