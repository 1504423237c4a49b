"""Retry and Retrain that do something: the relaunch hook and the built-in command launcher.

The dashboard's Retry (a failed run) and Retrain (a model) buttons publish an
``activity_update`` with ``action_type`` ``retry_requested`` / ``retrain_requested``.
:class:`RelaunchBridge`, a server-side plugin every server registers, sees it (on the server
that accepted it: once per fleet), finds the run in the history, and calls
``mlops_relaunch_request(run, request)`` on a worker thread; each launcher's answer becomes an
activity entry (``relaunch_started`` / ``relaunch_refused``), and a request no launcher answers
gets ``relaunch_unavailable``.

:class:`CommandLauncher` is the built-in launcher, registered only with ``serve
--allow-relaunch`` (which needs ``--token``): it re-runs the run's captured command line
(``run_params.metadata``: ``executable``, ``command``, ``cwd``) in its working directory, on
this machine, when the run ran on this machine. Anyone holding the publisher token can then
make the server start those commands: docs/security.md says what that means.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
import socket
import subprocess
import time
import uuid
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_hooks import events as ev
from mlops_hooks.formatting import iso_utc
from mlops_hooks.manager import PluginManager, hookimpl
from mlops_hooks.server.config import ServerConfig
from mlops_hooks.server.state import history

if TYPE_CHECKING:
    from mlops_hooks.server.core import Core

__all__ = ["RELAUNCH_ACTIONS", "CommandLauncher", "RelaunchBridge", "register", "unregister"]

log = logging.getLogger("mlops_hooks.server")
#: Request ``action_type`` → the request's ``kind``.
RELAUNCH_ACTIONS = {"retry_requested": "retry", "retrain_requested": "retrain"}
#: Set in a relaunched process's environment: the run it repeats.
RELAUNCH_ENV = "MLOPS_HOOKS_RELAUNCH_OF"


def register(core: Core) -> list[object]:
    """Register the bridge (and, with ``allow_relaunch``, the launcher) on ``core``'s plugins.

    Returns:
        What was registered, for :func:`unregister` (nothing when the core has no plugins).
    """
    plugins = core.plugins
    if plugins is None:
        return []
    parts: list[object] = [RelaunchBridge(core)]
    if core.config.allow_relaunch:
        parts.append(CommandLauncher(core.config))
    for part in parts:
        plugins.register(part, name=f"{type(part).__name__}-{id(core):x}")
    return parts


def unregister(core: Core, parts: list[object]) -> None:
    """Undo :func:`register` (the server stopped)."""
    for part in parts:
        if core.plugins is not None and core.plugins.is_registered(part):
            core.plugins.unregister(part)


class RelaunchBridge:
    """Turns Retry/Retrain requests into ``mlops_relaunch_request`` calls.

    Args:
        core: The server's parts (history, ingest, plugins).
    """

    def __init__(self, core: Core) -> None:
        self.core = core
        self._tasks: set[asyncio.Task[None]] = set()

    @hookimpl
    def mlops_activity_update(self, event: ev.ActivityUpdate, side: str) -> None:
        """A request from the dashboard: find the run and ask the launchers (in a task)."""
        kind = RELAUNCH_ACTIONS.get(event.activity.action_type or "")
        if side != "server" or kind is None:
            return
        task = asyncio.get_running_loop().create_task(self._relaunch(kind, event.activity))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _relaunch(self, kind: str, activity: ev.Activity) -> None:
        meta = activity.metadata if isinstance(activity.metadata, dict) else {}
        run_id = meta.get("run_id") if isinstance(meta.get("run_id"), str) else None
        name = meta.get("model_name") if isinstance(meta.get("model_name"), str) else None
        request = {"kind": kind, "activity_id": activity.id, "requested_by": activity.user,
                   "run_id": run_id, "model_name": name}
        try:
            run = await self._find(kind, run_id, name)
        except Exception as exc:  # history unreadable: say so in the feed
            run, why = None, f"the run history cannot be read: {exc}"
        else:
            why = f"no run {run_id or name!r} in this server's history"
        if run is None:
            await self._record(request, None, {"started": False, "error": why})
            return
        plugins = self.core.plugins
        results = await asyncio.to_thread(_call_launchers, plugins, run, request) \
            if plugins is not None else []
        if not results:
            await self._record(request, run, None)
        for result in results:
            await self._record(request, run, result)

    async def _find(self, kind: str, run_id: str | None,
                    name: str | None) -> dict[str, Any] | None:
        query = self.core.store.query
        if kind == "retrain" and name:
            page = await asyncio.wrap_future(query(partial(history.read_runs, q=name,
                                                           limit=50)))
            run_id = next((r["run_id"] for r in page["runs"] if r["model_name"] == name), None)
        if not run_id:
            return None
        found = await asyncio.wrap_future(query(partial(history.read_run, run_id=run_id)))
        return found["run"] if found is not None else None

    async def _record(self, request: dict[str, Any], run: dict[str, Any] | None,
                      result: dict[str, Any] | None) -> None:
        event = _outcome(request, run, result)
        try:
            await self.core.ingest.submit(event)
        except ConnectionError as exc:
            log.warning("mlops-hooks: relaunch outcome not recorded: %s", exc)


def _call_launchers(plugins: PluginManager, run: dict[str, Any],
                    request: dict[str, Any]) -> list[dict[str, Any]]:
    """Each launcher's answer (a launcher that raises answers with its error)."""
    results: list[dict[str, Any]] = []
    for impl in reversed(plugins.hook.mlops_relaunch_request.get_hookimpls()):
        try:
            answer = impl.function(run=run, request=request)
        except Exception as exc:
            log.warning("mlops-hooks: launcher %r raised: %r", impl.plugin_name, exc)
            answer = {"started": False, "error": f"{type(exc).__name__}: {exc}"}
        if isinstance(answer, dict):
            results.append({"launcher": impl.plugin_name, **answer})
    return results


