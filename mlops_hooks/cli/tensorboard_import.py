"""``mlops-hooks import-tensorboard LOGDIR``: TensorBoard runs into the run history.

Each directory under ``LOGDIR`` holding event files (``events.out.tfevents.*``) is one run; its
scalars become series (one ``training_progress`` per step, carrying every tag logged at that
step, stamped with the step's original wall time) and its hparams (``add_hparams``, the hparams
plugin's session) the run's parameters. A directory that only holds the hparams session and
the metrics ``SummaryWriter.add_hparams`` writes beside the run (``<run>/<timestamp>/``) is
merged into its parent run. The run ends completed, at its last wall time.

Every event has a deterministic ``event_id`` (from the run's directory, the event file, the
step and the tags), so a second import of the same logs adds nothing: the server recognises
each event as a duplicate. The files are read with TensorBoard's own ``EventAccumulator``
(the ``tensorboard`` extra).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlops_hooks import events as ev
from mlops_hooks.formatting import format_duration, iso_utc, to_float

__all__ = ["TensorBoardRun", "add_import_tensorboard", "read_logdir"]

EVENT_FILE = "events.out.tfevents."
#: Events sent between two waits for the server's acknowledgements (keeps the buffer small).
CHUNK = 500


class ImportProblem(Exception):
    """The logs cannot be imported; the message says why."""


@dataclass
class TensorBoardRun:
    """What one run directory holds.

    Attributes:
        path: The run's directory, relative to LOGDIR (``"."`` for LOGDIR itself).
        points: ``(event file, step) -> (wall time, {tag: value})``.
        hparams: The hparams session's parameters.
    """

    path: str
    points: dict[tuple[str, int], tuple[float, dict[str, float]]] = field(default_factory=dict)
    hparams: dict[str, Any] = field(default_factory=dict)

    def merge(self, other: TensorBoardRun) -> None:
        """Take ``other``'s points and parameters (an ``add_hparams`` directory)."""
        for key, (wall, values) in other.points.items():
            self._add(key, wall, values)
        self.hparams.update(other.hparams)

    def _add(self, key: tuple[str, int], wall: float, values: dict[str, float]) -> None:
        old_wall, old = self.points.get(key, (wall, {}))
        self.points[key] = (max(old_wall, wall), {**old, **values})

    @property
    def walls(self) -> list[float]:
        """The wall times of the run's points."""
        return [wall for wall, _ in self.points.values()]


def _loader() -> Any:
    try:
        from tensorboard.backend.event_processing import event_accumulator
        from tensorboard.plugins.hparams import metadata
        from tensorboard.util import tensor_util
    except ImportError as exc:
        raise ImportProblem("reading TensorBoard logs needs the tensorboard extra: "
                            "pip install 'mlops-hooks[tensorboard]'") from exc
    return event_accumulator, metadata, tensor_util


def _hparam_value(value: Any) -> Any:
    kind = value.WhichOneof("kind")
    return None if kind in (None, "null_value") else getattr(value, kind)


def _read_dir(directory: Path, logdir: Path) -> TensorBoardRun:
    event_accumulator, metadata, tensor_util = _loader()
    relative = directory.relative_to(logdir).as_posix()
    run = TensorBoardRun(path=relative)
    files = sorted(p for p in directory.iterdir() if p.is_file() and EVENT_FILE in p.name)
    for path in files:
        acc = event_accumulator.EventAccumulator(
            str(path), size_guidance={event_accumulator.SCALARS: 0,
                                      event_accumulator.TENSORS: 0})
        acc.Reload()
        tags = acc.Tags()
        for tag in tags.get("scalars", []):
            for scalar in acc.Scalars(tag):
                _point(run, path.name, scalar.step, scalar.wall_time, tag, scalar.value)
        for tag in tags.get("tensors", []):
            plugin = acc.SummaryMetadata(tag).plugin_data
            if plugin.plugin_name == "scalars":
                for tensor in acc.Tensors(tag):
                    value = tensor_util.make_ndarray(tensor.tensor_proto)
                    _point(run, path.name, tensor.step, tensor.wall_time, tag, value)
        try:
            contents = acc.PluginTagToContent(metadata.PLUGIN_NAME).values()
        except KeyError:  # no hparams in this file
            contents = []
        for content in contents:
            try:
                start = metadata.parse_session_start_info_plugin_data(content)
            except Exception:  # the experiment or session-end part of the plugin's data
                continue
            run.hparams.update({k: _hparam_value(v) for k, v in start.hparams.items()})
    return run


def _point(run: TensorBoardRun, file: str, step: int, wall: float, tag: str,
           value: Any) -> None:
    number = to_float(value)
    if number is not None and step >= 0:
        run._add((file, int(step)), float(wall), {tag[:ev.MAX_KEY]: number})


def read_logdir(logdir: Path) -> list[TensorBoardRun]:
    """Read every run under ``logdir`` (``add_hparams`` directories merged into their parent).

    Raises:
        ImportProblem: ``logdir`` is not a directory, holds no event files, or the
            ``tensorboard`` extra is missing.
    """
    if not logdir.is_dir():
        raise ImportProblem(f"{logdir} is not a directory")
    directories = sorted({Path(root) for root, _, files in os.walk(logdir)
                          if any(EVENT_FILE in name for name in files)})
    if not directories:
        raise ImportProblem(f"no TensorBoard event files ({EVENT_FILE}*) under {logdir}")
    runs = {d: _read_dir(d, logdir) for d in directories}
    for directory in directories:
        run, parent = runs[directory], runs.get(directory.parent)
        if parent is not None and run.hparams:  # SummaryWriter.add_hparams' directory
            parent.merge(run)
            del runs[directory]
    return [run for run in runs.values() if run.points or run.hparams]


