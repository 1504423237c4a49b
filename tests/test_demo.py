"""``mlops-hooks demo`` end to end: real server, real training, real traffic, Ctrl-C.

The demo runs as a real command in its own process group (like a terminal's foreground job) so
Ctrl-C can be sent the way a terminal sends it: SIGINT to the whole group.
"""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from mlops_hooks import events as ev
from mlops_hooks.cli import main
from mlops_hooks.cli.demo._display import Display, describe_progress
from mlops_hooks.cli.demo._options import DemoOptions
from tests.live_server import LiveServer, free_port


class DemoProcess:
    """``python -m mlops_hooks demo ...`` with its output collected line by line."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.port = free_port()
        self.db = tmp_path / "demo" / "history.sqlite3"
        self.stderr_path = tmp_path / "demo-stderr.txt"
        env = dict(os.environ, PYTHONUNBUFFERED="1", XDG_DATA_HOME=str(tmp_path / "xdg"))
        for name in ("MLOPS_HOOKS_URL", "MLOPS_HOOKS_TOKEN", "MLOPS_HOOKS_DISABLE",
                     "MLOPS_HOOKS_AUTO", "PYTHONWARNINGS"):
            env.pop(name, None)
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mlops_hooks", "demo", "--port", str(self.port),
                 "--db", str(self.db), *args],
                stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, text=True,
                env=env, start_new_session=True)
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait_for_line(self, pattern: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        with self._changed:
            while True:
                for line in self.lines:
                    if regex.search(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"no line matching {pattern!r}; output:\n"
                                         f"{self.output}\nstderr:\n{self.stderr[-3000:]}")
                self._changed.wait(min(left, 0.5))

    def ctrl_c(self) -> None:
        """What a terminal does on Ctrl-C: SIGINT to the foreground process group."""
        os.killpg(self.proc.pid, signal.SIGINT)

    def wait(self, timeout: float) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def demo_process(tmp_path: Path) -> Iterator[Any]:
    started: list[DemoProcess] = []

    def start(*args: str) -> DemoProcess:
        process = DemoProcess(tmp_path, *args)
        started.append(process)
        return process

    yield start
    for process in started:
        process.close()


def port_closed(port: int, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                return True
        time.sleep(0.1)
    return False


def snapshot(port: int) -> dict[str, Any]:
    import json

    with connect(f"ws://127.0.0.1:{port}/ws", proxy=None, open_timeout=10) as ws:
        return dict(json.loads(ws.recv(timeout=10)))


# ---------------------------------------------------------------------- end to end


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_quick_demo_puts_every_event_type_on_the_dashboard_then_serves_until_ctrl_c(
        demo_process):
    demo = demo_process("--quick")
    demo.wait_for_line(r"Serving the dashboard at", timeout=240)
    out = demo.output
    assert f"dashboard   http://127.0.0.1:{demo.port}/" in out
    assert "12 of the 12 event types" in out, out
    assert "missing:" not in out and "✗" not in out and "FAILED" not in out, out
    assert re.search(r"\[7/7\] Server health monitor: (✓|ok) ", out), out

    with httpx.Client(base_url=demo.url, timeout=10) as http:
        runs = {r["model_name"]: r for r in http.get("/api/models").json()["runs"]}
        assert runs["Digits MLP"]["status"] == "completed"
        assert runs["Digits MLP"]["completed"]["final_accuracy"] > 0.5
        assert len(runs["Digits MLP"]["points"]) >= 2  # the chart has epochs
        search = runs["Digits LogReg grid search"]
        assert search["status"] == "completed" and search["completed"]["final_accuracy"] > 0.8
        (probe,) = [r for name, r in runs.items() if "learning-rate probe" in name]
        assert probe["status"] == "failed"
        assert probe["failed"]["error_code"] == "NUMERICAL_ERROR"
        assert "Lower the learning rate" in probe["failed"]["suggestions"]

        (model,) = http.get("/api/models").json()["models"]
        assert model["model_name"].startswith("Digits Classifier")
        assert model["deployment_timestamp"] and model["model_accuracy"] > 0.8
        assert model["total_predictions"] == 1200 and model["milestone_reached"] == 1000
        assert model["status"] == "inactive"  # the monitor was closed after the burst

        system = http.get("/api/monitoring/system").json()
        assert system["system"]["cpu_percent"] is not None
        assert system["health"]["current_health"] in ev.HEALTH_VALUES
        assert system["alerts"], "the health stage left no alert"
        titles = {a["title"] for a in http.get("/api/activity?limit=500").json()["activity"]}
        assert {"Model Training Started", "Model Training Completed", "Model Training Failed",
                "Model Deployed"} <= titles

    uploads = snapshot(demo.port)["uploads"]
    (upload,) = [u for u in uploads if u["filename"] == "digits.csv"]
    assert upload["validation"]["status"] == "success"
    assert upload["validation"]["rows"] == 600 and upload["validation"]["columns"] == 65
    assert upload["upload"]["progress_percent"] == 100

    demo.ctrl_c()
    assert demo.wait(30) == 130
    assert "Traceback" not in demo.stderr, demo.stderr
    assert port_closed(demo.port), "the server outlived the demo"
    assert (demo.db.parent / "digits.csv").is_file()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_ctrl_c_during_training_reports_the_run_interrupted_and_stops_everything(
        demo_process, tmp_path):
    demo = demo_process()  # the full demo: its training lasts long enough to interrupt
    demo.wait_for_line(r"epoch \d+/\d+", timeout=180)
    demo.ctrl_c()
    assert demo.wait(60) == 130
    assert "Traceback" not in demo.stderr, demo.stderr
    assert re.search(r"\[2/7\] Lightning: MLP on the digits: (✗|FAILED) interrupted",
                     demo.output), demo.output
    assert "Stopped; history kept in" in demo.output
    assert port_closed(demo.port), "the server outlived the demo"
    # The interruption reached the server before it stopped: it is in the history.
    with LiveServer(tmp_path / "after", db=str(demo.db)) as server:
        runs = httpx.get(server.http_url + "/api/models", timeout=10).json()["runs"]
    (run,) = [r for r in runs if r["model_name"] == "Digits MLP"]
    assert run["status"] == "interrupted" and run["failed"]["error_code"] == "INTERRUPTED"


@pytest.mark.timeout(120)
def test_no_train_only_serves_and_stops_on_ctrl_c(demo_process):
    demo = demo_process("--no-train")
    demo.wait_for_line(r"Serving the dashboard at", timeout=90)
    assert "[1/" not in demo.output  # no stage ran
    health = httpx.get(demo.url + "/healthz", timeout=10).json()
    assert health["status"] == "ok"
    assert httpx.get(demo.url + "/api/models", timeout=10).json()["runs"] == []
    demo.ctrl_c()
    assert demo.wait(30) == 130
    assert "Traceback" not in demo.stderr
    assert port_closed(demo.port)


@pytest.mark.timeout(120)
def test_server_stops_by_itself_when_the_demo_is_killed(demo_process):
    demo = demo_process("--no-train")
    demo.wait_for_line(r"Serving the dashboard at", timeout=90)
    demo.proc.kill()  # SIGKILL: no cleanup code runs in the demo
    demo.wait(10)
    assert port_closed(demo.port, timeout=20), "an orphaned server kept running"


@pytest.mark.timeout(60)
def test_a_taken_port_is_a_clear_error(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        process = subprocess.run(
            [sys.executable, "-m", "mlops_hooks", "demo", "--no-train", "--port", str(port),
             "--db", str(tmp_path / "h.sqlite3")], capture_output=True, text=True, timeout=60)
    assert process.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in process.stderr
    assert "--port" in process.stderr and "Traceback" not in process.stderr


# ---------------------------------------------------------------------- arguments


@pytest.mark.parametrize(("args", "message"), [
    (["--port", "0"], "--port must be an integer from 1 to 65535"),
    (["--port", "70000"], "--port must be an integer from 1 to 65535"),
    (["--db", ":memory:"], "--db must be a file path"),
    (["--host", " "], "--host must be a host name or address"),
])
def test_bad_options_are_refused_with_the_option_named(capsys, args, message):
    assert main(["demo", *args]) == 2
    assert message in capsys.readouterr().err


def test_options_put_every_file_beside_the_history(tmp_path):
    options = DemoOptions(db=str(tmp_path / "x" / "h.sqlite3"), host="0.0.0.0", port=9000)
    assert options.workdir == tmp_path / "x"
    assert options.http_url == "http://127.0.0.1:9000" and options.ws_url.endswith(":9000/ws")
    assert DemoOptions(host="::", port=9000).http_url == "http://[::1]:9000"
    assert DemoOptions(quick=True).plan.predictions < DemoOptions().plan.predictions


def test_missing_dependencies_are_named_with_the_extra_to_install(monkeypatch, capsys):
    import importlib.util

    from mlops_hooks.cli.demo._runner import missing_modules

    real = importlib.util.find_spec
    hidden = {"torch", "uvicorn"}
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name in hidden else real(name, *args))
    assert main(["demo", "--port", "9"]) == 2
    err = capsys.readouterr().err
    assert "torch (mlops-hooks[lightning])" in err and "uvicorn (mlops-hooks[server])" in err
    assert "pip install 'mlops-hooks[all]'" in err
    assert missing_modules(train=False) == ["uvicorn (mlops-hooks[server])"]


def test_importing_the_demo_needs_no_framework_and_no_server_stack():
    blocked = ("torch", "lightning", "pytorch_lightning", "sklearn", "numpy", "keras",
               "starlette", "uvicorn", "psutil")
    code = ("import sys\n"
            f"for name in {blocked!r}: sys.modules[name] = None\n"
            "import mlops_hooks.cli, mlops_hooks.cli.demo\n"
            "from mlops_hooks.cli.demo import DemoOptions\n"
            "print(DemoOptions(db='/tmp/x/h.sqlite3').http_url)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "http://127.0.0.1:8001"


# ---------------------------------------------------------------------- display


class Terminal(io.StringIO):
    encoding = "utf-8"


def test_plain_display_prints_stage_lines_and_a_line_per_epoch():
    out = Terminal()
    display = Display(out, tty=False, stages=2)
    display.begin("Training", "train")
    display.update(10, "epoch 1/2", key=1)
    display.update(20, "epoch 1/2", key=1)  # same key: no new line
    display.done("accuracy 0.9")
    display.close()
    lines = out.getvalue().splitlines()
    assert lines[0] == "[1/2] Training ..."
    assert lines[1] == "      ██░░░░░░░░░░░░░░░░░░  10.0% · epoch 1/2"
    assert re.fullmatch(r"\[1/2\] Training: ✓ accuracy 0\.9 \(\d+\.\ds\)", lines[2])
    assert len(lines) == 3


def test_display_falls_back_to_ascii_when_the_terminal_cannot_show_unicode():
    out = io.StringIO()  # no encoding: treated as ASCII
    display = Display(out, tty=False, stages=1)
    display.begin("Work")
    display.update(50, "half", key="h")
    display.done("broken", ok=False)
    display.close()
    lines = out.getvalue().splitlines()
    assert lines[:2] == ["[1/1] Work ...", "      ##########..........  50.0% - half"]
    assert re.fullmatch(r"\[1/1\] Work: FAILED broken \(\d+\.\ds\)", lines[2]), lines[2]
    assert len(lines) == 3 and out.getvalue().isascii()


def test_tty_display_redraws_one_line_that_fits_the_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")
    out = Terminal()
    display = Display(out, tty=True, stages=7, footer=lambda: "99 events on the dashboard")
    display.begin("A long stage title that does not fit", "short")
    display.update(50, "epoch 3/6 · loss 0.1234 · ETA 12s")
    deadline = time.monotonic() + 30  # the redraw thread shows the update in its own time
    while "\r\x1b[2K[1/7] short  ██████████" not in out.getvalue():
        assert time.monotonic() < deadline, f"the update was never drawn: {out.getvalue()!r}"
        time.sleep(0.01)
    display.done("fine")
    display.close()
    text = out.getvalue()
    frames = [f for f in text.split("\r\x1b[2K") if f and not f.endswith("\n")]
    assert frames and all(len(f) <= 39 for f in frames)
    assert frames[-1].startswith("[1/7] short  ██████████")
    assert "events on the dashboard" not in frames[-1]  # the footer only shows when it fits
    assert re.search(r"\[1/7\] A long stage title that does not fit: ✓ fine \(\d+\.\ds\)\n$",
                     text)


def test_progress_text_shows_epoch_loss_and_eta():
    event = ev.TrainingProgress(progress=40, stage="model_training", current_epoch=2,
                                total_epochs=5, current_loss=0.123456,
                                estimated_time_remaining=75)
    assert describe_progress(event) == "epoch 2/5 · loss 0.1235 · ETA 1m 15s"
    validation = ev.TrainingProgress(progress=40, stage="validation", current_epoch=2,
                                     total_epochs=5)
    assert describe_progress(validation).startswith("Validating model · epoch 2/5")
