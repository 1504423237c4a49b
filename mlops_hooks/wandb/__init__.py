"""A W&B-style API: switch a script that logs with W&B by changing one import.

::

    import mlops_hooks.wandb as wandb

    run = wandb.init(project="digits", config={"lr": 1e-3, "epochs": 10})
    for epoch in range(wandb.config.epochs):
        wandb.log({"loss": train(), "val_acc": validate()})
    wandb.summary["best_val_acc"] = best
    wandb.finish()

How W&B's names map (docs/migrating.md has the whole table): ``group`` (else
``WANDB_RUN_GROUP``, ``MLOPS_HOOKS_GROUP``, ``project``, ``WANDB_PROJECT``) is the run's group;
``name`` the run's name (else the project, else ``"wandb-run"``); ``id`` the run id;
``config`` the run's parameters (nested dicts flattened with ``.``, later changes sent too);
``tags``/``notes``/``job_type``/``entity`` parameters ``wandb.tags`` ...; ``log`` keys series
(W&B's step and commit rules, see :mod:`.session`); ``summary`` final values; ``alert`` a
``system_alert``; an exception that ends the script fails the run, a normal exit without
``finish()`` completes it. Progress has a percentage and an ETA only when ``config`` has a
positive integer ``total_steps`` or ``max_steps`` (counted in W&B steps); otherwise the run is
open-ended, with no ETA. What cannot be honoured (artifacts, media, ``watch``, ``save``, ...)
is accepted, warns once and never raises.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from typing import Any

from mlops_hooks.wandb.config import Config, Summary, as_mapping
from mlops_hooks.wandb.resume import last_step, wants_resume
from mlops_hooks.wandb.session import WandbRun
from mlops_hooks.wandb.unsupported import Unsupported, stand_in, warn_once

__all__ = ["AlertLevel", "Config", "Run", "Settings", "Summary", "WandbRun", "alert", "config",
           "define_metric", "finish", "init", "log", "login", "run", "summary", "watch"]
_ = Unsupported  # the type of the stand-ins, for isinstance checks

Run = WandbRun
#: The current run (``None`` before ``init`` and after ``finish``).
run: WandbRun | None = None
#: The current run's configuration (a detached one before ``init``).
config: Config = Config()
#: The current run's summary (a detached one before ``init``).
summary: Summary = Summary()

_MODES = ("online", "offline", "disabled", "shared", "dryrun", "run")
_REINIT = {True: "finish_previous", False: "return_previous", None: "finish_previous",
           "default": "finish_previous", "finish_previous": "finish_previous",
           "return_previous": "return_previous", "create_new": "create_new"}


class AlertLevel(str, enum.Enum):
    """W&B's alert levels: the ``system_alert`` priorities low, medium and high."""

    INFO = "INFO"
    WARN = "WARN"
    ERROR = "ERROR"


class Settings:
    """W&B's ``wandb.Settings``: accepted silently (``init(settings=...)`` is ignored)."""

    def __init__(self, **settings: Any) -> None:
        self.settings = settings


def _env(name: str) -> str | None:
    return os.environ.get(name, "").strip() or None


def _text(name: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"wandb.init: {name} must be a non-empty string or None, "
                         f"got {value!r}")
    return value.strip()[:512]


def _extra(entity: object, project: str | None, group: str | None, tags: Any, notes: Any,
           job_type: Any) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if project and project != group:
        extra["wandb.project"] = project
    if tags:
        if isinstance(tags, str) or not hasattr(tags, "__iter__"):
            raise ValueError(f"wandb.init: tags must be a list of strings, got {tags!r}")
        extra["wandb.tags"] = ",".join(str(t) for t in tags)
    for key, value in (("entity", entity), ("notes", notes), ("job_type", job_type)):
        if value is not None:
            extra[f"wandb.{key}"] = str(value)
    return extra


