"""The page against hostile input and hostile pages, in real Chromium (issue 22, item 7).

Security headers and framing, ``?wsPath=`` limited to a same-origin path, unbroken strings
that wrap instead of widening the page, and bidirectional controls stripped from event text.
The browser enforces the page's real Content-Security-Policy here, so these tests wait with
``page.evaluate`` polls rather than ``wait_for_function`` (which the policy forbids).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.browser.conftest import Dashboard

pytestmark = [pytest.mark.browser, pytest.mark.timeout(90)]

LONG = "W" * 8192
#: The page's width and the elements that stick out of it (named, for the failure message).
WIDTHS = """() => ({
  scroll: document.documentElement.scrollWidth, viewport: window.innerWidth,
  wide: [...document.querySelectorAll('body *')]
    .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 1)
    .slice(0, 5).map((e) => `${e.tagName}#${e.id}.${e.className}`),
})"""
BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"


def wait_until(condition: Callable[[], Any], what: str, deadline: float = 20.0) -> Any:
    """Poll ``condition`` until it is truthy (a generous deadline, not a timing)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"still not true after {deadline} s: {what}")


@pytest.fixture(scope="module")
def browser_context(chromium: Callable[..., BrowserContext]) -> Iterator[BrowserContext]:
    """One browser for the module, under the page's real Content-Security-Policy."""
    context = chromium(bypass_csp=False)
    try:
        yield context
    finally:
        context.close()


def go_live(dash: Dashboard, **config: Any) -> Page:
    """Open the page and wait, without evaluating strings, until it is live."""
    page = dash.open(**config)
    expect(page.locator("#conn-text")).to_have_text("Connected", timeout=10_000)
    wait_until(lambda: page.evaluate("() => window.wsManager.lastSeq !== null"), "a snapshot")
    return page


def wait_for_seq(page: Page, seq: int) -> None:
    wait_until(lambda: page.evaluate("() => window.wsManager.lastSeq") >= seq, f"seq {seq}")


def test_page_and_static_files_carry_security_headers(dash: Dashboard) -> None:
    for path in ("/", "/static/app.js", "/static/app.css", "/api/models"):
        headers = httpx.get(dash.server.http_url + path, timeout=10).headers
        assert headers["x-content-type-options"] == "nosniff", path
        assert headers["x-frame-options"] == "DENY", path
        assert headers["referrer-policy"] == "no-referrer", path
        csp = headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp, (path, csp)
    # The real page runs under that policy without a violation and goes live.
    go_live(dash)
    dash.console.assert_clean()


def test_another_page_cannot_frame_the_dashboard(dash: Dashboard) -> None:
    page = dash.page
    page.set_content(f'<iframe src="{dash.server.http_url}/" width="800" height="600"></iframe>')
    blocked = wait_until(lambda: [f for f in page.frames[1:] if f.url.startswith("chrome-error")],
                         "the framed dashboard to be blocked")
    assert blocked
    assert not [f for f in page.frames[1:] if f.url.startswith(dash.server.http_url)]


@pytest.mark.parametrize("ws_path", ["ws://evil.invalid:9/ws", "//evil.invalid/ws",
                                     "wss://evil.invalid/ws", "/\\evil.invalid/ws"])
def test_ws_path_to_another_host_is_ignored(dash: Dashboard, ws_path: str) -> None:
    page = dash.page
    urls: list[str] = []
    page.on("websocket", lambda ws: urls.append(ws.url))
    warnings: list[str] = []
    page.on("console", lambda m: warnings.append(m.text) if m.type == "warning" else None)
    go_live(dash, wsPath=ws_path, token="secret-token")  # connected, to its own server
    own = f"ws://127.0.0.1:{dash.server.port}/ws?"
    assert urls and all(url.startswith(own) for url in urls), urls
    assert any("wsPath" in w for w in warnings), warnings


def test_unbroken_8192_character_strings_wrap(dash: Dashboard) -> None:
    page = go_live(dash)
    seqs = dash.post(
        {"type": "model_deployed", "model_name": "M" * 512, "model_version": "V" * 512,
         "model_id": "I" * 512},
        {"type": "training_progress", "run_id": "R" * 512, "model_name": "N" * 512,
         "stage": "model_training", "progress": 40, "current_stage": LONG, "message": LONG},
        {"type": "training_failed", "run_id": "F" * 512, "error": LONG,
         "error_code": "MEMORY_ERROR", "suggestions": [LONG]},
        {"type": "health_change", "current_health": "warning", "reason": LONG,
         "recommended_action": LONG},
        {"type": "activity_update", "activity": {"id": "long", "title": LONG,
                                                 "description": LONG, "user": LONG}},
        {"type": "system_alert", "alert": {"id": "long", "title": LONG, "message": LONG,
                                           "priority": "high", "source": LONG}},
        {"type": "file_validated", "status": "error", "filename": "E" * 512, "error": LONG},
    )
    wait_for_seq(page, seqs[-1])
    expect(page.locator("#activity .activity-title")).to_have_count(1)
    for width in (1440, 390):  # desktop and phone
        page.set_viewport_size({"width": width, "height": 900})
        widths = page.evaluate(WIDTHS)
        assert widths["scroll"] <= widths["viewport"], widths
    dash.console.assert_clean()


def test_bidi_controls_are_stripped_from_event_text(dash: Dashboard) -> None:
    page = go_live(dash)
    seqs = dash.post(
        {"type": "activity_update", "activity": {"id": "bidi", "title": "invoice\u202egnp.exe",
                                                 "description": f"a{BIDI}b", "user": "u\u2067x"}},
        {"type": "system_alert", "alert": {"id": "bidi", "title": "alert\u202etxt.exe",
                                           "message": "m\u2066m", "priority": "high"}},
        {"type": "model_deployed", "model_name": "model\u202eexe.png"},
    )
    wait_for_seq(page, seqs[-1])
    expect(page.locator("#activity .activity-title")).to_have_text(["invoicegnp.exe"])
    expect(page.locator("#alerts .alert-title")).to_have_text(["alerttxt.exe"])
    text: str = page.evaluate("() => document.body.innerText")
    assert "modelexe.png" in text and "ab" in text
    assert not [c for c in BIDI if c in text], [hex(ord(c)) for c in BIDI if c in text]
    dash.console.assert_clean()


