"""``mlops-hooks sync`` as a user runs it: resuming after a kill, and every bad input."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest

from mlops_hooks import events as ev
from mlops_hooks.publisher import Publisher
from tests.live_server import LiveServer, free_port
from tests.sync.support import ROOT, counter, history, run_sync, sync_command

pytestmark = pytest.mark.timeout(300)


def offline_run(monkeypatch, directory, run_id: str, steps: int) -> list[str]:
    """Write a run with ``steps`` progress events through an offline publisher; its lines."""
    monkeypatch.setenv("MLOPS_HOOKS_MODE", "offline")
    monkeypatch.setenv("MLOPS_HOOKS_DIR", str(directory))
    publisher = Publisher()
    monkeypatch.delenv("MLOPS_HOOKS_MODE")
    for step in range(1, steps + 1):
        publisher.publish(ev.TrainingProgress(
            run_id=run_id, stage="model_training", model_name="big", current_step=step,
            total_steps=steps, progress=100.0 * step / steps, current_loss=1.0 / step,
            metrics={"train/loss": 1.0 / step}))
    publisher.publish(ev.TrainingCompleted(run_id=run_id, model_name="big"))
    assert publisher.close(60)
    return (directory / run_id / "events.jsonl").read_text().splitlines()


def synced_lines(run) -> int:
    record = json.loads((run / "sync.json").read_text()) if (run / "sync.json").exists() \
        else {"servers": {}}
    return max([s["lines"] for s in record["servers"].values()], default=0)


def test_a_sync_killed_midway_resumes_and_stores_every_event_exactly_once(monkeypatch,
                                                                         tmp_path):
    runs = tmp_path / "runs"
    lines = offline_run(monkeypatch, runs, "big", 3000)
    assert len(lines) == 3001
    with LiveServer(tmp_path / "server") as server:
        proc = subprocess.Popen(sync_command(str(runs), "--url", server.ws_url,
                                             "--batch-size", "10"),
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 120
            while synced_lines(runs / "big") < 300 and time.monotonic() < deadline \
                    and proc.poll() is None:
                time.sleep(0.05)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
        done = synced_lines(runs / "big")
        assert 300 <= done < len(lines), "the sync was not interrupted midway"
        result = run_sync(str(runs), "--url", server.ws_url, "--batch-size", "200")
        assert result.returncode == 0, result.stderr
        summary = result.stdout.splitlines()[-1]
        sent, already = (int(summary.split(": ")[1].split()[0]),
                         int(summary.split(", ")[1].split()[0]))
        assert f"{done} skipped (synced before)" in summary
        assert sent + already + done == len(lines)  # nothing left out
        assert already <= 10  # at most the batch in flight when it was killed
        # exactly one copy of every event on the server
        assert counter(server.http_url, "mlops_hooks_events_in_total",
                       "training_progress") == 3000
        assert counter(server.http_url, "mlops_hooks_events_in_total",
                       "training_completed") == 1
        row, _, series = history(server.http_url, "big")
        assert row["status"] != "running" and series


def test_bad_inputs_get_clear_errors_and_a_corrupt_line_does_not_stop_the_rest(monkeypatch,
                                                                               tmp_path):
    runs = tmp_path / "runs"
    lines = offline_run(monkeypatch, runs, "torn", 5)
    events = runs / "torn" / "events.jsonl"
    events.write_text("\n".join([lines[0], lines[1][:25], *lines[2:]]) + "\n")  # line 2 cut

    missing = run_sync(str(tmp_path / "nope"), "--url", "ws://127.0.0.1:1/ws")
    assert missing.returncode == 2
    assert f"no such file or directory: {tmp_path / 'nope'}" in missing.stderr
    (tmp_path / "empty").mkdir()
    empty = run_sync(str(tmp_path / "empty"))
    assert empty.returncode == 2 and "holds no run" in empty.stderr
    bad_url = run_sync(str(runs), "--url", "ftp://host")
    assert bad_url.returncode == 2 and "--url" in bad_url.stderr

    down = run_sync(str(runs), "--url", f"ws://127.0.0.1:{free_port()}/ws")
    assert down.returncode == 1
    assert "cannot reach http://127.0.0.1:" in down.stderr and "is the server running" \
        in down.stderr
    assert not (runs / "torn" / "sync.json").exists()  # nothing acknowledged, nothing recorded

    with LiveServer(tmp_path / "server", extra_args=["--token", "s3cret"]) as server:
        refused = run_sync(str(runs), "--url", server.ws_url, "--token", "wrong")
        assert refused.returncode == 1
        assert "refused the token (HTTP 401" in refused.stderr and "MLOPS_HOOKS_TOKEN" \
            in refused.stderr
        torn = run_sync(str(runs), "--url", server.ws_url, env={"MLOPS_HOOKS_TOKEN": "s3cret"})
        assert torn.returncode == 1  # done, but a line could not be sent
        assert f"{events}:2: not a valid event" in torn.stderr
        assert "5 event(s) sent, 0 already there, 0 skipped (synced before), 1 bad line(s)" \
            in torn.stdout
        assert counter(server.http_url, "mlops_hooks_events_in_total",
                       "training_progress") == 4
