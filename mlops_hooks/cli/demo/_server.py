"""Start and stop the demo's ``mlops-hooks serve`` process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from mlops_hooks.cli.demo._options import DemoOptions

__all__ = ["DemoServer", "ServerError", "get_json"]


class ServerError(RuntimeError):
    """The demo's server could not be started (the message says why)."""


def get_json(url: str, timeout: float = 2.0) -> Any:
    """GET ``url`` and decode its JSON body (no proxy: the server is local).

    Raises:
        OSError: The request failed (``urllib.error.URLError`` included).
        ValueError: The body is not JSON.
    """
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=timeout) as response:
        return json.loads(response.read())


def _port_problem(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be bound, or ``None`` when it is free."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        return f"cannot resolve --host {host!r}: {exc}"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        if os.name != "nt":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            return (f"cannot listen on {host}:{port} ({exc.strerror or exc}); is another "
                    "server (or demo) running there? Stop it or pick another --port")
    return None


class DemoServer:
    """A ``mlops-hooks serve`` subprocess in its own session, with its log in a file.

    Args:
        options: The demo's options (host, port, history file, work directory).
        metrics_interval: Seconds between the server's ``system_metrics`` samples.
    """

    def __init__(self, options: DemoOptions, metrics_interval: float) -> None:
        self.options = options
        self.metrics_interval = metrics_interval
        self.log_path = options.workdir / "server.log"
        self.upload_dir = options.workdir / "uploads"
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        """The server's command line."""
        o = self.options
        return [sys.executable, "-m", "mlops_hooks.cli.demo._serve", str(os.getpid()),
                "--host", o.host, "--port", str(o.port), "--db", str(o.db_path),
                "--upload-dir", str(self.upload_dir),
                "--metrics-interval", f"{self.metrics_interval:g}", "--log-level", "warning"]

    def start(self, timeout: float = 30.0) -> None:
        """Start the server and wait until ``/healthz`` answers.

        Raises:
            ServerError: The port is taken, or the server exited or did not answer in time
                (the message includes the end of its log).
        """
        problem = _port_problem(self.options.host, self.options.port)
        if problem is not None:
            raise ServerError(problem)
        self.options.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        deadline = time.monotonic() + timeout
        url = self.options.http_url + "/healthz"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(f"the server exited with status {self.proc.returncode}:\n"
                                  f"{self.log_tail()}")
            try:
                if get_json(url, timeout=1.0).get("status") in ("ok", "degraded"):
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.1)
        self.stop()
        raise ServerError(f"the server did not answer {url} within {timeout:g}s:\n"
                          f"{self.log_tail()}")

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of the server's log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no server log)"
        return "\n".join(text.rstrip().splitlines()[-lines:]) or "(empty server log)"

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> int | None:
        """Stop the server as Ctrl-C would (graceful), then harder if it does not end in time.

        Returns:
            The server's exit status, or ``None`` if it was never started.
        """
        proc = self.proc
        if proc is None:
            return None
        for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 3.0),
                          (signal.SIGKILL, 3.0)):
            if proc.poll() is not None:
                break
            try:
                proc.send_signal(sig)
                proc.wait(wait)
            except subprocess.TimeoutExpired:
                continue
            except ProcessLookupError:
                break
        return proc.poll()

    @property
    def workdir(self) -> Path:
        """The directory of the history, the uploads and the log."""
        return self.options.workdir
