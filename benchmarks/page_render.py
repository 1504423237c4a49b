"""The run history pages' first render in Chromium: our server against a naive one, same data.

A history of ``--runs`` runs (1,000) with ``--points`` steps (2,000) of loss and val_loss each
is written once by ``run_history.build`` into both the server's own database and the naive
tables (one table of runs as JSON, one table of every point, no index). Two servers then serve
the same pages (the same HTML and scripts from ``server/static``):

* ours: a real ``mlops-hooks serve`` on that database;
* naive: a Starlette app in its own process (``--serve-naive``), the naive routes of
  ``run_history.py`` (every run decoded and sorted in Python for the listing, every point of
  the page's runs scanned for their last metrics, every point of a run read for its series)
  plus ``GET /api/runs/{id}`` (a scan of the runs and of the points) and a ``/ws`` that sends
  the snapshot our server sent (the pages start loading on it).

Debian's Chromium (``/usr/bin/chromium``) opens, on each server in turn (the order alternates
every round, a fresh browser context each time), ``/runs?limit=500`` and ``/runs/{id}`` of a
run in the middle of the history: the time from navigation to the page's data drawn
(``performance.mark('mlops-ready')``, set when the first REST reads are rendered; both with
``?fetchTimeoutMs=600000``: the naive listing takes longer than the pages' 8 s limit). Reported:
medians over ``--rounds`` rounds and the ratio naive / ours. Then, on ours only, ``/compare``
of 5 runs and one whole-table render of 1,000 rows.

Usage::

    python benchmarks/page_render.py            # about 3 minutes (most of it building)
    python benchmarks/page_render.py --quick    # 200 runs, 500 points

Nothing here passes or fails a build; numbers depend on the machine (and its load).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from tests.live_server import LiveServer, free_port  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
#: The pages give up on a REST read after 8 s; the naive server's can take longer here.
WAIT = "fetchTimeoutMs=600000"
READY = "() => performance.getEntriesByName('mlops-ready')[0].startTime"
RENDER = """() => {
  document.body.offsetHeight;
  const t0 = performance.now();
  window.mlopsRuns.render();
  const t1 = performance.now();
  document.body.offsetHeight;
  return [t1 - t0, performance.now() - t1];
}"""


def _log(text: str) -> None:
    print(f"  {text}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------- the naive server


def naive_pages_app(path: str, snapshot: str) -> Any:
    """The naive routes of ``run_history.py`` with the pages, a run's detail and ``/ws``."""
    import sqlite3

    import run_history
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Mount, Route, WebSocketRoute
    from starlette.staticfiles import StaticFiles
    from starlette.websockets import WebSocket, WebSocketDisconnect

    from mlops_hooks.server.endpoints.rest import STATIC_DIR

    db = sqlite3.connect(path + ".naive", check_same_thread=False)

    def page(name: str) -> Any:
        async def serve(request: Request) -> Response:
            return FileResponse(STATIC_DIR / name, headers={"Cache-Control": "no-cache"})
        return serve

    def detail(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        found = next((run for run in (json.loads(d) for (d,) in db.execute(
            "SELECT data FROM runs")) if run["run_id"] == run_id), None)
        if found is None:
            return JSONResponse({"error": "no such run"}, status_code=404)
        newest: dict[str, tuple[int, float]] = {}
        for key, step, value in db.execute(
                "SELECT key, step, value FROM points WHERE run_id = ?", (run_id,)):
            if key not in newest or step > newest[key][0]:
                newest[key] = (step, value)
        row = run_history.naive_row(found, {k: v for k, (_, v) in newest.items()})
        return JSONResponse({"run": {**row, "metadata": {}, "series_keys": sorted(newest)}})

    async def ws(socket: WebSocket) -> None:
        await socket.accept()
        await socket.send_text(snapshot)
        try:
            while True:
                await socket.receive_text()
        except WebSocketDisconnect:
            pass

    base = run_history.naive_app(path)
    return Starlette(routes=[
        Route("/runs", page("runs.html")), Route("/runs/{run_id}", page("run.html")),
        Route("/api/runs/{run_id}", detail), *base.routes,
        Mount("/static", StaticFiles(directory=STATIC_DIR)), WebSocketRoute("/ws", ws)])


def serve_naive(path: str, port: int, snapshot_file: str) -> int:
    """Child mode: serve the naive app until killed."""
    import uvicorn

    app = naive_pages_app(path, Path(snapshot_file).read_text())
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", ws="websockets")
    return 0


async def _snapshot(ws_url: str) -> str:
    import websockets

    async with websockets.connect(ws_url) as socket:
        return str(await socket.recv())


def _wait_up(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the naive server exited with {process.returncode}")
        try:
            httpx.get(url + "/runs", timeout=1).raise_for_status()
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("the naive server did not start in 60 s")


# ---------------------------------------------------------------------- measuring


def _first_render(browser: Any, url: str) -> tuple[float, Any]:
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    page.goto(url)
    expect(page.locator("body")).to_have_attribute("data-ready", "true", timeout=300_000)
    if page.locator("#page-error").is_visible():
        raise RuntimeError(f"{url}: {page.locator('#page-error').inner_text()}")
    return float(page.evaluate(READY)), page


def measure(runs: int, points: int, rounds: int, log: Any = _log) -> dict[str, Any]:
    import run_history
    from playwright.sync_api import expect, sync_playwright

    results: dict[str, Any] = {"runs": runs, "points": points, "rounds": rounds}
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "history.sqlite3")
        seconds, total = run_history.build(path, runs, points, 2, log)
        log(f"history: {total:,} points written in {seconds:.0f} s")
        with LiveServer(Path(tmp), db=path, startup_timeout=120,
                        extra_args=["--metrics-interval", "0", "--stall-timeout", "0"]) as ours:
            snapshot_file = Path(tmp) / "snapshot.json"
            snapshot_file.write_text(asyncio.run(_snapshot(ours.ws_url)))
            port = free_port()
            naive = subprocess.Popen([sys.executable, str(Path(__file__).resolve()),
                                      "--serve-naive", path, "--port", str(port),
                                      "--snapshot", str(snapshot_file)])
            try:
                naive_url = f"http://127.0.0.1:{port}"
                _wait_up(naive_url, naive)
                urls = {"ours": ours.http_url, "naive": naive_url}
                middle = f"run-{runs // 2:05d}"
                times: dict[str, dict[str, list[float]]] = {
                    name: {"runs_page": [], "run_page": []} for name in urls}
                with sync_playwright() as playwright:
                    browser = playwright.chromium.launch(executable_path=CHROMIUM,
                                                         args=["--no-sandbox", "--headless"])
                    for r in range(rounds + 1):  # the first round warms both up
                        for name in (("ours", "naive") if r % 2 else ("naive", "ours")):
                            listing, page = _first_render(
                                browser, f"{urls[name]}/runs?limit=500&{WAIT}")
                            rows = page.locator("#runs-body tr").count()
                            page.context.close()
                            one, page = _first_render(browser,
                                                      f"{urls[name]}/runs/{middle}?{WAIT}")
                            drawn = sum(int(v) for v in page.locator(".chart").evaluate_all(
                                "els => els.map(e => e.dataset.points)"))
                            page.context.close()
                            if rows != min(runs, 500) or drawn != 2 * points:
                                raise RuntimeError(f"{name}: {rows} rows, {drawn} points drawn")
                            if r:
                                times[name]["runs_page"].append(listing)
                                times[name]["run_page"].append(one)
                            log(f"round {r}{' (warm-up)' if not r else ''} {name:5}: /runs "
                                f"{listing:8.1f} ms, /runs/{{id}} {one:8.1f} ms")
                    # ours only: the compare view, and a whole-table render of every run
                    ids = ",".join(f"run-{i:05d}" for i in range(5))
                    compare, page = _first_render(browser, f"{ours.http_url}/compare?runs={ids}")
                    results["compare_first_render_ms"] = compare
                    page.goto(ours.http_url + "/runs?limit=500")
                    expect(page.locator("body")).to_have_attribute("data-ready", "true")
                    while page.locator("#runs-more").is_visible():
                        count = page.locator("#runs-body tr").count()
                        page.locator("#runs-more").click()
                        expect(page.locator("#runs-body tr")).not_to_have_count(count)
                    results["rows"] = page.locator("#runs-body tr").count()
                    renders = [page.evaluate(RENDER) for _ in range(5)]
                    results["table_render_js_ms"] = statistics.median(x[0] for x in renders)
                    results["table_render_layout_ms"] = statistics.median(x[1] for x in renders)
                    browser.close()
            finally:
                naive.terminate()
                naive.wait(timeout=30)
    for view in ("runs_page", "run_page"):
        ours_ms = statistics.median(times["ours"][view])
        naive_ms = statistics.median(times["naive"][view])
        results[view] = {"ours_ms": ours_ms, "naive_ms": naive_ms, "ratio": naive_ms / ours_ms,
                         "ours": times["ours"][view], "naive": times["naive"][view]}
    return results


def report(r: dict[str, Any]) -> list[str]:
    """Markdown lines of a :func:`measure` result."""
    lines = [f"run history pages, first render in Chromium: {r['runs']:,} runs x "
             f"{r['points']:,} steps x 2 series, medians of {r['rounds']} interleaved rounds",
             "", "| page | ours | naive (no index, all points) | naive / ours |",
             "|---|---:|---:|---:|"]
    for view, label in (("runs_page", "/runs?limit=500 (500 rows)"),
                        ("run_page", f"/runs/{{id}} ({2 * r['points']:,} points charted)")):
        v = r[view]
        lines.append(f"| {label} | {v['ours_ms']:.0f} ms | {v['naive_ms']:.0f} ms | "
                     f"{v['ratio']:.1f}x |")
    lines += ["", f"ours only: /compare of 5 runs {r['compare_first_render_ms']:.0f} ms; a "
                  f"whole-table render of {r['rows']:,} rows {r['table_render_js_ms']:.1f} ms "
                  f"JavaScript + {r['table_render_layout_ms']:.1f} ms layout"]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 runs, 500 points, 3 rounds")
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--points", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", metavar="PATH", help="also write the raw results here")
    parser.add_argument("--serve-naive", metavar="DB", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--snapshot", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_naive:
        return serve_naive(args.serve_naive, args.port, args.snapshot)
    runs, points, rounds = (200, 500, 3) if args.quick else (args.runs, args.points, args.rounds)
    result = measure(runs, points, rounds)
    print("\n".join(report(result)))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
