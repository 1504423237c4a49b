"""The run history pages' first render in Chromium, on a real server with a big history.

A real ``mlops-hooks serve`` gets ``--runs`` runs (1,000: params, a progress event with their
last metrics, an end) and one run of ``--points`` steps (2,000) with loss, accuracy and
val_loss, through ``POST /api/events``. Debian's Chromium (``/usr/bin/chromium``) then opens:

* ``/runs?limit=500``: navigation to the page's data drawn (``performance.mark('mlops-ready')``,
  set when the first REST reads are rendered), then "Load more" to 1,000 rows, then the time of
  one whole-table render of the 1,000 rows (JavaScript, then the layout it causes; median);
* ``/runs/{id}`` of the long run: navigation to its three charts drawn (6,000 points);
* ``/compare?runs=`` of 5 runs.

Usage::

    python benchmarks/page_render.py            # about a minute
    python benchmarks/page_render.py --quick    # 200 runs, 500 points

Nothing here passes or fails a build; numbers depend on the machine (and its load).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from tests.live_server import LiveServer  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
READY = "() => performance.getEntriesByName('mlops-ready')[0].startTime"
RENDER = """() => {
  document.body.offsetHeight;
  const t0 = performance.now();
  window.mlopsRuns.render();
  const t1 = performance.now();
  document.body.offsetHeight;
  return [t1 - t0, performance.now() - t1];
}"""


def _post(url: str, events: list[dict[str, Any]]) -> None:
    for start in range(0, len(events), 500):
        httpx.post(url + "/api/events", json=events[start:start + 500],
                   timeout=60).raise_for_status()


def _history(url: str, runs: int, points: int) -> None:
    events: list[dict[str, Any]] = []
    for i in range(runs):
        run_id = f"run-{i:04d}"
        at = f"2026-01-01T{i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z"
        events += [
            {"type": "run_params", "run_id": run_id, "model_name": f"model {i}", "timestamp": at,
             "group": f"sweep-{i % 10}",
             "params": {"lr": 10 ** -(i % 5), "batch_size": 2 ** (i % 6),
                        "optimizer": ("adam", "sgd")[i % 2]}},
            {"type": "training_progress", "run_id": run_id, "stage": "model_training",
             "timestamp": at, "current_step": 100, "progress": 100, "current_loss": 1 / (i + 1),
             "current_accuracy": (i % 100) / 100, "metrics": {"val_loss": 2 / (i + 1)}},
            {"type": "training_completed", "run_id": run_id, "timestamp": at,
             "final_accuracy": (i % 100) / 100},
        ]
    _post(url, events)
    _post(url, [{"type": "training_progress", "run_id": "long", "stage": "model_training",
                 "current_step": s, "progress": 100 * s / points, "current_loss": 1 / s,
                 "current_accuracy": s / points, "metrics": {"val_loss": 1.5 / s}}
                for s in range(1, points + 1)])


def measure(runs: int, points: int) -> dict[str, float]:
    from playwright.sync_api import expect, sync_playwright

    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp, \
            LiveServer(Path(tmp), extra_args=["--metrics-interval", "0",
                                              "--stall-timeout", "0"]) as server:
        _history(server.http_url, runs, points)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM,
                                                 args=["--no-sandbox", "--headless"])
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.goto(server.http_url + "/runs?limit=500")
            expect(page.locator("body")).to_have_attribute("data-ready", "true", timeout=60_000)
            results["runs_first_render_ms"] = page.evaluate(READY)
            while page.locator("#runs-more").is_visible():
                count = page.locator("#runs-body tr").count()
                page.locator("#runs-more").click()
                expect(page.locator("#runs-body tr")).not_to_have_count(count)
            results["runs_rows"] = page.locator("#runs-body tr").count()
            renders = [page.evaluate(RENDER) for _ in range(5)]
            results["runs_render_js_ms"] = statistics.median(r[0] for r in renders)
            results["runs_render_layout_ms"] = statistics.median(r[1] for r in renders)
            page.goto(server.http_url + "/runs/long")
            expect(page.locator("body")).to_have_attribute("data-ready", "true", timeout=60_000)
            results["run_page_first_render_ms"] = page.evaluate(READY)
            results["run_page_points"] = sum(int(v) for v in page.locator(".chart").evaluate_all(
                "els => els.map(e => e.dataset.points)"))
            ids = ",".join(["long", *(f"run-{i:04d}" for i in range(4))])
            page.goto(f"{server.http_url}/compare?runs={ids}")
            expect(page.locator("body")).to_have_attribute("data-ready", "true", timeout=60_000)
            results["compare_first_render_ms"] = page.evaluate(READY)
            browser.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 runs, 500 points")
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--points", type=int, default=2000)
    args = parser.parse_args()
    runs, points = (200, 500) if args.quick else (args.runs, args.points)
    print(f"run history pages: {runs} runs, one run of {points} steps x 3 series")
    for name, value in measure(runs, points).items():
        print(f"  {name:28} {value:10.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
