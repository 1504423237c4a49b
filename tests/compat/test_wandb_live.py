"""End to end: scripts written for W&B's documented API, with only the import changed, stream
to a real server subprocess; a real WebSocket subscriber sees their alerts."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlops_hooks.run.params import GROUP_ENV
from tests.live_server import LiveServer, free_port
from tests.server.live import next_of, recv_json, subscriber

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]
QUIET = ["--metrics-interval", "0", "--stall-timeout", "0"]
REPO = Path(__file__).resolve().parents[2]
DEADLINE = 30.0

# W&B's quickstart (docs.wandb.ai/quickstart), unchanged apart from the import line.
QUICKSTART = """
import random

import mlops_hooks.wandb as wandb

run = wandb.init(
    project="my-awesome-project",
    name="quickstart-run",
    config={
        "learning_rate": 0.02,
        "architecture": "CNN",
        "dataset": "CIFAR-100",
        "epochs": 10,
        "optimizer": {"name": "adam", "betas": [0.9, 0.999]},
    },
    tags=["baseline", "cnn"],
    notes="first try",
)
wandb.define_metric("acc", summary="max")

epochs = wandb.config.epochs
offset = random.random() / 5
for epoch in range(2, epochs):
    acc = 1 - 2 ** -epoch - random.random() / epoch - offset
    loss = 2 ** -epoch + random.random() / epoch + offset
    wandb.log({"acc": acc, "loss": loss})
    wandb.log({"lr": wandb.config["learning_rate"] / epoch}, commit=False)

wandb.log({"val": {"loss": 0.5, "acc": 0.75}}, step=20)
wandb.log({"examples": wandb.Image([[0, 1], [1, 0]], caption="digits")})
wandb.log({"table": wandb.Table(columns=["a"], data=[[1]])})
wandb.watch(object())
wandb.save("model.h5")
artifact = wandb.Artifact("model", type="model")
artifact.add_file("model.h5")
run.log_artifact(artifact)
wandb.config.update({"batch_size": 64})
wandb.summary["best_acc"] = 0.97
print("RUN", run.id, run.name, run.project)
wandb.finish()
"""

WITH_BLOCK = """
import mlops_hooks.wandb as wandb

with wandb.init(project="ctx-project", group="ctx-group", config={"lr": 0.1}) as run:
    for step in range(3):
        run.log({"loss": 1.0 / (step + 1)}, step=step)
    run.config.setdefaults({"lr": 5.0, "momentum": 0.9})
    wandb.alert(title="Low accuracy", text="accuracy 0.1 is below 0.5",
                level=wandb.AlertLevel.WARN)
    print("RUN", run.id)
"""

RAISES = """
import mlops_hooks.wandb as wandb

run = wandb.init(project="crash", config={"lr": 1.0})
print("RUN", run.id, flush=True)
for step in range(3):
    wandb.log({"loss": float(step)})
raise RuntimeError("loss exploded")
"""

NO_FINISH = """
import mlops_hooks.wandb as wandb

