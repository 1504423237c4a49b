"""Operational counters and the ``/metrics`` page in the Prometheus text format (0.0.4)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable

__all__ = ["Metrics"]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Metrics:
    """Counters the hub, ingest and endpoints bump; gauges are read when the page is rendered.

    Attributes:
        events_in: Events accepted from publishers and the server itself, by type.
        events_out: Messages written to subscribers, by type (control messages included).
        coalesced: Queued state events replaced by a newer one before being sent, by type.
        duplicates: Events recognised by their ``event_id`` and not broadcast again.
        rejected: Invalid inputs, by reason.
        dropped: Queued messages discarded when a slow subscriber was closed.
        closed_slow: Subscribers closed with 4008.
        loop_lag: The latest measured event-loop lag, in seconds.
    """

    def __init__(self) -> None:
        self.events_in: Counter[str] = Counter()
        self.events_out: Counter[str] = Counter()
        self.coalesced: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.duplicates = 0
        self.dropped = 0
        self.closed_slow = 0
        self.loop_lag = 0.0
        self.loop_lag_max = 0.0
        self._gauges: list[tuple[str, str, Callable[[], Iterable[tuple[dict[str, str], float]]]]]
        self._gauges = []

    def gauge(self, name: str, help_text: str,
              read: Callable[[], Iterable[tuple[dict[str, str], float]]]) -> None:
        """Register a gauge read at render time as ``(labels, value)`` pairs."""
        self._gauges.append((name, help_text, read))

    def render(self) -> str:
        """The whole page."""
        lines: list[str] = []

        def family(name: str, kind: str, help_text: str,
                   samples: Iterable[tuple[dict[str, str], float]]) -> None:
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            for labels, value in samples:
                text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
                lines.append(f"{name}{{{text}}} {value:g}" if text else f"{name} {value:g}")

        def by_type(counter: Counter[str]) -> list[tuple[dict[str, str], float]]:
            return [({"type": k}, float(v)) for k, v in sorted(counter.items())]

        family("mlops_hooks_events_in_total", "counter",
               "Events accepted for broadcast, by type.", by_type(self.events_in))
        family("mlops_hooks_events_out_total", "counter",
               "Messages sent to subscribers, by type.", by_type(self.events_out))
        family("mlops_hooks_coalesced_total", "counter",
               "Queued state events superseded by a newer one before sending.",
               by_type(self.coalesced))
        family("mlops_hooks_rejected_total", "counter", "Invalid inputs, by reason.",
               [({"reason": k}, float(v)) for k, v in sorted(self.rejected.items())])
        family("mlops_hooks_duplicates_total", "counter",
               "Re-sent events recognised by event_id.", [({}, float(self.duplicates))])
        family("mlops_hooks_dropped_total", "counter",
               "Queued messages discarded when a slow subscriber was closed.",
               [({}, float(self.dropped))])
        family("mlops_hooks_closed_slow_total", "counter",
               "Subscribers closed with 4008 (slow consumer).", [({}, float(self.closed_slow))])
        family("mlops_hooks_event_loop_lag_seconds", "gauge",
               "Latest measured event-loop lag.", [({}, self.loop_lag)])
        family("mlops_hooks_event_loop_lag_max_seconds", "gauge",
               "Largest event-loop lag measured since start.", [({}, self.loop_lag_max)])
        for name, help_text, read in self._gauges:
            family(name, "gauge", help_text, list(read()))
        return "\n".join(lines) + "\n"