def _event_id(*parts: object) -> str:
    return "tb-" + hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()


def run_events(run: TensorBoardRun, group: str, logdir: Path) -> list[ev.Event]:
    """The events of one imported run: parameters, one progress per step, the completion."""
    run_id = "tb_" + hashlib.sha1(f"{group}/{run.path}".encode()).hexdigest()[:16]
    name = (logdir.name if run.path == "." else run.path)[:512] or "tensorboard"
    walls = run.walls or [0.0]
    first, last = min(walls), max(walls)
    events: list[ev.Event] = [ev.RunParams(
        run_id=run_id, model_name=name, group=group,
        params={k[:ev.MAX_KEY]: (v[:ev.MAX_PARAM_TEXT] if isinstance(v, str) else v)
                for k, v in list(run.hparams.items())[:ev.MAX_PARAMS]},
        metadata={"imported_from": "tensorboard", "path": str(logdir / run.path)},
        timestamp=iso_utc(first), event_id=_event_id(run_id, "params"))]
    for (file, step), (wall, values) in sorted(run.points.items(), key=lambda i: i[0][1]):
        items = sorted(values.items())
        for start in range(0, len(items), ev.MAX_METRICS):
            chunk = dict(items[start:start + ev.MAX_METRICS])
            events.append(ev.TrainingProgress(
                run_id=run_id, stage="model_training",
                current_stage=ev.STAGE_TEXT["model_training"], model_name=name,
                current_step=step, metrics=chunk, timestamp=iso_utc(wall),
                event_id=_event_id(run_id, file, step, ",".join(chunk))))
    events.append(ev.TrainingCompleted(
        run_id=run_id, model_name=name, training_time=format_duration(last - first),
        message="Imported from TensorBoard", timestamp=iso_utc(last),
        event_id=_event_id(run_id, "completed")))
    return events


def _send(publisher: Any, events: list[ev.Event], timeout: float) -> tuple[int, int]:
    """Send ``events``; return ``(new, duplicates)``.

    Raises:
        ImportProblem: The server did not acknowledge them in time, or rejected some.
    """
    before = publisher.status()
    for start in range(0, len(events), CHUNK):
        for event in events[start:start + CHUNK]:
            publisher.publish(event)
        if not publisher.flush(timeout):
            status = publisher.status()
            raise ImportProblem(f"the server at {status['url']} did not acknowledge the "
                                f"events within {timeout:g} s "
                                f"({status['last_error'] or status['state']})")
    after = publisher.status()
    refused = (after["rejected"] + after["invalid"]) - (before["rejected"] + before["invalid"])
    if refused:
        raise ImportProblem(f"the server refused {refused} event(s): "
                            f"{after['last_rejection']}")
    duplicates = after["duplicates"] - before["duplicates"]
    return len(events) - duplicates, duplicates


def _cmd_import(args: argparse.Namespace) -> int:
    from mlops_hooks.publisher import Publisher

    logdir = Path(args.logdir).expanduser().resolve()
    try:
        runs = read_logdir(logdir)
        if not runs:
            raise ImportProblem(f"the event files under {logdir} hold no scalars or hparams")
        group = args.group or logdir.name or "tensorboard"
        publisher = Publisher(args.url, token=args.token, backoff_cap=0.5)
    except (ImportProblem, ValueError) as exc:
        print(f"mlops-hooks import-tensorboard: {exc}", file=sys.stderr)
        return 2
    try:
        for run in runs:
            events = run_events(run, group, logdir)
            new, duplicates = _send(publisher, events, args.timeout)
            keys = {k for _, values in run.points.values() for k in values}
            print(f"{run.path}: run {events[0].run_id} ({len(run.points)} steps, "
                  f"{len(keys)} series, {len(run.hparams)} hparams): {new} events sent"
                  + (f", {duplicates} already on the server" if duplicates else ""))
    except ImportProblem as exc:
        print(f"mlops-hooks import-tensorboard: {exc}", file=sys.stderr)
        return 1
    finally:
        publisher.close(0.5)
    print(f"imported {len(runs)} run(s) into group {group!r}")
    return 0


def add_import_tensorboard(sub: Any) -> None:
    """Register the ``import-tensorboard`` subcommand."""
    p = sub.add_parser(
        "import-tensorboard", help="turn TensorBoard logs into runs with series",
        description="Read the TensorBoard event files under LOGDIR (scalars and hparams) and "
        "send each run directory to the server as a run, with its original wall times. "
        "Importing the same logs again adds nothing. Exit status: 0 imported, 1 the server "
        "did not take the events, 2 bad arguments, no event files, or the tensorboard extra "
        "missing.")
    p.add_argument("logdir", metavar="LOGDIR", help="the TensorBoard log directory")
    p.add_argument("--group", default=None,
                   help="the runs' group (default: LOGDIR's name)")
    p.add_argument("--url", default=None,
                   help="server URL (default: $MLOPS_HOOKS_URL or ws://127.0.0.1:8001/ws)")
    p.add_argument("--token", default=None, help="publisher token (default: $MLOPS_HOOKS_TOKEN)")
    p.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                   help="how long to wait for the server's acknowledgements (default: 30)")
    p.set_defaults(handler=_cmd_import)
