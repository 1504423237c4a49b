"""``mlops-hooks import-tensorboard``: event files written by ``torch.utils.tensorboard``,
imported into a real server subprocess; a second import adds nothing."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from torch.utils.tensorboard import SummaryWriter

from tests.live_server import LiveServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]
QUIET = ["--metrics-interval", "0", "--stall-timeout", "0"]
REPO = Path(__file__).resolve().parents[2]
TOKEN = "tb-import-token"
LRS = {"lr0.1": 0.1, "lr0.01": 0.01}


def write_logs(logdir: Path) -> dict[str, float]:
    """Two runs of a sweep: scalars every step (accuracy every second) and hparams."""
    started: dict[str, float] = {}
    for name, lr in LRS.items():
        writer = SummaryWriter(str(logdir / name))
        started[name] = time.time()
        for step in range(6):
            writer.add_scalar("loss/train", lr * 10 / (step + 1), step, walltime=1.7e9 + step)
            if step % 2 == 0:
                writer.add_scalar("acc/val", 0.5 + step / 20, step, walltime=1.7e9 + step)
        writer.add_hparams({"lr": lr, "optimizer": "sgd", "layers": 3},
                           {"hparam/best_acc": 0.75})
        writer.close()
    return started


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mlops_hooks", "import-tensorboard", *args],
                          capture_output=True, text=True, timeout=120, cwd=str(REPO),
                          env=env)


def runs(server: LiveServer, group: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{server.http_url}/api/runs", params={"group": group})
    assert response.status_code == 200, response.text
    return list(response.json()["runs"])


def completed_runs(server: LiveServer, group: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 30
    while True:
        found = runs(server, group)
        if len(found) == count and all(r["status"] == "completed" for r in found):
            return found
        assert time.monotonic() < deadline, found
        time.sleep(0.05)


def metrics(server: LiveServer, run_id: str) -> dict[str, Any]:
    response = httpx.get(f"{server.http_url}/api/runs/{run_id}/metrics")
    assert response.status_code == 200, response.text
    return dict(response.json()["series"])


def test_import_turns_event_files_into_runs_and_a_second_import_adds_nothing(tmp_path):
    logdir = tmp_path / "sweep"
    write_logs(logdir)
    with LiveServer(tmp_path / "server", extra_args=[*QUIET, "--token", TOKEN]) as server:
        refused = cli(str(logdir), "--url", server.ws_url, "--timeout", "3")
        assert refused.returncode == 1 and "did not acknowledge" in refused.stderr

        first = cli(str(logdir), "--url", server.ws_url, "--token", TOKEN)
        assert first.returncode == 0, first.stderr
        assert "imported 2 run(s) into group 'sweep'" in first.stdout
        assert "lr0.1: run tb_" in first.stdout and "already on the server" not in first.stdout

        found = {r["model_name"]: r for r in completed_runs(server, "sweep", 2)}
        assert set(found) == set(LRS)
        for name, lr in LRS.items():
            run = found[name]
            assert run["params"]["lr"] == lr and run["params"]["optimizer"] == "sgd"
            # the original wall times (1.7e9 = 2023-11-14T22:13:20Z) are the run's times
            assert run["started_at"] == "2023-11-14T22:13:20.000Z"
            series = metrics(server, run["run_id"])
            assert series["loss/train"] == [[s, pytest.approx(lr * 10 / (s + 1))]
                                            for s in range(6)]
            assert [p[0] for p in series["acc/val"]] == [0, 2, 4]
            assert series["hparam/best_acc"] == [[0, 0.75]]  # add_hparams' metric, merged
        before = {r["run_id"]: metrics(server, r["run_id"]) for r in found.values()}

        again = cli(str(logdir), "--url", server.ws_url, "--token", TOKEN)
        assert again.returncode == 0, again.stderr
        assert again.stdout.count("0 events sent") == 2, again.stdout
        assert "already on the server" in again.stdout
        assert len(runs(server, "sweep")) == 2
        assert {r: metrics(server, r) for r in before} == before

        renamed = cli(str(logdir), "--url", server.ws_url, "--token", TOKEN,
                      "--group", "old-sweep")
        assert renamed.returncode == 0, renamed.stderr
        assert len(completed_runs(server, "old-sweep", 2)) == 2
        assert datetime.fromisoformat(found["lr0.1"]["ended_at"].replace("Z", "+00:00"))


def test_bad_logdirs_and_a_missing_tensorboard_are_named(tmp_path):
    missing = cli(str(tmp_path / "nope"))
    assert missing.returncode == 2 and "is not a directory" in missing.stderr
    (tmp_path / "empty").mkdir()
    empty = cli(str(tmp_path / "empty"))
    assert empty.returncode == 2 and "no TensorBoard event files" in empty.stderr
    write_logs(tmp_path / "logs")
    blocked = subprocess.run(
        [sys.executable, "-c", "import sys; sys.modules['tensorboard'] = None\n"
         "from mlops_hooks.cli.commands import main\n"
         f"sys.exit(main(['import-tensorboard', {str(tmp_path / 'logs')!r}]))"],
        capture_output=True, text=True, timeout=60, cwd=str(REPO))
    assert blocked.returncode == 2
    assert "pip install 'mlops-hooks[tensorboard]'" in blocked.stderr
