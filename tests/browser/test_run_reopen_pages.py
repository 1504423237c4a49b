"""A reopened run in real Chromium: `/runs`, `/runs/{id}` and the dashboard's panel.

A run fails; the pages are open on it. A new attempt of the same run id starts later (the
``training_start`` activity, then its steps, as ``Run.start()`` sends them): every page shows the
run running again and the new attempt's points, from the stream alone (no page reads the REST
API again after it loaded), and a late step of the ended attempt adds nothing before that.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Request, expect

from tests.browser.history import History, open_page, progress
from tests.live_server import LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]
RUN = "again"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path, extra_args=["--metrics-interval", "0", "--stall-timeout", "0"])
    live.start()
    try:
        yield live
    finally:
        live.stop()


def _at(second: int) -> str:
    return f"2026-12-07T08:00:{second:02d}Z"


def _start(second: int) -> dict[str, Any]:
    return {"type": "activity_update", "run_id": RUN, "timestamp": _at(second),
            "activity": {"id": f"start-{second}", "title": "Model Training Started",
                         "description": "Training Resumer", "action_type": "training_start",
                         "status": "in_progress"}}


def _step(step: int, second: int, loss: float) -> dict[str, Any]:
    return {**progress(RUN, step, loss=loss), "model_name": "Resumer", "timestamp": _at(second)}


def test_the_pages_show_a_reopened_run_running_with_its_new_points_from_the_stream(
        browser_context: BrowserContext, server: LiveServer) -> None:
    history = History(server)
    history.post(_start(0), *(_step(s, s, 1 / s) for s in range(1, 6)),
                 {"type": "training_failed", "run_id": RUN, "error": "RuntimeError: boom",
                  "error_code": "TRAINING_ERROR", "stage_failed": "model_training",
                  "timestamp": _at(10)})
    listing, run_page, dashboard = (browser_context.new_page() for _ in range(3))
    watches = [open_page(listing, server.http_url + "/runs"),
               open_page(run_page, server.http_url + f"/runs/{RUN}"),
               open_page(dashboard, server.http_url + "/")]
    row = listing.locator(f'#runs-body tr[data-run-id="{RUN}"]')
    panel = dashboard.locator(f'article.run[data-run-id="{RUN}"]')
    expect(row).to_have_attribute("data-status", "failed")
    expect(run_page.locator("#run-status")).to_have_text("failed")
    expect(panel).to_have_attribute("data-status", "failed")
    chart = run_page.locator('figure.chart-card[data-key="loss"] .chart')
    expect(chart).to_have_attribute("data-points", "5")
    reads: list[str] = []

    def note(request: Request) -> None:
        if "/api/" in request.url:
            reads.append(request.url)

    for page in (listing, run_page, dashboard):
        page.on("request", note)
    history.post(_step(9, 11, 0.01))  # a late step of the ended attempt: changes nothing
    history.post(_start(20))
    expect(row).to_have_attribute("data-status", "running")
    # one step at a time, each shown before the next is sent: none is coalesced away for a
    # page that is behind (whose seq gap would make it read the series again, by design)
    history.post(_step(4, 21, 0.5))  # resumed from its checkpoint at step 4
    run_page.wait_for_function(
        "() => window.mlopsRunPage.state.series.get('loss').ys[3] === 0.5")
    history.post(_step(6, 22, 0.125))
    expect(chart).to_have_attribute("data-points", "6")
    history.post(_step(7, 23, 0.0625))
    expect(row.locator('td[data-col="m:loss"]')).to_have_text("0.0625")
    expect(run_page.locator("#run-status")).to_have_text("running")
    expect(run_page.locator("#run-status")).to_have_attribute(
        "title", "a new attempt of the run started")
    expect(chart).to_have_attribute("data-points", "7")  # 1-5, resumed at 4: 4-7 (no 9)
    assert run_page.evaluate("window.mlopsRunPage.state.series.get('loss').xs") == [
        1, 2, 3, 4, 5, 6, 7]
    assert run_page.evaluate("window.mlopsRunPage.state.series.get('loss').ys") == [
        1, 0.5, 1 / 3, 0.5, 0.2, 0.125, 0.0625]
    expect(panel).to_have_attribute("data-status", "running")
    expect(panel.locator(".badge")).to_have_text("Running")
    expect(panel.locator(".failure-error")).not_to_be_visible()
    history.post({"type": "training_completed", "run_id": RUN, "final_accuracy": 0.9,
                  "timestamp": _at(30)})
    expect(row).to_have_attribute("data-status", "completed")
    expect(run_page.locator("#run-status")).to_have_text("completed")
    expect(panel.locator(".badge")).to_have_text("Completed")
    assert reads == []  # pushed: no page read the REST API again
    for watch in watches:
        watch.assert_clean()
    for page in (listing, run_page, dashboard):
        page.close()
