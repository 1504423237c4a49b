"""The server's alerts between ingest and the notifiers: submitted off ingest's path, notified
only when stored anew, and a failing rule never reaches ingest."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from mlops_hooks import events as ev
from mlops_hooks.manager import hookimpl
from mlops_hooks.server.alerts.config import AlertConfig
from mlops_hooks.server.alerts.service import Alerts, notifier_plugins


@dataclass
class Stored:
    duplicate: bool


class Recorder:
    def __init__(self) -> None:
        self.rules: list[str] = []

    @hookimpl
    def mlops_notify(self, rule: str) -> None:
        self.rules.append(rule)


def failed(run_id: str) -> ev.TrainingFailed:
    return ev.TrainingFailed(run_id=run_id, error="boom", error_code="RUNTIME_ERROR",
                             timestamp="2026-12-07T05:00:00.000Z")


def test_alerts_are_submitted_by_a_task_and_a_duplicate_is_not_notified():
    plugins = notifier_plugins(AlertConfig(), entry_points=False)
    recorder = Recorder()
    plugins.register(recorder)
    alerts = Alerts(AlertConfig(), "http://dash", plugins=plugins)
    submitted: list[ev.Event] = []

    async def submit(event: ev.Event) -> Any:
        submitted.append(event)
        return Stored(duplicate=event.run_id == "r-dup")  # another server stored it first

    async def scenario() -> None:
        alerts.start(submit)
        alerts.observe(failed("r-new"), 1)
        alerts.observe(failed("r-dup"), 2)
        assert submitted == []  # nothing inside ingest's synchronous step
        await asyncio.gather(*alerts._pending)
        await alerts.stop()

    asyncio.run(scenario())
    assert [e.run_id for e in submitted] == ["r-new", "r-dup"]
    assert all(isinstance(e, ev.SystemAlert) for e in submitted)
    assert recorder.rules == ["failed"] and alerts.raised == 2


def test_the_watchdogs_stored_alert_is_notified_by_the_server_that_stored_it_only():
    from mlops_hooks.server.ops.monitor import _stall_events

    def server() -> tuple[Alerts, Recorder, list[ev.Event]]:
        plugins = notifier_plugins(AlertConfig(), entry_points=False)
        recorder = Recorder()
        plugins.register(recorder)
        return Alerts(AlertConfig(), "http://dash", plugins=plugins), recorder, []

    [alert, _] = _stall_events("r-1", "net", 30.0)
    (here, here_notes, here_sent), (there, there_notes, there_sent) = server(), server()

    async def scenario() -> None:
        for alerts, sent, local in ((here, here_sent, True), (there, there_sent, False)):
            async def submit(event: ev.Event, sent: list[ev.Event] = sent) -> Any:
                sent.append(event)
                return Stored(duplicate=False)

            alerts.start(submit)
            alerts.observe(alert, 7, local=local)
            alerts.observe(ev.RunState(run_id="r-1", state="running"), 8, local=local)
            await asyncio.gather(*alerts._pending)
            await alerts.stop()

    asyncio.run(scenario())
    assert here_notes.rules == ["stall"] and there_notes.rules == []  # stored here: notified here
    # both servers clear it (the same event_id: a fleet stores one), neither re-submits it
    assert [e.clears for e in here_sent] == [alert.alert.id]  # type: ignore[attr-defined]
    assert [e.event_id for e in there_sent] == [e.event_id for e in here_sent]


def test_a_failing_rule_never_reaches_ingest(monkeypatch):
    alerts = Alerts(AlertConfig(), "http://dash")

    def broken(event: ev.Event) -> list[Any]:
        raise RuntimeError("rule bug")

    monkeypatch.setattr(alerts.engine.rules[0], "observe", broken)
    alerts.observe(failed("r-1"), 1)  # logged once, swallowed
    alerts.observe(failed("r-2"), 2)
    assert alerts.failed is True
