"""The third-party plugin example, installed as its own distribution (throwaway, per test run).

``pip install --no-deps --target DIR`` builds and installs ``examples/notifier-plugin`` into a
temporary directory; processes that should have the plugin get DIR on ``PYTHONPATH``, where
``importlib.metadata`` finds its ``mlops_hooks`` entry point. The shared venv is not touched.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.examples.support import EXAMPLES, example_env, wait_until
from tests.live_server import LiveServer

pytestmark = pytest.mark.timeout(180)

SCRIPT = """
import mlops_hooks
mlops_hooks.deploy("Notifier Test Model", "v9", 0.9, model_id="notifier_test")
try:
    with mlops_hooks.track("notifier-test-run", total_epochs=2) as run:
        run.stage("model_training")
        raise MemoryError("Insufficient memory available for training")
except MemoryError:
    print("failed as planned")
"""


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("notifier")
    source = root / "src"
    shutil.copytree(EXAMPLES / "notifier-plugin", source)  # builds write into the source
    target = root / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--no-index", "--disable-pip-version-check",
                    "--target", str(target), str(source)], check=True, timeout=120)
    return target


class Webhook:
    """A local HTTP endpoint that records the JSON bodies POSTed to it."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                outer.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Webhook:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    with Webhook() as hook:
        yield hook


def read_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_the_entry_point_registers_the_plugin_with_its_distribution(plugin_dir):
    env = example_env(None, PYTHONPATH=str(plugin_dir))
    out = subprocess.run([sys.executable, "-m", "mlops_hooks", "plugins", "--side", "server",
                          "--json"], capture_output=True, text=True, env=env, timeout=60,
                         check=True)
    rows = {row["name"]: row for row in json.loads(out.stdout)}
    assert rows["notifier"]["origin"] == "mlops-notifier 0.1.0"
    assert {"mlops_training_failed", "mlops_model_deployed"} <= set(rows["notifier"]["hooks"])
    # Not installed: not there (nothing leaked into the shared venv).
    out = subprocess.run([sys.executable, "-m", "mlops_hooks", "plugins", "--json"],
                         capture_output=True, text=True, env=example_env(None), timeout=60,
                         check=True)
    assert "notifier" not in {row["name"] for row in json.loads(out.stdout)}


def test_in_the_server_it_notifies_a_file_and_a_webhook(plugin_dir, webhook, tmp_path):
    sink = tmp_path / "notifications.jsonl"
    env = {"PYTHONPATH": str(plugin_dir), "MLOPS_NOTIFIER_FILE": str(sink),
           "MLOPS_NOTIFIER_WEBHOOK": webhook.url}
    with LiveServer(tmp_path / "server", env=env,
                    extra_args=["--metrics-interval", "0"]) as server:
        # The training process does not have the plugin: the server notifies for it.
        process = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True,
                                 text=True, env=example_env(server.ws_url), timeout=120)
        assert process.returncode == 0 and "failed as planned" in process.stdout, process
        assert wait_until(lambda: len(read_lines(sink)) == 2 and len(webhook.bodies) == 2)
    lines = read_lines(sink)
    assert lines == webhook.bodies  # the same records to both destinations
    deployed, failed = sorted(lines, key=lambda r: r["event"]["type"])
    assert deployed["text"] == "Deployed Notifier Test Model v9 (accuracy 0.900)"
    assert deployed["side"] == "server" and deployed["event"]["seq"] == 1  # deployed first
    assert failed["event"]["type"] == "training_failed"
    assert failed["text"].startswith("Training of notifier-test-run failed [MEMORY_ERROR] at "
                                     "model_training (0")
    assert "Insufficient memory" in failed["text"] and "Try: Reduce batch size" in failed["text"]


def test_in_a_training_process_a_dead_webhook_never_holds_anything_up(plugin_dir, tmp_path):
    sink = tmp_path / "notifications.jsonl"
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        env = example_env(None, PYTHONPATH=str(plugin_dir), MLOPS_NOTIFIER_SIDE="training",
                          MLOPS_NOTIFIER_FILE=str(sink),
                          MLOPS_NOTIFIER_WEBHOOK=f"http://127.0.0.1:{silent.getsockname()[1]}/")
        process = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True,
                                 text=True, env=env, timeout=60)
    assert process.returncode == 0 and "failed as planned" in process.stdout, process.stderr
    kinds = [r["event"]["type"] for r in read_lines(sink)]
    assert kinds == ["model_deployed", "training_failed"]  # the file did not wait on the hook
    assert {r["side"] for r in read_lines(sink)} == {"training"}


def test_a_bad_setting_is_reported_once_and_the_process_goes_on(plugin_dir):
    env = example_env(None, PYTHONPATH=str(plugin_dir), MLOPS_NOTIFIER_SIDE="everywhere",
                      MLOPS_NOTIFIER_FILE="/dev/null")
    process = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                             env=env, timeout=60)
    assert process.returncode == 0 and "failed as planned" in process.stdout
    assert "MLOPS_NOTIFIER_SIDE must be one of server, training, any, got 'everywhere'" \
        in process.stderr
    assert process.stderr.count("raised in loading entry point") == 1
