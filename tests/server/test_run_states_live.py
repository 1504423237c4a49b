"""End to end: run states (issue 17) from real training processes to a real server.

Each test starts ``track()`` (or a Lightning ``Trainer``) in a subprocess publishing to a real
``mlops-hooks serve`` process, ends it the way a user or a scheduler would (SIGKILL, SIGTERM,
Ctrl-C, a loop that sleeps), and reads the ``run_state`` events with a real WebSocket client,
then the run's ``status`` from ``/api/runs``. Small server settings (grace 1 s, stall floor
1 s) keep the waits short; every wait is on a condition with a deadline.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.live_server import LiveServer
from tests.server.live import recv_json, server_metric, subscriber

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]
REPO = Path(__file__).resolve().parents[2]
FLAGS = ["--metrics-interval", "0", "--stall-timeout", "0", "--crash-grace", "1",
         "--stall-factor", "3", "--stall-floor", "1"]
DEADLINE = 90.0
#: A run's state before it ended: on a loaded machine a 1 s stall floor is sometimes crossed
#: between two steps, so a run may be stalled for a moment anywhere in its life.
LIVE = ("running", "stalled")

#: A hand-written loop: steps until killed; in "stall" mode it sleeps after 40 steps until
#: the file argv[2] exists, then steps 40 more and completes.
LOOP = """
import pathlib, sys, time
import mlops_hooks
mode, flag = sys.argv[1], pathlib.Path(sys.argv[2])
with mlops_hooks.track("states", run_id=sys.argv[3], total_steps=1_000_000) as run:
    run.stage("model_training")
    step = 0
    while mode != "stall" or step < 80:
        run.step(loss=1.0 / (step + 1))
        step += 1
        time.sleep(0.02)
        if step == 40:
            (flag.parent / "stepping").touch()
            if mode == "stall":
                (flag.parent / "sleeping").touch()
                while not flag.exists():
                    time.sleep(0.05)
"""

LIGHTNING = """
import sys, pathlib, torch, lightning as L
from torch.utils.data import DataLoader, TensorDataset
from mlops_hooks.plugins.lightning import MLOpsCallback

class Net(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 2)
    def training_step(self, batch, _):
        x, y = batch
        if sys.argv[1] == "term" and self.global_step == 20:
            (pathlib.Path(sys.argv[2]).parent / "stepping").touch()
        if sys.argv[1] == "term" and self.global_step >= 20:
            import time; time.sleep(0.05)
        return torch.nn.functional.cross_entropy(self.layer(x), y)
    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

torch.manual_seed(0)
data = TensorDataset(torch.randn(64, 4), torch.randint(0, 2, (64,)))
epochs = 1000 if sys.argv[1] == "term" else 2
trainer = L.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False,
                    callbacks=[MLOpsCallback(name="lit-states", run_id=sys.argv[3])])
trainer.fit(Net(), DataLoader(data, batch_size=8))
"""

KERAS = """
import os, pathlib, sys, time
os.environ["KERAS_BACKEND"] = "torch"
import keras, numpy as np
from mlops_hooks.plugins.keras import MLOpsCallback

