"""The task tree of one scikit-learn fit, rebuilt in the main process from callback messages.

scikit-learn 1.9 describes a fit as a tree of tasks (``CallbackContext``): the outermost
estimator's fit, its subtasks (a search, the candidate/split evaluations, pipeline steps, solver
iterations), each with ``max_subtasks`` (0 for a leaf, None when unknown). Workers send
``begin``/``end`` messages with the task's path; :class:`TaskTree` turns them into whole-run
progress, updated incrementally so each message costs O(depth).

**Weights.** sklearn's own ``ProgressBar`` gives every child of a task the same share, so a
search's refit (one fit) counts as much as its 36 candidate/split fits. Here a task is weighed
by the fits it holds: a search holds one unit per evaluation, its refit one, a successive
halving search the fits of its iterations (those not begun yet are estimated as the mean of
those begun), and a pipeline holding a search weighs its other steps as one fit each. Inside
one fit (a pipeline's steps, a solver's iterations) the children share it equally, as sklearn
does. The run's ETA then comes from the time per unit of work (:meth:`Run.advance`).
"""

from __future__ import annotations

import threading
from typing import Any

from mlops_hooks.run import Run

__all__ = ["TaskTree", "begin_message", "end_message"]

# Task names scikit-learn gives the subtasks of a search, a pipeline and a solver.
_SEARCH = "search"
_FITS = ("candidate-split-evaluation", "refit-with-best-params")
_TRANSFORM_PREFIX = "fit-transform-"
_ITERATION_SUFFIX = "-iter"


def _path(context: Any) -> tuple[int, ...]:
    ids = []
    while context is not None:
        ids.append(context.task_id)
        context = context.parent
    return tuple(reversed(ids))


def begin_message(context: Any) -> dict[str, Any] | None:
    """What a worker sends when a task begins.

    None for leaves below the outermost estimator's steps (their end says it all); a step's
    begin is sent even when it is a leaf (a final estimator without callback support), so
    the stage is right while it fits and when it fails.
    """
    parent = context.parent
    if context.max_subtasks == 0 and parent is not None and parent.parent is not None \
            and context.source_estimator_name is None:
        return None
    return {"event": "begin", "path": _path(context), "max_subtasks": context.max_subtasks,
            "task_name": context.source_task_name or context.task_name}


def end_message(context: Any) -> dict[str, Any]:
    """What a worker sends when a task ends."""
    return {"event": "end", "path": _path(context),
            "task_name": context.source_task_name or context.task_name,
            "leaf": context.max_subtasks == 0}


#: Tasks that hold fits, one unit per fit below them (their weight is their fits).
_ROUND = "halving-iteration"
_HOLDERS = (_SEARCH, _ROUND)


class _Task:
    """One task: its progress (0-1) and weight (fits held; 1 for a task inside one fit)."""

    __slots__ = ("begun", "child_units", "children", "done", "filled", "fixed_units", "name",
                 "parent", "total", "units", "value", "weighted")

    def __init__(self, parent: _Task | None, total: int | None, name: str = "") -> None:
        self.parent = parent
        self.total = total
        self.name = name
        self.children: dict[int, _Task] = {}
        self.done = False
        self.value = 0.0  # progress of this task, 0-1
        self.units = 1.0  # fits this task holds (its weight among its siblings)
        self.weighted = name in _HOLDERS  # children weighed by their units, not equally
        self.filled = 0.0  # sum of the children's units * value (weighted) or value (plain)
        self.child_units = 0.0  # sum of the children's units
        self.begun = 0  # children seen
        self.fixed_units: float | None = None  # a weight given from outside (halving rounds)

    def add(self, key: int, child: _Task) -> None:
        self.children[key] = child
        self.begun += 1
        self.child_units += child.units

    def _measure(self) -> tuple[float, float]:
        if not self.weighted:
            total = self.total
            value = min(1.0, self.filled / total) if total else 0.0
            return 1.0, (1.0 if self.done else value)
        missing = max(0, (self.total or 0) - self.begun)
        # unseen halving iterations are like the seen ones; an unseen refit or step is a fit
        guess = self.child_units / self.begun if self.name == _SEARCH and self.begun else 1.0
        units = max(1.0, self.child_units + missing * guess)
        value = 1.0 if self.done else min(1.0, self.filled / units)
        return (self.fixed_units or units), value

    def refresh(self) -> None:
        """Recompute this task after a change, then its ancestors while they change."""
        task: _Task | None = self
        while task is not None:
            units, value = task._measure()
            parent = task.parent
            if units == task.units and value == task.value and not (
                    parent is not None and task.weighted and not parent.weighted):
                return
            if parent is not None:
                if task.weighted and not parent.weighted:  # it holds fits: so does its parent
                    parent.weighted = True
                    parent.filled = sum(c.units * c.value for c in parent.children.values())
                    parent.filled += units * value - task.units * task.value
                elif parent.weighted:
                    parent.filled += units * value - task.units * task.value
                else:
                    parent.filled += value - task.value
                parent.child_units += units - task.units
            task.units, task.value = units, value
            task = parent


