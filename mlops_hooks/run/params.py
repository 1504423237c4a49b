"""A run's parameters and metadata: the ``run_params`` event (a protocol extension).

Adapters capture what they can see (Lightning ``hparams``, an optimizer's settings, a
scikit-learn estimator's ``get_params()``, ...) and call :func:`send_params` once when the run
starts; ``track(params=...)`` does the same with the user's dictionary. This module makes any
of that fit the wire: nested mappings flattened with ``.``, values made JSON scalars (objects
as their ``repr``), the event's caps kept (256 keys, 128-character keys, 1024-character texts).

The metadata (host, pid, Python and framework versions, command line) is read from the process
at once (each framework's version once per process, from its installed metadata); the git
commit and dirty flag come from running ``git`` once per process on a background thread
(:func:`probe_git`, started by the adapters' constructors and ``track()``), never on the
training thread. When the answer is not in yet as a run starts, the first ``run_params``
leaves ``git`` out and a second one carrying only ``{"git": ...}`` follows, from that thread,
when it is (receivers add metadata keys the first event lacked).
"""

from __future__ import annotations

import argparse
import functools
import importlib.metadata
import json
import math
import os
import platform
import shlex
import socket
import subprocess
import sys
import threading
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from mlops_hooks import events as ev
from mlops_hooks.run.lifecycle import Run

__all__ = ["GROUP_ENV", "GROUP_SIZE_ENV", "MAX_COMMAND", "flatten", "git_info", "param_value",
           "probe_git", "resolve_group", "resolve_group_size", "run_metadata", "send_params"]

#: Environment variable naming the group (sweep, study) of every run of the process.
GROUP_ENV = "MLOPS_HOOKS_GROUP"
#: Environment variable giving how many runs the group plans (``group_size``).
GROUP_SIZE_ENV = "MLOPS_HOOKS_GROUP_SIZE"
#: Longest command line kept in the metadata (characters).
MAX_COMMAND = 1024
#: Seconds each ``git`` command may take before the commit is reported as unknown (null).
GIT_TIMEOUT = 2.0
#: Frameworks whose version is reported when the process has imported them: import name ->
#: the distribution (the name reported).
FRAMEWORKS = {"torch": "torch", "lightning": "lightning",
              "pytorch_lightning": "pytorch-lightning", "keras": "keras",
              "tensorflow": "tensorflow", "jax": "jax", "sklearn": "scikit-learn",
              "xgboost": "xgboost", "lightgbm": "lightgbm", "transformers": "transformers",
              "optuna": "optuna"}
_MAX_DEPTH = 6

Scalar = str | int | float | bool | None


# ---------------------------------------------------------------------- values and keys


def _text(value: str) -> str:
    limit = ev.MAX_PARAM_TEXT
    return value if len(value) <= limit else value[:limit - 3] + "..."


def _describe(value: object) -> str:
    """The ``repr`` of an object (a scipy distribution as ``name(args)``), capped."""
    dist_name = getattr(getattr(value, "dist", None), "name", None)
    args = getattr(value, "args", None)
    if isinstance(dist_name, str) and isinstance(args, tuple):
        kwds = getattr(value, "kwds", None) or {}
        parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in dict(kwds).items()]
        return _text(f"{dist_name}({', '.join(parts)})")
    try:
        return _text(repr(value))
    except Exception:  # a broken __repr__ is the object's problem, not the run's
        return f"<{type(value).__name__}>"


def _scalar(value: object) -> tuple[bool, Scalar]:
    """``(True, value as a JSON scalar within the caps)``, or ``(False, None)``."""
    if value is None or isinstance(value, bool):
        return True, value
    if isinstance(value, int):
        return True, value if abs(value) <= ev.MAX_INT else str(value)
    if isinstance(value, float):
        return True, value if math.isfinite(value) else repr(value)
    if isinstance(value, str):
        return True, _text(value)
    item = getattr(value, "item", None)  # a NumPy scalar or a 0-d array/tensor
    if callable(item) and (getattr(value, "shape", None) == () or getattr(value, "ndim", 1) == 0):
        try:
            plain = item()
        except Exception:
            return False, None
        if isinstance(plain, (bool, int, float, str)) or plain is None:
            return _scalar(plain)
    return False, None


