"""A stall notifies exactly once whichever path finds it: the stall watchdog
(``--stall-timeout``: no event at all) or the step clock (no step for k x the median step
time). A real training loop publishing to a real server stops stepping until the local
receiver has the notification, then steps again: the alert clears."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from mlops_hooks.server.alerts.lifecycle import WATCHDOG_ALERT, WATCHDOG_SOURCE
from mlops_hooks.server.ops.monitor import _stall_events
from mlops_hooks.server.state.state import STALLED_ALERT
from tests.alerts.receiver import Receiver
from tests.live_server import LiveServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
REPO = Path(__file__).resolve().parents[2]
TYPES = "system_alert,run_state,training_completed,training_failed"

#: Ten steps, then no step (no event at all) until the receiver has a notification, then ten
#: more steps and the run completes.
LOOP = """
import json, sys, time, urllib.request
from mlops_hooks.run import track

run_id, count_url = sys.argv[1], sys.argv[2]


def notified():
    with urllib.request.urlopen(count_url, timeout=5) as reply:
        return json.load(reply)["count"] > 0


with track("stally", run_id=run_id, total_steps=20, throttle=0) as run:
    for _ in range(10):
        run.step(loss=0.5)
        time.sleep(0.01)
    deadline = time.monotonic() + 120
    while not notified():  # the hang: no event until the stall is notified
        if time.monotonic() > deadline:
            raise RuntimeError("no stall notification within 120 s")
        time.sleep(0.05)
    for _ in range(10):
        run.step(loss=0.4)
"""

PATHS = {
    "watchdog": (["--stall-timeout", "1", "--stall-floor", "600"], WATCHDOG_ALERT),
    "step clock": (["--stall-timeout", "0", "--stall-floor", "1", "--stall-factor", "2"],
                   "run_stalled"),
}


@pytest.mark.parametrize("path", list(PATHS))
def test_a_stall_notifies_once_and_clears_when_steps_resume(tmp_path, path):
    flags, alert_type = PATHS[path]
    run_id = f"stall-{path.replace(' ', '-')}"
    with Receiver() as receiver:
        args = ["--metrics-interval", "0", "--alert-set", "throughput.enabled=false",
                *flags, "--webhook", receiver.url("/webhook")]
        with LiveServer(tmp_path, extra_args=args) as server, \
                connect(f"{server.ws_url}?types={TYPES}", compression=None,
                        max_queue=None) as ws:
            assert json.loads(ws.recv(timeout=10))["type"] == "snapshot"
            env = {**os.environ, "MLOPS_HOOKS_URL": server.ws_url,
                   "MLOPS_HOOKS_DISABLE": "console", "MLOPS_HOOKS_FLUSH_TIMEOUT": "30",
                   "MLOPS_HOOKS_SYSTEM_INTERVAL": "0", "PYTHONPATH": str(REPO)}
            done = subprocess.run([sys.executable, "-c", LOOP, run_id,
                                   receiver.url("/count?path=/webhook")],
                                  env=env, cwd=str(REPO), capture_output=True, timeout=240)
            assert done.returncode == 0, done.stderr.decode()[-3000:]
            events: list[dict[str, Any]] = []

            def seen() -> tuple[bool, bool]:
                return (any(e.get("state") == "finished" for e in events),
                        any("clears" in e for e in events))

            # until the run's end (run_state finished) and the stall's clear (raised by the
            # run_state running that resumed steps, stored whenever ingest gets to it)
            while seen() != (True, True):
                message = json.loads(ws.recv(timeout=30))
                if message.get("run_id") == run_id:
                    events.append(message)
    alerts = [e for e in events if e["type"] == "system_alert"]
    fired = [a for a in alerts if "clears" not in a]
    cleared = [a for a in alerts if "clears" in a]
    assert [a["alert"]["alert_type"] for a in fired] == [alert_type], alerts
    assert [c["clears"] for c in cleared] == [fired[0]["alert"]["id"]], alerts
    states = [(e["state"], e["seq"]) for e in events if e["type"] == "run_state"]
    assert [s for s, _ in states] == ["stalled", "running", "finished"], states
    # fired at the stall, cleared by the running state that resumed steps
    assert max(fired[0]["seq"], states[0][1]) < states[1][1] < cleared[0]["seq"]
    [hook] = receiver.on("/webhook")  # exactly one notification
    assert hook["rule"] == "stall" and hook["value"] == "stalled"
    assert hook["alert"] == fired[0]["alert"] and hook["run"]["run_id"] == run_id
    if path == "watchdog":
        assert fired[0]["alert"]["source"] == WATCHDOG_SOURCE
        assert "No event from run stally" in hook["alert"]["message"]


def test_the_rules_know_the_watchdogs_alert():
    [alert, _] = _stall_events("r-1", "net", 12.0)
    assert alert.alert.alert_type == WATCHDOG_ALERT == STALLED_ALERT
    assert alert.alert.source == WATCHDOG_SOURCE
