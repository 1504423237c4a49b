"""The server's current picture of the world, built from the event stream.

:meth:`State.apply` folds each record into models, runs, system metrics, health, the activity
feed, open alerts and uploads; :meth:`State.snapshot` and the ``*_view`` methods render it in
the shapes of docs/protocol.md. Everything is bounded. A :class:`StateListener` (the SQLite
store) is told about changes that must survive a restart.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from typing import Any, Protocol

from mlops_hooks import events as ev
from mlops_hooks.formatting import iso_utc
from mlops_hooks.server.state.runs import RunState, series_point
from mlops_hooks.server.state.summary import BUDGETS, fit, summarise, summarise_run

__all__ = ["MODEL_FIELDS", "START_ACTION", "State", "StateListener", "is_start", "run_key"]

MAX_RUNS = 50
MAX_MODELS = 100
MAX_ACTIVITY = 500
SNAPSHOT_ACTIVITY = 50
MAX_ALERTS = 50
MAX_UPLOADS = 20
#: Seconds an ``auto_dismiss`` alert stays open.
AUTO_DISMISS_AFTER = 60.0
#: ``alert_type`` of the watchdog's alert; its ``run_id`` marks that run as stalled.
STALLED_ALERT = "training_stalled"
#: ``activity.action_type`` of a run's start (``mlops_hooks.run.messages.STARTED``): with the
#: run's ``run_id`` and a time after the run's end, it reopens an ended run.
START_ACTION = "training_start"

MODEL_FIELDS = ("model_id", "model_name", "model_version", "model_accuracy",
                "deployment_timestamp", "status", "health_score", "last_prediction",
                "total_predictions", "predictions_per_minute", "milestone_reached")


class StateListener(Protocol):
    """Receives the changes that are kept in history (must return at once)."""

    def run_changed(self, run: dict[str, Any], seq: int) -> None:
        """A run's state changed."""

    def model_changed(self, model: dict[str, Any], seq: int) -> None:
        """A model's state changed."""

    def activity_added(self, activity: dict[str, Any], seq: int) -> None:
        """An activity entry arrived."""

    def deployment_added(self, event: dict[str, Any], seq: int) -> None:
        """A ``model_deployed`` event arrived."""

    def points_added(self, run_id: str, step: int, values: dict[str, float]) -> None:
        """A ``training_progress`` added one point to each of these series of a run."""

    def params_added(self, run_id: str, params: dict[str, Any],
                     metadata: dict[str, Any]) -> None:
        """A ``run_params`` event arrived: params to merge, metadata to complete."""


def run_key(event: ev.Event) -> str:
    """The run an event belongs to: its ``run_id``, else its model name, else ``"default"``."""
    return event.run_id or getattr(event, "model_name", None) or "default"


def is_start(event: ev.Event) -> bool:
    """Whether ``event`` is the start of a run's attempt.

    The spec's ``activity_update`` whose ``action_type`` is :data:`START_ACTION`: what
    ``Run.start()`` sends first, before the attempt's first ``training_progress``.
    """
    return isinstance(event, ev.ActivityUpdate) and event.activity.action_type == START_ACTION


def _new_model(model_id: str) -> dict[str, Any]:
    model = dict.fromkeys(MODEL_FIELDS)
    model.update(model_id=model_id, model_name=model_id, status="inactive")
    return model