def param_value(value: object) -> Scalar:
    """``value`` as a parameter value: a JSON scalar, a list as JSON text, else its ``repr``.

    Non-finite floats and integers beyond JavaScript's exact range become text; texts are cut
    to the event's cap (1024 characters, ending ``...``).
    """
    ok, scalar = _scalar(value)
    if ok:
        return scalar
    if isinstance(value, (list, tuple)):
        items = [_scalar(v) for v in value]
        if all(ok for ok, _ in items):
            try:
                return _text(json.dumps([v for _, v in items]))
            except ValueError:  # pragma: no cover - scalars are JSON
                pass
    return _describe(value)


def flatten(values: Mapping[Any, Any], prefix: str = "",
            out: dict[str, Scalar] | None = None, depth: int = 0) -> dict[str, Scalar]:
    """Flatten nested mappings into ``{"a.b": scalar}``, within the event's caps.

    Args:
        values: The parameters (nested mappings and ``argparse.Namespace`` are flattened).
        prefix: Put before every key (``"optimizer."``).
        out: Add to this dictionary (its keys are kept: the first value of a key wins).
        depth: Nesting level of ``values`` (deeper than 6 levels is kept as a ``repr``).

    Returns:
        ``out`` (or a new dictionary): at most 256 keys of at most 128 characters.
    """
    result: dict[str, Scalar] = {} if out is None else out
    for key, value in values.items():
        name = f"{prefix}{key}"[:ev.MAX_KEY]
        if isinstance(value, argparse.Namespace):
            value = vars(value)
        if isinstance(value, Mapping) and value and depth < _MAX_DEPTH:
            flatten(value, f"{name}.", result, depth + 1)
        elif name not in result and len(result) < ev.MAX_PARAMS:
            result[name] = param_value(value)
    return result


# ---------------------------------------------------------------------- group


def resolve_group(group: object = None, default: str | None = None) -> str | None:
    """The run's group: ``group`` if given, else ``MLOPS_HOOKS_GROUP``, else ``default``.

    Raises:
        ValueError: ``group`` is neither None nor a non-empty string.
    """
    if group is not None and (not isinstance(group, str) or not group.strip()):
        raise ValueError(f"group must be a non-empty string or None, got {group!r}")
    chosen = group or os.environ.get(GROUP_ENV, "").strip() or default
    return chosen[:512] if chosen else None