class Slow(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        if batch == 20:
            (pathlib.Path(sys.argv[2]).parent / "stepping").touch()
        time.sleep(0.02)

x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
y = (x[:, 0] > 0).astype("int32")
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
model.fit(x, y, batch_size=2, epochs=1000, verbose=0,
          callbacks=[Slow(), MLOpsCallback(name="keras-states", run_id=sys.argv[3])])
"""


def _env(server: LiveServer) -> dict[str, str]:
    return {**os.environ, "MLOPS_HOOKS_URL": server.publish_url, "MLOPS_HOOKS_DISABLE": "console",
            "MLOPS_HOOKS_FLUSH_TIMEOUT": "30", "MLOPS_HOOKS_SYSTEM_INTERVAL": "0",
            "PYTHONPATH": str(REPO)}


@asynccontextmanager
async def _process(server: LiveServer, script: str, mode: str, tmp: Path,
                   run_id: str) -> AsyncIterator[asyncio.subprocess.Process]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, mode, str(tmp / "resume"), run_id, env=_env(server),
        cwd=str(tmp), stderr=asyncio.subprocess.PIPE)
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def _until(check: Any, what: str, deadline: float = DEADLINE) -> None:
    """Poll ``check()`` (a condition, not a timer) until true; fail after the deadline."""
    async with asyncio.timeout(deadline):
        while not check():
            await asyncio.sleep(0.05)
    assert check(), what


async def _state(sub: Any, run_id: str, want: str) -> dict[str, Any]:
    """The next ``run_state`` of ``run_id`` with state ``want`` (earlier ones are skipped)."""
    async with asyncio.timeout(DEADLINE):
        while True:
            message = await recv_json(sub, DEADLINE)
            if message.get("type") == "run_state" and message["run_id"] == run_id \
                    and message["state"] == want:
                return message


def _run(server: LiveServer, run_id: str) -> dict[str, Any]:
    response = httpx.get(f"{server.http_url}/api/runs/{run_id}", timeout=10)
    assert response.status_code == 200, response.text
    run: dict[str, Any] = response.json()["run"]
    return run


def _listed(server: LiveServer, status: str) -> list[str]:
    response = httpx.get(f"{server.http_url}/api/runs", params={"status": status}, timeout=10)
    assert response.status_code == 200, response.text
    return [r["run_id"] for r in response.json()["runs"]]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with LiveServer(tmp_path_factory.mktemp("states"), extra_args=FLAGS,
                    startup_timeout=60) as live:
        yield live


def _carried(server: LiveServer) -> float:
    return server_metric(server, "mlops_hooks_runs_carried")


def test_a_track_script_killed_with_sigkill_is_crashed_within_the_grace(server, tmp_path):
    async def scenario() -> dict[str, Any]:
        async with subscriber(f"{server.ws_url}?types=run_state") as sub:
            assert (await recv_json(sub))["type"] == "snapshot"
            async with _process(server, LOOP, "loop", tmp_path, "kill-9") as proc:
                await _until(lambda: (tmp_path / "stepping").exists() and _carried(server) >= 1,
                             "the run stepped and its publisher's heartbeat listed it")
                proc.send_signal(signal.SIGKILL)
                assert await proc.wait() == -signal.SIGKILL
            return await _state(sub, "kill-9", "crashed")

    crashed = asyncio.run(scenario())
    assert crashed["previous"] in LIVE and crashed["model_name"] == "states"
    assert "connection closed" in crashed["reason"]
    run = _run(server, "kill-9")
    assert run["status"] == "crashed" and run["ended_at"] is not None
    assert "kill-9" in _listed(server, "crashed")
    assert "kill-9" not in _listed(server, "running,stalled")


def test_sigterm_reports_killed_then_the_process_dies_of_sigterm(server, tmp_path):
    async def scenario() -> tuple[dict[str, Any], int]:
        async with subscriber(f"{server.ws_url}?types=run_state") as sub:
            assert (await recv_json(sub))["type"] == "snapshot"
            async with _process(server, LOOP, "loop", tmp_path, "term-1") as proc:
                await _until(lambda: (tmp_path / "stepping").exists(), "the run stepped")
                proc.send_signal(signal.SIGTERM)
                code = await proc.wait()
            return await _state(sub, "term-1", "killed"), code

    killed, code = asyncio.run(scenario())
    assert code == -signal.SIGTERM  # the default action still happened
    assert killed["previous"] in LIVE and killed["reason"].startswith("TERMINATED")
    assert _run(server, "term-1")["status"] == "killed"
    assert "term-1" in _listed(server, "killed")


def test_ctrl_c_reports_interrupted(server, tmp_path):
    async def scenario() -> dict[str, Any]:
        async with subscriber(f"{server.ws_url}?types=run_state") as sub:
            assert (await recv_json(sub))["type"] == "snapshot"
            async with _process(server, LOOP, "loop", tmp_path, "ctrl-c") as proc:
                await _until(lambda: (tmp_path / "stepping").exists(), "the run stepped")
                proc.send_signal(signal.SIGINT)
                assert await proc.wait() != 0
            return await _state(sub, "ctrl-c", "interrupted")

    interrupted = asyncio.run(scenario())
    assert interrupted["reason"].startswith("INTERRUPTED")
    assert _run(server, "ctrl-c")["status"] == "interrupted"
    assert "ctrl-c" in _listed(server, "interrupted")


def test_a_loop_that_sleeps_past_the_threshold_is_stalled_then_running_again(server, tmp_path):
    async def scenario() -> list[dict[str, Any]]:
        seen: list[dict[str, Any]] = []
        async with subscriber(f"{server.ws_url}?types=run_state") as sub:
            assert (await recv_json(sub))["type"] == "snapshot"
            async with _process(server, LOOP, "stall", tmp_path, "sleepy") as proc:
                await _until(lambda: (tmp_path / "sleeping").exists(), "the loop went to sleep")
                # asleep: no more steps come, so the run ends up stalled and stays so
                while _run(server, "sleepy")["status"] != "stalled":
                    seen.append(await _state(sub, "sleepy", "stalled"))
                (tmp_path / "resume").touch()
                seen.append(await _state(sub, "sleepy", "running"))
                seen.append(await _state(sub, "sleepy", "finished"))
                assert await proc.wait() == 0
        return seen

    seen = asyncio.run(scenario())
    stalled, running, finished = seen[-3:]
    assert stalled["previous"] == "running" and stalled["reason"].startswith("no step for")
    assert "median step time" in stalled["reason"]
    assert running["previous"] == "stalled" and running["reason"] == "steps resumed"
    assert finished["previous"] in LIVE
    assert _run(server, "sleepy")["status"] == "completed"


def test_a_lightning_run_finishes_and_a_sigterm_one_is_killed(server, tmp_path):
    async def scenario() -> tuple[dict[str, Any], dict[str, Any], int]:
        async with subscriber(f"{server.ws_url}?types=run_state") as sub:
            assert (await recv_json(sub))["type"] == "snapshot"
            async with _process(server, LIGHTNING, "fit", tmp_path, "lit-done") as proc:
                assert await proc.wait() == 0, (await proc.stderr.read()).decode()[-2000:]
            finished = await _state(sub, "lit-done", "finished")
            async with _process(server, LIGHTNING, "term", tmp_path, "lit-term") as proc:
                await _until(lambda: (tmp_path / "stepping").exists(), "the fit stepped")
                proc.send_signal(signal.SIGTERM)
                code = await proc.wait()
            return finished, await _state(sub, "lit-term", "killed"), code

    finished, killed, code = asyncio.run(scenario())
    assert finished["previous"] in LIVE and finished["model_name"] == "lit-states"
    assert killed["reason"].startswith("TERMINATED")
    assert code is not None  # Lightning ends the fit itself (SIGTERMException)
    assert _run(server, "lit-done")["status"] == "completed"
    assert _run(server, "lit-term")["status"] == "killed"


@pytest.mark.timeout(400)
def test_a_keras_fit_ended_by_sigterm_is_killed_then_dies_of_it(server, tmp_path):
    async def scenario() -> tuple[dict[str, Any], int]:
        async with subscriber(f"{server.ws_url}?types=run_state") as sub:
            assert (await recv_json(sub))["type"] == "snapshot"
            async with _process(server, KERAS, "fit", tmp_path, "keras-term") as proc:
                # importing Keras and torch on a loaded machine takes a while
                await _until(lambda: (tmp_path / "stepping").exists(), "the fit stepped", 200)
                proc.send_signal(signal.SIGTERM)
                code = await proc.wait()
            return await _state(sub, "keras-term", "killed"), code

    killed, code = asyncio.run(scenario())
    assert code == -signal.SIGTERM
    assert killed["model_name"] == "keras-states" and killed["reason"].startswith("TERMINATED")
    assert _run(server, "keras-term")["status"] == "killed"


def test_a_publisher_cannot_send_run_state(server):
    event = {"type": "run_state", "run_id": "kill-9", "state": "finished"}
    response = httpx.post(f"{server.http_url}/api/events", content=json.dumps(event),
                          headers={"Content-Type": "application/json"}, timeout=10)
    assert response.status_code == 400
    assert response.json()["field"] == "type"
    assert "raised by the server" in response.json()["error"]
