"""Real Chromium (Debian's /usr/bin/chromium) driving the dashboard of a real server process.

Playwright's sync API in plain pytest functions; never ``playwright install``. Without Chromium
(``MLOPS_HOOKS_CHROMIUM`` overrides where it is looked for) the tests fail under ``make test`` and
are skipped otherwise (:mod:`tests.sysdeps`). One browser with a fresh profile (user-data
directory) per test module, so Playwright's event loop is gone before other modules' asyncio
tests run; one page and one server per test. A test that moves time (``clock_dash``) gets a
browser of its own, since Playwright's fake clock belongs to the whole browser context.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from tests.live_server import LiveServer
from tests.spec_examples import optional_keys, payload_examples
from tests.sysdeps import CHROMIUM, missing

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
#: Messages Chromium itself logs when a server is down; not JavaScript errors of the page.
NETWORK_NOISE = re.compile(r"net::ERR_|WebSocket connection to .* failed|Failed to load resource")

try:
    from playwright.sync_api import BrowserContext, Page, expect, sync_playwright
except ImportError:  # pragma: no cover - playwright is in the [dev] extra
    sync_playwright = None  # type: ignore[assignment]


def spec_events() -> dict[str, dict[str, Any]]:
    """The spec's payload example of each event type (without the keys it marks optional, such
    as ``error?`` of a successful ``file_validated``)."""
    optional = optional_keys()
    return {
        ex["type"]: {k: v for k, v in ex.items() if k not in optional.get(ex["type"], ())}
        for ex in payload_examples()
    }


class ConsoleWatch:
    """Collects console errors and uncaught exceptions of a page."""

    def __init__(self, page: Page) -> None:
        self.errors: list[str] = []
        self.page_errors: list[str] = []
        page.on("console", self._on_console)
        page.on("pageerror", lambda exc: self.page_errors.append(str(exc)))

    def _on_console(self, message: Any) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def assert_clean(self, *, network_noise: bool = False) -> None:
        """No uncaught exception and no console error (optionally except Chromium's network
        messages, expected while the server is down)."""
        errors = [e for e in self.errors if not (network_noise and NETWORK_NOISE.search(e))]
        assert not self.page_errors, f"uncaught JavaScript errors: {self.page_errors}"
        assert not errors, f"console errors: {errors}"


class Dashboard:
    """A page of the dashboard and the server behind it."""

    def __init__(self, page: Page, server: LiveServer) -> None:
        self.page = page
        self.server = server
        self.console = ConsoleWatch(page)

    def open(self, **config: Any) -> Page:
        """Load ``/`` with settings as query parameters and wait until it is live."""
        query = f"?{urlencode(config)}" if config else ""
        self.page.goto(f"{self.server.http_url}/{query}")
        expect(self.page.locator("body")).to_have_attribute("data-ready", "true")
        return self.page

    def wait_live(self) -> None:
        expect(self.page.locator("#conn-text")).to_have_text("Connected", timeout=10_000)
        self.page.wait_for_function("window.wsManager && window.wsManager.lastSeq !== null")

    def post(self, *events: dict[str, Any]) -> list[int]:
        """Publish events through ``POST /api/events``; returns their seqs."""
        response = httpx.post(f"{self.server.http_url}/api/events", json=list(events), timeout=10)
        assert response.status_code == 200, response.text
        return list(response.json()["seqs"])

    def last_seq(self) -> int:
        return int(self.page.evaluate("window.wsManager.lastSeq"))

    def wait_for_seq(self, seq: int) -> None:
        """Wait until the page has received the event with ``seq``."""
        self.page.wait_for_function("seq => window.wsManager.lastSeq >= seq", arg=seq)


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., BrowserContext]]:
    """Launches Debian's Chromium with a fresh profile, as often as asked, for this module.

    The page's Content-Security-Policy forbids evaluating strings, which Playwright's
    ``wait_for_function`` does while it polls; so the browsers bypass it, except where
    ``launch(bypass_csp=False)`` asks for the page's real policy (test_page_hardening.py).
    """
    executable = CHROMIUM.require()
    if sync_playwright is None:
        missing("the playwright Python package is not installed (`make install`, or "
                "pip install -e '.[dev]')")
    with sync_playwright() as playwright:

        def launch(*, bypass_csp: bool = True) -> BrowserContext:
            context = playwright.chromium.launch_persistent_context(
                str(tmp_path_factory.mktemp("chromium-profile")),
                executable_path=str(executable), args=CHROMIUM_ARGS, headless=True,
                viewport={"width": 1440, "height": 900}, color_scheme="light",
                bypass_csp=bypass_csp,
            )
            context.set_default_timeout(10_000)
            return context

        yield launch


@pytest.fixture(scope="module")
def browser_context(chromium: Callable[..., BrowserContext]) -> Iterator[BrowserContext]:
    """One browser for the module's tests."""
    context = chromium()
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    """A real server; no monitor, watchdog or alert rules, so the page shows exactly what the
    test posts."""
    live = LiveServer(tmp_path, extra_args=["--metrics-interval", "0", "--stall-timeout", "0",
                                            "--alert-set", "alerts.enabled=false"])
    live.start()
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture
def dash(browser_context: BrowserContext, server: LiveServer) -> Iterator[Dashboard]:
    page = browser_context.new_page()
    try:
        yield Dashboard(page, server)
    finally:
        page.close()


@pytest.fixture
def clock_dash(chromium: Callable[..., BrowserContext], server: LiveServer) -> Iterator[Dashboard]:
    """A page in a browser of its own with Playwright's fake clock installed (flowing like the
    real one until the test pauses or moves it): for alerts that dismiss themselves, on the
    page's time rather than a race against it. Playwright's clock belongs to the whole context,
    so the module's shared browser never gets one."""
    context = chromium()
    try:
        page = context.new_page()
        page.clock.install()
        yield Dashboard(page, server)
    finally:
        context.close()


@pytest.fixture
def stub(server: LiveServer) -> Any:
    """The server's run history, made from the events a test posts (``history.History``)."""
    from tests.browser.history import History

    return History(server)


@pytest.fixture
def page(browser_context: BrowserContext) -> Iterator[Page]:
    """A fresh page of the module's browser, closed after the test."""
    page = browser_context.new_page()
    try:
        yield page
    finally:
        page.close()
