"""The Alerts panel after a real demo: the server monitor's, the stall watchdog's and the demo's
alerts, arriving in the snapshot and live. At every moment the list shows, visibly, exactly the
alerts its badge counts, ordered by priority then newest."""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from mlops_hooks import events as ev
from mlops_hooks.cli.demo._health import DEMO_SOURCE
from mlops_hooks.server.ops.health import HealthTracker
from mlops_hooks.server.ops.monitor import _stall_events
from tests.browser.conftest import Dashboard

pytestmark = [pytest.mark.browser, pytest.mark.timeout(90)]

PRIORITY_RANK = {"high": 0, "medium": 1, "low": 2}

#: Installed before the page's scripts run: a record of a list and its count badge every time
#: either changes, taken right after the change (before the browser paints anything).
RECORDER = """
([listId, badgeId]) => {
  window.frames_ = window.frames_ || {};
  const frames = window.frames_[listId] = [];
  document.addEventListener('readystatechange', () => {
    if (document.readyState !== 'interactive') return;
    const list = document.getElementById(listId);
    const badge = document.getElementById(badgeId);
    const record = () => frames.push({
      badge: badge.textContent,
      items: [...list.children].map((li) => ({
        id: li.dataset.alertId || li.dataset.activityId,
        priority: li.dataset.priority,
        opacity: Number(getComputedStyle(li).opacity),
        shown: li.checkVisibility({ checkOpacity: true, checkVisibilityCSS: true }),
        height: li.getBoundingClientRect().height,
      })),
    });
    const observer = new MutationObserver(record);
    observer.observe(badge, { childList: true, characterData: true, subtree: true });
    observer.observe(list, { childList: true });
  });
}
"""


def record(page: Page, list_id: str, badge_id: str) -> None:
    """Record ``#list_id`` and ``#badge_id`` from the next page load on."""
    page.add_init_script(f"({RECORDER})({[list_id, badge_id]!r})")


def frames(page: Page, list_id: str) -> list[dict[str, Any]]:
    recorded: list[dict[str, Any]] = page.evaluate("id => window.frames_[id]", list_id)
    assert recorded, f"the recorder saw no change of #{list_id}"
    return recorded


def assert_shown(frame: dict[str, Any]) -> None:
    """Every listed item is visible: not faded out, not hidden, not collapsed."""
    hidden = [i for i in frame["items"] if i["opacity"] < 1 or not i["shown"] or i["height"] <= 0]
    assert not hidden, f"badge {frame['badge']!r} but items not visible: {hidden}"


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def demo_alerts() -> list[dict[str, Any]]:
    """The alerts of a demo on a busy two-core machine, made by the code that makes them: the
    server monitor's CPU going high, critical, down a level, critical again and back to normal,
    memory high, disk critical; the stall watchdog's alert; the demo's simulated one. 9, 4 high.
    (No health_change: nothing here closes any of them.)"""
    tracker = HealthTracker()
    made: list[ev.Event] = []
    for sample in ({"cpu_percent": 85.0}, {"cpu_percent": 97.0}, {"cpu_percent": 85.0},
                   {"cpu_percent": 98.0}, {"cpu_percent": 40.0}, {"memory_percent": 90.0},
                   {"disk_percent": 98.0}):
        made.extend(e for e in tracker.update(sample) if isinstance(e, ev.SystemAlert))
    made.append(_stall_events("run-stuck", "Digits MLP", 42.0)[0])
    made.append(ev.SystemAlert(alert=ev.Alert(
        id="alert_demo_simulated", title="Demo: simulated high CPU usage",
        message="Demo: simulated high CPU usage", alert_type="resource_warning", priority="low",
        source=DEMO_SOURCE, auto_dismiss=True)))
    return [ev.to_dict(e) for e in made]