run = wandb.init(project="no-finish")
print("RUN", run.id, flush=True)
wandb.log({"loss": 0.5})
"""


def _env(server: LiveServer) -> dict[str, str]:
    env = {**os.environ, "MLOPS_HOOKS_URL": server.ws_url, "MLOPS_HOOKS_DISABLE": "console",
           "MLOPS_HOOKS_FLUSH_TIMEOUT": "30", "PYTHONPATH": str(REPO),
           "PYTHONWARNINGS": "default"}
    for name in (GROUP_ENV, "WANDB_MODE", "WANDB_PROJECT", "WANDB_RUN_GROUP", "MLOPS_HOOKS_MODE"):
        env.pop(name, None)
    return env


def _script(server: LiveServer, source: str) -> tuple[int, str, str, str]:
    done = subprocess.run([sys.executable, "-c", source], env=_env(server), cwd=str(REPO),
                          capture_output=True, text=True, timeout=90)
    run_id = next(line.split()[1] for line in done.stdout.splitlines()
                  if line.startswith("RUN "))
    return done.returncode, run_id, done.stdout, done.stderr


def _run(server: LiveServer, run_id: str, status: str) -> dict[str, Any]:
    deadline = time.monotonic() + DEADLINE
    while True:
        response = httpx.get(f"{server.http_url}/api/runs/{run_id}")
        if response.status_code == 200 and response.json()["run"]["status"] == status:
            return dict(response.json()["run"])
        assert time.monotonic() < deadline, (response.status_code, response.text)
        time.sleep(0.05)


def _series(server: LiveServer, run_id: str) -> dict[str, list[list[float]]]:
    response = httpx.get(f"{server.http_url}/api/runs/{run_id}/metrics")
    assert response.status_code == 200, response.text
    return dict(response.json()["series"])


def test_the_quickstart_streams_with_only_the_import_changed(tmp_path: Path) -> None:
    with LiveServer(tmp_path, extra_args=QUIET) as server:
        code, run_id, out, err = _script(server, QUICKSTART)
        assert code == 0, err
        assert f"RUN {run_id} quickstart-run my-awesome-project" in out
        run = _run(server, run_id, "completed")
        assert run["group"] == "my-awesome-project"
        assert run["model_name"] == "quickstart-run"
        params = run["params"]
        assert params["learning_rate"] == 0.02 and params["architecture"] == "CNN"
        assert params["optimizer.name"] == "adam" and params["batch_size"] == 64
        assert params["wandb.tags"] == "baseline,cnn" and params["wandb.notes"] == "first try"
        series = _series(server, run_id)
        # 8 committed logs, steps 0-7; lr (commit=False) lands in the next row, the last one
        # (step 8) committed by the log at step=20 (W&B's rule), which moves to step 20
        assert [p[0] for p in series["acc"]] == list(range(8))
        assert [p[0] for p in series["loss"]] == list(range(8))
        assert [p[0] for p in series["lr"]] == list(range(1, 9))
        assert series["lr"][0][1] == pytest.approx(0.01)
        # step=20 does not commit; the next log (the image) commits step 20, then 21 (table)
        assert series["val.loss"] == [[20, 0.5]] and series["val.acc"] == [[20, 0.75]]
        assert series["best_acc"] == [[22, 0.97]]  # the summary, at the final step
        assert "examples" not in series and "table" not in series
        # each unsupported feature warned once, and nothing raised
        for feature in ("wandb.Image", "wandb.Table", "wandb.watch", "wandb.save",
                        "wandb.Artifact"):
            assert err.count(f"mlops_hooks.wandb: {feature} is not supported") == 1, err
        assert "Traceback" not in err


def test_a_with_block_run_and_its_alert_reach_a_websocket_subscriber(tmp_path: Path) -> None:
    async def scenario(server: LiveServer) -> tuple[dict[str, Any], str]:
        async with subscriber(f"{server.ws_url}?types=system_alert") as sub:
            assert (await recv_json(sub))["type"] == "snapshot"
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-c", WITH_BLOCK, env=_env(server), cwd=str(REPO),
                stdout=asyncio.subprocess.PIPE)
            out, _ = await process.communicate()
            assert process.returncode == 0
            return await next_of(sub, "system_alert"), out.decode().split()[1]

    with LiveServer(tmp_path, extra_args=QUIET) as server:
        alert, run_id = asyncio.run(scenario(server))
        assert alert["run_id"] == run_id
        assert alert["alert"]["title"] == "Low accuracy"
        assert alert["alert"]["message"] == "accuracy 0.1 is below 0.5"
        assert alert["alert"]["priority"] == "medium"
        assert alert["alert"]["source"] == "ctx-project"
        run = _run(server, run_id, "completed")
        assert run["group"] == "ctx-group"  # group wins over project
        assert run["params"]["lr"] == 0.1 and run["params"]["momentum"] == 0.9
        assert run["params"]["wandb.project"] == "ctx-project"
        assert _series(server, run_id)["loss"] == [[0, 1.0], [1, 0.5], [2, 1.0 / 3]]


def test_an_exception_that_ends_the_script_fails_the_run(tmp_path: Path) -> None:
    with LiveServer(tmp_path, extra_args=QUIET) as server:
        code, run_id, _, err = _script(server, RAISES)
        assert code == 1 and "RuntimeError: loss exploded" in err  # the user's traceback
        run = _run(server, run_id, "failed")
        assert run["group"] == "crash"
        assert _series(server, run_id)["loss"] == [[0, 0.0], [1, 1.0], [2, 2.0]]


def test_a_script_that_ends_without_finish_completes_its_run(tmp_path: Path) -> None:
    with LiveServer(tmp_path, extra_args=QUIET) as server:
        code, run_id, _, err = _script(server, NO_FINISH)
        assert code == 0, err
        assert _run(server, run_id, "completed")["group"] == "no-finish"


#: A run logged in two scripts: the second resumes it (``id`` + ``resume``), then logs on.
RESUMED = """
import os
import sys

import mlops_hooks.wandb as wandb

resume = None if sys.argv[1] == "first" else sys.argv[1]
run = wandb.init(project="resume", id=os.environ.get("RUN_ID", "resumed-run"), resume=resume)
print("RUN", run.id, run.step, flush=True)
for i in range(int(sys.argv[2])):
    wandb.log({"loss": 1.0 / (run.step + 1)})
wandb.finish()
"""


def _resumed(server: LiveServer, *argv: str, **env: str) -> tuple[int, str]:
    done = subprocess.run([sys.executable, "-c", RESUMED, *argv], env={**_env(server), **env},
                          cwd=str(REPO), capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr
    first_step = next(int(line.split()[2]) for line in done.stdout.splitlines()
                      if line.startswith("RUN "))
    return first_step, done.stderr


def test_a_resumed_run_continues_after_its_last_step_on_the_server(tmp_path: Path) -> None:
    with LiveServer(tmp_path, extra_args=QUIET) as server:
        assert _resumed(server, "first", "5")[0] == 0
        _run(server, "resumed-run", "completed")
        first_step, err = _resumed(server, "allow", "3")
        assert first_step == 5 and "resume" not in err  # after the server's last step, 4
        run = _run(server, "resumed-run", "completed")
        assert run["last_step"] == 7
        # one series, steps 0-7: the second script appended, it did not rewrite steps 0-2
        assert _series(server, "resumed-run")["loss"] == [[s, 1.0 / (s + 1)] for s in range(8)]
        # WANDB_RESUME works like resume=; a run the server does not know starts at 0, quietly
        assert _resumed(server, "first", "0", WANDB_RESUME="must")[0] == 8
        first_step, err = _resumed(server, "allow", "2", RUN_ID="never-seen")
        assert first_step == 0 and "resume" not in err


def test_resuming_with_the_server_away_starts_at_zero_and_says_why(tmp_path: Path) -> None:
    with LiveServer(tmp_path, extra_args=QUIET) as server:
        dead = f"ws://127.0.0.1:{free_port()}/ws"
        first_step, err = _resumed(server, "allow", "0", MLOPS_HOOKS_URL=dead,
                                   MLOPS_HOOKS_FLUSH_TIMEOUT="0")
    assert first_step == 0
    assert "could not read run resumed-run's last step" in err and "from step 0" in err
