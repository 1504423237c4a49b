"""End to end: real Lightning runs streaming to a real server process that notifies real
local receivers (the webhook, and Apprise's ``json://`` scheme)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.alerts.receiver import Receiver
from tests.live_server import LiveServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
REPO = Path(__file__).resolve().parents[2]
QUIET = ["--metrics-interval", "0", "--stall-timeout", "0",
         "--alert-set", "throughput.enabled=false",  # step rates of a loaded CI machine vary
         "--alert-set", "notify.backoff_base_s=0.05", "--alert-set", "notify.backoff_cap_s=0.5"]

TRAIN = """
import sys
import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from mlops_hooks.plugins.lightning import MLOpsCallback

run_id, lr, fail = sys.argv[1], float(sys.argv[2]), sys.argv[3] == "fail"
torch.manual_seed(0)
x = torch.randn(256, 8)
y = x @ torch.randn(8, 1)


class Regression(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(8, 1)

    def training_step(self, batch, batch_idx):
        if fail and self.current_epoch == 1 and batch_idx == 2:
            raise RuntimeError("bad batch in epoch 1")
        xb, yb = batch
        return nn.functional.mse_loss(self.lin(xb), yb)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=lr)


trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False,
                     callbacks=[MLOpsCallback("regression", run_id=run_id, throttle=0)])