def stamped(events: list[dict[str, Any]], first: int) -> list[dict[str, Any]]:
    """Give alert ``first + i`` of ``events`` a distinct time: ``9 - first - i`` seconds ago (the
    auto-dismissed ones: now, less a few milliseconds, so they stay their whole time)."""
    now = datetime.now(timezone.utc)
    for i, event in enumerate(events, start=first):
        alert = event["alert"]
        alert["timestamp"] = iso(now - timedelta(milliseconds=10 * i) if alert["auto_dismiss"]
                                 else now - timedelta(seconds=9 - i))
    return events


def ordered(events: list[dict[str, Any]]) -> list[str]:
    """Titles in the order the panel shows them: priority, then newest first."""
    alerts = sorted((e["alert"] for e in events), key=lambda a: a["timestamp"], reverse=True)
    return [a["title"] for a in sorted(alerts, key=lambda a: PRIORITY_RANK[a["priority"]])]


def expect_titles(page: Page, expected: list[str], *, low: bool = True,
                  timeout: float = 10_000) -> None:
    """The panel lists exactly ``expected`` (``low=False``: apart from its low-priority alerts,
    auto-dismissed ones that may have timed out already)."""
    deadline = time.monotonic() + timeout / 1000
    while True:
        listed = page.locator("#alerts > li").evaluate_all(
            "els => els.map(e => [e.querySelector('.alert-title').textContent, "
            "e.dataset.priority])")
        got = [title for title, priority in listed if low or priority != "low"]
        if got == expected or time.monotonic() > deadline:
            break
        page.wait_for_timeout(50)
    assert got == expected


def assert_every_frame_consistent(page: Page) -> int:
    """Each recorded state of the Alerts panel: the badge counts exactly the listed alerts, and
    every one of them is visible. Returns the largest number of alerts listed."""
    recorded = frames(page, "alerts")
    for frame in recorded:
        items = frame["items"]
        match = re.fullmatch(r"(\d+)(?: · (\d+) high)?", frame["badge"])
        assert match, f"badge text {frame['badge']!r}"
        assert int(match[1]) == len(items), frame
        assert int(match[2] or 0) == sum(i["priority"] == "high" for i in items), frame
        assert len({i["id"] for i in items}) == len(items), frame
        assert_shown(frame)
    return max(len(f["items"]) for f in recorded)


def test_the_alert_list_shows_what_its_badge_counts_at_every_moment(
        clock_dash: Dashboard) -> None:
    dash = clock_dash
    events = demo_alerts()
    first, rest = events[:5], events[5:]
    dash.post(*stamped(first, 0))  # before the page opens: they come with the snapshot
    record(dash.page, "alerts", "alerts-count")
    # Auto-dismissed alerts stay a minute of the page's (fake) clock, however long loading
    # takes; no ping falls due while the clock is moved on.
    page = dash.open(alertAutoDismissMs=60_000, pingIntervalMs=3_600_000)
    dash.wait_live()
    expect_titles(page, ordered(first))
    dash.wait_for_seq(dash.post(*stamped(rest, len(first)))[-1])  # the rest live

    expect_titles(page, ordered(events))
    expect(page.locator("#alerts-count")).to_have_text("9 · 4 high")
    expect(page.locator("#alerts-count")).to_have_attribute("data-level", "crit")

    # When their minute is up, the three auto-dismissed alerts leave the list and the badge;
    # the others stay.
    page.clock.fast_forward(60_000)
    staying = [e for e in events if not e["alert"]["auto_dismiss"]]
    expect_titles(page, ordered(staying))
    expect(page.locator("#alerts-count")).to_have_text("6 · 4 high")
    page.get_by_role("button", name="Dismiss alert: Training Run Stalled").click()
    expect(page.locator("#alerts-count")).to_have_text("5 · 3 high")
    assert assert_every_frame_consistent(page) == 9
    dash.console.assert_clean()


