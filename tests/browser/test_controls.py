"""The dashboard's controls, console simulation, upload, escaping, settings and cleanup."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Dashboard, spec_events

pytestmark = [pytest.mark.browser, pytest.mark.timeout(90)]


def test_console_simulation_with_wsManager_emit_updates_the_page(dash: Dashboard) -> None:
    page = dash.open()
    dash.wait_live()
    # The spec's "Event Simulation" snippet, verbatim.
    page.evaluate("""() => {
        wsManager.emit('model_deployed', {
            model_name: 'Test Model v1.0',
            model_accuracy: 0.95,
            deployment_timestamp: new Date().toISOString()
        });
        wsManager.emit('training_progress', {
            progress: 50,
            stage: 'model_training',
            message: 'Training 50% complete'
        });
    }""")
    expect(page.locator("#model-name")).to_have_text("Test Model v1.0")
    expect(page.locator("#model-version")).to_have_text("v1.0")
    expect(page.locator("#model-accuracy")).to_have_text("95.0%")
    expect(page.locator("#model-deployed")).to_have_text("just now")
    run = page.locator('article.run[data-run-id="default"]')
    expect(run.locator(".run-percent")).to_have_text("50%")
    expect(run.locator(".run-message")).to_have_text("Training 50% complete")

    calls = page.evaluate("""() => {
        const seen = [];
        const off = wsManager.addWebSocketHandler('custom_event', (e) => seen.push(e.value));
        const first = wsManager.emit('custom_event', {value: 1});
        off();
        const second = wsManager.emit('custom_event', {value: 2});
        let error = null;
        try { wsManager.emit('', {}); } catch (err) { error = err.message; }
        return {seen, first, second, error};
    }""")
    assert calls["seen"] == [1]
    assert calls["first"] == calls["second"] + 1  # emit() returns how many handlers ran
    assert "type must be a string" in calls["error"]
    dash.console.assert_clean()


def test_upload_shows_progress_and_the_validation_result(dash: Dashboard) -> None:
    page = dash.open()
    dash.wait_live()
    page.evaluate("""() => {
        window.__progress = [];
        wsManager.addWebSocketHandler('upload_progress',
            (e) => window.__progress.push(e.progress_percent));
    }""")
    rows = "\n".join(f"{i},{20 + i % 50},{1000 + i * 7},{i % 2}" for i in range(20_000))
    data = f"id,age,income,churn_status\n{rows}\n".encode()
    page.set_input_files("#upload-file", files=[{"name": "customers.csv", "mimeType": "text/csv",
                                                 "buffer": data}])
    expect(page.locator("#upload-file-label")).to_contain_text("customers.csv")
    page.fill("#upload-target", "churn_status")
    page.get_by_role("button", name="Upload").click()

    result = page.locator("#upload-result")
    expect(result).to_have_attribute("data-status", "success")
    expect(result).to_contain_text("customers.csv is valid")
    expect(result).to_contain_text("20,000 rows · 4 columns")
    expect(result).to_contain_text("target churn_status")
    expect(page.locator("#upload-bar")).to_have_attribute("aria-valuenow", "100")
    expect(page.locator("#upload-percent")).to_have_text("100%")
    expect(page.locator("#files .file-name").first).to_have_text("customers.csv")
    page.wait_for_function("window.__progress.length > 0")

    page.set_input_files("#upload-file", files=[{"name": "notes.txt", "mimeType": "text/plain",
                                                 "buffer": b"just some notes\n"}])
    page.get_by_role("button", name="Upload").click()
    expect(result).to_have_attribute("data-status", "error")
    expect(result).to_contain_text("notes.txt was rejected")
    expect(result.locator(".result-error")).not_to_be_empty()
    # Chromium logs the rejected upload's HTTP 400 itself; the page raised nothing.
    dash.console.assert_clean(network_noise=True)


def test_controls_publish_events_that_come_back_through_the_server(
        clock_dash: Dashboard) -> None:
    dash = clock_dash
    ex = spec_events()
    dash.post(ex["model_deployed"], ex["system_alert"],
              dict(ex["training_completed"], run_id="run-done", model_name="Churn Model v2.0"),
              dict(ex["training_failed"], run_id="run-oom", model_name="Fraud Detector v1.4"),
              {"type": "system_alert", "alert": {"id": "a-auto", "title": "Cache warmed",
                                                 "priority": "low", "auto_dismiss": True}})
    # The auto-dismissed alert stays a minute of the page's (fake) clock, however long loading
    # takes; no ping falls due while the clock is moved on.
    page = dash.open(alertAutoDismissMs=60_000, pingIntervalMs=3_600_000)
    dash.wait_live()

    expect(page.locator("#alerts .alert-title")).to_have_text(["High Memory Usage", "Cache warmed"])
    page.clock.fast_forward(60_000)
    expect(page.locator("#alerts .alert-title")).to_have_text(["High Memory Usage"])

    page.get_by_role("button", name="Deactivate").click()
    expect(page.locator("#model-status-text")).to_have_text("Inactive")
    expect(page.locator("#model-dot")).to_have_attribute("data-status", "inactive")
    expect(page.locator("#action-deactivate")).to_be_disabled()
    page.get_by_role("button", name="Activate", exact=True).click()
    expect(page.locator("#model-status-text")).to_have_text("Deployed & Active")

    done = page.locator('article.run[data-run-id="run-done"]')
    done.get_by_role("button", name="Deploy model").click()
    expect(page.locator("#model-name")).to_have_text("Churn Model v2.0")
    expect(page.locator("#model-accuracy")).to_have_text("96.8%")
    expect(done.locator(".completion button")).to_have_text("Deployed ✓")
    expect(done.locator(".completion button")).to_be_disabled()

    failed = page.locator('article.run[data-run-id="run-oom"]')
    failed.get_by_role("button", name="Retry training").click()
    # the request, then the server's answer to it (no launcher here: not available)
    expect(page.locator("#activity .activity-title").nth(0)).to_have_text("Retry Not Available")
    expect(page.locator("#activity .activity-title").nth(1)).to_have_text(
        "Retry requested: Fraud Detector v1.4")
    expect(failed.locator(".failure button")).to_have_text("Retry requested")

    page.locator("#alerts .alert").get_by_role("button", name="Scale Resources").click()
    expect(page.locator("#activity .activity-title").first).to_have_text(
        "Scale Resources: High Memory Usage")
    page.get_by_role("button", name="Dismiss alert: High Memory Usage").click()
    expect(page.locator("#alerts-empty")).to_be_visible()

    models = httpx.get(f"{dash.server.http_url}/api/models").json()["models"]
    assert {m["model_name"]: m["status"] for m in models} == {
        "Customer Predictor v3.2": "active", "Churn Model v2.0": "active"}
    dash.console.assert_clean()


def test_event_text_is_shown_as_text_never_parsed_as_html(dash: Dashboard) -> None:
    hostile = '<img src=x onerror="window.__xss=1">'
    page = dash.open()
    dash.wait_live()
    dash.post({"type": "model_deployed", "model_name": hostile, "model_id": "m1"},
              {"type": "activity_update", "activity": {"id": "x", "title": "<b>bold</b>",
                                                       "description": hostile}},
              {"type": "training_failed", "run_id": "r1", "error": hostile, "error_code": "OOM",
               "suggestions": ["<script>window.__xss=2</script>"]})
    expect(page.locator("#model-name")).to_have_text(hostile)
    expect(page.locator("#activity .activity-title")).to_have_text(["<b>bold</b>"])
    expect(page.locator('article.run[data-run-id="r1"] .suggestions li')).to_have_text(
        ["<script>window.__xss=2</script>"])
    assert page.locator("main img, main b, main script").count() == 0
    assert page.evaluate("window.__xss") is None
    dash.console.assert_clean()


def test_settings_come_from_mlops_config_and_the_query_string(dash: Dashboard) -> None:
    warnings: list[str] = []
    dash.page.on("console", lambda m: warnings.append(m.text) if m.type == "warning" else None)
    dash.page.add_init_script("window.MLOPS_CONFIG = {offlinePollMs: 1234, bogus: 1};")
    page = dash.open(reconnectBaseMs=250, maxReconnectAttempts="many")
    config: dict[str, Any] = page.evaluate("({...wsManager.config})")
    assert (config["offlinePollMs"], config["reconnectBaseMs"], config["maxReconnectAttempts"]) == (
        1234, 250, 5)
    assert any('unknown setting "bogus"' in w for w in warnings), warnings
    assert any('"maxReconnectAttempts" must be a number' in w for w in warnings), warnings

    helpers = page.evaluate("""async () => {
        const m = await import('/static/connection.js');
        const bounds = [1, 2, 3, 4, 5, 6].map((n) => [
            m.backoffDelay(n, 1000, 16000, () => 0),
            m.backoffDelay(n, 1000, 16000, () => 0.999999)]);
        const quality = [0, 49, 50, 150, 151, 300, 301, 5000].map(m.qualityFor);
        return {bounds, quality};
    }""")
    assert helpers["bounds"] == [[500, 1000], [1000, 2000], [2000, 4000], [4000, 8000],
                                 [8000, 16000], [8000, 16000]]
    assert helpers["quality"] == ["excellent", "excellent", "good", "good", "fair", "fair",
                                  "poor", "poor"]
    dash.console.assert_clean()


def test_page_unload_closes_the_socket_and_clears_handlers_and_timers(dash: Dashboard) -> None:
    page = dash.open(pingIntervalMs=200)
    dash.wait_live()
    health = f"{dash.server.http_url}/healthz"
    assert httpx.get(health).json()["subscribers"] == 1
    left = page.evaluate("""() => {
        window.dispatchEvent(new PageTransitionEvent('pagehide', {persisted: false}));
        return {
            timers: Object.values(wsManager._timers).filter((t) => t !== 0).length,
            handlers: wsManager.handlers.size,
            socket: wsManager.socket,
        };
    }""")
    assert left == {"timers": 0, "handlers": 0, "socket": None}
    deadline = time.monotonic() + 30  # the server sees the close in its own time
    while httpx.get(health).json()["subscribers"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert httpx.get(health).json()["subscribers"] == 0
    dash.console.assert_clean()
