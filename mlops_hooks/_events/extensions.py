"""The event types this project adds to the spec (docs/protocol.md, "extension" sections).

Each is a tagged :class:`~mlops_hooks._events.fields.Event` like the spec's own; a new
extension gets its class here, a place in :data:`Extension` and in :data:`EXTENSION_CLASSES`
(and, when it must never be dropped, in ``LIFECYCLE_TYPES`` of :mod:`mlops_hooks.events`).
:mod:`mlops_hooks.events` re-exports them.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from mlops_hooks._events.fields import Count, Event, Metadata, Metrics, Name, Params, Text

#: What a run is doing, as the server sees it (``run_state``).
RunStateName = Literal["running", "stalled", "finished", "failed", "interrupted", "killed",
                       "crashed"]


class RunParams(Event, tag="run_params", kw_only=True):
    """A run's parameters and where it ran (protocol extension, not one of the spec's types).

    Sent once at the start of a run and possibly again later (scikit-learn's ``best_params_``
    at the end, as ``best.<name>``); a receiver merges ``params`` (later keys win) and keeps the
    first ``metadata``, adding only keys it lacks. Never dropped or coalesced.

    Attributes:
        run_id: The run the parameters belong to (required).
        params: Flat parameters: nested configuration is flattened with ``.``
            (``optimizer.lr``); values are strings (at most 1024 characters), numbers, booleans
            or null; at most 256 keys of at most 128 characters.
        metadata: Where and how the run ran: ``host``, ``pid``, ``python``, ``frameworks``
            (``{"torch": "2.5.1"}``), ``command``, ``git`` (``{"commit": ..., "dirty": ...}``
            or null); a JSON object of at most 64 keys, 6 levels and 16 KiB.
        model_name: The run's model name.
        group: The sweep or study the run belongs to (a search's name, ``MLOPS_HOOKS_GROUP``).
        group_size: How many runs the group plans (a study's ``n_trials``), when known.
    """

    run_id: Name
    params: Params
    metadata: Metadata | None = None
    model_name: Name | None = None
    group: Name | None = None
    group_size: Count | None = None


class HostMetrics(Event, tag="host_metrics", kw_only=True):
    """The training machine's health during a run (protocol extension; droppable).

    Sampled by the publisher's background thread every ``MLOPS_HOOKS_SYSTEM_INTERVAL``
    seconds; unlike ``system_metrics`` (the server's own machine) it belongs to a run.

    Attributes:
        run_id: The run being trained (required).
        host: The training machine's host name (required).
        elapsed_s: Seconds since the run started, when sampled.
        metrics: ``cpu_percent``, ``process_cpu_percent``, ``process_rss_mb``,
            ``memory_percent``, ``gpu<i>/util_percent`` ...; what the machine cannot give is absent.
    """

    run_id: Name
    host: Name
    elapsed_s: Annotated[float, msgspec.Meta(ge=0)]
    metrics: Metrics

class RunState(Event, tag="run_state", kw_only=True):
    """A run's state changed (protocol extension; never dropped or coalesced).

    Raised by the server (liveness, stall detection, the run's end) so that every subscriber
    learns at once whether a run is still running.

    Attributes:
        run_id: The run (required).
        state: ``running``, ``stalled``, ``finished``, ``failed``, ``interrupted`` (Ctrl-C),
            ``killed`` (SIGTERM, preemption) or ``crashed`` (the process vanished).
        previous: The state before, when there was one.
        reason: Why, in words (``"no step for 95 s, 5x the median step time"``).
        model_name: The run's model name.
    """

    run_id: Name
    state: RunStateName
    previous: RunStateName | None = None
    reason: Text | None = None
    model_name: Name | None = None


#: Every extension event class (a member of the decoders' union).
Extension = RunParams | HostMetrics | RunState

#: Event types this project adds to the spec, by their wire ``type``.
EXTENSION_CLASSES: dict[str, type[Event]] = {"run_params": RunParams,
                                             "host_metrics": HostMetrics,
                                             "run_state": RunState}
