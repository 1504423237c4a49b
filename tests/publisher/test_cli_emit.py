"""``mlops-hooks emit TYPE --json '{...}' [--url URL]`` against a real server."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.publisher.support import ROOT, Server, free_port

pytestmark = pytest.mark.timeout(60)


def emit(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    full_env = {**os.environ, "MLOPS_HOOKS_DISABLE": "console", **(env or {})}
    return subprocess.run([sys.executable, "-m", "mlops_hooks", "emit", *args], env=full_env,
                          capture_output=True, text=True, timeout=40, cwd=ROOT)


def test_emit_sends_one_event_and_prints_its_seq(server):
    first = emit("training_progress", "--json",
                 '{"progress": 65, "stage": "model_training", "run_id": "cli"}',
                 "--url", server.http_url + "/ws")
    assert first.returncode == 0, first.stderr
    second = emit("model_deployed", "--json", '{"model_name": "Customer Predictor v3.2"}',
                  env={"MLOPS_HOOKS_URL": server.ws_url})
    assert second.returncode == 0, second.stderr
    assert int(second.stdout) == int(first.stdout) + 1 and first.stderr == second.stderr == ""
    rows = server.received()
    progress = next(r for r in rows if r.get("run_id") == "cli")
    assert progress["seq"] == int(first.stdout) and progress["progress"] == 65
    assert any(r["type"] == "model_deployed" and r["seq"] == int(second.stdout) for r in rows)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["training_progress", "--json", '{"progress": 150, "stage": "model_training"}'],
         "invalid event: training_progress.progress: expected a number <= 100, got 150"),
        (["training_progress", "--json", '{"progress": 5}'], "training_progress.stage"),
        (["training_progres", "--json", "{}"], "training_progres"),
        (["model_deployed", "--json", "{not json"], "--json is not valid JSON"),
        (["model_deployed", "--json", "[1]"], "must be a JSON object"),
        (["model_deployed", "--json", '{"type": "training_failed", "model_name": "m"}'],
         "has type 'training_failed' but TYPE is 'model_deployed'"),
        (["model_deployed", "--json", '{"model_name": "m"}', "--url", "ftp://h/ws"],
         "must start with ws://"),
    ],
)
def test_emit_refuses_bad_input_with_exit_2_naming_the_problem(args, words):
    result = emit(*args, "--url", f"ws://127.0.0.1:{free_port()}/ws") if "--url" not in args \
        else emit(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    assert words in result.stderr and result.stderr.count("\n") == 1


def test_emit_exits_1_when_the_server_cannot_be_reached_in_time():
    url = f"ws://127.0.0.1:{free_port()}/ws"
    result = emit("model_deployed", "--json", '{"model_name": "m"}', "--url", url,
                  "--timeout", "0.5")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert "no acknowledgement from ws://" in result.stderr and "within 0.5s" in result.stderr
    assert "connection refused" in result.stderr


def test_emit_uses_the_token(tmp_path):
    server = Server(tmp_path / "server", extra_args=["--token", "s3cret"])
    with server:
        refused = emit("model_deployed", "--json", '{"model_name": "m"}', "--url",
                       server.ws_url, "--timeout", "1")
        assert refused.returncode == 1
        assert "refused the handshake with HTTP 401 (check MLOPS_HOOKS_TOKEN)" in refused.stderr
        accepted = emit("model_deployed", "--json", '{"model_name": "m"}', "--url",
                        server.ws_url, env={"MLOPS_HOOKS_TOKEN": "s3cret"})
        assert accepted.returncode == 0
        assert int(accepted.stdout) == 1  # the first event stored: the refused one was not
