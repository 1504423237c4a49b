"""Runs kept on disk: the offline mode, where run directories are, and their files.

The public face of :mod:`mlops_hooks._publisher.disk.mode` and
:mod:`mlops_hooks._publisher.disk.offline` for code beside the publisher (a W&B-style API,
a logger, ``mlops-hooks sync``):

* :func:`mode` / :func:`is_offline`: ``MLOPS_HOOKS_MODE`` (``online`` or ``offline``; anything
  else raises ``ValueError`` naming the variable);
* :func:`runs_dir` / :func:`run_dir`: ``MLOPS_HOOKS_DIR`` (default ``./mlops-hooks-runs``) and one
  run's directory in it;
* :data:`EVENTS`, :data:`META`, :data:`SYNC`: the file names in a run directory
  (``events.jsonl``, ``run.json``, ``sync.json``); :func:`read_json` / :func:`write_json`
  (atomic) for the JSON ones.

The layout is described under "Offline run files" in ``docs/protocol.md``.

Example:
    >>> from mlops_hooks import offline
    >>> offline.run_dir("run/1", offline.runs_dir()).name
    'run_1'
"""

from __future__ import annotations

from mlops_hooks._publisher.disk.mode import DEFAULT_DIR, MODES, is_offline, mode, run_dir, runs_dir
from mlops_hooks._publisher.disk.offline import EVENTS, META, SYNC, read_json, write_json

__all__ = ["DEFAULT_DIR", "EVENTS", "META", "MODES", "SYNC", "is_offline", "mode", "read_json",
           "run_dir", "runs_dir", "write_json"]
