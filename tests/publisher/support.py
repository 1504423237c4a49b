"""Helpers for the publisher's tests: a real server with a record of what it accepted, a
connection-state recorder, event factories and a script runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlops_hooks import events as ev
from mlops_hooks.manager import hookimpl
from tests.live_server import LiveServer, free_port

ROOT = Path(__file__).resolve().parents[2]
FAST = {"backoff_base": 0.02, "backoff_cap": 0.2, "poll_interval": 0.01}


class Server(LiveServer):
    """A live server whose server-side JSONL plugin records every event it accepted."""

    def __init__(self, workdir: Path, **kwargs: Any) -> None:
        self.jsonl = Path(workdir) / "server-events.jsonl"
        env = {"MLOPS_HOOKS_JSONL": str(self.jsonl), **kwargs.pop("env", {})}
        extra = ["--metrics-interval", "0", "--stall-timeout", "0", *kwargs.pop("extra_args", [])]
        super().__init__(workdir, env=env, extra_args=extra, **kwargs)

    def received(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """Events the server accepted (in the order it accepted them), optionally of one run.

        The server's own ``run_state`` events (issue 17) are left out: these are what the
        publisher delivered.
        """
        if not self.jsonl.exists():
            return []
        text = self.jsonl.read_text()
        lines = text.splitlines() if text.endswith("\n") else text.splitlines()[:-1]
        rows = [json.loads(line) for line in lines if line]
        return [r for r in rows if (run_id is None or r.get("run_id") == run_id)
                and r.get("type") != "run_state"]

    def wait_received(self, run_id: str, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        """:meth:`received` once it holds ``count`` events of the run (a backend such as Redis
        hands events to the server's hooks after the acknowledgement)."""
        deadline = time.monotonic() + timeout
        rows = self.received(run_id)
        while len(rows) < count and time.monotonic() < deadline:
            time.sleep(0.05)
            rows = self.received(run_id)
        return rows


class States:
    """A plugin recording ``mlops_connection_change`` calls (and the thread they come from)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, object]]] = []
        self.threads: set[str] = set()
        self._cond = threading.Condition()

    @hookimpl
    def mlops_connection_change(self, state: str, detail: dict[str, object]) -> None:
        with self._cond:
            self.calls.append((state, dict(detail)))
            self.threads.add(threading.current_thread().name)
            self._cond.notify_all()

    def names(self) -> list[str]:
        with self._cond:
            return [state for state, _ in self.calls]

    def wait_for(self, predicate: Callable[[list[str]], bool], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate([s for s, _ in self.calls]):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"connection states never matched: {self.calls}")
                self._cond.wait(left)


def progress(i: int, run_id: str) -> ev.TrainingProgress:
    return ev.TrainingProgress(stage="model_training", progress=min(100, i / 10), run_id=run_id,
                               message=f"#{i}")


def activity(i: int, run_id: str) -> ev.ActivityUpdate:
    return ev.ActivityUpdate(run_id=run_id, activity=ev.Activity(id=f"{run_id}-a{i}",
                                                                 title=f"#{i}"))


def marks(rows: list[dict[str, Any]]) -> list[str]:
    """What identifies each test event: its message (progress) or its activity title."""
    return [r["message"] if r["type"] == "training_progress" else r["activity"]["title"]
            for r in rows if r["type"] in ("training_progress", "activity_update")]


def run_script(code: str, env: dict[str, str] | None = None, timeout: float = 60.0,
               cwd: Path | None = None, stdin_hook: Callable[[], object] | None = None,
               ) -> subprocess.CompletedProcess[str]:
    """Run ``code`` as a script file in a fresh interpreter (the project importable).

    A file rather than ``-c`` so that ``multiprocessing``'s spawn can re-import ``__main__``.
    With ``stdin_hook``, the script's first line of output is read, the hook called, and a line
    written to its stdin (the script waits for it with ``sys.stdin.readline()``).
    """
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "MLOPS_HOOKS_DISABLE": "console",
                **(env or {})}
    full_env.pop("MLOPS_HOOKS_JSONL", None)
    with tempfile.TemporaryDirectory() as tmp:
        # undelivered events are kept on disk at exit: in the test's own folder unless it says
        full_env.setdefault("MLOPS_HOOKS_DIR", str(Path(tmp) / "mlops-hooks-runs"))
        script = Path(tmp) / "script.py"
        script.write_text(textwrap.dedent(code))
        if stdin_hook is not None:
            return _run_with_hook(script, full_env, timeout, cwd or ROOT, stdin_hook)
        return subprocess.run([sys.executable, str(script)], env=full_env, capture_output=True,
                              text=True, timeout=timeout, cwd=cwd or ROOT)


def _run_with_hook(script: Path, env: dict[str, str], timeout: float, cwd: Path,
                   hook: Callable[[], object]) -> subprocess.CompletedProcess[str]:
    with subprocess.Popen([sys.executable, str(script)], env=env, cwd=cwd, text=True,
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        first = proc.stdout.readline()
        hook()
        proc.stdin.write("\n")
        proc.stdin.flush()
        out, err = proc.communicate(timeout=timeout)
        return subprocess.CompletedProcess(proc.args, proc.returncode, first + out, err)


__all__ = ["FAST", "Server", "States", "activity", "free_port", "marks", "progress",
           "run_script"]
