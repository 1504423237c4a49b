"""The connection manager in real Chromium: outage, backoff, offline mode, replay, 4008."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page, WebSocketRoute, expect

from tests.browser.conftest import Dashboard, spec_events
from tests.live_server import LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.timeout(90)]

WS_PATH = re.compile(r"/ws(\?.*)?$")


def activity(activity_id: str, title: str) -> dict[str, Any]:
    return {"type": "activity_update", "activity": {"id": activity_id, "title": title,
                                                    "user": "test", "severity_level": "info"}}


def record_states(page: Page) -> None:
    page.evaluate("""() => {
        window.__states = [];
        wsManager.addWebSocketHandler('connection_state', (e) => window.__states.push(e.state));
    }""")


def test_server_stopped_shows_reconnecting_then_offline_and_back_live_with_nothing_missed(
        dash: Dashboard) -> None:
    page = dash.page
    urls: list[str] = []
    page.on("websocket", lambda ws: urls.append(ws.url))
    dash.open(reconnectBaseMs=500, reconnectMaxMs=800, offlinePollMs=60_000, pingIntervalMs=500)
    dash.wait_live()
    dash.wait_for_seq(dash.post(activity("act-1", "Before the outage"))[0])
    expect(page.locator("#activity .activity-title")).to_have_text(["Before the outage"])
    record_states(page)
    seq_before = dash.last_seq()

    dash.server.stop()
    expect(page.locator("#conn-text")).to_contain_text("Reconnecting")
    expect(page.locator("#conn-pill")).to_have_attribute("data-state", "reconnecting")
    expect(page.locator("#conn-text")).to_have_text("Offline Mode", timeout=15_000)
    expect(page.locator("#offline-banner")).to_be_visible()
    expect(page.locator("#retry-button")).to_be_visible()
    expect(page.locator("body")).to_have_class(re.compile(r"\boffline\b"))
    states = page.evaluate("window.__states")
    assert "disconnected" in states[:2], states  # (a transport error may come first)
    assert states.count("reconnecting") == 5, states  # maxReconnectAttempts, one each
    assert states[-1] == "max_reconnect_attempts", states

    # Events published while the page is offline (the poll interval is long: no refresh yet).
    dash.server.start()
    missed = dash.post(activity("act-2", "While the page was offline"),
                       dict(spec_events()["training_progress"], run_id="run-x", progress=80))
    page.get_by_role("button", name="Retry now").click()
    dash.wait_live()
    dash.wait_for_seq(missed[-1])
    expect(page.locator("#offline-banner")).to_be_hidden()
    expect(page.locator("#activity .activity-title")).to_have_text(
        ["While the page was offline", "Before the outage"])
    expect(page.locator('article.run[data-run-id="run-x"] .run-percent')).to_have_text("80%")
    assert any(f"since={seq_before}" in url for url in urls), urls

    dash.post(activity("act-3", "Live again"))
    expect(page.locator("#activity .activity-title")).to_have_text(
        ["Live again", "While the page was offline", "Before the outage"])
    assert page.evaluate("wsManager.attempts") == 0
    dash.console.assert_clean(network_noise=True)


def test_offline_mode_polls_the_rest_fallback_then_goes_live_again(dash: Dashboard) -> None:
    page = dash.page
    blocked = {"on": True}
    urls: list[str] = []

    def route(ws: WebSocketRoute) -> None:
        urls.append(ws.url)
        if blocked["on"]:
            ws.close(code=1011, reason="blocked by the test")
        else:
            ws.connect_to_server()

    page.route_web_socket(WS_PATH, route)
    dash.post(spec_events()["model_deployed"])
    dash.open(reconnectBaseMs=50, reconnectMaxMs=100, offlinePollMs=300)
    expect(page.locator("#conn-text")).to_have_text("Offline Mode")
    expect(page.locator("#last-update")).to_contain_text("Refreshed (offline mode)")
    expect(page.locator("#offline-detail")).to_contain_text("refreshed every 0.3 s")
    expect(page.locator("#offline-detail")).to_contain_text("refuses the live connection")
    expect(page.locator("#model-name")).to_have_text("Customer Predictor v3.2")

    dash.post(activity("act-poll", "Seen by polling"),
              dict(spec_events()["system_metrics"], cpu_percent=77.7))
    expect(page.locator("#activity .activity-title")).to_have_text(["Seen by polling"])
    expect(page.locator("#cpu-value")).to_have_text("77.7%")
    expect(page.locator("#conn-text")).to_have_text("Offline Mode")

    blocked["on"] = False  # the next successful poll tries the live connection again
    dash.wait_live()
    expect(page.locator("#offline-banner")).to_be_hidden()
    expect(page.locator("#last-update")).to_contain_text("Live")
    dash.post(activity("act-live", "Live again"))
    expect(page.locator("#activity .activity-title")).to_have_text(
        ["Live again", "Seen by polling"])
    dash.console.assert_clean(network_noise=True)


def test_slow_consumer_close_4008_reconnects_at_once_with_since(dash: Dashboard) -> None:
    page = dash.page
    routes: list[WebSocketRoute] = []

    def route(ws: WebSocketRoute) -> None:
        routes.append(ws)
        ws.connect_to_server()

    page.route_web_socket(WS_PATH, route)
    dash.open()
    dash.wait_live()
    dash.wait_for_seq(dash.post(activity("act-1", "First"))[0])
    record_states(page)
    seq = dash.last_seq()

    routes[-1].close(code=4008, reason=f"slow consumer: reconnect with ?since={seq}")
    page.wait_for_function("window.__states.includes('connected')")
    assert page.evaluate("window.__states") == ["disconnected", "reconnecting", "connected"]
    assert len(routes) == 2 and f"since={seq}" in routes[1].url, [r.url for r in routes]
    dash.post(activity("act-2", "After the slow-consumer close"))
    expect(page.locator("#activity .activity-title")).to_have_text(
        ["After the slow-consumer close", "First"])
    dash.console.assert_clean()


def test_ping_pong_latency_gives_the_connection_quality(dash: Dashboard) -> None:
    page = dash.open(pingIntervalMs=300)
    dash.wait_live()
    quality = page.locator("#conn-quality")
    expect(quality).to_have_text(re.compile(r"^(excellent|good|fair|poor) · \d+ ms$"))
    latency = page.evaluate("wsManager.latencyMs")
    expected = page.evaluate(
        "(ms) => import('/static/connection.js').then((m) => m.qualityFor(ms))", latency)
    expect(quality).to_have_attribute("data-quality", expected)
    dash.console.assert_clean()


def test_a_subscriber_token_in_the_page_url_opens_the_live_connection(
        browser_context: BrowserContext, tmp_path: Path) -> None:
    live = LiveServer(tmp_path, extra_args=["--metrics-interval", "0", "--stall-timeout", "0",
                                            "--subscriber-token", "s3cret"])
    with_token, without = browser_context.new_page(), browser_context.new_page()
    try:
        live.start()
        dash = Dashboard(with_token, live)
        dash.open(token="s3cret")
        dash.wait_live()
        dash.post(activity("act-1", "Seen with the token"))
        titles = with_token.locator("#activity .activity-title")
        expect(titles).to_have_text(["Seen with the token"])
        dash.console.assert_clean()

        refused = Dashboard(without, live)
        refused.open(reconnectBaseMs=50, reconnectMaxMs=100, offlinePollMs=300)
        expect(without.locator("#conn-text")).to_have_text("Offline Mode")
        expect(without.locator("#offline-detail")).to_contain_text("subscriber token")
        refused.console.assert_clean(network_noise=True)
    finally:
        with_token.close()
        without.close()
        live.stop()
