"""The parts of ``run.py``: each drives one owner's benchmark through its functions.

Every part runs in its own child process (``run.py --part NAME``), so one part's threads,
plugin managers and servers never disturb the next, and returns plain data (JSON-able) for the
report. The measuring code is the owners': ``callback_overhead.fit_once``,
``emit_cost.measure``/``scenario``, ``fanout.run_case``; only the orchestration (how many runs,
interleaving, which numbers to keep) lives here.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for _path in (str(HERE), str(ROOT)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

Log = Callable[[str], None]


# ---------------------------------------------------------------------- callback overhead

def callback(quick: bool, log: Log) -> dict[str, Any]:
    """Lightning fit, batch size 1: no callback (twice) / MLOpsCallback up / down / alone / tqdm."""
    import callback_overhead as co
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    steps, repeats = 3000, (3 if quick else 7)
    torch.set_num_threads(1)
    data = TensorDataset(torch.randn(steps, 8), torch.randn(steps, 1))
    loader = DataLoader(data, batch_size=1, shuffle=False)
    down_port = co.free_port()
    with tempfile.TemporaryDirectory() as tmp, co.LiveServer(Path(tmp)) as server:
        up_url = f"ws://127.0.0.1:{server.port}/ws"
        down_url = f"ws://127.0.0.1:{down_port}/ws"

        def mlops(url: str | None) -> Callable[[], tuple[float, float]]:
            def run() -> tuple[float, float]:
                with co.publishing_to(url):
                    return co.fit_once(loader, [co.MLOpsCallback("bench")], False)
            return run

        variants: dict[str, Callable[[], tuple[float, float]]] = {
            "none": lambda: co.fit_once(loader, [], False),
            # the same fit again: how far apart two identical variants land (the noise floor)
            "none again": lambda: co.fit_once(loader, [], False),
            "server up": mlops(up_url),
            "server down": mlops(down_url),
            "no plugins": mlops(None),
            "tqdm": lambda: co.fit_once(loader, [co.TQDMProgressBar(refresh_rate=1)], True),
        }
        wall, cpu = co.run_interleaved(variants, repeats,
                                       lambda line: log(f"callback overhead: {line}"))
        with co.publishing_to(up_url):
            co.fit_once(loader, [co.TimedMLOpsCallback("bench-timed")], False)
            log("callback overhead: step-interleaved fits")
            inter = co.interleaved_cost(loader)
            inter["aa"] = co.interleaved_cost(loader, make=co.Inert)["ratio"]
    durations = sorted(getattr(co.TimedMLOpsCallback, "durations", []))
    hook = ({"calls": len(durations), "median": statistics.median(durations) / 1000,
             "p99": durations[int(len(durations) * 0.99)] / 1000,
             "per_step": sum(durations) / 1000 / steps} if durations else None)
    return {"steps": steps, "repeats": repeats, "wall": wall, "cpu": cpu, "hook": hook,
            "interleaved": inter}


# ---------------------------------------------------------------------- emit() cost

def emit(quick: bool, log: Log) -> dict[str, Any]:
    """``emit()`` in the calling thread, server up and down, burst and paced."""
    import emit_cost as ec

    from mlops_hooks import events as ev
    from mlops_hooks.manager import get_plugin_manager, reset_plugin_managers

    paces = {"burst": (20_000 if quick else 100_000, 0, 0.0),
             "paced 5k/s": (5_000 if quick else 20_000, 200_000, 0.0)}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("up", "down"):
            for pace, (calls, gap, sleep_s) in paces.items():
                with ec.scenario(name, Path(tmp)) as url:
                    os.environ["MLOPS_HOOKS_URL"] = url
                    os.environ["MLOPS_HOOKS_FLUSH_TIMEOUT"] = "10" if name == "up" else "0"
                    reset_plugin_managers()
                    ec.emit(ev.TrainingProgress(stage="data_preparation", run_id="bench"))
                    time.sleep(0.2)
                    samples, baseline = ec.measure(ec.emit, calls, gap, sleep_s)
                    cost, base = ec.summary(samples), ec.summary(baseline)
                    publisher = get_plugin_manager().get_plugin("publisher")
                    delivered = None
                    if name == "up":
                        publisher.flush(30)
                        st = publisher.status()
                        delivered = [st["acked"], st["acked"] + st["dropped"]]
                    reset_plugin_managers()
                rows.append({"server": name, "pace": pace, "calls": calls, "cost": cost,
                             "baseline": base, "delivered": delivered})
                log(f"emit(): server {name}, {pace}: median {cost['median']:.2f} µs, "
                    f"p99 {cost['p99']:.2f} µs")
    return {"rows": rows}


# ---------------------------------------------------------------------- fan-out

def _result(r: Any, **extra: Any) -> dict[str, Any]:
    rss = [s for _, s in r.rss] or [0]
    return {"server": r.server, "subscribers": r.subscribers, "stalled": r.stalled,
            "messages": r.messages, "sent": r.sent, "received": r.received,
            "elapsed": r.elapsed, "rate": r.rate, "p50": r.pct(0.5), "p99": r.pct(0.99),
            "cpu_us": r.cpu_per_delivery, "client_cpu": r.client_cpu, "rss_start": rss[0] / 2**20,
            "rss_max": max(rss) / 2**20, "rss_end": rss[-1] / 2**20,
            "closes": sorted(set(r.closes)), "closed_slow": getattr(r, "closed_slow", None),
            "delivered": r.received / max(1, r.readers * r.messages), **extra}


def fanout(quick: bool, log: Log) -> dict[str, Any]:
    """Publisher -> S subscribers, as fast as acknowledged, for the three servers."""
    import fanout as fo

    scale = 0.25 if quick else 1.0
    results = []
    for subscribers in (10, 100, 500):
        messages = max(100, int(60_000 * scale) // subscribers)
        for kind in fo.SERVERS:
            r = fo.run_case(kind, subscribers, 0, messages, payload=200,
                            procs=1 if subscribers <= 10 else 2)
            results.append(_result(r))
            log(f"fan-out: {kind:12} S={subscribers:<4} {r.rate:>10,.0f} deliveries/s, "
                f"p99 {r.pct(0.99):.1f} ms")
    return {"results": results}


def _paced_publish(rate: float) -> Callable[..., Any]:
    """``fanout.publish`` at a fixed rate instead of as fast as acknowledged.

    Event ``i`` is due at ``start + i / rate``; one that is late (the publisher was not
    scheduled in time) still goes out at least half an interval after the previous one, so a
    late publisher catches up without sending a burst. Each event is timestamped as it is sent.
    """
    import fanout as fo
    from websockets.asyncio.client import connect

    interval = 1.0 / rate

    async def publish(url: str, count: int, payload: int) -> tuple[int, float]:
        async with connect(url, compression=None, ping_interval=None) as ws:
            acked = 0

            async def read_acks() -> None:
                nonlocal acked
                async for _ in ws:
                    acked += 1

            reader = asyncio.create_task(read_acks())
            start = time.monotonic()
            previous = start - interval
            sent = 0
            for i in range(count):
                due = max(start + i * interval, previous + interval / 2)
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                previous = time.monotonic()
                await ws.send(fo.message(i, payload))
                sent += 1
            deadline = time.monotonic() + fo.PUBLISH_DEADLINE
            while acked < sent and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            reader.cancel()
            return sent, start

    return publish


def paced(quick: bool, log: Log) -> dict[str, Any]:
    """100 subscribers x 200 events/s: latency at a realistic dashboard load.

    Latency at a fixed pace is sensitive to whatever else runs on the machine, so the three
    servers take turns for a few rounds and the run with the median p99 is kept per server.
    """
    import fanout as fo

    rate, seconds, rounds = 200.0, (5 if quick else 8), (1 if quick else 3)
    original = fo.publish
    fo.publish = _paced_publish(rate)  # run_case looks the publisher up at call time
    runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in fo.SERVERS}
    try:
        for round_ in range(rounds):
            for kind in fo.SERVERS:
                r = fo.run_case(kind, 100, 0, int(rate * seconds), payload=200, procs=2)
                runs[kind].append(_result(r, rate_target=rate))
                log(f"paced 100 x 200/s, round {round_ + 1}/{rounds}: {kind:12} "
                    f"p50 {r.pct(0.5):.1f} ms, p99 {r.pct(0.99):.1f} ms")
    finally:
        fo.publish = original
    results = [sorted(runs[kind], key=lambda x: x["p99"])[len(runs[kind]) // 2]
               for kind in fo.SERVERS]
    return {"results": results, "rate": rate, "seconds": seconds, "rounds": rounds,
            "p99s": {kind: [x["p99"] for x in runs[kind]] for kind in fo.SERVERS}}


def stall(quick: bool, log: Log) -> dict[str, Any]:
    """5 of 50 subscribers never read, against 45 readers and no stalled one."""
    import fanout as fo

    events = max(500, fo.STALL_EVENTS // (4 if quick else 1))
    pairs = []
    for kind in fo.SERVERS:
        healthy = fo.run_case(kind, 45, 0, events, payload=2000, procs=2)
        stalled = fo.run_case(kind, 50, 5, events, payload=2000, procs=2)
        pairs.append({"healthy": _result(healthy), "stalled": _result(stalled)})
        log(f"stalled subscribers: {kind:12} readers {stalled.rate:,.0f}/s with 5 stalled, "
            f"{healthy.rate:,.0f}/s without")
    return {"pairs": pairs, "events": events}


# ---------------------------------------------------------------------- run history


def history(quick: bool, log: Log) -> dict[str, Any]:
    """Serving ``/api/runs`` and a series against a naive implementation; ingest cost."""
    import run_history

    return run_history.measure(quick, log)


# ---------------------------------------------------------------------- host sampler


def sampler(quick: bool, log: Log) -> dict[str, Any]:
    """The host sampler's cost to the training thread, step-interleaved, with its A/A."""
    import sampler_overhead

    return sampler_overhead.measure(1500 if quick else 4000, 3 if quick else 5, 100, 0.05, log)


PARTS: dict[str, Callable[[bool, Log], dict[str, Any]]] = {
    "callback": callback, "emit": emit, "fanout": fanout, "paced": paced, "stall": stall,
    "history": history, "sampler": sampler,
}


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")
