"""Run a real ``redis-server`` on a free 127.0.0.1 port in a temporary directory.

Example:
    with RedisServer(tmp_path, appendonly=True) as redis:
        url = redis.url                  # redis://127.0.0.1:PORT/0
        redis.restart()                  # same port, same data directory (AOF survives)
        redis.kill()                     # SIGKILL, like a crash

Tests take the ``redis_server`` / ``redis_aof`` fixtures below (their ``conftest.py`` imports
them). Without ``redis-server`` (``MLOPS_HOOKS_REDIS_SERVER`` overrides where it is looked for)
they fail under ``make test`` and are skipped otherwise (:mod:`tests.sysdeps`).
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.live_server import end_process, free_port
from tests.sysdeps import REDIS_SERVER


class RedisServer:
    """A ``redis-server`` subprocess; ``start``/``stop``/``kill``/``restart`` may repeat.

    Args:
        workdir: Parent of the data directory (``<workdir>/redis-<port>``).
        port: TCP port (default: a free one, kept across restarts).
        appendonly: Persist with an AOF fsynced on every write (survives ``kill``).
    """

    def __init__(self, workdir: Path, *, port: int | None = None,
                 appendonly: bool = False) -> None:
        executable = REDIS_SERVER.find()
        if executable is None:
            raise RuntimeError(REDIS_SERVER.reason())
        self.executable = executable
        self.port = port or free_port()
        self.dir = Path(workdir) / f"redis-{self.port}"
        self.appendonly = appendonly
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.dir / "redis.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        args = [str(self.executable), "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--dir", str(self.dir), "--logfile", str(self.log_path),
                "--daemonize", "no", "--protected-mode", "yes"]
        if self.appendonly:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        return args

    def start(self, timeout: float = 10.0) -> RedisServer:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, cwd=self.dir)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}:\n"
                                   f"{self.log()}")
            if self.ping():
                return self
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"redis-server did not start in {timeout}s:\n{self.log()}")

    def ping(self) -> bool:
        """Whether the server answers ``PING`` (and has finished loading its data)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except FileNotFoundError:
            return ""

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful shutdown (SIGTERM: Redis flushes its AOF and exits)."""
        end_process(self.proc, signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL, like a crash."""
        if self.running:
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait()

    def restart(self, *, hard: bool = False, down_for: float = 0.0) -> None:
        """Stop (``hard``: SIGKILL), wait ``down_for`` seconds, start again on the same port."""
        if hard:
            self.kill()
        else:
            self.stop()
        if down_for:
            time.sleep(down_for)
        self.start()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh redis-server without persistence (fails or skips when it is missing)."""
    REDIS_SERVER.require()
    with RedisServer(tmp_path) as server:
        yield server


@pytest.fixture
def redis_aof(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh redis-server that fsyncs every write to its AOF (survives restarts and kill -9).

    Fails or skips when redis-server is missing.
    """
    REDIS_SERVER.require()
    with RedisServer(tmp_path, appendonly=True) as server:
        yield server
