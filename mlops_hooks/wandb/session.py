"""The run object ``wandb.init()`` returns: W&B's run API on top of a :class:`~mlops_hooks.run.Run`.

``log`` follows W&B's documented step and commit rules: the run has a current step (from 0);
``log(data)`` merges ``data`` into the step's row and commits it (one point of each numeric
key's series at that step), then moves to the next step; ``commit=False`` only merges;
``step=N`` ahead of the current step commits the pending row first and moves to ``N`` (without
committing unless ``commit=True``); a ``step`` behind the current one is ignored with a warning.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Mapping
from typing import Any, Literal

from mlops_hooks import events as ev
from mlops_hooks.api import emit
from mlops_hooks.formatting import iso_utc, to_float
from mlops_hooks.run import Run, exits
from mlops_hooks.run.messages import carried_score, non_finite
from mlops_hooks.run.params import probe_git, send_params
from mlops_hooks.run.points import note_loss, numeric_values, send_point
from mlops_hooks.wandb.config import Config, Summary
from mlops_hooks.wandb.unsupported import Unsupported, stand_in, warn_once

__all__ = ["ACCURACY_KEYS", "PLAN_KEYS", "WandbRun"]

#: ``config`` keys read, in order, as the planned number of steps (progress and ETA).
PLAN_KEYS = ("total_steps", "max_steps")
#: Summary keys read, in order, as the completion's ``final_accuracy`` (a 0-1 value).
ACCURACY_KEYS = ("accuracy", "acc", "val_accuracy", "val_acc")
_MAX_TEXT = 8192  # the spec's text fields
#: W&B alert levels (and their names) to the spec's alert priorities.
PRIORITY: dict[str, Literal["low", "medium", "high"]] = {
    "INFO": "low", "WARN": "medium", "WARNING": "medium", "ERROR": "high"}


def _noop(event: ev.Event) -> None:
    return None


def _plan(config: Mapping[str, Any]) -> int | None:
    for key in PLAN_KEYS:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _flat_row(data: Mapping[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            row.update({f"{key}.{k}": v for k, v in _flat_row(value).items()})
        else:
            row[str(key)] = value
    return row


class WandbRun:
    """One run of the W&B-style API (made by :func:`mlops_hooks.wandb.init`).

    Args:
        name: The run's name (the dashboard's model name).
        project: W&B's project (the group unless ``group`` is given).
        group: The run's group.
        config: The initial configuration (the run's parameters).
        extra: Further parameters (``wandb.tags``, ``wandb.notes``, ...).
        run_id: The run's id (W&B's ``id``); generated when omitted.
        enabled: False for ``mode="disabled"``: everything is accepted, nothing is sent.
        first_step: The first step (a resumed run continues after its last one).
    """

    def __init__(self, *, name: str, project: str | None, group: str | None,
                 config: Mapping[str, Any], extra: Mapping[str, Any], run_id: str | None,
                 enabled: bool = True, first_step: int = 0) -> None:
        self._name, self._project, self._group = name, project, group
        self._disabled = not enabled
        self._config = Config()
        self._config._items.update(config)
        self._summary = Summary()
        self._step = first_step
        self._row: dict[str, Any] = {}
        self._alerted: dict[str, float] = {}
        self._extra = dict(extra)
        run_id = run_id or f"run_{time.strftime('%Y%m%d_%H%M%S')}_{uuid.uuid4().hex[:8]}"
        self._run = Run(name, run_id=run_id, total_steps=_plan(config),
                        emit=_noop if self._disabled else None)
        if not self._disabled:
            probe_git()
        self._run.start()
        if not self._disabled:
            exits.watch(self._run, "complete")
            send_params(self._run, {**dict(config), **self._extra}, group=group)
        object.__setattr__(self._config, "_on_change", self._config_changed)

    # ------------------------------------------------------------------ identity

    @property
    def id(self) -> str:
        """The run's id (every event of the run carries it)."""
        return self._run.run_id

    @property
    def name(self) -> str:
        """The run's name."""
        return self._name

    @property
    def project(self) -> str | None:
        """W&B's project name, as given."""
        return self._project

    @property
    def group(self) -> str | None:
        """The run's group on the dashboard."""
        return self._group

    @property
    def config(self) -> Config:
        """The run's configuration (changes are sent as parameters)."""
        return self._config

    @property
    def summary(self) -> Summary:
        """Each key's final value (the last logged unless set)."""
        return self._summary

    @property
    def step(self) -> int:
        """The current step (the next committed row's)."""
        return self._step

    @property
    def disabled(self) -> bool:
        """True for ``mode="disabled"``."""
        return self._disabled

    @property
    def finished(self) -> bool:
        """The run was finished (completed or failed)."""
        return self._run.finished is not None

    @property
    def tracked(self) -> Run:
        """The underlying :class:`~mlops_hooks.run.Run`."""
        return self._run

    def __repr__(self) -> str:
        return f"<WandbRun {self.id} {self._name!r}>"

    # ------------------------------------------------------------------ logging

    def _config_changed(self, changed: dict[str, Any]) -> None:
        if not self._disabled and self._run.active:
            send_params(self._run, changed, group=self._group, metadata=False)

    def log(self, data: Any, step: int | None = None,
            commit: bool | None = None, sync: bool | None = None) -> None:
        """Log ``data`` at the current step (W&B's ``run.log``; the module's rules above).

        Numbers (Python, NumPy, 0-d tensors) become points of their key's series; nested
        dicts are flattened with ``.``; other values (media, tables, text) warn once each
        and are left out. Never raises for what it is given.
        """
        try:
            if not isinstance(data, Mapping):
                warn_once(f"wandb.log({type(data).__name__})", "log takes a dict; ignored")
                return
            if step is not None:
                if isinstance(step, bool) or not isinstance(step, int) or step < 0:
                    warn_once("wandb.log(step=...) that is not an integer >= 0",
                              "the step argument is ignored")
                    step = None
                elif step < self._step:
                    sys.stderr.write(f"mlops_hooks.wandb: step {step} is behind the current "
                                     f"step {self._step}; the data is ignored\n")
                    return
                elif step > self._step:
                    self._commit()
                    self._step = step
            if commit is None:
                commit = step is None
            self._row.update(_flat_row(data))
            if commit:
                self._commit()
                self._step += 1
        except Exception as exc:  # monitoring never raises into training
            sys.stderr.write(f"mlops_hooks.wandb: log failed: {exc!r}\n")

    def _commit(self) -> None:
        row, self._row = self._row, {}
        if not row:
            return
        numbers, skipped = numeric_values(row)
        for key in skipped:
            value = row[key]  # a NaN or infinity is a number (the run gets a NaN loss)
            if not isinstance(value, Unsupported) and (isinstance(value, str)
                                                       or non_finite(value) is None):
                warn_once(f"logging {type(value).__name__} values",
                          "only numbers become series; those keys are left out")
        self._summary.logged(numbers)
        if not self._disabled:
            note_loss(self._run, row)  # a NaN loss is no point but reaches the run
        if numbers and not self._disabled:
            send_point(self._run, self._step, numbers)

    def define_metric(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Accepted for W&B compatibility; every logged key is a series of its own."""
        return stand_in("wandb.define_metric")

    def alert(self, title: str, text: str, level: Any = None,
              wait_duration: Any = None) -> None:
        """Send a ``system_alert`` (W&B's ``run.alert``); never raises.

        Args:
            title: The alert's title.
            text: Its message.
            level: ``wandb.AlertLevel.INFO``/``WARN``/``ERROR`` (or their names): the
                priority low/medium/high; default INFO.
            wait_duration: Seconds (or a ``timedelta``) during which another alert with the
                same title is not sent; default none.
        """
        try:
            now = time.monotonic()
            wait = wait_duration.total_seconds() if hasattr(wait_duration, "total_seconds") \
                else to_float(wait_duration)
            last = self._alerted.get(title)
            if wait and last is not None and now - last < wait:
                return
            self._alerted[title] = now
            label = str(getattr(level, "value", level) or "INFO").upper()
            alert = ev.Alert(id=f"alert_{self.id}_{uuid.uuid4().hex[:8]}"[:512],
                             title=str(title)[:_MAX_TEXT], message=str(text)[:_MAX_TEXT],
                             alert_type="training_alert", priority=PRIORITY.get(label, "low"),
                             source=self._name[:_MAX_TEXT], timestamp=iso_utc())
            if not self._disabled:
                emit(ev.SystemAlert(alert=alert, run_id=self.id))
        except Exception as exc:
            sys.stderr.write(f"mlops_hooks.wandb: alert failed: {exc!r}\n")

    # ------------------------------------------------------------------ the end

    def finish(self, exit_code: int | None = None, quiet: bool | None = None) -> None:
        """Finish the run: completed, or failed when ``exit_code`` is not 0. Never raises."""
        self._end(None if not exit_code else SystemExit(
            f"the script finished the run with exit code {exit_code}"))

    def _end(self, exception: BaseException | None) -> None:
        run = self._run
        if run.finished is not None:
            return
        try:
            self._commit()
            exits.forget(run)
            if exception is not None:
                run.fail(exception)
                return
            explicit, _ = numeric_values(self._summary.explicit)
            if explicit and not self._disabled:
                send_point(run, self._step, explicit, advance=False)
            final, _ = numeric_values(self._summary.as_dict())
            accuracy = next((final[k] for k in ACCURACY_KEYS
                             if k in final and 0 <= final[k] <= 1), None)
            run.complete(final_accuracy=accuracy, validation_score=carried_score(final))
        except Exception as exc:
            sys.stderr.write(f"mlops_hooks.wandb: finish failed: {exc!r}\n")

    def __enter__(self) -> WandbRun:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self._end(exc)

    # ------------------------------------------------------------------ the rest of W&B

    def watch(self, *args: Any, **kwargs: Any) -> None:
        """Accepted; gradients and parameters are not tracked (warns once)."""
        warn_once("wandb.watch")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return stand_in(f"run.{name}")

