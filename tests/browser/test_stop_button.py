"""Stop from the page, in real Chromium: the Stop button of `/runs/{id}` and of the dashboard.

A real Lightning ``Trainer.fit`` (and a ``track()`` loop) stream to a real ``mlops-hooks serve``
started with ``--token``; the page, opened with ``?token=``, asks for a confirmation, shows
"Stopping…", and once the run's completion arrives on its stream shows it completed and hides
the button. The run ends with ``stop_reason: "requested"`` after fewer epochs than planned.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.history import open_page
from tests.control.support import (
    TOKEN,
    activity,
    completed_event,
    run_status,
    start_training,
    wait_running,
)
from tests.live_server import LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

EPOCHS = 50
#: Records every text the Stop button shows, so a "Stopping…" that lasts a moment is seen.
WATCH_TEXTS = """button => {
  window.__stopTexts = [button.textContent];
  new MutationObserver(() => window.__stopTexts.push(button.textContent))
    .observe(button, { childList: true, characterData: true, subtree: true });
}"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path / "server", extra_args=[
        "--token", TOKEN, "--metrics-interval", "0", "--stall-timeout", "0"])
    live.start()
    try:
        yield live
    finally:
        live.stop()


def _click_stop(page: Page, button) -> None:
    expect(button).to_be_visible(timeout=60_000)
    expect(button).to_have_text("Stop")
    page.once("dialog", lambda dialog: dialog.dismiss())
    button.click()  # declined: nothing happens
    expect(button).to_have_text("Stop")
    button.evaluate(WATCH_TEXTS)
    page.once("dialog", lambda dialog: dialog.accept())
    button.click()


def _check_stopped(server: LiveServer, tmp_path: Path, run_id: str, proc) -> None:
    assert proc.wait(120) == 0, (tmp_path / f"{run_id}.log").read_text()[-3000:]
    result = json.loads((tmp_path / f"{run_id}.json").read_text())
    assert result["epochs"] < EPOCHS
    assert completed_event(server.http_url, run_id)["stop_reason"] == "requested"
    asked = [a for a in activity(server.http_url) if a["action_type"] == "stop_requested"]
    assert [(a["metadata"]["run_id"], a["metadata"]["source"], a["user"]) for a in asked] == \
        [(run_id, "127.0.0.1", "publisher-token")]


def test_the_run_page_stops_a_live_lightning_run(page: Page, server: LiveServer,
                                                   tmp_path: Path) -> None:
    run_id = "page-stop"
    proc = start_training(tmp_path, server.publish_url, "lightning", run_id, epochs=EPOCHS)
    try:
        wait_running(server.http_url, run_id, proc, tmp_path / f"{run_id}.log")
        console = open_page(page, f"{server.http_url}/runs/{run_id}?token={TOKEN}")
        expect(page.locator("#run-status")).to_have_text("running")
        button = page.locator("#run-stop [data-role=stop-run]")
        _click_stop(page, button)
        expect(page.locator("#run-status")).to_have_text("completed", timeout=60_000)
        expect(button).to_be_hidden()
        assert "Stopping…" in page.evaluate("window.__stopTexts")
        _check_stopped(server, tmp_path, run_id, proc)
        console.assert_clean()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_dashboard_panel_stops_a_live_run(page: Page, server: LiveServer,
                                              tmp_path: Path) -> None:
    run_id = "panel-stop"
    proc = start_training(tmp_path, server.publish_url, "track", run_id, epochs=EPOCHS)
    try:
        wait_running(server.http_url, run_id, proc, tmp_path / f"{run_id}.log")
        console = open_page(page, f"{server.http_url}/?token={TOKEN}")
        panel = page.locator(f"article.run[data-run-id='{run_id}']")
        button = panel.locator("[data-role=stop-run]")
        _click_stop(page, button)
        expect(panel).to_have_attribute("data-status", "completed", timeout=60_000)
        expect(button).to_be_hidden()
        assert "Stopping…" in page.evaluate("window.__stopTexts")
        _check_stopped(server, tmp_path, run_id, proc)
        console.assert_clean()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_refused_stop_is_reported_and_the_button_comes_back(page: Page, server: LiveServer,
                                                              tmp_path: Path) -> None:
    run_id = "page-stop-refused"
    proc = start_training(tmp_path, server.publish_url, "track", run_id, epochs=EPOCHS)
    try:
        wait_running(server.http_url, run_id, proc, tmp_path / f"{run_id}.log")
        open_page(page, f"{server.http_url}/runs/{run_id}")  # no token: the POST is refused
        button = page.locator("#run-stop [data-role=stop-run]")
        expect(button).to_be_visible()
        page.once("dialog", lambda dialog: dialog.accept())
        button.click()
        expect(page.locator("#page-error")).to_contain_text("Stop failed")
        expect(page.locator("#page-error")).to_contain_text("publisher token")
        expect(button).to_have_text("Stop")
        expect(button).to_be_enabled()
        assert run_status(server.http_url, run_id) == "running"
    finally:
        proc.kill()
        proc.wait()
