"""``mlops-hooks demo`` from start to finish: server, work, summary, serving, clean stop.

Ctrl-C (or SIGTERM) at any point stops everything in order: the running stage ends (a training
run reports ``training_failed`` with ``INTERRUPTED``), the publisher gets a moment to deliver
that, the dashboard subscriber and the server are stopped, and the command exits with 130
(143 for SIGTERM) and no traceback. A second Ctrl-C during that short shutdown is ignored.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import sys
import threading
import time
import traceback
from types import FrameType
from typing import TextIO

from mlops_hooks import events as ev
from mlops_hooks.cli.demo._display import Display, ProgressPlugin
from mlops_hooks.cli.demo._options import DemoOptions
from mlops_hooks.cli.demo._server import DemoServer, ServerError
from mlops_hooks.cli.demo._stages import STAGES, Context, StageFailed
from mlops_hooks.cli.demo._watch import DashboardWatcher
from mlops_hooks.manager import get_plugin_manager, reset_plugin_managers

__all__ = ["run_demo"]

#: Import names the demo needs, and the extra that installs each.
SERVER_MODULES = {"starlette": "server", "uvicorn": "server", "psutil": "server",
                  "python_multipart": "server"}
WORK_MODULES = {"torch": "lightning", "lightning": "lightning", "sklearn": "sklearn",
                "numpy": "sklearn"}
FLUSH_SECONDS = 10.0
INTERRUPT_FLUSH_SECONDS = 3.0


def missing_modules(train: bool) -> list[str]:
    """The modules the demo needs that are not installed, with the extra to install."""
    needed = {**SERVER_MODULES, **(WORK_MODULES if train else {})}
    return [f"{name} (mlops-hooks[{extra}])" for name, extra in needed.items()
            if importlib.util.find_spec(name) is None]


class _Signals:
    """SIGINT/SIGTERM raise KeyboardInterrupt once; during shutdown they are only noted."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.stopping = False

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # embedded in another thread: the embedding program owns the signals
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signum
        if not self.stopping:
            raise KeyboardInterrupt

    @property
    def exit_code(self) -> int:
        return 128 + (self.received or signal.SIGINT)


