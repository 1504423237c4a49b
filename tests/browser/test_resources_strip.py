"""The run page's strip of the training machine's ``system/...`` series (issue 18), in Chromium."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.history import History, open_page, progress

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]



def sample(elapsed: float, host: str = "node-a", **metrics: float) -> dict[str, Any]:
    return {"type": "host_metrics", "run_id": "r1", "host": host, "elapsed_s": elapsed,
            "metrics": metrics}


def spark(page: Page, key: str) -> Any:
    return expect(page.locator(f'#sparklines figure[data-key="{key}"] .chart'))


def test_the_run_page_shows_the_training_machine_as_sparklines_live(page: Page,
                                                                    stub: History) -> None:
    stub.post(progress("r1", 1, loss=1.0),
              *[sample(s + 0.5, cpu_percent=10.0 + s, process_rss_mb=500.0 + s,
                       **{"gpu0/util_percent": 80.0}) for s in range(3)])
    console = open_page(page, stub.http_url + "/runs/r1")
    for key in ("system/cpu_percent", "system/process_rss_mb", "system/gpu0/util_percent"):
        spark(page, key).to_have_attribute("data-points", "3")
    expect(page.locator("#sparklines-empty")).to_be_hidden()
    last = page.locator('#sparklines figure[data-key="system/cpu_percent"] h3 .last')
    expect(last).to_have_text("12")
    assert page.locator('figure.chart-card[data-key^="system/"]').count() == 0  # strip only
    expect(page.locator("#charts-count")).to_have_text("1 series")
    # Live from the stream: a new sample extends the strip; a second host gets keys of its own.
    stub.post(sample(3.2, cpu_percent=42.0))
    spark(page, "system/cpu_percent").to_have_attribute("data-points", "4")
    stub.post(sample(3.4, host="node-b", cpu_percent=7.0))
    spark(page, "system/node-b/cpu_percent").to_have_attribute("data-points", "1")
    expect(page.locator("#resources-host")).to_have_text("node-a, node-b")
    page.reload()  # the server kept the same points
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    spark(page, "system/cpu_percent").to_have_attribute("data-points", "4")
    spark(page, "system/node-b/cpu_percent").to_have_attribute("data-points", "1")
    console.assert_clean()


def test_the_dashboard_labels_its_resources_as_the_servers(page: Page, stub: History) -> None:
    console = open_page(page, stub.http_url + "/")
    expect(page.locator("#res-heading")).to_have_text("Server resources")
    console.assert_clean()


def test_a_run_without_samples_says_so(page: Page, stub: History) -> None:
    stub.post(progress("r1", 1, loss=1.0))
    console = open_page(page, stub.http_url + "/runs/r1")
    expect(page.locator("#sparklines-empty")).to_be_visible()
    expect(page.locator("#sparklines figure")).to_have_count(0)
    console.assert_clean()
