"""Alert rules and a dead receiver: the cost to ingest, as a ratio to a server without them.

Three in-process apps (Starlette's TestClient, ``:memory:`` history) take the same
``POST /api/events`` batches of ``training_progress`` (a rising loss, so the divergence rule
fires) and ``training_failed`` events, rounds interleaved:

* ``off``: every rule disabled and no notifier (the baseline);
* ``rules``: the default rules, no notifier;
* ``dead``: the default rules and a webhook to a port nothing listens on (every notification
  is retried with backoff on the notifier's thread).

Reported: events per second of each (median of the rounds) and the ratios ``rules/off`` and
``dead/off``. Nothing here passes or fails a build.

Usage::

    python benchmarks/alerts_ingest.py            # about a minute
    python benchmarks/alerts_ingest.py --quick
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from mlops_hooks.server import ServerConfig, create_app  # noqa: E402
from mlops_hooks.server.alerts.config import RULES, AlertConfig  # noqa: E402

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient


def _dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again: connections are refused


def _events(round_no: int, runs: int, steps: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for run in range(runs):
        run_id = f"bench-{round_no}-{run}"
        out += [{"type": "training_progress", "run_id": run_id, "stage": "model_training",
                 "current_step": step, "current_loss": 0.1 * step * step}
                for step in range(1, steps + 1)]
        out.append({"type": "training_failed", "run_id": run_id, "error": "boom",
                    "error_code": "RUNTIME_ERROR"})
    return out


def _configs() -> dict[str, AlertConfig]:
    off = AlertConfig.build(assignments=tuple(f"{name}.enabled=false" for name in RULES))
    dead = AlertConfig.build(
        assignments=("notify.retries=1000", "notify.backoff_base_s=0.01",
                     "notify.backoff_cap_s=0.05"),
        webhooks=(f"http://127.0.0.1:{_dead_port()}/hook",))
    return {"off": off, "rules": AlertConfig(), "dead": dead}


def main() -> int:
    """Run the benchmark; prints the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and events")
    args = parser.parse_args()
    rounds, runs, steps = (3, 10, 50) if args.quick else (7, 40, 100)
    clients = {}
    for name, alerts in _configs().items():
        config = ServerConfig(port=0, db=":memory:", metrics_interval=0, stall_timeout=0,
                              probe=False, alerts=alerts, allowed_hosts=("testserver",))
        client = TestClient(create_app(config, plugins=None))
        client.__enter__()
        clients[name] = client
    rates: dict[str, list[float]] = {name: [] for name in clients}
    try:
        for round_no in range(rounds):
            for name, client in clients.items():
                events = _events(round_no, runs, steps)
                started = time.perf_counter()
                for i in range(0, len(events), 200):
                    response = client.post("/api/events", json=events[i:i + 200])
                    assert response.status_code == 200, response.text
                rates[name].append(len(events) / (time.perf_counter() - started))
        counts = clients["dead"].app.state.core.alerts.dispatcher.counts()  # type: ignore[attr-defined]
    finally:
        for client in clients.values():
            client.__exit__(None, None, None)
    median = {name: statistics.median(values) for name, values in rates.items()}
    print(f"events/s (median of {rounds} interleaved rounds, {runs * (steps + 1)} events each)")
    for name, value in median.items():
        print(f"  {name:6s} {value:10.0f}")
    print(f"  rules/off = {median['rules'] / median['off']:.3f}")
    print(f"  dead/off  = {median['dead'] / median['off']:.3f}")
    print(f"  dead receiver's notifier: {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