class State:
    """Current models, runs, system metrics, health, activity, alerts and uploads.

    Args:
        listener: Told about changes that persist (runs, models, activity, deployments).
    """

    def __init__(self, listener: StateListener | None = None) -> None:
        self.listener = listener
        self.seq = 0
        self.models: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.runs: OrderedDict[str, RunState] = OrderedDict()
        self.system: dict[str, Any] | None = None
        self.health: dict[str, Any] | None = None
        self.predictions: dict[str, Any] | None = None
        self.activity: deque[dict[str, Any]] = deque(maxlen=MAX_ACTIVITY)
        self._activity_ids: dict[Any, dict[str, Any]] = {}
        self.alerts: deque[tuple[float, dict[str, Any]]] = deque(maxlen=MAX_ALERTS)
        self.uploads: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.hosts: dict[str, list[str]] = {}  # run_id -> the hosts its host_metrics came from

    # ------------------------------------------------------------------ history

    def load(self, *, last_seq: int, runs: list[dict[str, Any]],
             models: list[dict[str, Any]], activity: list[dict[str, Any]]) -> None:
        """Restore persisted history (oldest first for runs and models, newest first activity)."""
        self.seq = max(self.seq, last_seq)
        for data in runs[-MAX_RUNS:]:
            run = RunState.from_dict(data)
            self.runs[run.run_id] = run
        for model in models[-MAX_MODELS:]:
            full = _new_model(str(model.get("model_id")))
            full.update({k: model.get(k) for k in MODEL_FIELDS if k in model})
            self.models[full["model_id"]] = full
        for entry in reversed(activity[:MAX_ACTIVITY]):
            self.add_activity(entry)

    # ------------------------------------------------------------------ applying events

    def apply(self, event: ev.Event, data: dict[str, Any]) -> None:
        """Fold one event into the state.

        Args:
            event: The decoded event (with its ``seq``).
            data: Its wire form as a dict (what snapshots and history hold).
        """
        seq = event.seq or self.seq
        self.seq = max(self.seq, seq)
        handler = getattr(self, "_on_" + event.type, None)
        if handler is not None:
            handler(event, data, seq)

    def _run(self, event: ev.Event) -> RunState:
        key = run_key(event)
        run = self.runs.get(key)
        if run is None:
            run = self.runs[key] = RunState(key, getattr(event, "model_name", None))
            self._evict_runs()
        else:
            self.runs.move_to_end(key)
        run.touch(event.timestamp)
        return run

    def _evict_runs(self) -> None:
        while len(self.runs) > MAX_RUNS:
            victim = next((k for k, r in self.runs.items() if r.finished), None)
            self.runs.pop(victim if victim is not None else next(iter(self.runs)))

    def _run_changed(self, run: RunState, seq: int) -> None:
        if self.listener is not None:
            self.listener.run_changed(run.to_dict(), seq)

    def _on_training_progress(self, event: ev.Event, data: dict[str, Any], seq: int) -> None:
        run = self._run(event)
        if not run.finished:
            run.on_progress(data)
            if event.run_id is not None and self.listener is not None:
                point = series_point(data)
                if point is not None:
                    self.listener.points_added(run.run_id, point[0], point[1])
        self._run_changed(run, seq)

    def _on_run_params(self, event: ev.Event, data: dict[str, Any], seq: int) -> None:
        run = self._run(event)
        run.on_params(data)
        if self.listener is not None:
            params, metadata = data.get("params"), data.get("metadata")
            self.listener.params_added(run.run_id, params if isinstance(params, dict) else {},
                                       metadata if isinstance(metadata, dict) else {})
        self._run_changed(run, seq)

    def _on_host_metrics(self, event: ev.Event, data: dict[str, Any], seq: int) -> None:
        """A training machine's sample: one point of each ``system/...`` series of its run.

        The run itself is left untouched (a hung training loop whose sampler still reports
        stays stalled); samples of an unknown or finished run are ignored. The step is the
        whole seconds since the run started; keys include the host once a second one reports.
        """
        run = self.runs.get(run_key(event))
        metrics = data.get("metrics")
        if run is None or run.finished or self.listener is None or not isinstance(metrics, dict):
            return
        hosts = self.hosts.setdefault(run.run_id, [])
        host = str(data.get("host"))
        if host not in hosts and len(hosts) < 64:
            hosts.append(host)
        if len(self.hosts) > 2 * MAX_RUNS:
            self.hosts = {k: v for k, v in self.hosts.items() if k in self.runs}
        prefix = f"system/{host}/" if len(hosts) > 1 else "system/"
        values = {prefix + str(k): v for k, v in metrics.items()
                  if isinstance(v, (int, float)) and not isinstance(v, bool)}
        elapsed = data.get("elapsed_s")
        if values and isinstance(elapsed, (int, float)):
            self.listener.points_added(run.run_id, int(elapsed), values)

    def _on_training_completed(self, event: ev.Event, data: dict[str, Any], seq: int) -> None:
        run = self._run(event)
        run.on_completed(data)
        self._run_changed(run, seq)

    def _on_training_failed(self, event: ev.Event, data: dict[str, Any], seq: int) -> None:
        run = self._run(event)
        run.on_failed(data)
        self._run_changed(run, seq)

    def _on_run_state(self, event: ev.Event, data: dict[str, Any], seq: int) -> None:
        """A state the server raised (stalled, crashed, running again): the run's status."""
        run = self.runs.get(run_key(event))
        if run is not None and run.on_state(data):
            self._run_changed(run, seq)

    def _model(self, model_id: str) -> dict[str, Any]:
        model = self.models.get(model_id)
        if model is None:
            model = self.models[model_id] = _new_model(model_id)
            while len(self.models) > MAX_MODELS:
                self.models.popitem(last=False)
        return model

    def _model_changed(self, model: dict[str, Any], seq: int) -> None:
        if self.listener is not None:
            self.listener.model_changed(dict(model), seq)

    def _on_model_deployed(self, event: ev.Event, data: dict[str, Any], seq: int) -> None:
        assert isinstance(event, ev.ModelDeployed)
        model = self._model(event.model_id or event.model_name)
        self.models.move_to_end(model["model_id"])
        model.update(
            model_name=event.model_name,
            model_version=event.model_version,
            model_accuracy=event.model_accuracy,
            deployment_timestamp=event.deployment_timestamp or event.timestamp,
            status="active",
        )
        self._model_changed(model, seq)
        if self.listener is not None:
            self.listener.deployment_added(data, seq)

    def _on_model_status_change(self, event: ev.Event, data: dict[str, Any], seq: int) -> None:
        assert isinstance(event, ev.ModelStatusChange)
        model = self._model(event.model_id)
        model["status"] = event.status
        if event.health_score is not None:
            model["health_score"] = event.health_score
        if event.last_prediction is not None:
            model["last_prediction"] = event.last_prediction
        self._model_changed(model, seq)

    def current_model(self) -> dict[str, Any] | None:
        """The most recently deployed model that is active (else the most recent one)."""
        active = [m for m in self.models.values() if m["status"] == "active"]
        pool = active or list(self.models.values())
        return pool[-1] if pool else None

    def _on_prediction_volume(self, event: ev.Event, data: dict[str, Any], seq: int) -> None:
        assert isinstance(event, ev.PredictionVolume)
        self.predictions = data
        model = self._model(event.model_id) if event.model_id else self.current_model()
        if model is None:
            return
        model["total_predictions"] = event.total_predictions
        if event.predictions_per_minute is not None:
            model["predictions_per_minute"] = event.predictions_per_minute
        if event.milestone_reached is not None:
            model["milestone_reached"] = event.milestone_reached
        self._model_changed(model, seq)

    def _on_system_metrics(self, event: ev.Event, data: dict[str, Any], seq: int) -> None:
        self.system = data
        current = data.get("current_health")
        if current and self.health is None:
            self.health = {"current_health": current, "previous_health": None, "reason": None,
                           "recommended_action": None, "metrics": None}

    def _on_health_change(self, event: ev.Event, data: dict[str, Any], seq: int) -> None:
        assert isinstance(event, ev.HealthChange)
        self.health = {
            "current_health": event.current_health,
            "previous_health": event.previous_health,
            "reason": event.reason,
            "recommended_action": event.recommended_action,
            "metrics": event.metrics,
            "timestamp": event.timestamp,
        }

    def _on_activity_update(self, event: ev.Event, data: dict[str, Any], seq: int) -> None:
        activity = dict(data["activity"])
        if activity.get("timestamp") is None:  # encoded as null when the producer left it out
            activity["timestamp"] = event.timestamp
        self.add_activity(activity)
        if self.listener is not None:
            self.listener.activity_added(activity, seq)
        run = self.runs.get(event.run_id) if is_start(event) and event.run_id else None
        if run is not None and run.reopen(event.timestamp):  # a new attempt of an ended run
            self.runs.move_to_end(run.run_id)
            run.touch(event.timestamp)
            self._run_changed(run, seq)

    def add_activity(self, activity: dict[str, Any]) -> None:
        """Put an entry at the top of the feed (an entry with the same id is replaced)."""
        key = activity.get("id")
        old = self._activity_ids.get(key)
        if old is not None:
            self.activity.remove(old)
        if len(self.activity) == self.activity.maxlen:
            self._activity_ids.pop(self.activity[-1].get("id"), None)
        self.activity.appendleft(activity)
        self._activity_ids[key] = activity

    def _on_system_alert(self, event: ev.Event, data: dict[str, Any], seq: int) -> None:
        assert isinstance(event, ev.SystemAlert)
        alert = dict(data["alert"])
        if alert.get("timestamp") is None:  # encoded as null when the producer left it out
            alert["timestamp"] = event.timestamp
        if event.clears is not None:  # a clearing alert closes the one it names
            for entry in [e for e in self.alerts if e[1].get("id") == event.clears]:
                self.alerts.remove(entry)
        self.alerts.appendleft((time.monotonic(), alert))
        if event.alert.alert_type == STALLED_ALERT and event.run_id is not None \
                and event.run_id in self.runs:
            run = self.runs[event.run_id]
            if run.mark_stalled():
                self._run_changed(run, seq)

    def open_alerts(self) -> list[dict[str, Any]]:
        """Alerts still open, newest first (``auto_dismiss`` ones close after a minute)."""
        now = time.monotonic()
        return [a for t, a in self.alerts
                if not a.get("auto_dismiss") or now - t < AUTO_DISMISS_AFTER]

    def _upload(self, filename: str) -> dict[str, Any]:
        entry = self.uploads.get(filename)
        if entry is None:
            entry = self.uploads[filename] = {"filename": filename, "upload": None,
                                              "validation": None}
            while len(self.uploads) > MAX_UPLOADS:
                self.uploads.popitem(last=False)
        self.uploads.move_to_end(filename)
        return entry

    def _on_upload_progress(self, event: ev.Event, data: dict[str, Any], seq: int) -> None:
        assert isinstance(event, ev.UploadProgress)
        entry = self._upload(event.filename)
        entry["upload"] = data
        entry["validation"] = None

    def _on_file_validated(self, event: ev.Event, data: dict[str, Any], seq: int) -> None:
        assert isinstance(event, ev.FileValidated)
        self._upload(event.filename)["validation"] = data

    # ------------------------------------------------------------------ views

    def model_list(self) -> list[dict[str, Any]]:
        """Models, most recently changed last."""
        return [dict(m) for m in self.models.values()]

    def run_list(self) -> list[dict[str, Any]]:
        """Runs, most recently active last."""
        return [r.to_dict() for r in self.runs.values()]

    def snapshot(self, connections: int) -> dict[str, Any]:
        """The first frame of ``/ws`` (docs/protocol.md, *Snapshot*).

        Summaries, not series, and bounded whatever the history (:mod:`.summary`): newest
        entries first within each section's byte budget; the full data is on REST.
        """
        models = fit((summarise(m) or {} for m in reversed(self.models.values())),
                     BUDGETS["models"])
        runs = fit((summarise_run(r.to_dict()) for r in reversed(self.runs.values())),
                   BUDGETS["runs"], shrink="points")
        uploads = fit(({"filename": u["filename"][:512], "upload": summarise(u["upload"]),
                        "validation": summarise(u["validation"])}
                       for u in reversed(self.uploads.values())), BUDGETS["uploads"])
        return {
            "type": "snapshot",
            "seq": self.seq,
            "server_time": iso_utc(),
            "models": models[::-1],
            "runs": runs[::-1],
            "system": summarise(self.system),
            "health": summarise(self.health),
            "activity": fit((summarise(a) or {} for a in
                             list(self.activity)[:SNAPSHOT_ACTIVITY]), BUDGETS["activity"]),
            "alerts": fit((summarise(a) or {} for a in self.open_alerts()), BUDGETS["alerts"]),
            "uploads": uploads,
            "connections": connections,
        }

    def models_view(self) -> dict[str, Any]:
        """``GET /api/models``."""
        return {"seq": self.seq, "models": self.model_list(), "runs": self.run_list()}

    def system_view(self, connections: int) -> dict[str, Any]:
        """``GET /api/monitoring/system``."""
        return {"seq": self.seq, "system": self.system, "health": self.health,
                "alerts": self.open_alerts(), "connections": connections}

    def activity_view(self, limit: int) -> dict[str, Any]:
        """``GET /api/activity?limit=``."""
        return {"seq": self.seq, "activity": list(self.activity)[:limit]}

    def current_accuracy(self) -> float | None:
        """Accuracy to report as live: the current model's, else the latest run's."""
        model = self.current_model()
        if model is not None and model.get("model_accuracy") is not None:
            return float(model["model_accuracy"])
        for run in reversed(self.runs.values()):
            if run.completed and run.completed.get("final_accuracy") is not None:
                return float(run.completed["final_accuracy"])
            if run.progress and run.progress.get("current_accuracy") is not None:
                return float(run.progress["current_accuracy"])
        return None

    def predictions_per_minute(self) -> float | None:
        """Prediction rate across models (or the latest reported one)."""
        rates = [m["predictions_per_minute"] for m in self.models.values()
                 if m.get("predictions_per_minute") is not None and m["status"] == "active"]
        if rates:
            return float(sum(rates))
        if self.predictions and self.predictions.get("predictions_per_minute") is not None:
            return float(self.predictions["predictions_per_minute"])
        return None