trainer.fit(Regression(), DataLoader(TensorDataset(x, y), batch_size=32))
"""


def train(server: LiveServer, run_id: str, lr: float, *, fail: bool = False) -> int:
    env = {**os.environ, "MLOPS_HOOKS_URL": server.ws_url, "MLOPS_HOOKS_DISABLE": "console",
           "MLOPS_HOOKS_FLUSH_TIMEOUT": "30", "MLOPS_HOOKS_SYSTEM_INTERVAL": "0",
           "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", TRAIN, run_id, str(lr),
                           "fail" if fail else "ok"], env=env, cwd=str(REPO),
                          capture_output=True, timeout=240)
    return done.returncode


def rule_alerts(server: LiveServer, run_id: str) -> list[dict[str, Any]]:
    """The open alerts the rules raised about ``run_id``, from the REST fallback."""
    alerts = httpx.get(f"{server.http_url}/api/monitoring/system").json()["alerts"]
    return [a for a in alerts if a["source"] == "alert_rules" and run_id in a["message"]
            and a["alert_type"] != "alert_cleared"]


def about(bodies: list[Any], run_id: str) -> list[Any]:
    return [b for b in bodies if run_id in str(b)]


def wait_for_status(server: LiveServer, run_id: str, status: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        response = httpx.get(f"{server.http_url}/api/runs/{run_id}")
        if response.status_code == 200 and response.json()["run"]["status"] == status:
            return
        assert time.monotonic() < deadline, response.text
        time.sleep(0.05)


def test_a_diverging_and_a_failing_lightning_run_each_notify_exactly_once(tmp_path):
    with Receiver() as receiver:
        args = [*QUIET, "--webhook", receiver.url("/webhook"),
                "--notify", receiver.url("/apprise", scheme="json"),
                "--public-url", "https://ml.example.com/"]
        with LiveServer(tmp_path, extra_args=args) as server:
            assert train(server, "diverging", lr=1.2) == 0  # finite, but blowing up
            wait_for_status(server, "diverging", "completed")
            [hook] = about(receiver.wait_for("/webhook", 1), "diverging")
            [apprise] = about(receiver.wait_for("/apprise", 1), "diverging")
            [alert] = rule_alerts(server, "diverging")
            assert alert["alert_type"] == "loss_diverging" and alert["priority"] == "high"

            assert train(server, "failing", lr=0.01, fail=True) != 0
            wait_for_status(server, "failing", "failed")
            [failed_hook] = about(receiver.wait_for("/webhook", 2), "failing")
            [failed_apprise] = about(receiver.wait_for("/apprise", 2), "failing")
            [failed] = rule_alerts(server, "failing")
            assert failed["alert_type"] == "run_failed"
            assert rule_alerts(server, "diverging") == [alert]  # still one, still open
            metrics = httpx.get(f"{server.http_url}/metrics").text
    # exactly once each, on both receivers
    assert len(receiver.on("/webhook")) == 2 and len(receiver.on("/apprise")) == 2
    assert hook["rule"] == "divergence" and hook["alert"] == alert
    assert hook["run"] == {"run_id": "diverging", "model_name": "regression",
                           "url": "https://ml.example.com/runs/diverging"}
    assert hook["link"] == "https://ml.example.com/runs/diverging"
    assert isinstance(hook["value"], float) and hook["value"] > 1
    assert "Rule: divergence" in apprise["message"]
    assert "https://ml.example.com/runs/diverging" in apprise["message"]
    assert failed_hook["rule"] == "failed" and failed_hook["value"] == "TRAINING_ERROR"
    assert "bad batch in epoch 1" in failed_hook["alert"]["message"]
    assert "Rule: failed (value: TRAINING_ERROR)" in failed_apprise["message"]
    assert 'mlops_hooks_notifications{notifier="webhook-1",outcome="delivered"} 2' in metrics


def test_a_receiver_that_is_down_is_retried_and_ingest_completes_without_it(tmp_path):
    receiver = Receiver()  # nothing listens on its port yet
    args = [*QUIET, "--webhook", receiver.url(), "--alert-set", "notify.retries=1000",
            "--stall-floor", "0.5", "--stall-factor", "2"]
    events: list[dict[str, Any]] = []
    for run in range(20):
        run_id = f"run-{run}"
        events += [{"type": "training_progress", "run_id": run_id, "stage": "model_training",
                    "current_step": step, "current_loss": 1.0 / step} for step in range(1, 20)]
        events.append({"type": "training_failed", "run_id": run_id, "error": "boom",
                       "error_code": "RUNTIME_ERROR"})
    with LiveServer(tmp_path, extra_args=args) as server:
        for start in range(0, len(events), 50):  # every event stored: ingest completes
            response = httpx.post(f"{server.http_url}/api/events",
                                  json=events[start:start + 50], timeout=30)
            assert response.status_code == 200, response.text
            assert response.json()["accepted"] == len(events[start:start + 50])
        # a run that stops stepping: the server raises run_state stalled, and its rule fires
        for step in (1, 2, 3):
            response = httpx.post(f"{server.http_url}/api/events", json={
                "type": "training_progress", "run_id": "run-s", "stage": "model_training",
                "current_step": step, "progress": step})
            assert response.status_code == 200, response.text

        def retried() -> float:
            text = httpx.get(f"{server.http_url}/metrics").text
            line = next(x for x in text.splitlines()
                        if x.startswith('mlops_hooks_notifications{notifier="webhook-1",'
                                        'outcome="retried"}'))
            return float(line.rsplit(" ", 1)[1])

        deadline = time.monotonic() + 30
        while retried() < 3:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        with receiver:  # the receiver comes up: everything is delivered, once
            bodies = receiver.wait_for("/hook", 21, timeout=60)
    assert sorted(b["run"]["run_id"] for b in bodies) == sorted(
        [f"run-{i}" for i in range(20)] + ["run-s"])
    assert {b["rule"] for b in bodies} == {"failed", "stall"}


def test_a_bad_notifier_url_stops_the_server_at_start_up(tmp_path):
    for args, message in ((["--notify", "nope://x"], "is not a URL Apprise accepts"),
                          (["--webhook", "localhost:9"], "--webhook needs an http://"),
                          (["--alert-set", "divergence.window=0"],
                           "divergence.window must be an integer >= 1")):
        server = LiveServer(tmp_path, extra_args=args, startup_timeout=20)
        with pytest.raises(RuntimeError, match="server exited with 2") as failed:
            server.start()
        assert message in str(failed.value)
