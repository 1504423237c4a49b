"""A training process killed with SIGKILL is flagged by the stall watchdog.

No callback can report a SIGKILL (or the OOM killer): the run just goes silent. The watchdog
(``--stall-timeout``) raises one ``system_alert`` (``alert_type: "training_stalled"``, with the
run's ``run_id``), adds an activity entry and marks the run ``stalled``; once the crash grace
has passed without its publisher, the run is ``crashed`` (issue 17). With two servers on
Redis, both watch the same run and the fleet still raises exactly one alert.

Robust on a busy machine by construction: the training sends its events in one burst and then
goes silent (until it is killed), so the stall is unambiguous however slowly it runs, and the
alert is awaited with a generous deadline. That no second alert follows is checked at a marker:
a second run (the canary) that goes silent after the first alert. Each watchdog pass looks at
every run, so a second alert for the first run would come before the canary's.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.live_server import LiveServer
from tests.redis.fleet import Tap, running, wait_until
from tests.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[2]
RUN_ID = "stall-run"
CANARY = "stall-canary"
STALL_TIMEOUT = "1.5"
STEPS = 20

TRAINING = textwrap.dedent(f"""
    import sys
    import mlops_hooks
    with mlops_hooks.track("stall-model", total_steps=100_000, run_id={RUN_ID!r},
                           throttle=0) as run:
        run.stage("model_training")
        for step in range({STEPS}):
            run.step(loss=1.0 / (1 + step))
        print("training", flush=True)
        sys.stdin.readline()  # silent from here on, until killed
""")


def start_training(url: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MLOPS_HOOKS_URL": url,
           "MLOPS_HOOKS_DISABLE": "console"}
    env.pop("MLOPS_HOOKS_JSONL", None)
    return subprocess.Popen([sys.executable, "-c", TRAINING], env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def stalled_alerts(messages: list[dict[str, Any]], run_id: str = RUN_ID) -> list[dict[str, Any]]:
    return [m for m in messages if m.get("type") == "system_alert" and m.get("run_id") == run_id
            and m["alert"].get("alert_type") == "training_stalled"]


def run_state(server: LiveServer) -> dict[str, Any] | None:
    runs = httpx.get(server.http_url + "/api/models", timeout=10).json()["runs"]
    return next((r for r in runs if r["run_id"] == RUN_ID), None)


def kill_mid_run(servers: tuple[LiveServer, ...]) -> list[Tap]:
    """Start the training against the first server, SIGKILL it mid-run; return the taps."""
    taps = [Tap(server.ws_url) for server in servers]

    async def main() -> None:
        for tap in taps:
            await tap.__aenter__()
        training = start_training(servers[0].ws_url)
        try:
            assert training.stdout is not None
            assert await asyncio.to_thread(training.stdout.readline) == "training\n"
            for tap in taps:  # its last event
                await tap.wait(lambda t: any(m.get("run_id") == RUN_ID and
                                             m.get("type") == "training_progress" and
                                             m.get("current_step") == STEPS
                                             for m in t.messages), 60, "progress")
            training.send_signal(signal.SIGKILL)  # nothing can report this
            await asyncio.to_thread(training.wait, 10)
            for tap in taps:
                await tap.wait(lambda t: bool(stalled_alerts(t.messages)), 60, "stall alert")
            canary = {"type": "training_progress", "run_id": CANARY, "model_name": "canary",
                      "progress": 1, "stage": "model_training"}
            response = await asyncio.to_thread(
                httpx.post, servers[0].http_url + "/api/events", json=canary, timeout=10)
            assert response.status_code == 200, response.text
            for tap in taps:
                await tap.wait(lambda t: bool(stalled_alerts(t.messages, CANARY)), 60,
                               "the canary's stall alert")
        finally:
            if training.poll() is None:
                training.kill()
                training.wait()
            for pipe in (training.stdin, training.stdout):
                if pipe is not None:
                    pipe.close()
            for tap in taps:
                await tap.__aexit__(None, None, None)
    asyncio.run(main())
    return taps


def check(servers: tuple[LiveServer, ...], taps: list[Tap]) -> None:
    for tap in taps:
        alerts = stalled_alerts(tap.messages)
        assert len(alerts) == 1, alerts  # one alert for one stall, fleet-wide
        alert = alerts[0]
        assert alert["run_id"] == RUN_ID and alert["alert"]["priority"] == "high"
        assert "stall-model" in alert["alert"]["message"]
        assert len(stalled_alerts(tap.messages, CANARY)) == 1
        activity = [m for m in tap.messages if m.get("type") == "activity_update"
                    and m.get("run_id") == RUN_ID
                    and m["activity"].get("action_type") == "training_stalled"]
        assert len(activity) == 1 and activity[0]["activity"]["status"] == "stalled"
        assert not [m for m in tap.messages if m.get("type") in ("training_completed",
                                                                   "training_failed")]
    for server in servers:
        # stalled by the watchdog first; then, its publisher's connection gone for the crash
        # grace (issue 17), crashed: the process vanished
        wait_until(lambda s=server: (run_state(s) or {}).get("status") == "crashed", 30,
                   "run marked crashed")
        state = run_state(server)
        assert state is not None and state["progress"]["current_step"] == STEPS
        alerts = httpx.get(server.http_url + "/api/monitoring/system", timeout=10).json()["alerts"]
        stalled = [a for a in alerts if a["alert_type"] == "training_stalled"]
        # the canary's stall is still open; the run's was closed by its crash (the stall
        # rule clears a stall when its run ends), which is an alert of its own
        assert [f"({RUN_ID})" in a["message"] for a in stalled] == [False], stalled
        crashed = [a for a in alerts if a["alert_type"] == "run_failed"
                   and f"({RUN_ID})" in a["message"]]
        assert len(crashed) == 1 and crashed[0]["title"] == "Training Run Crashed", alerts


@pytest.mark.timeout(90)
def test_a_sigkilled_training_is_flagged_stalled(tmp_path: Path) -> None:
    server = LiveServer(tmp_path, extra_args=["--metrics-interval", "0",
                                              "--stall-timeout", STALL_TIMEOUT])
    with server:
        taps = kill_mid_run((server,))
        check((server,), taps)


@pytest.mark.timeout(90)
def test_two_servers_on_redis_raise_one_stall_alert(tmp_path: Path,
                                                    redis_server: RedisServer) -> None:
    args = ["--backend", redis_server.url, "--metrics-interval", "0",
            "--stall-timeout", STALL_TIMEOUT]
    with running(LiveServer(tmp_path / "a", extra_args=args),
                 LiveServer(tmp_path / "b", extra_args=args)) as servers:
        taps = kill_mid_run(servers)
        check(servers, taps)
