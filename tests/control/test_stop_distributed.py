"""Stop from the dashboard never hangs a distributed Lightning run (issue 17, DDP).

``torchrun --nproc_per_node 2`` runs a real ``Trainer(strategy="ddp", accelerator="cpu",
devices=2)`` on gloo (``tests/control/ddp_stop_run.py``) streaming to a ``mlops-hooks serve``
subprocess with ``--token``. Only rank zero reports, so only rank zero receives the Stop
request; the ranks agree on it (one all-reduce about every 0.25 s and at each epoch end) and
leave the loop at the same batch: both exit 0 long before the subprocess timeout (a hang fails
the test there), and the one run on the server ends ``training_completed`` with
``stop_reason: "requested"``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from mlops_hooks.plugins._support.stop_flag import MAX_EVERY
from tests.control.support import TOKEN, completed_event, run_status, wait_for
from tests.examples.support import example_env
from tests.live_server import LiveServer, free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

JOB = Path(__file__).with_name("ddp_stop_run.py")
ROOT = JOB.parents[2]
EPOCHS = 50
RUN_ID = "ddp-stop"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
HANG = 60.0  # seconds the stopped job gets to exit: a rank waiting in a collective never does


def test_a_stop_request_ends_every_rank_of_a_ddp_run_at_the_same_batch(tmp_path: Path) -> None:
    with LiveServer(tmp_path / "server", extra_args=["--token", TOKEN]) as server:
        base = server.http_url
        env = example_env(server.publish_url, MLOPS_HOOKS_TOKEN=TOKEN, RUN_ID=RUN_ID,
                          EPOCHS=str(EPOCHS), STEP_SLEEP="0.05", MLOPS_HOOKS_DISABLE="console",
                          MLOPS_HOOKS_SYSTEM_INTERVAL="0")
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                   "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
                   str(JOB), str(tmp_path)]
        log = tmp_path / "ddp.log"
        with log.open("wb") as out:
            job = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out,
                                   stderr=subprocess.STDOUT)
        try:
            def running() -> bool | None:
                if job.poll() is not None:
                    raise AssertionError(f"the job exited early:\n{log.read_text()[-4000:]}")
                response = httpx.get(f"{base}/api/runs/{RUN_ID}", headers=AUTH, timeout=5)
                run = response.json()["run"] if response.status_code == 200 else {}
                return True if run.get("status") == "running" \
                    and (run.get("progress") or 0) >= 100 * 3 / EPOCHS else None

            # a few epochs in: agreements have been made at batches and at epoch ends
            wait_for(f"run {RUN_ID} to be running its fourth epoch", running)
            answer = httpx.post(f"{base}/api/runs/{RUN_ID}/stop", headers=AUTH, timeout=5)
            assert answer.status_code == 202, answer.text
            assert answer.json()["delivered"] is True
            try:
                code = job.wait(HANG)
            except subprocess.TimeoutExpired:
                raise AssertionError(f"the DDP job did not exit within {HANG:.0f} s of the "
                                     f"Stop request (a rank hangs in a collective):\n"
                                     f"{log.read_text()[-4000:]}") from None
            assert code == 0, log.read_text()[-4000:]
        finally:
            if job.poll() is None:
                job.kill()
                job.wait()
        zero, one = (json.loads((tmp_path / f"result{rank}.json").read_text())
                     for rank in (0, 1))
        assert (zero["rank"], zero["world_size"], one["rank"]) == (0, 2, 1)
        assert zero["flushed"] is True and zero["run_id"] == RUN_ID and one["run_id"] is None
        # stopped, at the same step and epoch on both ranks
        assert zero["global_step"] == one["global_step"]
        assert 3 <= zero["epochs"] == one["epochs"] < EPOCHS - 1
        # every agreement was made by both ranks with the same outcome; one rank (rank zero,
        # the only one that learnt of the request) asked from the stopping agreement on (the
        # epoch's end that follows a batch's agreement is one more)
        agreements = zero["reductions"]
        assert agreements and agreements == one["reductions"]
        asked = [votes for votes, _ in agreements]
        first = asked.index(1.0)
        assert asked == [0.0] * first + [1.0] * (len(asked) - first) and len(asked) - first <= 2
        assert all(2 <= wishes <= 2 * MAX_EVERY for _, wishes in agreements)
        assert len(agreements) > zero["epochs"]  # at epoch ends, and at batches in between
        assert zero["boolean_decisions"] == one["boolean_decisions"] == 0
        wait_for("completion", lambda: run_status(base, RUN_ID) == "completed" or None)
        completed = completed_event(base, RUN_ID)
        assert completed["stop_reason"] == "requested"
        assert "stopped on request" in completed["message"]
        runs = httpx.get(f"{base}/api/runs", headers=AUTH, timeout=5).json()["runs"]
        assert [r["run_id"] for r in runs] == [RUN_ID]  # one run, not one per rank