class Demo:
    """One run of the demo.

    Args:
        options: What to do.
        stream: Where the display goes (default: stdout).
    """

    def __init__(self, options: DemoOptions, stream: TextIO | None = None) -> None:
        self.options = options
        self.stream = stream or sys.stdout
        self.signals = _Signals()
        self.server = DemoServer(options, options.plan.metrics_interval)
        self.watcher = DashboardWatcher(options.ws_url)
        self.display = Display(self.stream, stages=len(STAGES), footer=self._footer)
        self.failed: list[str] = []

    def _footer(self) -> str:
        total = sum(self.watcher.counts.values())
        return f"{total:,} events on the dashboard" if total else ""

    def _print(self, text: str = "") -> None:
        self.display.line(text)

    # ------------------------------------------------------------------ the whole run

    def run(self) -> int:
        """Run the demo; returns the exit status."""
        self.signals.install()
        self._prepare_environment()
        try:
            try:
                self.server.start()
                self.watcher.start()
            except (ServerError, TimeoutError) as exc:
                self.display.close()
                print(f"mlops-hooks demo: {exc}", file=sys.stderr)
                return 1
            self._banner()
            if self.options.train:
                self._work()
                if self.options.exit_after_work:
                    return 1 if self.failed else 0
            return self._serve()
        except KeyboardInterrupt:
            return self.signals.exit_code
        finally:
            self._shutdown()

    def _prepare_environment(self) -> None:
        os.environ["MLOPS_HOOKS_URL"] = self.options.ws_url
        blocked = {n.strip() for n in os.environ.get("MLOPS_HOOKS_DISABLE", "").split(",")}
        os.environ["MLOPS_HOOKS_DISABLE"] = ",".join(sorted((blocked | {"console"}) - {""}))
        # scikit-learn's worker processes would print their warnings over the display.
        os.environ.setdefault("PYTHONWARNINGS", "ignore")
        reset_plugin_managers()
        get_plugin_manager("training").register(ProgressPlugin(self.display), name="demo-display")

    def _banner(self) -> None:
        o = self.options
        self._print(f"mlops-hooks demo{' (quick)' if o.quick else ''}")
        self._print(f"  dashboard   {o.http_url}/   <- open it in a browser")
        self._print(f"  history     {o.db_path}")
        self._print(f"  server log  {self.server.log_path}")
        self._print()

    def _work(self) -> None:
        import warnings

        ctx = Context(self.options, self.display, self.watcher)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # library advice would break the status line
            for title, short, stage in STAGES:
                self.display.begin(title, short)
                try:
                    summary = stage(ctx)
                except StageFailed as exc:
                    self._stage_failed(title, str(exc))
                except SystemExit:
                    # Lightning turns Ctrl-C into SystemExit after reporting the failure.
                    if self.signals.received is not None:
                        self.display.done("interrupted", ok=False)
                        raise KeyboardInterrupt from None
                    raise
                except KeyboardInterrupt:
                    self.display.done("interrupted", ok=False)
                    raise
                except Exception as exc:
                    self._stage_failed(title, f"{type(exc).__name__}: {exc}")
                    sys.stderr.write(traceback.format_exc())
                else:
                    self.display.done(summary)
                finally:
                    self.signals.install()  # Lightning ignores SIGINT while it shuts down
        self._summary()

    def _stage_failed(self, title: str, reason: str) -> None:
        self.failed.append(title)
        self.display.done(reason, ok=False)

    def _summary(self) -> None:
        publisher = get_plugin_manager("training").get_plugin("publisher")
        last = 0
        if publisher is not None:
            publisher.flush(FLUSH_SECONDS)
            last = publisher.status()["last_seq"] or 0
        types = ev.EVENT_TYPES
        self.watcher.wait_for(  # what was published has reached the dashboard side too
            lambda w: (w.last_seq or 0) >= last and all(w.counts[t] for t in types),
            FLUSH_SECONDS)
        self.display.close()
        counts = self.watcher.counts
        seen = [t for t in types if counts[t]]
        self._print()
        self._print(f"The dashboard received {sum(counts.values()):,} events, "
                    f"{len(seen)} of the {len(types)} event types:")
        self._print("  " + ", ".join(f"{t} {counts[t]:,}" for t in seen))
        missing = [t for t in types if not counts[t]]
        if missing:
            self.failed.append("event types")
            self._print(f"  missing: {', '.join(missing)}")
        if self.failed:
            self._print(f"{len(self.failed)} part(s) did not work out: {'; '.join(self.failed)}")

    def _serve(self) -> int:
        self.display.close()
        self._print()
        self._print(f"Serving the dashboard at {self.options.http_url}/ "
                    "- press Ctrl-C to stop.")
        while self.server.running:
            time.sleep(0.5)
        print(f"mlops-hooks demo: the server stopped unexpectedly:\n{self.server.log_tail()}",
              file=sys.stderr)
        return 1

    def _shutdown(self) -> None:
        self.signals.stopping = True
        interrupted = self.signals.received is not None
        self.display.close()
        if interrupted:
            self._print()
            self._print("Stopping the demo ...")
        publisher = get_plugin_manager("training").get_plugin("publisher")
        if publisher is not None:
            publisher.close(INTERRUPT_FLUSH_SECONDS if interrupted else FLUSH_SECONDS)
        self.watcher.stop()
        status = self.server.stop()
        if interrupted:
            where = f"; history kept in {self.options.db_path}" if status is not None else ""
            self._print(f"Stopped{where}.")


def run_demo(options: DemoOptions, stream: TextIO | None = None) -> int:
    """Run ``mlops-hooks demo`` with ``options``.

    Args:
        options: What to run.
        stream: Where the display goes (default: stdout).

    Returns:
        The exit status: 0 done, 1 something failed, 2 missing dependencies, 130 Ctrl-C.
    """
    missing = missing_modules(options.train)
    if missing:
        print(f"mlops-hooks demo needs {', '.join(missing)}; install them with: "
              "pip install 'mlops-hooks[all]'", file=sys.stderr)
        return 2
    return Demo(options, stream).run()
