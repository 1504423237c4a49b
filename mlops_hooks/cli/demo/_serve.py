"""The demo's server process: ``mlops-hooks serve`` that ends when the demo process is gone.

Run as ``python -m mlops_hooks.cli.demo._serve PARENT_PID SERVE_ARGS...``. The demo starts it in its
own session, so the terminal's Ctrl-C reaches the demo only and the demo stops the server after
the training side has flushed its events. Should the demo die without stopping it (SIGKILL), a
watchdog thread notices the parent is gone and interrupts the server, which then shuts down as
after Ctrl-C (connections closed, history written).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Sequence

__all__ = ["main"]

POLL_SECONDS = 0.5


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(POLL_SECONDS)
    os.kill(os.getpid(), signal.SIGINT)


def main(argv: Sequence[str]) -> int:
    """Serve with ``argv[1:]`` as ``mlops-hooks serve`` arguments until the parent goes away.

    Args:
        argv: The parent's process id, then the ``serve`` arguments.

    Returns:
        The exit status of ``mlops-hooks serve``.
    """
    if not argv or not argv[0].isdigit():
        print("usage: python -m mlops_hooks.cli.demo._serve PARENT_PID [serve arguments]",
              file=sys.stderr)
        return 2
    parent = int(argv[0])
    threading.Thread(target=_watch_parent, args=(parent,), name="parent-watchdog",
                     daemon=True).start()
    from mlops_hooks.cli.serve import main as serve

    return serve(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
