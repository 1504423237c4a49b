"""The dashboard renders a server's state and every event of the spec, in real Chromium."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Locator, Page, expect

from tests.browser.conftest import ARTIFACTS, Dashboard, spec_events
from tests.live_server import LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.timeout(90)]

OOM = "Insufficient memory available for training"
SUGGESTIONS = ["Reduce batch size", "Use smaller dataset"]


def run_panel(page: Page, run_id: str) -> Locator:
    return page.locator(f'article.run[data-run-id="{run_id}"]')


def wait_bar_fraction(page: Page, bar: Locator, fraction: float) -> None:
    """Wait until the bar's fill is ``fraction`` of its track, as drawn (after the transition)."""
    page.wait_for_function(
        """([el, want]) => {
            const fill = el.querySelector('.progress-fill');
            const ratio = fill.getBoundingClientRect().width / el.getBoundingClientRect().width;
            return Math.abs(ratio - want) < 0.005;
        }""",
        arg=[bar.element_handle(), fraction],
    )


def test_page_renders_the_snapshot_of_a_server_that_has_state(dash: Dashboard) -> None:
    ex = spec_events()
    dash.post(ex["model_deployed"], ex["model_status_change"], ex["prediction_volume"])
    live = dict(ex["training_progress"], run_id="run-live", model_name="Customer Predictor v3.3",
                current_accuracy=0.91)
    history = [
        dict(live, progress=epoch * 65 // 15, current_epoch=epoch, message=f"Epoch {epoch}/20",
             current_loss=round(0.7 * 0.8**epoch, 4), current_accuracy=round(0.6 + 0.02 * epoch, 3))
        for epoch in range(1, 15)
    ]
    dash.post(*history, live)
    dash.post(dict(ex["training_failed"], run_id="run-oom", model_name="Fraud Detector v1.4"))
    dash.post(dict(ex["training_completed"], run_id="run-done", model_name="Churn Model v2.0"))
    dash.post(ex["system_metrics"], ex["health_change"], ex["activity_update"], ex["system_alert"],
              ex["file_validated"])

    page = dash.open()
    dash.wait_live()

    expect(page.locator("#model-name")).to_have_text("Customer Predictor v3.2")
    expect(page.locator("#model-version")).to_have_text("v3.2")
    expect(page.locator("#model-accuracy")).to_have_text("97.3%")
    expect(page.locator("#model-status-text")).to_have_text("Deployed & Active")
    expect(page.locator("#model-dot")).to_have_attribute("data-status", "active")
    expect(page.locator("#model-health")).to_have_text("95%")
    expect(page.locator("#action-retrain")).to_be_enabled()
    expect(page.locator("#action-activate")).to_be_disabled()
    expect(page.locator("#pred-total")).to_have_text("5,247")
    expect(page.locator("#pred-milestone")).to_contain_text("5,000 predictions milestone reached")

    run = run_panel(page, "run-live")
    expect(run.locator(".run-title")).to_have_text("Customer Predictor v3.3")
    expect(run.locator(".run-percent")).to_have_text("65%")
    bar = run.locator('[role="progressbar"]')
    expect(bar).to_have_attribute("aria-valuenow", "65")
    wait_bar_fraction(page, bar, 0.65)
    expect(run.locator(".stage-text")).to_have_text("Training model")
    expect(run.locator('[data-stat="epoch"] dd')).to_have_text("15/20")
    expect(run.locator('[data-stat="loss"] dd')).to_have_text("0.0234")
    expect(run.locator('[data-stat="eta"] dd')).to_have_text("3m 00s")
    expect(run.locator(".run-message")).to_have_text("Training 65% complete - Epoch 15/20")
    expect(run.locator("path.chart-line.series-loss")).to_have_count(1)
    expect(run.locator("path.chart-line.series-acc")).to_have_count(1)

    failed = run_panel(page, "run-oom")
    expect(failed).to_have_attribute("data-status", "failed")
    expect(failed.locator(".failure-error")).to_have_text(OOM)
    expect(failed.locator(".chip-error")).to_have_text("MEMORY_ERROR")
    expect(failed.locator(".suggestions li")).to_have_text(SUGGESTIONS)
    expect(failed.locator(".run-percent")).to_have_text("45%")
    expect(failed.get_by_role("button", name="Retry training")).to_be_enabled()

    done = run_panel(page, "run-done")
    expect(done.locator(".done-message")).to_contain_text("Training completed successfully!")
    expect(done.locator('[data-stat="final_accuracy"] dd')).to_have_text("96.8%")
    expect(done.locator('[data-stat="training_time"] dd')).to_have_text("4m 23s")
    expect(done.get_by_role("button", name="Deploy model")).to_be_enabled()

    expect(page.locator("#cpu-value")).to_have_text("45.2%")
    expect(page.locator("#memory-value")).to_have_text("67.8%")
    expect(page.locator("#disk-value")).to_have_text("23.1%")
    expect(page.locator("#cpu-bar")).to_have_attribute("aria-valuenow", "45.2")
    expect(page.locator("#live-accuracy")).to_have_text("94.2%")
    expect(page.locator("#live-predictions")).to_have_text("31")
    expect(page.locator("#system-health")).to_have_attribute("data-health", "warning")
    expect(page.locator("#system-health-text")).to_have_text("Warning")
    expect(page.locator("#health-reason")).to_have_text("High CPU usage detected")
    expect(page.locator("#health-action")).to_have_text("Consider scaling resources")
    expect(page.locator("#connections")).to_have_text("15")

    alert = page.locator("#alerts .alert")
    expect(alert.locator(".alert-title")).to_have_text("High Memory Usage")
    expect(alert.locator(".priority")).to_have_text("Medium")
    expect(alert.locator(".actions button")).to_have_text(["Scale Resources", "Optimize Models"])
    expect(alert.get_by_role("button", name="Dismiss alert: High Memory Usage")).to_be_visible()
    expect(page.locator("#activity .activity-title")).to_have_text(["Model Training Started"])
    expect(page.locator("#files .file-name")).to_have_text(["customer_data.csv"])
    expect(page.locator("#files .file-detail")).to_contain_text(["10,000 rows · 12 columns"])

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    dash.console.assert_clean()