def _outcome(request: dict[str, Any], run: dict[str, Any] | None,
             result: dict[str, Any] | None) -> ev.ActivityUpdate:
    """The activity entry saying what became of a relaunch request."""
    stamp = iso_utc()
    label = (run or {}).get("run_id") or request["run_id"] or request["model_name"]
    what = "Retry" if request["kind"] == "retry" else "Retrain"
    if result is None:
        title, action, status, severity = (f"{what} Not Available", "relaunch_unavailable",
                                           "failed", "warning")
        text = (f"{what} of {label}: no launcher acted on it (start the server with "
                "--allow-relaunch, or install a launcher plugin)")
    elif result.get("started"):
        title, action, status, severity = (f"{what} Started", "relaunch_started",
                                           "in_progress", "info")
        text = f"{what} of {label} started by {result.get('launcher')}"
    else:
        title, action, status, severity = (f"{what} Refused", "relaunch_refused", "failed",
                                           "warning")
        text = f"{what} of {label} not started: {result.get('error') or 'refused'}"
    metadata = {"request": request, "run_id": (run or {}).get("run_id"),
                **{k: v for k, v in (result or {}).items() if isinstance(v, (str, int, bool))}}
    return ev.ActivityUpdate(run_id=(run or {}).get("run_id"), activity=ev.Activity(
        id=f"act_{stamp[:10].replace('-', '')}_{uuid.uuid4().hex[:10]}", title=title,
        description=text[:1000], user="system", action_type=action, status=status,
        timestamp=stamp, severity_level=severity, duration=None, metadata=metadata))


class CommandLauncher:
    """Re-runs a run's captured command line in its working directory, on this machine.

    Args:
        config: The server's settings (its publish URL and token go to the new process).
    """

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.children: list[subprocess.Popen[bytes]] = []
        base = Path(config.db_path).parent if config.db_path != ":memory:" else Path.cwd()
        self.log_dir = base / "relaunch-logs"

    @hookimpl
    def mlops_relaunch_request(self, run: dict[str, Any],
                               request: dict[str, Any]) -> dict[str, Any]:
        """Start the run's command again; ``started: False`` with the reason when it cannot."""
        self.children = [c for c in self.children if c.poll() is None]  # reap the finished
        try:
            argv, cwd = self._command(run)
        except ValueError as exc:
            return {"launcher": "command", "started": False, "error": str(exc)}
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{_safe(run['run_id'])}-{int(time.time())}.log"
        env = {**os.environ, RELAUNCH_ENV: run["run_id"]}
        host = "127.0.0.1" if self.config.host in ("0.0.0.0", "::", "") else self.config.host
        env.setdefault("MLOPS_HOOKS_URL", f"ws://{host}:{self.config.port}/ws/publish")
        if self.config.token:
            env.setdefault("MLOPS_HOOKS_TOKEN", self.config.token)
        with open(log_path, "ab") as out:
            child = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                     stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.children.append(child)
        log.warning("mlops-hooks: relaunched run %s (%s) as pid %d in %s", run["run_id"],
                    request.get("kind"), child.pid, cwd)
        return {"launcher": "command", "started": True, "pid": child.pid,
                "command": shlex.join(argv), "cwd": cwd, "log": str(log_path)}

    @staticmethod
    def _command(run: dict[str, Any]) -> tuple[list[str], str]:
        """The argv and working directory to start, or ``ValueError`` saying why not."""
        meta = run.get("metadata") or {}
        run_id = run.get("run_id")
        command, cwd = meta.get("command"), meta.get("cwd")
        if not isinstance(command, str) or not command.strip():
            raise ValueError(f"run {run_id!r} has no captured command line")
        if not isinstance(cwd, str) or not cwd:
            raise ValueError(f"run {run_id!r} has no captured working directory (cwd); it was "
                             "published by an older mlops-hooks")
        if meta.get("host") != socket.gethostname():
            raise ValueError(f"run {run_id!r} ran on {meta.get('host')!r}, not on this "
                             f"server's machine ({socket.gethostname()!r})")
        if not Path(cwd).is_dir():
            raise ValueError(f"the run's working directory {cwd!r} does not exist")
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            raise ValueError(f"the captured command line cannot be parsed: {exc}") from None
        if not argv or argv[0] in ("-c", "-"):
            raise ValueError("the run was started from 'python -c' or stdin: there is no "
                             "script to run again")
        executable = meta.get("executable")
        if not isinstance(executable, str) or not Path(executable).is_file():
            raise ValueError(f"the run's Python interpreter {executable!r} is not on this "
                             "machine")
        return [executable, *argv], cwd


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:100]
