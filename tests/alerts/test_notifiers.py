"""Notifiers against real local receivers: the webhook, Apprise's ``json://``, retries, bounds."""

from __future__ import annotations

import sys
import time
from typing import Any

import pluggy
import pytest

from mlops_hooks.manager import hookimpl
from mlops_hooks.server.alerts.config import AlertConfig
from mlops_hooks.server.alerts.dispatch import Notification
from mlops_hooks.server.alerts.service import Alerts, notifier_plugins
from tests.alerts.receiver import Receiver

NOTE = Notification(
    alert={"id": "alert_20261207_divergence_1", "title": "Training Diverging",
           "message": "The loss of run Net (r-9) is rising: 12.5", "alert_type": "loss_diverging",
           "priority": "high", "source": "alert_rules", "timestamp": "2026-12-07T05:00:00.000Z",
           "auto_dismiss": False, "actions": ["Lower the learning rate"]},
    run={"run_id": "r-9", "model_name": "Net", "url": "http://dash:8001/runs/r-9"},
    link="http://dash:8001/runs/r-9", rule="divergence", value=12.5)
FAST = ("notify.backoff_base_s=0.05", "notify.backoff_cap_s=0.2")


def alerts(*assignments: str, notify: tuple[str, ...] = (), webhooks: tuple[str, ...] = (),
           plugins: pluggy.PluginManager | None = None) -> Alerts:
    config = AlertConfig.build(assignments=(*FAST, *assignments), notify=notify,
                               webhooks=webhooks)
    service = Alerts(config, "http://dash:8001", plugins=plugins)
    service.dispatcher.start()
    return service


def wait_until(check: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_the_webhook_and_apprise_json_deliver_the_run_the_rule_the_value_and_the_link():
    with Receiver() as receiver:
        service = alerts(webhooks=(receiver.url("/webhook"),),
                         notify=(receiver.url("/apprise", scheme="json"),))
        try:
            service.dispatcher.enqueue(NOTE)
            [hook] = receiver.wait_for("/webhook", 1)
            [apprise] = receiver.wait_for("/apprise", 1)
        finally:
            service.dispatcher.stop()
    assert hook == {"alert": NOTE.alert, "run": NOTE.run, "link": NOTE.link,
                    "rule": "divergence", "value": 12.5}
    assert apprise["title"] == "[mlops-hooks] Training Diverging"
    for text in ("Net (r-9)", "Rule: divergence (value: 12.5)", "http://dash:8001/runs/r-9",
                 "rising"):
        assert text in apprise["message"]
    assert apprise["type"] == "failure"  # high priority
    assert service.dispatcher.counts() == {
        "webhook-1": {"delivered": 1, "failed": 0, "dropped": 0, "retried": 0},
        "apprise-1-json": {"delivered": 1, "failed": 0, "dropped": 0, "retried": 0}}


def test_a_receiver_that_is_down_is_retried_until_it_is_up():
    receiver = Receiver()  # its port, nothing listening yet
    service = alerts("notify.retries=200", webhooks=(receiver.url(),),
                     notify=(receiver.url("/apprise", scheme="json"),))
    try:
        service.dispatcher.enqueue(NOTE)  # returns at once: the threads deliver
        counts = service.dispatcher.counts
        wait_until(lambda: all(c["retried"] >= 2 for c in counts().values()))
        with receiver:
            assert receiver.wait_for("/hook", 1)[0]["rule"] == "divergence"
            assert "r-9" in receiver.wait_for("/apprise", 1)[0]["message"]
            wait_until(lambda: all(c["delivered"] == 1 for c in counts().values()))
    finally:
        service.dispatcher.stop()
    assert all(c["failed"] == 0 for c in service.dispatcher.counts().values())


class Flaky:
    """A third-party notifier that fails ``failures`` times, then records."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0
        self.got: list[tuple[str, str]] = []

    @hookimpl
    def mlops_notify(self, alert: dict[str, Any], link: str) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError("receiver away")
        self.got.append((alert["id"], link))


def test_a_notifier_gives_up_after_its_retries_and_the_others_still_deliver():
    plugins = notifier_plugins(AlertConfig(), entry_points=False)
    gives_up, recovers = Flaky(failures=100), Flaky(failures=2)
    plugins.register(gives_up, name="gives-up")
    plugins.register(recovers, name="recovers")
    service = alerts("notify.retries=3", plugins=plugins)
    try:
        service.dispatcher.enqueue(NOTE)
        wait_until(lambda: service.dispatcher.counts()["gives-up"]["failed"] == 1
                   and recovers.got)
    finally:
        service.dispatcher.stop()
    assert gives_up.calls == 4  # the first attempt and 3 retries
    assert recovers.got == [(NOTE.alert["id"], NOTE.link)]
    assert service.dispatcher.counts()["recovers"]["retried"] == 2


def test_a_full_queue_drops_and_counts_instead_of_waiting():
    plugins = notifier_plugins(AlertConfig(), entry_points=False)
    stuck = Flaky(failures=10**9)
    plugins.register(stuck, name="stuck")
    service = alerts("notify.retries=1000", "notify.queue_size=2", plugins=plugins)
    try:
        for _ in range(50):
            service.dispatcher.enqueue(NOTE)
        counts = service.dispatcher.counts()["stuck"]
        assert counts["dropped"] >= 47  # at most one taken, two queued
    finally:
        service.dispatcher.stop()


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"notify_urls": ("nope://host",)}, "--notify nope://… is not a URL Apprise accepts"),
    ({"notify_urls": ("slack://",)}, "--notify slack://… is not a URL Apprise accepts"),
    ({"webhooks": ("ftp://host/x",)}, "--webhook needs an http:// or https:// URL"),
    ({"webhooks": ("http://",)}, "--webhook needs an http:// or https:// URL"),
])
def test_bad_notifier_urls_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.").replace("/", "/")):
        notifier_plugins(AlertConfig(**kwargs), entry_points=False)


def test_apprise_missing_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "apprise", None)  # as if not installed
    with pytest.raises(ValueError, match=r"the optional extra 'notify'.*mlops-hooks\[notify\]"):
        notifier_plugins(AlertConfig(notify_urls=("json://127.0.0.1:9/x",)), entry_points=False)
    notifier_plugins(AlertConfig(webhooks=("http://127.0.0.1:9/x",)), entry_points=False)
