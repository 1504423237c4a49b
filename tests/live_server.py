"""Run a real ``mlops-hooks serve`` process on a free 127.0.0.1 port for end-to-end tests.

Example:
    with LiveServer(tmp_path) as server:
        httpx.get(server.http_url + "/healthz")
        server.kill()          # SIGKILL, like a crash
        server.start()         # same port, same database: history survives
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def end_process(proc: subprocess.Popen[bytes] | None, sig: int, timeout: float) -> None:
    """Send ``sig`` to ``proc`` and wait ``timeout`` seconds for it to exit, then SIGKILL it."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    """A server subprocess; ``start``/``stop``/``kill`` may be called repeatedly."""

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        db: str | None = None,
        extra_args: list[str] | None = None,
        env: dict[str, str] | None = None,
        startup_timeout: float = 20.0,
    ) -> None:
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.db = db if db is not None else str(self.workdir / "mlops-hooks.sqlite3")
        self.extra_args = list(extra_args or [])
        self.env = dict(os.environ, **(env or {}))
        self.env.setdefault("MLOPS_HOOKS_DISABLE", "")
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.workdir / f"server-{self.port}.log"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def publish_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/publish"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "mlops_hooks", "serve", "--host", "127.0.0.1",
                "--port", str(self.port), "--db", self.db, *self.extra_args]

    def start(self) -> LiveServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                     env=self.env, cwd=self.workdir)
        log.close()
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.http_url + "/healthz", timeout=0.5).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"server did not start in {self.startup_timeout}s:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except FileNotFoundError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        end_process(self.proc, signal.SIGINT, timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
