"""Transformers trainings in processes of their own against a real server.

* A training killed after a checkpoint (SIGKILL) and resumed by a second process is one run.
* So is one that failed with an exception: the resumed process reopens the ended run.
* ``torchrun --nproc_per_node 2`` (DDP on CPU, gloo): only process zero reports.

The trainings are ``tests/plugins/transformers_job.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from tests.examples.support import example_env, wait_until
from tests.live_server import LiveServer, free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

JOB = Path(__file__).with_name("transformers_job.py")
ROOT = JOB.parents[2]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    workdir: Path = tmp_path_factory.mktemp("transformers-server")
    with LiveServer(workdir, extra_args=["--metrics-interval", "0",
                                         "--stall-timeout", "0", "--crash-grace", "1"]) as live:
        yield live


def job(server: LiveServer, *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(command), capture_output=True, text=True, timeout=180, cwd=ROOT,
                          env=example_env(server.ws_url))


def get(server: LiveServer, path: str, **query: str) -> dict:
    response = httpx.get(server.http_url + path, params=query, timeout=10)
    assert response.status_code == 200, response.text
    return dict(response.json())


def run_field(server: LiveServer, run_id: str, field: str) -> object:
    """A field of ``GET /api/runs/{run_id}`` (None while the history does not have the run)."""
    response = httpx.get(f"{server.http_url}/api/runs/{run_id}", timeout=10)
    return response.json()["run"][field] if response.status_code == 200 else None


def ended_run(server: LiveServer, name: str) -> dict:
    """The only run called ``name``, once it has completed."""
    def read() -> list[dict] | None:
        runs = [r for r in get(server, "/api/runs", q=name)["runs"] if r["model_name"] == name]
        return runs if runs and all(r["status"] == "completed" for r in runs) else None

    runs = wait_until(read, timeout=30)
    assert runs, get(server, "/api/runs", q=name)
    (run,) = runs  # one run, not one per process
    return run


def ends_of(server: LiveServer, run_id: str) -> list[str]:
    """The ``training_completed``/``training_failed`` events of the run, replayed in order."""
    url = f"{server.ws_url}?since=0&types=training_completed,training_failed"
    with connect(url, open_timeout=10) as ws:
        replay = json.loads(ws.recv(timeout=10))
        assert replay["type"] == "replay", replay
        events = [json.loads(ws.recv(timeout=10)) for _ in range(replay["count"])]
    return [e["type"] for e in events if e.get("run_id") == run_id]


def run_states(server: LiveServer, run_id: str) -> list[str]:
    """The ``run_state`` events the server raised for the run, replayed in order."""
    with connect(f"{server.ws_url}?since=0&types=run_state", open_timeout=10) as ws:
        replay = json.loads(ws.recv(timeout=10))
        assert replay["type"] == "replay", replay
        events = [json.loads(ws.recv(timeout=10)) for _ in range(replay["count"])]
    return [e["state"] for e in events if e.get("run_id") == run_id]


def test_a_training_resumed_in_another_process_continues_the_killed_run(server, tmp_path):
    crashing = subprocess.Popen([sys.executable, str(JOB), "crash", str(tmp_path)], cwd=ROOT,
                                env=example_env(server.ws_url), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    try:
        assert wait_until(lambda: (tmp_path / "at-step-6").exists(), timeout=120)
        state = json.loads((tmp_path / "out/checkpoint-4/trainer_state.json").read_text())
        run_id = state["stateful_callbacks"]["MLOpsCallback"]["attributes"]["mlops_run_id"]
        # step 6 reached the server: then the machine goes away (SIGKILL, nothing reported)
        assert wait_until(lambda: run_field(server, run_id, "progress") == 75)
    finally:
        crashing.kill()
        crashing.wait()
    assert wait_until(lambda: run_field(server, run_id, "status") == "crashed", timeout=60)

    resumed = job(server, sys.executable, str(JOB), "resume", str(tmp_path))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    run = ended_run(server, "resumed-bert")  # one run, the checkpoint's
    assert run["run_id"] == run_id and run["progress"] == 100
    assert run["params"]["resumed_from_step"] == 4 and run["params"]["max_steps"] == 8
    assert wait_until(lambda: ends_of(server, run_id) == ["training_completed"])
    assert run_states(server, run_id) == ["crashed", "running", "finished"]
    series = get(server, f"/api/runs/{run_id}/metrics")["series"]
    # steps 1-6 from the killed process, 4-8 from the resumed one (a step's later value wins)
    assert [step for step, _ in series["loss"]] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert [step for step, _ in series["train_loss"]] == [8]


def test_a_training_resumed_after_an_exception_reopens_the_failed_run(server, tmp_path):
    failed = job(server, sys.executable, str(JOB), "fail", str(tmp_path), "failed-bert")
    assert failed.returncode != 0 and "the data went bad at step 6" in failed.stderr
    state = json.loads((tmp_path / "out/checkpoint-4/trainer_state.json").read_text())
    run_id = state["stateful_callbacks"]["MLOpsCallback"]["attributes"]["mlops_run_id"]
    # the failure is on the server before the second process starts (its flush at exit)
    assert run_field(server, run_id, "status") == "failed"
    assert run_field(server, run_id, "ended_at") is not None

    resumed = job(server, sys.executable, str(JOB), "resume", str(tmp_path), "failed-bert")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    run = ended_run(server, "failed-bert")  # one run, the checkpoint's, completed
    assert run["run_id"] == run_id and run["progress"] == 100
    assert run["params"]["resumed_from_step"] == 4
    assert wait_until(lambda: ends_of(server, run_id) == ["training_failed",
                                                          "training_completed"])
    assert run_states(server, run_id) == ["failed", "running", "finished"]
    series = get(server, f"/api/runs/{run_id}/metrics")["series"]
    # steps 1-6 of the failed attempt, 5-8 of the resumed one: kept, not dropped
    assert [step for step, _ in series["loss"]] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert [step for step, _ in series["train_loss"]] == [8]


def test_distributed_training_is_reported_by_process_zero_only(server, tmp_path):
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
               "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
               str(JOB), "ddp", str(tmp_path)]
    done = job(server, *command)
    assert done.returncode == 0, done.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"result{rank}.json").read_text()) for rank in (0, 1)]
    assert [(r["rank"], r["world_size"], r["global_step"]) for r in ranks] == [
        (0, 2, 12), (1, 2, 12)]  # 96 samples / (8 x 2 processes) = 6 steps an epoch
    zero, one = ranks
    assert zero["run_id"] and one["run_id"] is None
    assert not (tmp_path / "rank1.jsonl").exists()  # process one emitted nothing at all
    emitted = [json.loads(line) for line in (tmp_path / "rank0.jsonl").read_text().splitlines()]
    assert {e.get("run_id") for e in emitted} == {zero["run_id"]}

    run = ended_run(server, "ddp-bert")
    assert run["run_id"] == zero["run_id"] and run["progress"] == 100
    assert run["params"]["max_steps"] == 12  # counted once, not twice
    assert run["params"]["total_train_batch_size"] == 16  # 8 per process x 2 processes
    detail = get(server, f"/api/runs/{run['run_id']}")["run"]
    assert detail["metadata"]["pid"] == zero["pid"]
    assert ends_of(server, run["run_id"]) == ["training_completed"]
    progress = [e for e in emitted if e["type"] == "training_progress"]
    assert {e["total_steps"] for e in progress} == {12}
    assert progress[-1]["current_step"] == 12
    series = get(server, f"/api/runs/{run['run_id']}/metrics")["series"]
    assert [step for step, _ in series["loss"]] == list(range(1, 13))  # each step once
    assert series["eval_loss"][0][0] == 6  # the first evaluation: the end of epoch 1
