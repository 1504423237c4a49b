"""What ``mlops_hooks.emit()`` costs the calling (training) thread, with the publisher on.

Every call is timed with ``time.perf_counter_ns`` around it; the same loop around an empty
function is the baseline, measured side by side in the same process. Scenarios:

* ``server up``   - a real ``mlops-hooks serve`` process (tests/live_server.py) receiving;
* ``server down`` - nothing listens on the port: the publisher is reconnecting with backoff;
* ``server slow`` - a TCP listener that accepts and never answers the handshake.

Three paces: ``burst`` (100k back-to-back calls, the worst case: the background thread competes
for the GIL while it drains), ``paced`` (a call every ~20 µs of busy work, like a fast training
step) and ``sparse`` (a call every 2 ms, the thread goes idle in between).

Run from the repository root::

    .venv/bin/python benchmarks/emit_cost.py            # all scenarios
    .venv/bin/python benchmarks/emit_cost.py --calls 20000 --scenarios down

Numbers are for reporting (median, p99, p99.9 and the ratio to the baseline); nothing here
passes or fails.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

os.environ["MLOPS_HOOKS_DISABLE"] = "console,jsonl"  # measure the publisher alone

from mlops_hooks import emit  # noqa: E402
from mlops_hooks import events as ev  # noqa: E402
from mlops_hooks.manager import reset_plugin_managers  # noqa: E402
from tests.live_server import LiveServer, free_port  # noqa: E402

_ns = time.perf_counter_ns


def _noop(event: ev.Event) -> None:
    pass


def _spin(ns: int) -> None:
    end = _ns() + ns
    while _ns() < end:
        pass


def measure(fn: Callable[[ev.Event], None], calls: int, gap_ns: int, sleep_s: float) -> list[int]:
    events = [ev.TrainingProgress(stage="model_training", progress=(i % 1000) / 10,
                                  current_epoch=i // 1000, run_id="bench")
              for i in range(min(calls, 1000))]
    samples = [0] * calls
    gc.collect()
    gc.disable()
    try:
        for i in range(calls):
            event = events[i % len(events)]
            if gap_ns:
                _spin(gap_ns)
            elif sleep_s:
                time.sleep(sleep_s)
            start = _ns()
            fn(event)
            samples[i] = _ns() - start
    finally:
        gc.enable()
    return samples


def summary(samples: list[int]) -> dict[str, float]:
    ordered = sorted(samples)
    n = len(ordered)
    return {"median": statistics.median(ordered) / 1000, "p99": ordered[int(n * 0.99)] / 1000,
            "p99.9": ordered[min(n - 1, int(n * 0.999))] / 1000, "max": ordered[-1] / 1000}


@contextlib.contextmanager
def scenario(name: str, workdir: Path) -> Iterator[str]:
    if name == "up":
        server = LiveServer(workdir / "up", env={"MLOPS_HOOKS_DISABLE": "jsonl"})
        with server:
            yield server.ws_url
    elif name == "down":
        yield f"ws://127.0.0.1:{free_port()}/ws"
    elif name == "slow":
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(64)
            yield f"ws://127.0.0.1:{listener.getsockname()[1]}/ws"
    else:
        raise ValueError(f"unknown scenario {name!r}")


def run(args: argparse.Namespace) -> None:
    paces = {"burst": (args.calls, 0, 0.0), "paced": (args.calls // 2, 20_000, 0.0),
             "sparse": (args.sparse_calls, 0, 0.002)}
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; times in microseconds")
    print(f"{'scenario':<13}{'pace':<8}{'calls':>8}{'median':>9}{'p99':>9}{'p99.9':>9}"
          f"{'max':>10}{'baseline median':>17}{'ratio':>7}{'delivered':>11}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.scenarios:
            for pace, (calls, gap, sleep_s) in paces.items():
                with scenario(name, Path(tmp)) as url:
                    os.environ["MLOPS_HOOKS_URL"] = url
                    os.environ["MLOPS_HOOKS_FLUSH_TIMEOUT"] = "10" if name == "up" else "0"
                    reset_plugin_managers()
                    emit(ev.TrainingProgress(stage="data_preparation", run_id="bench"))
                    time.sleep(0.2)  # the thread has started and (if up) connected
                    base = summary(measure(_noop, calls, gap, sleep_s))
                    cost = summary(measure(emit, calls, gap, sleep_s))
                    from mlops_hooks.manager import get_plugin_manager

                    publisher = get_plugin_manager().get_plugin("publisher")
                    delivered = "-"
                    if name == "up":
                        publisher.flush(30)
                        st = publisher.status()
                        delivered = f"{st['acked']}/{st['acked'] + st['dropped']}"
                    reset_plugin_managers()  # closes the publisher (flush timeout applies)
                print(f"{'server ' + name:<13}{pace:<8}{calls:>8}{cost['median']:>9.2f}"
                      f"{cost['p99']:>9.2f}{cost['p99.9']:>9.2f}{cost['max']:>10.1f}"
                      f"{base['median']:>17.2f}{cost['median'] / base['median']:>7.1f}"
                      f"{delivered:>11}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=100_000, help="calls per burst run")
    parser.add_argument("--sparse-calls", type=int, default=2_000,
                        help="calls in the sparse run (one every 2 ms)")
    parser.add_argument("--scenarios", nargs="+", default=["up", "down", "slow"],
                        choices=["up", "down", "slow"])
    run(parser.parse_args())


if __name__ == "__main__":
    main()
