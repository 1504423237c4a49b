"""The hook specification: the contract between mlops-hooks and its plugins.

Every hook name starts with ``mlops_``; hooks are called with keyword arguments only. An
implementation may accept fewer arguments than its spec (pluggy passes only what it names), so
arguments are only ever added in ways existing plugins survive.

The same specification runs in two processes:

* the **training** process (or a serving process): events come from ``Run``, the framework
  adapters, ``mlops_hooks.emit()`` and ``PredictionMonitor``; the built-in publisher plugin
  forwards them to the server;
* the **server** process: every event ingested from a publisher, and every event the server
  raises itself (monitor, uploads, watchdog), is passed to the same hooks before it is broadcast.
  In a fleet sharing one stream (``--backend redis://``) each event's hooks run once, on the
  server that accepted it (for an event a server raises itself, that server).

The ``side`` argument says which (``"training"`` or ``"server"``), so a plugin installed in an
environment that runs both does its work once.

The rules, stated once for every hook (each spec below says only what differs):

* **May react, must not block or mutate.** An implementation may record, forward, display or
  notify; it returns quickly (the caller is a training loop or the server's event loop: hand
  slow work such as network calls to a thread) and never mutates the event (the same object
  goes to every plugin).
* **Raise freely.** An exception is reported once with the plugin's name and never reaches the
  caller or stops other plugins from receiving the event.
* **Order.** For each event, the hook of its own type (``mlops_<type>``) is called first, then
  :func:`mlops_event`, in the order events were emitted (training) or ingested (server).
* **Process.** Unless a spec says otherwise, a hook is called on both sides, and ``side`` says
  which: ``"training"`` in a training or serving process, ``"server"`` in the server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from mlops_hooks import events as ev

hookspec = pluggy.HookspecMarker("mlops_hooks")

#: The connection states of the spec, as passed to :func:`mlops_connection_change`.
CONNECTION_STATES = ("connected", "disconnected", "reconnecting", "error", "max_reconnect_attempts")

# -------------------------------------------------------------------------------------------
# Every event
# -------------------------------------------------------------------------------------------


@hookspec
def mlops_event(event: ev.Event, side: str) -> None:
    """Receive every event, whatever its type.

    Called: once per event, after the hook of the event's own type.

    Process: both.

    May: react (the shared rules).

    Args:
        event: The event (an instance of one of the classes in :mod:`mlops_hooks.events`).
        side: The process it is called in.
    """


# -------------------------------------------------------------------------------------------
# Live system status
# -------------------------------------------------------------------------------------------


@hookspec
def mlops_model_deployed(event: ev.ModelDeployed, side: str) -> None:
    """Receive a ``model_deployed`` event.

    Called: when a model is deployed to production (``mlops_hooks.deploy()`` or an ingested
    ``model_deployed``).

    Process: both.

    May: react (the shared rules).

    Args:
        event: The :class:`~mlops_hooks.events.ModelDeployed` event.
        side: The process it is called in.
    """


@hookspec
def mlops_model_status_change(event: ev.ModelStatusChange, side: str) -> None:
    """Receive a ``model_status_change`` event.

    Called: when a model's operational status changes (active, training, error, inactive).

    Process: both.

    May: react (the shared rules).

    Args:
        event: The :class:`~mlops_hooks.events.ModelStatusChange` event.
        side: The process it is called in.
    """


@hookspec
def mlops_prediction_volume(event: ev.PredictionVolume, side: str) -> None:
    """Receive a ``prediction_volume`` event.

    Called: when prediction totals, the per-minute rate or a milestone change
    (``PredictionMonitor``).

    Process: both.

    May: react (the shared rules).

    Args:
        event: The :class:`~mlops_hooks.events.PredictionVolume` event.
        side: The process it is called in.
    """


# -------------------------------------------------------------------------------------------
# Training
# -------------------------------------------------------------------------------------------


@hookspec
def mlops_training_progress(event: ev.TrainingProgress, side: str) -> None:
    """Receive a ``training_progress`` event.

    Called: when a run advances: throttled while steps go by, and always on a stage change, an
    epoch end and at 100%.

    Process: both.

    May: react (the shared rules).

    Args:
        event: The :class:`~mlops_hooks.events.TrainingProgress` event.
        side: The process it is called in.
    """


@hookspec
def mlops_training_completed(event: ev.TrainingCompleted, side: str) -> None:
    """Receive a ``training_completed`` event.

    Called: when a training run completes successfully.

    Process: both.

    May: react (the shared rules).

    Args:
        event: The :class:`~mlops_hooks.events.TrainingCompleted` event.
        side: The process it is called in.
    """


@hookspec
def mlops_training_failed(event: ev.TrainingFailed, side: str) -> None:
    """Receive a ``training_failed`` event.

    Called: when a training run fails (an exception, KeyboardInterrupt or SIGTERM inside the
    run).

    Process: both.

    May: react (the shared rules).

    Args:
        event: The :class:`~mlops_hooks.events.TrainingFailed` event.
        side: The process it is called in.
    """


# -------------------------------------------------------------------------------------------
# Real-time metrics
# -------------------------------------------------------------------------------------------


@hookspec
def mlops_system_metrics(event: ev.SystemMetrics, side: str) -> None:
    """Receive a ``system_metrics`` event.

    Called: when the server's monitor samples host and service metrics (every few seconds).

    Process: server (the monitor); training when a plugin or script emits one.

    May: react (the shared rules).

    Args:
        event: The :class:`~mlops_hooks.events.SystemMetrics` event.
        side: The process it is called in.
    """


@hookspec
def mlops_health_change(event: ev.HealthChange, side: str) -> None:
    """Receive a ``health_change`` event.

    Called: when health moves between healthy, warning and critical.

    Process: server (the monitor); training when a plugin or script emits one.

    May: react (the shared rules).

    Args:
        event: The :class:`~mlops_hooks.events.HealthChange` event.
        side: The process it is called in.
    """


# -------------------------------------------------------------------------------------------
# Files
# -------------------------------------------------------------------------------------------


@hookspec
def mlops_file_validated(event: ev.FileValidated, side: str) -> None:
    """Receive a ``file_validated`` event.

    Called: when an uploaded file has been validated (success or error).

    Process: server (uploads); training when a script emits one.

    May: react (the shared rules).

    Args:
        event: The :class:`~mlops_hooks.events.FileValidated` event.
        side: The process it is called in.
    """


@hookspec
def mlops_upload_progress(event: ev.UploadProgress, side: str) -> None:
    """Receive a ``upload_progress`` event.

    Called: when bytes of a file upload arrive (throttled).

    Process: server (uploads); training when a script emits one.

    May: react (the shared rules).

    Args:
        event: The :class:`~mlops_hooks.events.UploadProgress` event.
        side: The process it is called in.
    """


# -------------------------------------------------------------------------------------------
# Activity and monitoring
# -------------------------------------------------------------------------------------------


@hookspec
def mlops_activity_update(event: ev.ActivityUpdate, side: str) -> None:
    """Receive a ``activity_update`` event.

    Called: when an entry is added to the activity feed (run started, completed, failed,
    deployed, ...).

    Process: both.

    May: react (the shared rules).

    Args:
        event: The :class:`~mlops_hooks.events.ActivityUpdate` event.
        side: The process it is called in.
    """


@hookspec
def mlops_system_alert(event: ev.SystemAlert, side: str) -> None:
    """Receive a ``system_alert`` event.

    Called: when an important notification is raised (resource warnings, stalled runs, ...).

    Process: both.

    May: react (the shared rules).

    Args:
        event: The :class:`~mlops_hooks.events.SystemAlert` event.
        side: The process it is called in.
    """


# -------------------------------------------------------------------------------------------
# Protocol extensions (docs/protocol.md)
# -------------------------------------------------------------------------------------------


@hookspec
def mlops_run_params(event: ev.RunParams, side: str) -> None:
    """Receive a ``run_params`` event: a run's parameters and metadata.

    Called: once when a run starts (after its first ``training_progress``), with the
    parameters the adapter captured (Lightning ``hparams``, optimizer, batch size, ...; Keras
    optimizer config; scikit-learn ``get_params()`` and the search's grid; ``track(params=)``)
    and where it runs (host, pid, versions, command line, git commit); possibly again later
    with more parameters (scikit-learn's ``best_params_`` as ``best.<name>``).

    Process: both.

    May: react (the shared rules).

    Args:
        event: The :class:`~mlops_hooks.events.RunParams` event.
        side: The process it is called in.
    """


@hookspec
def mlops_host_metrics(event: ev.HostMetrics, side: str) -> None:
    """Receive a ``host_metrics`` event: the training machine's CPU, memory and GPUs.

    Called: every ``MLOPS_HOOKS_SYSTEM_INTERVAL`` seconds while a run is active, from the
    samples the publisher's background thread takes (on the server, as they arrive).

    Process: both.

    May: react (the shared rules).

    Args:
        event: The :class:`~mlops_hooks.events.HostMetrics` event.
        side: The process it is called in.
    """


@hookspec
def mlops_run_state(event: ev.RunState, side: str) -> None:
    """Receive a ``run_state`` event: a run's state changed (running, stalled, crashed, ...).

    Called: on the server, when it raises the change (liveness, stall detection, the run's
    end); on any process that subscribes to a server's stream and dispatches what it receives.

    Process: server (``side == "server"``), unless a plugin dispatches received events itself.

    May: react (the shared rules): notify, record, relaunch.

    Args:
        event: The :class:`~mlops_hooks.events.RunState` event.
        side: The process it is called in.
    """


# -------------------------------------------------------------------------------------------
# Relaunch (server side)
# -------------------------------------------------------------------------------------------


@hookspec
def mlops_relaunch_request(run: dict[str, Any], request: dict[str, Any]) -> dict[str, Any] | None:
    """Start a run again: the dashboard's Retry (a failed run) or Retrain (a model) was pressed.

    Called: on the server that accepted the request (an ``activity_update`` with
    ``action_type`` ``retry_requested`` or ``retrain_requested``, sent by the dashboard through
    ``POST /api/events``), once the run to start again is found in the history: for Retry the
    run named by the request's ``metadata.run_id``, for Retrain the newest run of its
    ``metadata.model_name``. Called on a worker thread, not the event loop.

    Process: server (a launcher plugin; the built-in one is enabled by ``serve
    --allow-relaunch``).

    May: start the run again (a job scheduler, a CI pipeline, a local process) and return
    ``{"launcher": name, "started": bool, ...}`` (``error`` saying why not; anything else is
    recorded): each result becomes an activity entry (``relaunch_started`` or
    ``relaunch_refused``). Return ``None`` to ignore the request. Raising is reported once.

    Args:
        run: The run as ``GET /api/runs/{run_id}`` returns it: ``run_id``, ``model_name``,
            ``status``, ``params``, ``metadata`` (``host``, ``command``, ``cwd``,
            ``executable``, ...).
        request: ``kind`` (``retry`` or ``retrain``), ``activity_id``, ``requested_by``,
            ``run_id`` and ``model_name`` as the request named them.
    """


# -------------------------------------------------------------------------------------------
# Connection
# -------------------------------------------------------------------------------------------


@hookspec
def mlops_connection_change(state: str, detail: dict[str, object]) -> None:
    """Receive a change of the publisher's connection to the server.

    Called: by the publisher's background thread (never the training thread) whenever its
    connection changes state: ``connected``, ``disconnected``, ``reconnecting`` (before each
    attempt), ``error`` (a failed attempt or a broken connection) and
    ``max_reconnect_attempts`` (once, after five failed attempts in a row; the publisher keeps
    its buffer and keeps retrying at the capped delay).

    Process: training (the publisher).

    May: log or display the state. Runs on the publisher thread: must return quickly and must
    not call ``emit()`` recursively in a loop.

    Args:
        state: One of :data:`CONNECTION_STATES`.
        detail: Context for the state: ``url``, ``attempt``, ``delay`` (seconds until the next
            attempt), ``error`` (text), ``latency_ms`` and ``quality`` (``excellent``, ``good``,
            ``fair``, ``poor``) when measured, ``buffered`` (events waiting).
    """