def resolve_group_size(group_size: object = None) -> int | None:
    """How many runs the group plans: ``group_size`` if given, else ``MLOPS_HOOKS_GROUP_SIZE``.

    Raises:
        ValueError: ``group_size`` is not a positive integer or None, or
            ``MLOPS_HOOKS_GROUP_SIZE`` is set to something else than a positive integer.
    """
    if group_size is not None:
        if (isinstance(group_size, bool) or not isinstance(group_size, int)
                or not 1 <= group_size <= ev.MAX_INT):
            raise ValueError(f"group_size must be a positive integer (the runs the group "
                             f"plans) or None, got {group_size!r}")
        return group_size
    raw = os.environ.get(GROUP_SIZE_ENV, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= ev.MAX_INT:
        raise ValueError(f"{GROUP_SIZE_ENV} must be a positive integer (the runs the group "
                         f"plans), got {raw[:64]!r}")
    return value


# ---------------------------------------------------------------------- metadata


class _GitProbe:
    """``git rev-parse HEAD`` and ``git status`` of the working directory, once, off-thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._result: dict[str, Any] | None = None
        self._waiters: list[Callable[[dict[str, Any] | None], None]] = []

    def start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            # not a daemon: a script that ends first waits for it (at most 2 x GIT_TIMEOUT,
            # a few ms usually) so its follow-up event is flushed with the rest at exit
            self._thread = threading.Thread(target=self._run, name="mlops-hooks-git",
                                            daemon=False)
        self._thread.start()

    def _run(self) -> None:
        _frameworks()  # reads the installed metadata here rather than on the training thread
        result = _read_git(os.getcwd())
        with self._lock:
            self._result = result
            self._done.set()
            waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            try:
                waiter(result)
            except Exception as exc:  # a plugin's error is reported by the manager already
                sys.stderr.write(f"mlops-hooks: could not send the git commit: {exc!r}\n")

    def result(self) -> tuple[bool, dict[str, Any] | None]:
        """``(known, {"commit", "dirty"} or None)`` without waiting."""
        return self._done.is_set(), self._result

    def when_known(self, waiter: Callable[[dict[str, Any] | None], None]) -> bool:
        """Call ``waiter(result)`` once it is known; False (not called) when already known."""
        with self._lock:
            if self._done.is_set():
                return False
            self._waiters.append(waiter)
        self.start()
        return True

    def wait(self, timeout: float) -> bool:
        self.start()
        return self._done.wait(timeout)


def _git(cwd: str, *args: str) -> str | None:
    env = dict(os.environ, GIT_OPTIONAL_LOCKS="0", LC_ALL="C")  # never take the index lock
    try:
        done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=GIT_TIMEOUT, check=False,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError, ValueError):  # no git, too slow, bad cwd
        return None
    return done.stdout if done.returncode == 0 else None


def _read_git(cwd: str) -> dict[str, Any] | None:
    commit = _git(cwd, "rev-parse", "HEAD")
    if not commit or not commit.strip():
        return None
    status = _git(cwd, "status", "--porcelain", "--untracked-files=no")
    return {"commit": commit.strip(), "dirty": bool(status.strip()) if status is not None
            else None}


_GIT = _GitProbe()


def probe_git() -> None:
    """Start reading the git commit of the working directory (once per process, off-thread)."""
    _GIT.start()


def git_info(timeout: float = 0.0) -> tuple[bool, dict[str, Any] | None]:
    """``(known, {"commit": sha, "dirty": bool} or None)``, waiting at most ``timeout`` s.

    ``None`` when the working directory is not in a git repository, or ``git`` is missing or
    slower than :data:`GIT_TIMEOUT`.
    """
    if timeout > 0:
        _GIT.wait(timeout)
    else:
        _GIT.start()
    return _GIT.result()


@functools.cache
def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)[:128]
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return None


def _frameworks() -> dict[str, str]:
    """Versions of the frameworks this process has imported (read once each)."""
    found: dict[str, str] = {}
    for module_name, distribution in FRAMEWORKS.items():
        if module_name not in sys.modules:
            continue
        for name in (distribution, f"{distribution}-cpu"):  # xgboost-cpu, tensorflow-cpu
            version = _version(name)
            if version is not None:
                found[name] = version
                break
    return found


def run_metadata() -> dict[str, Any]:
    """Where the run runs: host, pid, Python, frameworks, command line, interpreter, cwd, git.

    ``git`` is present only once known (see :func:`git_info`); it is ``None`` outside a
    repository.
    """
    metadata: dict[str, Any] = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "python": platform.python_version(),
        "frameworks": _frameworks(),
        "command": _text(shlex.join(sys.argv))[:MAX_COMMAND],
        "executable": _text(sys.executable)[:MAX_COMMAND],
        "cwd": _text(os.getcwd())[:MAX_COMMAND],
    }
    known, git = _GIT.result()
    if known:
        metadata["git"] = git
    return metadata


# ---------------------------------------------------------------------- sending


def send_params(run: Run, params: Mapping[Any, Any], *, group: str | None = None,
                metadata: bool = True, group_size: int | None = None) -> ev.RunParams | None:
    """Send a ``run_params`` event for ``run``; never raises.

    Args:
        run: The run (started: the event follows its first progress event).
        params: The parameters, flattened and capped here (the first 256 keys are kept).
        group: The run's group (see :func:`resolve_group`).
        metadata: Include the process's metadata (the first ``run_params`` of a run); when
            the git commit is not known yet, a second event brings it.
        group_size: How many runs the group plans (a study's ``n_trials``), when known;
            dropped when the run has no group.

    Returns:
        The event sent, or None when it could not be built.
    """
    try:
        meta = run_metadata() if metadata else None
        event = ev.RunParams(run_id=run.run_id, model_name=run.name, group=group,
                             params=flatten(params), metadata=meta,
                             group_size=group_size if group is not None else None)
        ev.from_dict(ev.to_dict(event))  # the caps, checked here rather than at the server
    except Exception as exc:
        _warn(f"mlops-hooks: the run's parameters were not sent: {exc}")
        return None
    run._emit(event)
    if meta is not None and "git" not in meta:
        def follow(git: dict[str, Any] | None) -> None:
            run._emit(ev.RunParams(run_id=run.run_id, model_name=run.name, group=group,
                                   params={}, metadata={"git": git}))

        if not _GIT.when_known(follow):  # known in the meantime
            follow(_GIT.result()[1])
    return event


def _warn(message: str) -> None:
    try:
        warnings.warn(message, RuntimeWarning, stacklevel=3)
    except Exception:  # warnings turned into errors must not stop training
        sys.stderr.write(message + "\n")
