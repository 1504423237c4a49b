"""The dashboard shows the alert rules' alerts (docs/alerts.md) and drops the ones they clear,
live and after a reload (from the snapshot)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, expect

from tests.browser.conftest import Dashboard
from tests.browser.test_alerts import expect_titles
from tests.browser.test_dashboard import run_panel
from tests.live_server import LiveServer


@pytest.fixture
def rules_dash(browser_context: BrowserContext, tmp_path: Path) -> Iterator[Dashboard]:
    """A dashboard of a server with its alert rules on (the default)."""
    with LiveServer(tmp_path, extra_args=["--metrics-interval", "0", "--stall-timeout", "0",
                                          "--stall-floor", "1", "--stall-factor", "2",
                                          "--crash-grace", "600"]) as server:
        page = browser_context.new_page()
        try:
            yield Dashboard(page, server)
        finally:
            page.close()


def _progress(run_id: str, step: int = 1) -> dict[str, object]:
    return {"type": "training_progress", "run_id": run_id, "model_name": "Net",
            "stage": "model_training", "current_step": step, "current_loss": 0.5}


def test_rule_alerts_show_and_a_clear_closes_its_alert(rules_dash: Dashboard) -> None:
    dash = rules_dash
    page = dash.open()
    dash.wait_live()
    dash.post(_progress("r-fail"), {"type": "training_failed", "run_id": "r-fail",
                                    "model_name": "Net", "error": "CUDA out of memory",
                                    "error_code": "OUT_OF_MEMORY"})
    expect_titles(page, ["Training Run Failed"])
    item = page.locator("#alerts > li").first
    assert "CUDA out of memory" in item.inner_text()
    # two steps, then none: the server marks the run stalled (--stall-floor 1) and the rule fires
    dash.post(_progress("r-stall", 1), _progress("r-stall", 2))
    expect_titles(page, ["Training Run Stalled", "Training Run Failed"])
    dash.post(_progress("r-stall", 3))  # steps again: running, and the rule clears
    # the stall alert is closed; its clearing notice is low priority and dismisses itself
    expect_titles(page, ["Training Run Failed"], low=False)
    page.reload()
    dash.wait_live()
    expect_titles(page, ["Training Run Failed"], low=False)
    dash.console.assert_clean()


@pytest.fixture
def nan_dash(browser_context: BrowserContext, tmp_path: Path) -> Iterator[Dashboard]:
    """A dashboard of a server with its alert rules on and no stall within the test."""
    with LiveServer(tmp_path, extra_args=["--metrics-interval", "0", "--stall-timeout", "0",
                                          "--stall-floor", "600"]) as server:
        page = browser_context.new_page()
        try:
            yield Dashboard(page, server)
        finally:
            page.close()


def test_a_nan_loss_shows_in_the_run_panel_and_raises_its_alert(nan_dash: Dashboard) -> None:
    dash = nan_dash
    page = dash.open()
    dash.wait_live()
    dash.post(_progress("r-nan", 1))
    loss = run_panel(page, "r-nan").locator('[data-stat="loss"] dd')
    expect(loss).to_have_text("0.5")
    nan = {k: v for k, v in _progress("r-nan", 2).items() if k != "current_loss"}
    dash.post(dict(nan, loss_not_finite="nan"))
    expect(loss).to_have_text("NaN")  # not the last finite loss
    expect_titles(page, ["Loss Is Not a Number"])
    assert "is nan at step 2" in page.locator("#alerts > li").first.inner_text()
    dash.post(dict(_progress("r-nan", 3), current_loss=0.25))
    expect(loss).to_have_text("0.25")
    dash.post(dict(nan, current_step=4, loss_not_finite="-inf"))
    expect(loss).to_have_text("-Inf")
    page.reload()  # from the snapshot
    dash.wait_live()
    expect(run_panel(page, "r-nan").locator('[data-stat="loss"] dd')).to_have_text("-Inf")
    expect_titles(page, ["Loss Is Not a Number"])  # one alert for the run
    dash.console.assert_clean()