def test_each_spec_event_posted_to_the_server_shows_up_live(dash: Dashboard) -> None:
    ex = spec_events()
    page = dash.open()
    dash.wait_live()
    expect(page.locator("#model-name")).to_have_text("No model deployed yet")
    expect(page.locator("#runs-empty")).to_be_visible()

    dash.post(ex["model_deployed"])
    expect(page.locator("#model-name")).to_have_text("Customer Predictor v3.2")
    expect(page.locator("#model-deployed")).to_have_attribute("datetime", "2025-12-06T10:30:00Z")

    dash.post(dict(ex["model_status_change"], status="training"))
    expect(page.locator("#model-dot")).to_have_attribute("data-status", "training")
    expect(page.locator("#model-status-text")).to_have_text("Training")
    expect(page.locator("#action-retrain")).to_be_disabled()
    dash.post(ex["model_status_change"])
    expect(page.locator("#model-dot")).to_have_attribute("data-status", "active")
    expect(page.locator("#action-retrain")).to_be_enabled()

    dash.post(ex["prediction_volume"])
    expect(page.locator("#pred-total")).to_have_text("5,247")
    expect(page.locator("#pred-rate")).to_have_text("42")
    expect(page.locator(".toast", has_text="5000 predictions milestone reached!")).to_be_visible()

    dash.post(ex["training_progress"])
    run = run_panel(page, "default")
    expect(run.locator(".run-percent")).to_have_text("65%")
    wait_bar_fraction(page, run.locator('[role="progressbar"]'), 0.65)
    expect(run.locator('[data-stat="epoch"] dd')).to_have_text("15/20")
    stage = run.locator(".pip[data-stage='model_training']")
    expect(stage).to_have_attribute("data-state", "active")

    # An open-ended run: no progress percentage, steps instead of epochs.
    dash.post({"type": "training_progress", "run_id": "run-steps", "stage": "model_training",
               "current_step": 1200, "total_steps": 5000, "current_loss": 0.5})
    steps = run_panel(page, "run-steps")
    expect(steps.locator('[data-stat="epoch"] dt')).to_have_text("Step")
    expect(steps.locator('[data-stat="epoch"] dd')).to_have_text("1,200/5,000")
    expect(steps.locator(".progress")).to_have_class(re.compile(r"\bindeterminate\b"))
    expect(steps.locator(".run-percent")).to_have_text("—")

    dash.post(ex["training_completed"])
    expect(run).to_have_attribute("data-status", "completed")
    expect(run.locator('[data-stat="final_accuracy"] dd')).to_have_text("96.8%")
    expect(run.locator('[data-stat="model_size"] dd')).to_have_text("2.3MB")

    dash.post(dict(ex["training_failed"], run_id="run-2"))
    failed = run_panel(page, "run-2")
    expect(failed.locator(".failure-error")).to_have_text(OOM)
    expect(failed.locator(".suggestions li")).to_have_text(SUGGESTIONS)
    expect(failed.locator(".progress-fill")).to_have_css("background-color", "rgb(220, 38, 38)")

    dash.post(ex["system_metrics"])
    expect(page.locator("#cpu-value")).to_have_text("45.2%")
    expect(page.locator("#memory-value")).to_have_text("67.8%")
    expect(page.locator("#system-health-text")).to_have_text("Healthy")
    dash.post(dict(ex["system_metrics"], predictions_per_minute=36, prediction_rate=36,
                   cpu_percent=91.0))
    expect(page.locator("#live-trend")).to_have_attribute("data-trend", "up")
    expect(page.locator("#live-trend")).to_contain_text("+5")
    expect(page.locator("#cpu-fill")).to_have_attribute("data-level", "crit")

    dash.post(ex["health_change"])
    expect(page.locator("#system-health-text")).to_have_text("Warning")
    expect(page.locator("#health-reason")).to_have_text("High CPU usage detected")
    expect(page.locator("#health-metrics li")).to_have_text(["CPU 85.4%", "Memory 72.1%"])

    dash.post(ex["upload_progress"], ex["file_validated"])
    files = page.locator("#files .file-name")
    expect(files).to_have_text(["customer_data.csv", "large_dataset.csv"])
    expect(page.locator("#files .file-detail").last).to_have_text("Uploading 20% · 2.1 MB/s")

    dash.post(ex["activity_update"])
    expect(page.locator("#activity .activity-title")).to_have_text(["Model Training Started"])

    dash.post(ex["system_alert"])
    expect(page.locator("#alerts .alert-title")).to_have_text(["High Memory Usage"])
    dash.post({"type": "system_alert", "alert": {"id": "a-high", "title": "Disk almost full",
                                                 "priority": "high", "actions": ["Free space"]}})
    expect(page.locator("#alerts .alert-title")).to_have_text(
        ["Disk almost full", "High Memory Usage"])
    dash.console.assert_clean()


def test_a_run_the_stall_watchdog_reports_is_shown_stalled_until_it_reports_again(
        browser_context: BrowserContext, tmp_path: Path) -> None:
    live = LiveServer(tmp_path, extra_args=["--metrics-interval", "0", "--stall-timeout", "1"])
    page = browser_context.new_page()
    try:
        live.start()
        dash = Dashboard(page, live)
        dash.open()
        dash.wait_live()
        progress = dict(spec_events()["training_progress"], run_id="run-s", model_name="Stuck")
        dash.post(progress)
        run = run_panel(page, "run-s")
        expect(run).to_have_attribute("data-status", "stalled", timeout=10_000)
        expect(run.locator(".badge")).to_have_text("Stalled")
        expect(run.locator(".run-note")).to_be_visible()
        expect(page.locator("#alerts .alert-title")).to_have_text(["Training Run Stalled"])
        dash.post(dict(progress, progress=70))
        expect(run).to_have_attribute("data-status", "running")
        expect(run.locator(".run-percent")).to_have_text("70%")
        dash.console.assert_clean()
    finally:
        page.close()
        live.stop()
