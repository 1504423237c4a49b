"""Run history: serving ``/api/runs`` and a run's series, and the ingest cost of storing series.

Serving: a history of ``--runs`` runs (1,000) with ``--points`` steps (2,000) of ``--keys``
series each (loss and val_loss), written through the server's own store, served by the real
app (Starlette's TestClient, in process) against a naive implementation of the same routes on
the same data: one table of runs as JSON and one table of every point, no index, every run
decoded and sorted in Python for the listing, every point of the run read for its series.

Ingest: ``POST /api/events`` batches of ``training_progress`` (step, loss, accuracy and 5
metrics each: 7 new points an event, the worst case) into the real app with a file database,
acknowledged (so written), with series storage (points packed a chunk a row), with the previous
writer (a row per point, ``_series_rows.py``) and with storage switched off
(``Store.points_added`` a no-op), interleaved; the ratios are with / without, in events per
second and in CPU time per event.

Usage::

    python benchmarks/run_history.py               # about a minute
    python benchmarks/run_history.py --quick       # smaller history and fewer events

Nothing here passes or fails a build.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import JSONResponse, Response  # noqa: E402
from starlette.routing import Route  # noqa: E402

from mlops_hooks.server import ServerConfig, create_app  # noqa: E402
from mlops_hooks.server.state.series import MAX_POINTS  # noqa: E402
from mlops_hooks.server.state.store import Store  # noqa: E402

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

Log = Callable[[str], None]
STATUSES = ("completed", "failed", "running")


def _log(text: str) -> None:
    print(f"  {text}", file=sys.stderr, flush=True)


def _iso(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(1_760_000_000 + second))


def _run(i: int) -> dict[str, Any]:
    status = STATUSES[i % 3]
    return {"run_id": f"run-{i:05d}", "model_name": f"model-{i % 7}", "status": status,
            "progress": {"progress": 100 if status == "completed" else 40}, "points": [],
            "completed": {"final_accuracy": 0.9} if status == "completed" else None,
            "failed": None, "updated": _iso(i * 60 + 3000), "started_at": _iso(i * 60),
            "ended_at": _iso(i * 60 + 3000) if status != "running" else None,
            "group": f"sweep-{i % 20}"}


def _value(i: int, step: int, k: int) -> float:
    return round(1.0 / (step + 1) + ((i * 31 + step * 17 + k) % 100) / 1000, 6)


def build(path: str, runs: int, points: int, keys: int, log: Log) -> tuple[float, int]:
    """Fill the server's history and the naive tables with the same runs and points."""
    started = time.perf_counter()
    names = ["loss", "val_loss", "accuracy", "val_accuracy"][:keys]
    store = Store(path)
    store.open().result()
    naive = sqlite3.connect(path + ".naive")
    naive.executescript("CREATE TABLE runs (run_id TEXT, data TEXT);"
                        "CREATE TABLE points (run_id TEXT, key TEXT, step INTEGER, value REAL);")
    for i in range(runs):
        run = _run(i)
        store.run_changed(run, i + 1)
        params = {"lr": 10 ** -(i % 4), "batch_size": 32 * (1 + i % 3), "optimizer": "adam"}
        store.params_added(run["run_id"], params, {"host": "box", "pid": i})
        rows = []
        for step in range(points):
            values = {name: _value(i, step, k) for k, name in enumerate(names)}
            store.points_added(run["run_id"], step, values)
            rows += [(run["run_id"], k, step, v) for k, v in values.items()]
        naive.execute("INSERT INTO runs VALUES (?, ?)",
                      (run["run_id"], json.dumps({**run, "params": params})))
        naive.executemany("INSERT INTO points VALUES (?, ?, ?, ?)", rows)
        store.flush().result()  # a run at a time: under the store's bound of pending rows
        if i % 100 == 99:
            naive.commit()
            log(f"history: {i + 1} runs written")
    dropped = store.dropped
    store.close()
    if dropped:
        raise RuntimeError(f"the store dropped {dropped} rows while the history was built")
    naive.commit()
    naive.close()
    return time.perf_counter() - started, runs * points * keys


def naive_row(run: dict[str, Any], last: dict[str, Any]) -> dict[str, Any]:
    """A stored run (``RunState`` + params) as a row of ``GET /api/runs``."""
    return {"run_id": run["run_id"], "model_name": run["model_name"], "status": run["status"],
            "started_at": run["started_at"], "ended_at": run["ended_at"],
            "progress": (run.get("progress") or {}).get("progress"),
            "final_accuracy": (run.get("completed") or {}).get("final_accuracy"),
            "params": run.get("params") or {}, "group": run.get("group"), "group_size": None,
            "last_metrics": last, "duration_s": None}