class TaskTree:
    """Whole-run progress, fit and iteration counts and stages of one fit, fed by messages.

    Thread-safe: the transport delivers messages from one thread per worker connection.

    Args:
        run: The run the fit reports to (already started).
    """

    def __init__(self, run: Run) -> None:
        self.run = run
        self.root: _Task | None = None
        self.root_done = False
        self.fits = 0
        self.fits_total: int | None = None
        self.rounds: tuple[int, int | None] | None = None  # successive halving: (begun, of)
        self._round_units: float | None = None
        self.iterations = 0
        self.leaves = 0
        self._lock = threading.Lock()

    def _task(self, path: tuple[int, ...], name: str) -> _Task:
        if self.root is None:
            self.root = _Task(None, None)
        task = self.root
        for depth, key in enumerate(path[1:], start=2):
            child = task.children.get(key)
            if child is None:
                child = _Task(task, None, name if depth == len(path) else "")
                task.add(key, child)
                task.refresh()
            task = child
        return task

    def consume(self, message: dict[str, Any]) -> None:
        """Apply one ``begin``/``end`` message and report progress (the transport's consumer)."""
        with self._lock:
            if message["event"] == "begin":
                self._begin(message)
                if message["task_name"] == _SEARCH:
                    return  # nothing is done yet; a halving search's rounds are not known yet
            else:
                self._end(message)
            self._report()

    def _begin(self, message: dict[str, Any]) -> None:
        path, name = tuple(message["path"]), message["task_name"]
        task = self._task(path, name)
        task.name, task.total = name, message["max_subtasks"]
        if name in _HOLDERS:
            task.weighted = True
        if name == _ROUND:  # every round holds about the first one's work: fewer candidates
            # on more samples, so each weighs as much as the first round's fits
            self._round_units = task.fixed_units = self._round_units or float(task.total or 1)
            parent = task.parent
            self.rounds = (parent.begun if parent else 1, parent.total if parent else None)
            self.fits_total = None
        task.refresh()
        if name == _SEARCH and task.total and self.rounds is None:
            refit = 1 if self.root is not None and (self.root.total or 0) > 1 else 0
            self.fits_total = (self.fits_total or 0) + task.total + refit
        if len(path) == 2:  # a step of the outermost estimator sets the stage
            self._stage("feature_engineering" if name.startswith(_TRANSFORM_PREFIX)
                        else "model_training")
        elif len(path) > 2:
            self._stage("model_training", only_from="data_preparation")

    def _end(self, message: dict[str, Any]) -> None:
        path = tuple(message["path"])
        task = self._task(path, message["task_name"])
        if task.done:
            return
        task.done = True
        task.refresh()
        if len(path) == 1:
            self.root_done = True
            return
        if message["task_name"] in _FITS:
            self.fits += 1
        elif message["leaf"]:
            self.leaves += 1
            if message["task_name"].endswith(_ITERATION_SUFFIX):
                self.iterations += 1
        self._stage("model_training", only_from="data_preparation")

    def failing_stage(self, estimator: Any) -> str | None:
        """The stage of the step a pipeline was fitting when it failed, if it is a pipeline.

        A step that fails before its own fit reports anything (its parameters are checked
        first) sent no message; the steps that ended say which one it was.
        """
        steps = getattr(estimator, "steps", None)
        if self.root is None or not isinstance(steps, list) or not steps:
            return None
        ended = sum(1 for child in self.root.children.values() if child.done)
        return "model_training" if ended >= len(steps) - 1 else "feature_engineering"

    def _stage(self, stage: str, only_from: str | None = None) -> None:
        if only_from is None or self.run.stage_name == only_from:
            self.run.stage(stage)

    def _report(self) -> None:
        if self.root is None:
            return
        parts = []
        if self.fits_total:
            parts.append(f"{self.fits}/{self.fits_total} fits")
        elif self.rounds is not None:
            begun, of = self.rounds
            parts.append(f"{self.fits} fits, round {begun}/{of}" if of else
                         f"{self.fits} fits, round {begun}")
        if self.iterations:
            parts.append(f"{self.iterations} iteration{'s' if self.iterations > 1 else ''}")
        # never below what was sent: a later step may turn out to hold a search (more weight)
        percent = max(100.0 * self.root.value, self.run.progress or 0.0)
        message = f"Training {int(percent)}% complete"
        if parts:
            message += " - " + ", ".join(parts)
        # fits of a search, else tasks
        steps = self.fits if self.fits_total or self.rounds else self.leaves
        self.run.advance(percent, steps=steps, message=message)