def test_monitor_warnings_that_health_rules_out_leave_also_after_a_reload(
        clock_dash: Dashboard) -> None:
    """On a loaded machine the monitor's CPU level flaps between warning and critical, and each
    crossing is a new alert. When health comes down, the warnings above it close: live, and in
    the snapshot of a reloaded page (the server keeps them open).

    The page's clock is paused while the alerts arrive, so the auto-dismissed ones are shown
    however slowly they arrive, and moved on to dismiss them."""
    dash = clock_dash
    record(dash.page, "alerts", "alerts-count")  # from the reload on (a record per page load)
    page = dash.open(alertAutoDismissMs=1500, pingIntervalMs=3_600_000)
    dash.wait_live()
    page.clock.pause_at(datetime.fromtimestamp(page.evaluate("Date.now()") / 1000 + 1,
                                                timezone.utc))  # a second on, and stop
    tracker = HealthTracker()

    alerts: list[dict[str, Any]] = []

    def sample(cpu: float) -> None:
        events = [ev.to_dict(e) for e in tracker.update({"cpu_percent": cpu})]
        alerts.extend(e for e in events if e["type"] == "system_alert")
        dash.wait_for_seq(dash.post(*events)[-1])

    dash.post(ev.to_dict(_stall_events("run-stuck", "Digits MLP", 42.0)[0]))
    for cpu in (85.0, 96.0, 85.0, 97.0, 85.0, 98.0):
        sample(cpu)
    expect_titles(page, ["Critical CPU Usage", "Training Run Stalled", "High CPU Usage"],
                  low=False)  # one critical: each earlier one closed when CPU came down
    expect(page.locator("#alerts .alert[data-priority='high'] .alert-message").first).to_have_text(
        "System CPU usage above 95% (98.0%)")
    expect(page.locator("#system-health-text")).to_have_text("Critical")

    sample(85.0)  # warning again: the critical one no longer applies
    expect_titles(page, ["Training Run Stalled", "High CPU Usage"], low=False)
    sample(40.0)  # healthy: neither does the warning
    expect_titles(page, ["Training Run Stalled"], low=False)
    expect(page.locator("#alerts .alert-title", has_text="Back to Normal")).to_be_visible()
    page.clock.fast_forward(1500)
    expect_titles(page, ["Training Run Stalled"])  # and the low ones timed out
    expect(page.locator("#alerts-count")).to_have_text("1 · 1 high")
    page.clock.resume()

    # A reloaded page takes the server's time: wait until the newest auto-dismissed alert's
    # 1.5 s are over there too, so none of them may come back.
    newest = max(datetime.fromisoformat(a["alert"]["timestamp"].replace("Z", "+00:00"))
                 for a in alerts if a["alert"]["auto_dismiss"])
    while datetime.now(timezone.utc) <= newest + timedelta(milliseconds=1500):
        time.sleep(0.05)
    page.reload()  # the server still lists all of them as open (the auto-dismissed ones too)
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    dash.wait_live()
    expect_titles(page, ["Training Run Stalled"])
    expect(page.locator("#alerts-count")).to_have_text("1 · 1 high")
    assert [f["badge"] for f in frames(page, "alerts")] == ["1 · 1 high"]  # nothing stale
    dash.console.assert_clean()


def test_activity_entries_arriving_live_are_visible_at_once(dash: Dashboard) -> None:
    dash.post({"type": "activity_update", "activity": {"id": "act-0", "title": "Upload"}})
    record(dash.page, "activity", "activity-count")
    page = dash.open()
    dash.wait_live()
    steps = [{"type": "activity_update", "activity": {"id": f"act-{i}", "title": f"Step {i}"}}
             for i in range(1, 4)]
    seqs = dash.post(*steps)
    dash.wait_for_seq(seqs[-1])
    expect(page.locator("#activity .activity-title")).to_have_text(
        ["Step 3", "Step 2", "Step 1", "Upload"])
    recorded = frames(page, "activity")
    assert recorded[-1]["badge"] == "4"
    for frame in recorded:
        assert frame["badge"] == str(len(frame["items"])), frame
        assert_shown(frame)
    dash.console.assert_clean()