def naive_app(path: str) -> Starlette:
    """The same three routes, naively: no index, all points, sorting in Python."""
    db = sqlite3.connect(path + ".naive", check_same_thread=False)

    def runs(request: Request) -> Response:
        limit = int(request.query_params.get("limit", "50"))
        group = request.query_params.get("group")
        every = [json.loads(d) for (d,) in db.execute("SELECT data FROM runs")]
        every = [r for r in every if group is None or r["group"] == group]
        every.sort(key=lambda r: (r["started_at"], r["run_id"]), reverse=True)
        page = every[:limit]
        ids = [run["run_id"] for run in page]
        newest: dict[tuple[str, str], tuple[int, float]] = {}
        for run_id, key, step, value in db.execute(  # one scan of every point
                f"SELECT run_id, key, step, value FROM points WHERE run_id IN "
                f"({', '.join('?' * len(ids))})", ids):
            if (run_id, key) not in newest or step > newest[(run_id, key)][0]:
                newest[(run_id, key)] = (step, value)
        rows = [naive_row(run, {k: v for (r, k), (_, v) in newest.items() if r == run["run_id"]})
                for run in page]
        return JSONResponse({"runs": rows, "next_cursor": None})

    def metrics(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        series: dict[str, list[list[float]]] = {}
        for key, step, value in db.execute("SELECT key, step, value FROM points "
                                           "WHERE run_id = ? ORDER BY key, step", (run_id,)):
            series.setdefault(key, []).append([step, value])
        return JSONResponse({"run_id": run_id, "series": series})

    return Starlette(routes=[Route("/api/runs", runs),
                             Route("/api/runs/{run_id}/metrics", metrics)])


def _time(client: TestClient, path: str, repeat: int) -> dict[str, float]:
    times, size = [], 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        response = client.get(path)
        times.append((time.perf_counter() - t0) * 1000)
        assert response.status_code == 200, response.text
        size = len(response.content)
    return {"median_ms": statistics.median(times), "bytes": size}


def serving(runs: int, points: int, keys: int, repeat: int, log: Log) -> dict[str, Any]:
    """Median time of each request on our app and on the naive one."""
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "history.sqlite3")
        seconds, total = build(path, runs, points, keys, log)
        log(f"history: {total:,} points in {seconds:.1f} s ({total / seconds:,.0f} points/s "
            "through the store)")
        config = ServerConfig(db=path, port=0, metrics_interval=0, stall_timeout=0,
                              allowed_hosts=("testserver",), upload_dir=str(Path(tmp) / "up"))
        middle = f"run-{runs // 2:05d}"
        paths = {"runs": "/api/runs", "runs_500": "/api/runs?limit=500",
                 "runs_group": "/api/runs?group=sweep-7",
                 "run": f"/api/runs/{middle}", "series": f"/api/runs/{middle}/metrics"}
        ours: dict[str, Any] = {}
        with TestClient(create_app(config, plugins=None)) as client:
            for name, url in paths.items():
                ours[name] = _time(client, url, repeat)
                log(f"ours  {name:11} {ours[name]['median_ms']:8.2f} ms")
        naive: dict[str, Any] = {}
        with TestClient(naive_app(path)) as client:
            for name in ("runs", "runs_500", "runs_group", "series"):
                naive[name] = _time(client, paths[name], max(3, repeat // 4))
                log(f"naive {name:11} {naive[name]['median_ms']:8.2f} ms")
    return {"runs": runs, "points": points, "keys": keys, "build_s": seconds,
            "ours": ours, "naive": naive}


def _events(n: int, offset: int) -> list[dict[str, Any]]:
    return [{"type": "training_progress", "run_id": f"ingest-{(offset + i) % 8}",
             "stage": "model_training", "progress": 50, "current_step": offset + i,
             "current_loss": 0.5, "current_accuracy": 0.8,
             "metrics": {"val_loss": 0.6, "val_acc": 0.7, "lr": 0.001, "grad_norm": 1.5,
                         "throughput": 1234.5}} for i in range(n)]


def ingest(events: int, rounds: int, log: Log) -> dict[str, Any]:
    """Events per second into the real app: series packed (ours), a row per point (the
    previous writer), no series; interleaved, the order rotating every round."""
    from _series_rows import RowPerPointWriter

    from mlops_hooks.server.state import store as store_module

    modes = ("with", "rows", "without")
    rates: dict[str, list[float]] = {mode: [] for mode in modes}
    cpu: dict[str, list[float]] = {mode: [] for mode in modes}
    original, writer = Store.points_added, store_module.SeriesWriter
    batch = 250
    for r in range(rounds):
        for mode in modes[r % 3:] + modes[:r % 3]:
            Store.points_added = original if mode != "without" else (  # type: ignore[method-assign]
                lambda self, run_id, step, values: None)
            store_module.SeriesWriter = RowPerPointWriter if mode == "rows" else writer  # type: ignore[misc,assignment]
            with tempfile.TemporaryDirectory() as tmp:
                config = ServerConfig(db=str(Path(tmp) / "h.sqlite3"), port=0,
                                      metrics_interval=0, stall_timeout=0,
                                      allowed_hosts=("testserver",),
                                      upload_dir=str(Path(tmp) / "up"))
                with TestClient(create_app(config, plugins=None)) as client:
                    bodies = [_events(batch, start) for start in range(0, events, batch)]
                    t0, c0 = time.perf_counter(), time.process_time()
                    for body in bodies:
                        response = client.post("/api/events", json=body)
                        assert response.status_code == 200, response.text
                    rates[mode].append(events / (time.perf_counter() - t0))
                    cpu[mode].append((time.process_time() - c0) / events * 1e6)
                    if mode == "with":  # every point stored (the bound aside)
                        loss = client.get("/api/runs/ingest-0/metrics").json()["series"]["loss"]
                        sent = len(bodies) * batch // 8
                        assert len(loss) == sent or sent > MAX_POINTS, len(loss)
            log(f"ingest {mode:8} round {r + 1}: {rates[mode][-1]:,.0f} events/s, "
                f"{cpu[mode][-1]:.1f} µs CPU/event (all threads, client included)")
    Store.points_added = original  # type: ignore[method-assign]
    store_module.SeriesWriter = writer  # type: ignore[misc]
    median = {mode: statistics.median(rates[mode]) for mode in modes}
    cpu_median = {mode: statistics.median(cpu[mode]) for mode in modes}
    paired = {mode: [a / b for a, b in zip(rates[mode], rates["without"], strict=True)]
              for mode in ("with", "rows")}
    return {"events": events, "rounds": rounds, "with": rates["with"], "rows": rates["rows"],
            "without": rates["without"], "ratio": median["with"] / median["without"],
            "ratio_rows": median["rows"] / median["without"],
            "paired": paired["with"], "paired_rows": paired["rows"],
            "cpu_with": cpu["with"], "cpu_rows": cpu["rows"], "cpu_without": cpu["without"],
            "cpu_ratio": cpu_median["with"] / cpu_median["without"],
            "cpu_ratio_rows": cpu_median["rows"] / cpu_median["without"]}


def store_writes(events: int, rounds: int, log: Log) -> dict[str, Any]:
    """The series writers alone, as the store runs them: batches of 250 events (7 new points
    each) written and committed in a file database (WAL, ``synchronous=NORMAL``); packed
    (ours) against a row per point (previous), interleaved. Wall and CPU µs per event."""
    from _series_rows import POINTS, RowPerPointWriter

    from mlops_hooks.server.state.series import SCHEMA, SeriesWriter

    points = [(run_id, step, values) for event in _events(events, 0)
              for run_id, step, values in [(event["run_id"], event["current_step"],
                                            {"loss": 0.5, "accuracy": 0.8, **event["metrics"]})]]
    wall: dict[str, list[float]] = {"packed": [], "rows": []}
    cpu: dict[str, list[float]] = {"packed": [], "rows": []}
    for r in range(rounds):
        for mode in (("packed", "rows") if r % 2 == 0 else ("rows", "packed")):
            with tempfile.TemporaryDirectory() as tmp:
                db = sqlite3.connect(str(Path(tmp) / "s.sqlite3"), isolation_level=None)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.executescript(SCHEMA + POINTS + ";")
                writer: Any = SeriesWriter() if mode == "packed" else RowPerPointWriter()
                t0, c0 = time.perf_counter(), time.process_time()
                for start in range(0, events, 250):
                    db.execute("BEGIN")
                    writer.write(db, points[start:start + 250])
                    db.execute("COMMIT")
                wall[mode].append((time.perf_counter() - t0) / events * 1e6)
                cpu[mode].append((time.process_time() - c0) / events * 1e6)
                db.close()
        log(f"store writes round {r + 1}: packed {wall['packed'][-1]:.1f} µs/event wall, "
            f"{cpu['packed'][-1]:.1f} CPU; a row per point {wall['rows'][-1]:.1f} wall, "
            f"{cpu['rows'][-1]:.1f} CPU")
    med = {k: statistics.median(v) for k, v in wall.items()}
    cmed = {k: statistics.median(v) for k, v in cpu.items()}
    return {"events": events, "rounds": rounds, "wall": wall, "cpu": cpu,
            "wall_ratio": med["packed"] / med["rows"], "cpu_ratio": cmed["packed"] / cmed["rows"],
            "paired": [a / b for a, b in zip(wall["packed"], wall["rows"], strict=True)]}


def store_line(w: dict[str, Any]) -> str:
    """The line of a :func:`store_writes` result."""
    return (f"series writes alone ({w['events']:,} events, 7 points each, committed every 250, "
            f"{w['rounds']} interleaved rounds, medians): packed "
            f"{statistics.median(w['wall']['packed']):.1f} µs/event wall, "
            f"{statistics.median(w['cpu']['packed']):.1f} CPU; a row per point "
            f"{statistics.median(w['wall']['rows']):.1f} wall, "
            f"{statistics.median(w['cpu']['rows']):.1f} CPU: packed / rows {w['wall_ratio']:.3f} "
            f"wall (paired {min(w['paired']):.3f}-{max(w['paired']):.3f}), "
            f"{w['cpu_ratio']:.3f} CPU")


def measure(quick: bool, log: Log = _log) -> dict[str, Any]:
    """Both measurements (``--quick``: 200 runs and fewer events)."""
    runs = 200 if quick else 1000
    return {"serving": serving(runs, 2000, 2, 10 if quick else 20, log),
            "ingest": ingest(5_000 if quick else 20_000, 3 if quick else 5, log),
            "store": store_writes(10_000 if quick else 20_000, 4 if quick else 6, log)}


def report(result: dict[str, Any]) -> list[str]:
    """Markdown lines of a :func:`measure` result."""
    s, i = result["serving"], result["ingest"]
    lines = [f"history: {s['runs']:,} runs x {s['points']:,} steps x {s['keys']} series",
             "", "| request | ours (median) | naive (median) | naive / ours |",
             "|---|---:|---:|---:|"]
    for name, label in (("runs", "GET /api/runs (50)"), ("runs_500", "GET /api/runs?limit=500"),
                        ("runs_group", "GET /api/runs?group=..."),
                        ("run", "GET /api/runs/{id}"), ("series", "GET /api/runs/{id}/metrics")):
        ours = s["ours"][name]
        naive = s["naive"].get(name)
        lines.append(f"| {label} | {ours['median_ms']:.2f} ms ({ours['bytes']:,} B) | "
                     + (f"{naive['median_ms']:.2f} ms ({naive['bytes']:,} B) | "
                        f"{naive['median_ms'] / ours['median_ms']:.1f}x |" if naive else "- | - |"))
    return [*lines, "", ingest_line(i), "", store_line(result["store"])]


def ingest_line(i: dict[str, Any]) -> str:
    """The line of an :func:`ingest` result."""
    return (f"ingest ({i['events']:,} events, {i['rounds']} interleaved rounds, medians): "
            f"without series {statistics.median(i['without']):,.0f} events/s; series "
            f"packed (ours) {statistics.median(i['with']):,.0f} events/s, ratio "
            f"{i['ratio']:.3f} (paired {min(i['paired']):.3f}-{max(i['paired']):.3f}), "
            f"CPU/event {i['cpu_ratio']:.3f}; a row per point (previous) "
            f"{statistics.median(i['rows']):,.0f} events/s, ratio {i['ratio_rows']:.3f} "
            f"(paired {min(i['paired_rows']):.3f}-{max(i['paired_rows']):.3f}), CPU/event "
            f"{i['cpu_ratio_rows']:.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 runs, fewer events")
    parser.add_argument("--ingest-only", action="store_true", help="only the ingest part")
    parser.add_argument("--events", type=int, default=None, help="ingest events a round")
    parser.add_argument("--rounds", type=int, default=None, help="ingest rounds")
    parser.add_argument("--json", metavar="PATH", help="also write the raw results here")
    args = parser.parse_args()
    if args.ingest_only:
        result = {"ingest": ingest(args.events or 20_000, args.rounds or 5, _log),
                  "store": store_writes(args.events or 20_000, args.rounds or 5, _log)}
        print(ingest_line(result["ingest"]) + "\n\n" + store_line(result["store"]))
    else:
        result = measure(args.quick)
        print("\n".join(report(result)))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
