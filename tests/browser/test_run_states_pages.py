"""Run states (issue 17) in real Chromium: the dashboard's panel, `/runs` and `/runs/{id}`.

A real publisher connection (a WebSocket client speaking ``/ws/publish``) carries a run in its
heartbeat, then goes away: the server raises ``crashed`` after its grace, and every open page
shows it from the stream (no reload, no polling). Ends reported by ``training_failed``
(SIGTERM's ``TERMINATED``, Ctrl-C's ``INTERRUPTED``) show as ``killed`` and ``interrupted``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, expect
from websockets.sync.client import connect

from tests.browser.history import History, open_page, progress
from tests.live_server import LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    """A real server with a short crash grace (the pages wait for the state, not a timer)."""
    live = LiveServer(tmp_path, extra_args=["--metrics-interval", "0", "--stall-timeout", "0",
                                            "--crash-grace", "0.5"])
    live.start()
    try:
        yield live
    finally:
        live.stop()


def test_a_vanished_process_shows_crashed_live_on_every_page(browser_context: BrowserContext,
                                                             server: LiveServer) -> None:
    with connect(server.publish_url) as pub:
        pub.send(json.dumps({**progress("gone", 5, loss=0.9), "model_name": "Vanishing"}))
        assert json.loads(pub.recv(timeout=10))["type"] == "ack"
        pub.send(json.dumps({"type": "ping", "id": 1, "runs": ["gone"]}))  # the heartbeat
        assert json.loads(pub.recv(timeout=10))["type"] == "pong"
        listing, run_page, dashboard = (browser_context.new_page() for _ in range(3))
        watches = [open_page(listing, server.http_url + "/runs"),
                   open_page(run_page, server.http_url + "/runs/gone"),
                   open_page(dashboard, server.http_url + "/")]
        row = listing.locator('#runs-body tr[data-run-id="gone"]')
        expect(row).to_have_attribute("data-status", "running")
        expect(run_page.locator("#run-status")).to_have_text("running")
        panel = dashboard.locator('article.run[data-run-id="gone"]')
        expect(panel.locator(".badge")).to_have_text("Running")
    # the publisher's connection closed with the run live: crashed after the grace
    expect(row).to_have_attribute("data-status", "crashed")
    badge = row.locator(".badge")
    expect(badge).to_have_text("crashed")
    expect(badge).to_have_attribute("title", "the process vanished: its publisher's connection "
                                             "closed and it did not come back within 0.5 s")
    expect(run_page.locator("#run-status")).to_have_text("crashed")
    expect(run_page.locator("#run-status")).to_have_attribute("data-status", "crashed")
    expect(panel.locator(".badge")).to_have_text("Crashed")
    expect(panel).to_have_attribute("data-status", "crashed")
    expect(panel.locator(".run-note")).to_contain_text("The training process vanished")
    # the list's filter offers the new states
    listing.locator("#status-filter").select_option("crashed")
    expect(listing.locator("#runs-body tr")).to_have_count(1)
    for watch in watches:
        watch.assert_clean()
    for page in (listing, run_page, dashboard):
        page.close()


def test_sigterm_and_ctrl_c_ends_show_killed_and_interrupted(browser_context: BrowserContext,
                                                             server: LiveServer) -> None:
    history = History(server)
    history.post(progress("term", 3), progress("ctrl", 3))
    listing, dashboard = browser_context.new_page(), browser_context.new_page()
    watches = [open_page(listing, server.http_url + "/runs"),
               open_page(dashboard, server.http_url + "/")]
    expect(listing.locator("#runs-body tr")).to_have_count(2)
    history.post({"type": "training_failed", "run_id": "term", "error": "SIGTERM",
                  "error_code": "TERMINATED", "stage_failed": "model_training"},
                 {"type": "training_failed", "run_id": "ctrl", "error": "Ctrl-C",
                  "error_code": "INTERRUPTED", "stage_failed": "model_training"})
    expect(listing.locator('#runs-body tr[data-run-id="term"]')).to_have_attribute(
        "data-status", "killed")
    expect(listing.locator('#runs-body tr[data-run-id="ctrl"]')).to_have_attribute(
        "data-status", "interrupted")
    term = dashboard.locator('article.run[data-run-id="term"]')
    expect(term.locator(".badge")).to_have_text("Killed")
    expect(term.locator(".failure-error")).to_have_text("SIGTERM")
    expect(dashboard.locator('article.run[data-run-id="ctrl"] .badge')).to_have_text(
        "Interrupted")
    for watch in watches:
        watch.assert_clean()
    listing.close()
    dashboard.close()
