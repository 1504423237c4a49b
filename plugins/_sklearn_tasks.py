"""The task tree of one scikit-learn fit, rebuilt in the main process from callback messages.

scikit-learn 1.9 describes a fit as a tree of tasks (``CallbackContext``): the outermost
estimator's fit, its subtasks (a search, the candidate/split evaluations, pipeline steps, solver
iterations), each with ``max_subtasks`` (0 for a leaf, None when unknown). Workers send
``begin``/``end`` messages with the task's path; :class:`TaskTree` turns them into whole-run
progress the way sklearn's own ``ProgressBar`` does (a task is done when it ends, whatever its
number of subtasks; otherwise it is the mean of its subtasks' progress), updated incrementally
so each message costs O(depth).
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
    """What a worker sends when a task begins (None for leaves: their end says it all)."""
    if context.max_subtasks == 0 and context.parent is not None \
            and context.source_estimator_name is None:
        return None
    return {"event": "begin", "path": _path(context), "max_subtasks": context.max_subtasks,
            "task_name": context.source_task_name or context.task_name}


def end_message(context: Any) -> dict[str, Any]:
    """What a worker sends when a task ends."""
    return {"event": "end", "path": _path(context),
            "task_name": context.source_task_name or context.task_name,
            "leaf": context.max_subtasks == 0}


class _Task:
    __slots__ = ("children", "done", "parent", "total", "value", "weight_sum")

    def __init__(self, parent: _Task | None, total: int | None) -> None:
        self.parent = parent
        self.total = total
        self.children: dict[int, _Task] = {}
        self.done = False
        self.value = 0.0  # progress of this task, 0-1
        self.weight_sum = 0.0  # sum of the children's values

    def refresh(self) -> None:
        task: _Task | None = self
        while task is not None:
            if task.done:
                new = 1.0
            elif task.total:
                new = min(1.0, task.weight_sum / task.total)
            else:
                new = 0.0
            delta = new - task.value
            if delta == 0:
                return
            task.value = new
            if task.parent is not None:
                task.parent.weight_sum += delta
            task = task.parent


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
        self.iterations = 0
        self.leaves = 0
        self._lock = threading.Lock()

    def _task(self, path: tuple[int, ...], total: int | None = None) -> _Task:
        if self.root is None:
            self.root = _Task(None, total if len(path) == 1 else None)
        task = self.root
        for key in path[1:]:
            child = task.children.get(key)
            if child is None:
                child = task.children[key] = _Task(task, None)
            task = child
        return task

    def consume(self, message: dict[str, Any]) -> None:
        """Apply one ``begin``/``end`` message and report progress (the transport's consumer)."""
        with self._lock:
            if message["event"] == "begin":
                self._begin(message)
            else:
                self._end(message)
            self._report()

    def _begin(self, message: dict[str, Any]) -> None:
        path, name = tuple(message["path"]), message["task_name"]
        task = self._task(path)
        task.total = message["max_subtasks"]
        task.refresh()
        if name == _SEARCH and task.total:
            refit = 1 if self.root is not None and (self.root.total or 0) > 1 else 0
            self.fits_total = (self.fits_total or 0) + task.total + refit
        if len(path) == 2:  # a step of the outermost estimator sets the stage
            self._stage("feature_engineering" if name.startswith(_TRANSFORM_PREFIX)
                        else "model_training")
        elif len(path) > 2:
            self._stage("model_training", only_from="data_preparation")

    def _end(self, message: dict[str, Any]) -> None:
        path = tuple(message["path"])
        task = self._task(path)
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

    def _stage(self, stage: str, only_from: str | None = None) -> None:
        if only_from is None or self.run.stage_name == only_from:
            self.run.stage(stage)

    def _report(self) -> None:
        if self.root is None:
            return
        parts = []
        if self.fits_total:
            parts.append(f"{self.fits}/{self.fits_total} fits")
        if self.iterations:
            parts.append(f"{self.iterations} iteration{'s' if self.iterations > 1 else ''}")
        percent = 100.0 * self.root.value
        message = f"Training {int(percent)}% complete"
        if parts:
            message += " - " + ", ".join(parts)
        steps = self.fits if self.fits_total else self.leaves  # fits of a search, else tasks
        self.run.advance(percent, steps=steps, message=message)