def init(project: str | None = None, name: str | None = None, config: Any = None, *,
         group: str | None = None, tags: Any = None, notes: str | None = None,
         job_type: str | None = None, id: str | None = None, resume: Any = None,
         reinit: Any = None, mode: str | None = None, dir: Any = None,
         entity: str | None = None, config_exclude_keys: Any = None,
         config_include_keys: Any = None, **settings: Any) -> WandbRun:
    """Start a run (W&B's ``wandb.init``); also a context manager (``with wandb.init():``).

    Besides the arguments below, W&B's other keywords (``settings``, ``save_code``,
    ``anonymous``, ``sync_tensorboard``, ``monitor_gym``, ...) are accepted and ignored.

    Args:
        project: The group, unless ``group`` is given.
        name: The run's name; defaults to the project, else ``"wandb-run"``.
        config: The configuration: a dict, ``argparse.Namespace`` or object (its attributes).
        group: The run's group (wins over ``project``).
        tags: Kept as the parameter ``wandb.tags`` (comma-separated).
        notes: Kept as the parameter ``wandb.notes``.
        job_type: Kept as the parameter ``wandb.job_type``.
        id: The run id (a resumed run continues the same id).
        resume: ``True``, ``"allow"``, ``"must"`` or ``"auto"`` (or ``WANDB_RESUME``) with an
            ``id``: the run continues on the dashboard after the last step the server holds
            for it (asked once, 3 s at most; an unknown run starts at 0).
        reinit: With a run active: ``True``/``"finish_previous"`` (the default outside
            notebooks) finishes it, ``False``/``"return_previous"`` returns it,
            ``"create_new"`` starts another beside it.
        mode: ``"online"`` (default), ``"offline"`` (sets ``MLOPS_HOOKS_MODE=offline`` unless
            set, for a publisher not started yet), ``"disabled"`` (nothing is sent);
            ``WANDB_MODE`` is read when omitted.
        dir: Sets ``MLOPS_HOOKS_DIR`` (offline runs) unless set.
        entity: Kept as the parameter ``wandb.entity``.
        config_exclude_keys: Config keys left out.
        config_include_keys: The only config keys kept.
        **settings: Other W&B keywords, ignored.

    Raises:
        ValueError: ``mode``, ``name``, ``project``, ``group`` or ``id`` is invalid.
        TypeError: ``config`` is not a dict, ``argparse.Namespace`` or object.
    """
    mode = mode or _env("WANDB_MODE") or "online"
    if mode not in _MODES:
        raise ValueError(f"wandb.init: mode must be one of {', '.join(_MODES[:3])}, got {mode!r}")
    if reinit not in _REINIT:
        raise ValueError(f"wandb.init: reinit must be True, False or one of "
                         f"finish_previous, return_previous, create_new; got {reinit!r}")
    how = _REINIT[reinit]
    if run is not None and not run.finished:
        if how == "return_previous":
            return run
        if how == "finish_previous":
            run.finish()
    values = as_mapping(config)
    if config_include_keys:
        values = {k: v for k, v in values.items() if k in set(config_include_keys)}
    if config_exclude_keys:
        values = {k: v for k, v in values.items() if k not in set(config_exclude_keys)}
    project = _text("project", project) or _env("WANDB_PROJECT")
    group = _text("group", group) or _env("WANDB_RUN_GROUP") or _env("MLOPS_HOOKS_GROUP") \
        or project
    name = _text("name", name) or _env("WANDB_NAME") or project or "wandb-run"
    run_id = _text("id", id) or _env("WANDB_RUN_ID")
    if mode == "offline":
        os.environ.setdefault("MLOPS_HOOKS_MODE", "offline")
    if dir is not None:
        os.environ.setdefault("MLOPS_HOOKS_DIR", os.fspath(dir))
    for key in settings:
        if key not in ("settings", "save_code", "anonymous", "allow_val_change", "magic",
                       "force", "fork_from", "resume_from", "tensorboard", "monitor_gym",
                       "sync_tensorboard"):
            warn_once(f"wandb.init({key}=...)")
    if resume is None:
        resume = _env("WANDB_RESUME")
    first = None
    if run_id and mode == "online" and wants_resume(resume) \
            and os.environ.get("MLOPS_HOOKS_MODE", "").strip().lower() != "offline":
        first = last_step(run_id)  # W&B continues after the run's last step
    new = WandbRun(name=name, project=project, group=group, config=values,
                   extra=_extra(entity, project, group, tags, notes, job_type), run_id=run_id,
                   enabled=mode != "disabled", first_step=0 if first is None else first + 1)
    _set_current(new)
    return new


def _set_current(new: WandbRun | None) -> None:
    global run, config, summary
    run = new
    config = new.config if new is not None else Config()
    summary = new.summary if new is not None else Summary()


def _current(what: str) -> WandbRun | None:
    if run is None:
        warn_once(f"wandb.{what} before wandb.init()", "call wandb.init() first; ignored")
    return run


def log(data: Mapping[str, Any], step: int | None = None, commit: bool | None = None,
        sync: bool | None = None) -> None:
    """Log to the current run (see :meth:`WandbRun.log`); warns once without a run."""
    current = _current("log")
    if current is not None:
        current.log(data, step=step, commit=commit)


def alert(title: str, text: str, level: Any = None, wait_duration: Any = None) -> None:
    """Send a ``system_alert`` for the current run (see :meth:`WandbRun.alert`)."""
    current = _current("alert")
    if current is not None:
        current.alert(title, text, level=level, wait_duration=wait_duration)


def define_metric(name: str, *args: Any, **kwargs: Any) -> Any:
    """Accepted for W&B compatibility (every logged key is a series of its own)."""
    return stand_in("wandb.define_metric")


def finish(exit_code: int | None = None, quiet: bool | None = None) -> None:
    """Finish the current run: completed, or failed when ``exit_code`` is not 0."""
    current = run
    if current is not None:
        current.finish(exit_code=exit_code)
        if run is current:
            _set_current(None)


def login(*args: Any, **kwargs: Any) -> bool:
    """Accepted (mlops-hooks needs no login; the publisher's token is ``MLOPS_HOOKS_TOKEN``)."""
    return True


def watch(*args: Any, **kwargs: Any) -> None:
    """Accepted; gradients and parameters are not tracked (warns once)."""
    warn_once("wandb.watch")


def __getattr__(name: str) -> Any:
    """Anything else of W&B (``Artifact``, ``Table``, ``Image``, ``save``, ...): a stand-in."""
    if name.startswith("__"):
        raise AttributeError(name)
    return stand_in(f"wandb.{name}")

