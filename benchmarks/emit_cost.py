"""What ``mlops_hooks.emit()`` costs the calling (training) thread, with the publisher on.

Every call is timed with ``time.perf_counter_ns`` around it; an empty function call timed in the
same loop iteration (alternating which of the two goes first) is the baseline, so both see the
same conditions (the publisher thread taking the GIL, other load on the machine). Scenarios:

* ``server up``   - a real ``mlops-hooks serve`` process (tests/live_server.py) receiving;
* ``server down`` - nothing listens on the port: the publisher is reconnecting with backoff;
* ``server slow`` - a TCP listener that accepts and never answers the handshake.

Three paces: ``burst`` (100k back-to-back calls, about a million a second: far beyond what the
background thread delivers - about 15k events/s on 2 cores - so the drop policy sheds superseded
progress, and the thread competes for the GIL while it drains), ``paced`` (a call every 200 µs of
busy work, 5k events/s: a per-step emitter on a fast loop; everything is delivered) and
``sparse`` (a call every 2 ms of sleep: caches are cold at each call, for the baseline too).

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


def measure(fn: Callable[[ev.Event], None], calls: int, gap_ns: int,
            sleep_s: float) -> tuple[list[int], list[int]]:
    """Time ``fn`` and the empty baseline in the same loop (alternating which goes first), so
    both see the same background activity (the publisher thread taking the GIL, other load)."""
    events = [ev.TrainingProgress(stage="model_training", progress=(i % 1000) / 10,
                                  current_epoch=i // 1000, run_id="bench")
              for i in range(min(calls, 1000))]
    cost = [0] * calls
    base = [0] * calls
    gc.collect()
    gc.disable()
    try:
        for i in range(calls):
            event = events[i % len(events)]
            if gap_ns:
                _spin(gap_ns)
            elif sleep_s:
                time.sleep(sleep_s)
            if i & 1:
                t0 = _ns()
                fn(event)
                t1 = _ns()
                _noop(event)
                t2 = _ns()
                cost[i], base[i] = t1 - t0, t2 - t1
            else:
                t0 = _ns()
                _noop(event)
                t1 = _ns()
                fn(event)
                t2 = _ns()
                base[i], cost[i] = t1 - t0, t2 - t1
    finally:
        gc.enable()
    return cost, base


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
    paces = {"burst": (args.calls, 0, 0.0), "paced": (args.paced_calls, 200_000, 0.0),
             "sparse": (args.sparse_calls, 0, 0.002)}
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; times in microseconds")
    print(f"{'scenario':<13}{'pace':<8}{'calls':>8}{'median':>9}{'p99':>9}{'p99.9':>9}"
          f"{'max':>10}{'baseline median':>17}{'ratio':>7}{'delivered':>16}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.scenarios:
            for pace, (calls, gap, sleep_s) in paces.items():
                with scenario(name, Path(tmp)) as url:
                    os.environ["MLOPS_HOOKS_URL"] = url
                    os.environ["MLOPS_HOOKS_FLUSH_TIMEOUT"] = "10" if name == "up" else "0"
                    reset_plugin_managers()
                    emit(ev.TrainingProgress(stage="data_preparation", run_id="bench"))
                    time.sleep(0.2)  # the thread has started and (if up) connected
                    samples, baseline = measure(emit, calls, gap, sleep_s)
                    cost, base = summary(samples), summary(baseline)
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
                      f"{delivered:>16}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=100_000, help="calls per burst run")
    parser.add_argument("--paced-calls", type=int, default=20_000,
                        help="calls in the paced run (one every 200 us)")
    parser.add_argument("--sparse-calls", type=int, default=2_000,
                        help="calls in the sparse run (one every 2 ms)")
    parser.add_argument("--scenarios", nargs="+", default=["up", "down", "slow"],
                        choices=["up", "down", "slow"])
    run(parser.parse_args())


if __name__ == "__main__":
    main()
