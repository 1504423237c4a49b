"""The page after a real demo, at phone, tablet, laptop and desktop widths: names, titles and
numbers are shown whole (wrapped if need be, never cut off with an ellipsis) and nothing sticks
out of the page."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from mlops_hooks import events as ev
from mlops_hooks.server.ops.health import HealthTracker
from mlops_hooks.server.ops.monitor import _stall_events
from tests.browser.conftest import ARTIFACTS, Dashboard

pytestmark = [pytest.mark.browser, pytest.mark.timeout(90)]

WIDTHS = (390, 768, 1100, 1440)
#: Text a user reads to know what they are looking at: never cut.
WHOLE = (".model-name", "#model-version", "#pred-total", ".tile-value", ".trend", ".run-title",
         ".stat dd", ".alert-title", ".activity-title", ".file-name", ".badge")

MLP = "run_20261125_225850_ecb14ba4"
PROBE = "run_20261125_230043_a84ae665"
LOGREG = "run_20261125_230044_312daa56"


def demo_state() -> list[dict[str, Any]]:
    """What the dashboard holds after ``mlops-hooks demo`` (shapes and values of a real run)."""
    def progress(run_id: str, name: str, pct: float, **kw: Any) -> dict[str, Any]:
        return {"type": "training_progress", "run_id": run_id, "model_name": name,
                "progress": pct, "stage": "model_training", **kw}

    mlp = [progress(MLP, "Digits MLP", 100 * e / 80, current_epoch=e, total_epochs=80,
                    current_loss=2.3 / e, current_accuracy=min(0.97, 0.5 + e / 100),
                    current_step=180 * e, total_steps=14_400)
           for e in range(1, 81, 8)]
    tracker = HealthTracker()
    alerts = [e for s in ({"cpu_percent": 97.0}, {"memory_percent": 90.0})
              for e in tracker.update(s) if isinstance(e, ev.SystemAlert)]
    return [
        {"type": "upload_progress", "filename": "digits.csv", "bytes_uploaded": 440_934,
         "total_bytes": 440_934, "progress_percent": 100},
        {"type": "file_validated", "status": "success", "filename": "digits.csv", "rows": 1797,
         "columns": 65, "file_size": "430.6KB", "target_column": "digit"},
        *mlp,
        {"type": "training_completed", "run_id": MLP, "model_name": "Digits MLP",
         "final_accuracy": 0.9694, "training_time": "1m 54s", "validation_score": 0.9694,
         "model_size": "198.5KB", "total_epochs": 80, "model_id": "digits_mlp_20261125_225830",
         "message": "Training completed successfully!"},
        progress(PROBE, "Digits MLP, learning-rate probe lr=0.5", 25.0, current_epoch=1,
                 total_epochs=4, current_loss=1.698, message="Training 25% complete - Epoch 1/4"),
        {"type": "training_failed", "run_id": PROBE,
         "model_name": "Digits MLP, learning-rate probe lr=0.5",
         "error": "FloatingPointError: loss is inf at step 66: training diverged with learning "
                  "rate 0.5", "error_code": "NUMERICAL_ERROR", "stage_failed": "model_training",
         "progress_when_failed": 36.7, "suggestions": ["Lower the learning rate"]},
        {"type": "training_completed", "run_id": LOGREG, "model_name": "Digits LogReg grid search",
         "final_accuracy": 0.9667, "training_time": "34s", "validation_score": 0.9667,
         "model_size": "5.2KB", "model_id": "digits_logreg_20261125_225830"},
        {"type": "model_deployed", "model_name": "Digits Classifier (LogReg)",
         "model_version": "v2026.11.25-2256", "model_accuracy": 0.9667,
         "model_id": "digits_logreg_20261125_225830"},
        {"type": "prediction_volume", "model_id": "digits_logreg_20261125_225830",
         "total_predictions": 6000, "predictions_per_minute": 29_404.8, "milestone_reached": 5000},
        {"type": "system_metrics", "current_accuracy": 0.9667, "predictions_per_minute": 29_404.8,
         "current_health": "critical", "cpu_percent": 99.6, "memory_percent": 90.2,
         "disk_percent": 25.4, "active_connections": 3, "api_response_time_ms": 1.4,
         "ws_response_time_ms": 2.1},
        *(ev.to_dict(e) for e in alerts),
        ev.to_dict(_stall_events(MLP, "Digits MLP", 42.0)[0]),
        {"type": "activity_update", "activity": {
            "id": "act-completed", "title": "Model Training Completed",
            "description": "Digits MLP finished in 1m 54s with accuracy 0.969", "user": "root",
            "action_type": "training_complete", "status": "completed",
            "severity_level": "success", "duration": 114}},
    ]


def test_names_titles_and_numbers_are_shown_whole_at_every_width(dash: Dashboard) -> None:
    dash.post(*demo_state())
    page = dash.open()
    dash.wait_live()
    expect(page.locator("article.run")).to_have_count(3)
    expect(page.locator("#alerts > li")).to_have_count(3)
    # A rate in the tens of thousands fits its tile in short form, the full figure on hover.
    expect(page.locator("#live-predictions")).to_have_text("29.4K")
    expect(page.locator("#live-predictions")).to_have_attribute(
        "title", "29,404.8 predictions per minute")
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_timeout(50)  # layout after the resize
        found = page.evaluate("""(selectors) => {
            const cut = [];
            for (const el of document.querySelectorAll(selectors.join(','))) {
              if (el.closest('[hidden]') || !el.getClientRects().length) continue;
              if (el.scrollWidth > el.clientWidth + 1) {
                cut.push(`${el.className || el.id}: ${el.textContent}`);
              }
            }
            const wide = [...document.querySelectorAll('main *')].filter(
              (el) => el.getBoundingClientRect().right > document.documentElement.clientWidth + 1
                && !el.closest('.visually-hidden'));
            return {cut, wide: wide.map((el) => el.className || el.tagName).slice(0, 5),
                    scroll: document.documentElement.scrollWidth};
        }""", list(WHOLE))
        assert not found["cut"], f"cut off at {width}px: {found['cut']}"
        assert not found["wide"], f"sticking out at {width}px: {found['wide']}"
        assert found["scroll"] <= width, f"horizontal scrolling at {width}px"
        page.screenshot(path=str(ARTIFACTS / f"layout-{width}px.png"), full_page=True)
    dash.console.assert_clean()
