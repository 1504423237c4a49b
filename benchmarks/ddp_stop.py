"""What a Stop agreement costs a distributed fit: one all-reduce against a training step.

Under DDP the ranks agree on a Stop request every few batches (``StopAgreement`` in
``plugins/_support/stop_flag.py``): one ``strategy.reduce(..., reduce_op="sum")`` of two
numbers (whether to stop, and how many batches to the next agreement, aimed at
``AGREE_SECONDS`` away). This runs two ranks with ``torchrun`` on CPU (gloo, the test
machine's setup), side by side in the same processes: DDP training steps of the digits MLP of
the tests (batch 64), and all-reduces of the same two-number tensor read back as the agreement
reads it. It prints the microseconds of each (medians of rounds), the overhead of one
agreement every ``AGREE_SECONDS``, and for comparison that of one every K batches. Numbers
are for reporting; nothing passes or fails. On a GPU (NCCL) an agreement also waits for the
queued kernels, which is why it is not made on every batch.

With ``--latency STEP_SLEEP ...`` it measures instead how long a distributed Stop takes: the
torchrun job of the tests (``tests/control/ddp_stop_run.py``, each step sleeping STEP_SLEEP
seconds) streams to a real ``mlops-hooks serve``; a few epochs in, ``POST
/api/runs/{run_id}/stop`` is sent, and the latency is the run's ``training_completed``
timestamp minus the time the request was sent (same machine, same clock).

Run from the repository root::

    .venv/bin/python benchmarks/ddp_stop.py
    .venv/bin/python benchmarks/ddp_stop.py --latency 0.05 0.2
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STEPS, AGREEMENTS, ROUNDS = 100, 400, 5
AGREE_SECONDS = 0.25  # plugins/_support/stop_flag.py (not imported: no mlops_hooks needed)


def worker() -> None:
    import torch
    import torch.distributed as dist
    from torch import nn
    from torch.nn.parallel import DistributedDataParallel

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(rank)
    model = DistributedDataParallel(
        nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = torch.rand(64, 64), torch.randint(0, 10, (64,))

    def step() -> None:
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()

    def agree() -> bool:  # StopAgreement.agree: strategy.reduce(votes, reduce_op="sum")
        votes = torch.tensor([0.0, 8.0])
        dist.all_reduce(votes, op=dist.ReduceOp.SUM)
        asked, _ = (float(v) for v in votes)
        return asked > 0

    step_us, agree_us = [], []
    for _ in range(ROUNDS):
        dist.barrier()
        start = time.perf_counter()
        for _ in range(STEPS):
            step()
        step_us.append((time.perf_counter() - start) / STEPS * 1e6)
        dist.barrier()
        start = time.perf_counter()
        for _ in range(AGREEMENTS):
            agree()
        agree_us.append((time.perf_counter() - start) / AGREEMENTS * 1e6)
    if rank == 0:
        s, a = statistics.median(step_us), statistics.median(agree_us)
        print(f"DDP step (2 ranks, gloo, CPU): {s:8.1f} us   agreement: {a:6.1f} us")
        print(f"  one agreement every {AGREE_SECONDS} s: {a / (AGREE_SECONDS * 1e6) * 100:.3f} %"
              " of the fit")
        for k in (1, 8, 32):
            print(f"  agreement every {k:2d} batches: {a / k:6.1f} us a step "
                  f"({a / k / s * 100:5.2f} % of a step)")
    dist.destroy_process_group()


def latency(step_sleeps: list[str], repeats: int = 2) -> None:
    for sleep in step_sleeps:
        for repeat in range(repeats):
            print(f"steps of {sleep} s, repeat {repeat}: {one_stop(sleep, 6.0 + 2 * repeat)}",
                  flush=True)


def one_stop(sleep: str, progress: float) -> str:
    """Stop one torchrun job once its run's progress reached ``progress`` %."""
    import datetime
    import tempfile

    import httpx

    sys.path.insert(0, str(ROOT))
    from tests.control.support import TOKEN, completed_event, run_status, wait_for
    from tests.examples.support import example_env
    from tests.live_server import LiveServer, free_port

    job, auth = ROOT / "tests" / "control" / "ddp_stop_run.py", {"Authorization": f"Bearer {TOKEN}"}
    with tempfile.TemporaryDirectory() as tmp, LiveServer(
            Path(tmp) / "server", extra_args=["--token", TOKEN]) as server:
        base = server.http_url
        env = example_env(server.publish_url, MLOPS_HOOKS_TOKEN=TOKEN, RUN_ID="ddp",
                          EPOCHS="50", STEP_SLEEP=sleep, MLOPS_HOOKS_DISABLE="console",
                          MLOPS_HOOKS_SYSTEM_INTERVAL="0")
        proc = subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
             "--master_addr", "127.0.0.1", "--master_port", str(free_port()), str(job), tmp],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def far_enough() -> bool | None:
            answer = httpx.get(f"{base}/api/runs/ddp", headers=auth, timeout=5)
            run = answer.json()["run"] if answer.status_code == 200 else {}
            return True if run.get("status") == "running" \
                and (run.get("progress") or 0) >= progress else None

        wait_for("the run to be a few epochs in", far_enough)
        sent = time.time()
        httpx.post(f"{base}/api/runs/ddp/stop", headers=auth, timeout=5)
        code = proc.wait(60)
        exited = time.time()
        wait_for("completion", lambda: run_status(base, "ddp") == "completed" or None)
        completed = completed_event(base, "ddp")
        stamp = datetime.datetime.fromisoformat(
            completed["timestamp"].replace("Z", "+00:00")).timestamp()
        return (f"exit code {code}, request -> training_completed {stamp - sent:.2f} s, "
                f"request -> both ranks exited {exited - sent:.2f} s, stop_reason "
                f"{completed['stop_reason']}")


def main() -> None:
    if os.environ.get("RANK") is not None:
        worker()
        return
    if sys.argv[1:2] == ["--latency"]:
        latency(sys.argv[2:] or ["0.05"])
        return
    port = 29500 + os.getpid() % 1000
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                    "--master_addr", "127.0.0.1", "--master_port", str(port), __file__],
                   check=True, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"))


if __name__ == "__main__":
    main()
