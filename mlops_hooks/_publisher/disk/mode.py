"""Online or offline, and where runs are kept on disk: ``MLOPS_HOOKS_MODE`` and ``MLOPS_HOOKS_DIR``.

* ``MLOPS_HOOKS_MODE``: ``online`` (the default: stream to the server) or ``offline`` (never
  connect; every run is written to its own directory, for ``mlops-hooks sync`` later);
* ``MLOPS_HOOKS_DIR``: where run directories go (default ``./mlops-hooks-runs``), in offline
  mode and when an online run spills to disk because the server stayed unreachable.

Anything that needs to know (the publisher, the W&B-style API, a logger) asks here:
:func:`is_offline`, :func:`runs_dir`, :func:`run_dir`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["DEFAULT_DIR", "MODES", "is_offline", "mode", "run_dir", "runs_dir"]

#: Where run directories go when ``MLOPS_HOOKS_DIR`` is not set (relative to the cwd).
DEFAULT_DIR = "mlops-hooks-runs"
#: The values ``MLOPS_HOOKS_MODE`` accepts.
MODES = ("online", "offline")

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def mode() -> str:
    """``MLOPS_HOOKS_MODE`` (``online`` when unset or empty).

    Raises:
        ValueError: The variable holds anything else; the message names it.
    """
    value = os.environ.get("MLOPS_HOOKS_MODE", "").strip().lower() or "online"
    if value not in MODES:
        raise ValueError(f"MLOPS_HOOKS_MODE must be 'online' or 'offline', got "
                         f"{os.environ.get('MLOPS_HOOKS_MODE')!r}")
    return value


def is_offline() -> bool:
    """Whether this process writes its runs to disk instead of streaming them.

    Raises:
        ValueError: ``MLOPS_HOOKS_MODE`` is neither ``online`` nor ``offline``.
    """
    return mode() == "offline"


def runs_dir() -> Path:
    """``MLOPS_HOOKS_DIR``, else ``./mlops-hooks-runs``."""
    return Path(os.environ.get("MLOPS_HOOKS_DIR", "").strip() or DEFAULT_DIR)


def run_dir(run_id: str | None, directory: Path | None = None) -> Path:
    """The directory of one run: ``<runs_dir>/<run_id>``.

    Characters other than letters, digits, ``_``, ``.`` and ``-`` become ``_``; events without a
    run go to ``no-run-<pid>``.

    Args:
        run_id: The run (``None``: events of no run).
        directory: The parent; defaults to :func:`runs_dir`.
    """
    name = _UNSAFE.sub("_", run_id)[:200].lstrip(".") if run_id else ""
    return (directory or runs_dir()) / (name or f"no-run-{os.getpid()}")
