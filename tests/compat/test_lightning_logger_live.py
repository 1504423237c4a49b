"""End to end: a real Lightning fit with ``MLOpsLogger`` (alone, then beside ``MLOpsCallback``)
streams to a real server subprocess; the history holds one run per fit with its series."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlops_hooks.run.params import GROUP_ENV
from tests.live_server import LiveServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
QUIET = ["--metrics-interval", "0", "--stall-timeout", "0"]
REPO = Path(__file__).resolve().parents[2]

SCRIPT = """
import sys
import warnings

import lightning.pytorch as L

from mlops_hooks.plugins.lightning import MLOpsCallback, MLOpsLogger
from tests.plugins.lightning_models import digits_loaders
from tests.plugins.test_lightning_logger import LoggingMLP

warnings.filterwarnings("ignore")
callbacks = [MLOpsCallback()] if sys.argv[1] == "with-callback" else []
trainer = L.Trainer(max_epochs=2, accelerator="cpu", devices=1, callbacks=callbacks,
                    logger=MLOpsLogger(group=sys.argv[1]), log_every_n_steps=1,
                    enable_checkpointing=False, enable_progress_bar=False,
                    enable_model_summary=False)
train, val = digits_loaders()
trainer.fit(LoggingMLP(lr=0.03), train, val)
"""


def _fit(server: LiveServer, mode: str) -> None:
    env = {**os.environ, "MLOPS_HOOKS_URL": server.ws_url, "MLOPS_HOOKS_DISABLE": "console",
           "MLOPS_HOOKS_FLUSH_TIMEOUT": "30", "PYTHONPATH": str(REPO)}
    env.pop(GROUP_ENV, None)
    env.pop("MLOPS_HOOKS_AUTO", None)
    done = subprocess.run([sys.executable, "-c", SCRIPT, mode], env=env, cwd=str(REPO),
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]


def _completed(server: LiveServer, group: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 30
    while True:
        runs = httpx.get(f"{server.http_url}/api/runs", params={"group": group}).json()["runs"]
        if runs and all(r["status"] == "completed" for r in runs):
            return list(runs)
        assert time.monotonic() < deadline, runs
        time.sleep(0.05)


@pytest.mark.parametrize("mode", ["alone", "with-callback"])
def test_a_fit_with_the_logger_is_one_run_with_series_from_self_log(tmp_path, mode):
    with LiveServer(tmp_path, extra_args=QUIET) as server:
        _fit(server, mode)
        runs = _completed(server, mode)
        assert len(runs) == 1, runs  # one run, with or without the callback
        run = runs[0]
        assert run["model_name"] == "LoggingMLP" and run["params"]["lr"] == 0.03
        series = httpx.get(f"{server.http_url}/api/runs/{run['run_id']}/metrics").json()
        steps = [p[0] for p in series["series"]["train_loss_step"]]
        assert set(range(20)) <= set(steps)  # every optimizer step of 2 epochs x 10 batches
        assert len(series["series"]["train_loss_epoch"]) >= 2
        assert len(series["series"]["val_acc"]) >= 2
