"""A NaN loss in the middle of a run alerts at once: ``training_progress.loss_not_finite``
from a real Lightning run and from a real WebSocket publisher, through a real server, to a
real local receiver."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from tests.alerts.receiver import Receiver
from tests.live_server import LiveServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
REPO = Path(__file__).resolve().parents[2]
QUIET = ["--metrics-interval", "0", "--stall-timeout", "0",
         "--alert-set", "throughput.enabled=false", "--alert-set", "divergence.enabled=false"]
TYPES = "system_alert,training_progress,training_completed,training_failed"

#: From step 10 the loss is NaN (``loss + nan``: the gradients stay finite, training goes on,
#: no ``detect_anomaly``) until the receiver has the notification; then 20 finite batches and
#: the run completes. So the notification arrives while the run still trains, by construction.
TRAIN = """
import json, sys, time, urllib.request
import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset
from mlops_hooks.plugins.lightning import MLOpsCallback

run_id, count_url = sys.argv[1], sys.argv[2]
torch.manual_seed(0)
W = torch.randn(8, 1)
STATE = {"left": None, "nan_steps": 0}


def notified():
    with urllib.request.urlopen(count_url, timeout=5) as reply:
        return json.load(reply)["count"] > 0


class Batches(IterableDataset):
    def __iter__(self):
        g = torch.Generator().manual_seed(0)
        while STATE["left"] is None or STATE["left"] > 0:
            if STATE["left"] is not None:
                STATE["left"] -= 1
            x = torch.randn(32, 8, generator=g)
            yield x, x @ W


class Regression(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(8, 1)
        self.deadline = time.monotonic() + 120

    def training_step(self, batch, batch_idx):
        xb, yb = batch
        loss = nn.functional.mse_loss(self.lin(xb), yb)
        if self.global_step >= 10 and STATE["left"] is None:
            if notified():
                STATE["left"] = 20
            elif time.monotonic() > self.deadline:
                raise RuntimeError("no notification within 120 s of NaN losses")
            else:
                STATE["nan_steps"] += 1
                return loss + torch.tensor(float("nan"))
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False,
                     callbacks=[MLOpsCallback("regression", run_id=run_id)])  # throttled
trainer.fit(Regression(), DataLoader(Batches(), batch_size=None))
print(json.dumps({"nan_steps": STATE["nan_steps"], "steps": trainer.global_step}))
"""


def test_a_nan_loss_mid_run_notifies_once_before_the_lightning_run_ends(tmp_path):
    with Receiver() as receiver:
        args = [*QUIET, "--webhook", receiver.url("/webhook")]
        with LiveServer(tmp_path, extra_args=args) as server:
            env = {**os.environ, "MLOPS_HOOKS_URL": server.ws_url,
                   "MLOPS_HOOKS_DISABLE": "console", "MLOPS_HOOKS_FLUSH_TIMEOUT": "30",
                   "MLOPS_HOOKS_SYSTEM_INTERVAL": "0", "PYTHONPATH": str(REPO)}
            with connect(f"{server.ws_url}?types={TYPES}", compression=None,
                         max_queue=None) as ws:  # read while the run trains
                assert json.loads(ws.recv(timeout=10))["type"] == "snapshot"
                proc = subprocess.Popen(
                    [sys.executable, "-c", TRAIN, "nan-run",
                     receiver.url("/count?path=/webhook")],
                    env=env, cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                try:
                    out, err = proc.communicate(timeout=240)
                finally:
                    proc.kill()
                assert proc.returncode == 0, err.decode()[-3000:]
                events: list[dict[str, Any]] = []
                while not events or events[-1]["type"] != "training_completed":
                    message = json.loads(ws.recv(timeout=30))
                    if message.get("run_id") == "nan-run":
                        events.append(message)
            [hook] = receiver.wait_for("/webhook", 1)
    counts = json.loads(out.decode().strip().splitlines()[-1])
    assert counts["nan_steps"] >= 1 and counts["steps"] >= 10 + counts["nan_steps"] + 20
    # in the server's order: the first NaN progress, its alert, then the run's end
    kinds = [(e["type"], e.get("loss_not_finite"),
              (e.get("alert") or {}).get("alert_type")) for e in events]
    first_nan = kinds.index(("training_progress", "nan", None))
    [alert_at] = [i for i, k in enumerate(kinds) if k[2] == "loss_not_finite"]
    assert first_nan < alert_at < len(kinds) - 1 and kinds[-1][0] == "training_completed"
    assert events[first_nan]["seq"] < events[alert_at]["seq"] < events[-1]["seq"]
    assert "current_loss" not in events[first_nan]
    assert all(k[0] != "training_failed" for k in kinds)  # the run recovered and completed
    # one notification, naming the run, the rule and the value
    assert len(receiver.on("/webhook")) == 1
    assert hook["rule"] == "loss_nan" and hook["value"] == "nan"
    assert hook["run"]["run_id"] == "nan-run" and hook["alert"] == events[alert_at]["alert"]


def test_loss_not_finite_through_the_server_to_a_subscriber_and_bad_values_refused(tmp_path):
    progress = {"type": "training_progress", "run_id": "ws-run", "stage": "model_training",
                "model_name": "net"}
    with Receiver() as receiver:
        args = [*QUIET, "--webhook", receiver.url("/webhook")]
        with LiveServer(tmp_path, extra_args=args) as server, \
                connect(f"{server.ws_url}?types={TYPES}", compression=None) as sub, \
                connect(server.publish_url, compression=None) as pub:
            assert json.loads(sub.recv(timeout=10))["type"] == "snapshot"
            for value in ("NaN", "nan ", 1.5, True):
                pub.send(json.dumps({**progress, "current_step": 1, "loss_not_finite": value}))
                reply = json.loads(pub.recv(timeout=10))
                assert reply["type"] == "error" and reply["field"] == "loss_not_finite", reply
                assert ("one of '-inf', 'inf', 'nan'" in reply["error"] if isinstance(value, str)
                        else "expected a string" in reply["error"]), reply
            sent = [{**progress, "current_step": 1, "current_loss": 0.5},
                    {**progress, "current_step": 2, "loss_not_finite": "-inf"},
                    {**progress, "current_step": 3, "loss_not_finite": "inf"}]
            for event in sent:
                pub.send(json.dumps(event))
                assert json.loads(pub.recv(timeout=10))["type"] == "ack"
            got: list[dict[str, Any]] = []
            while len([g for g in got if g["type"] == "system_alert"]) < 1 or len(got) < 4:
                got.append(json.loads(sub.recv(timeout=30)))
            [hook] = receiver.wait_for("/webhook", 1)
    progress_seen = [g for g in got if g["type"] == "training_progress"]
    assert [g.get("loss_not_finite") for g in progress_seen] == [None, "-inf", "inf"]
    assert all("current_loss" not in g for g in progress_seen[1:])
    [alert] = [g for g in got if g["type"] == "system_alert"]
    assert alert["run_id"] == "ws-run" and alert["alert"]["alert_type"] == "loss_not_finite"
    assert alert["alert"]["message"] == "The loss of run net (ws-run) is -inf at step 2"
    assert hook["value"] == "-inf" and len(receiver.on("/webhook")) == 1
