"""Rules on the training machine's health (``host_metrics``): host memory, GPU memory, GPU idle.

Keys are those of docs/protocol.md ("The training machine's health"): ``memory_percent``,
``gpu<i>/util_percent``, ``gpu<i>/memory_used_mb``, ``gpu<i>/memory_total_mb``. Each host and
GPU is its own subject, so two GPUs near full are two alerts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from mlops_hooks import events as ev
from mlops_hooks.server.alerts.finding import Finding, Rule
from mlops_hooks.server.alerts.lifecycle import ended

__all__ = ["GpuIdle", "GpuMemory", "HostMemory"]

_GPU = re.compile(r"^gpu(\d+)/util_percent$")


def _gpus(metrics: dict[str, float], suffix: str) -> list[tuple[str, float]]:
    out = []
    for key, value in metrics.items():
        if key.startswith("gpu") and key.endswith("/" + suffix):
            out.append((key.partition("/")[0], float(value)))
    return out


class HostMemory(Rule[None]):
    """Host memory at or above ``percent`` (the OOM killer is near); clears ``hysteresis`` below."""

    name = "host_memory"
    watches = frozenset({"host_metrics"})
    alert_type = "host_memory_high"
    clears_at_end = True

    def new_state(self) -> None:
        """No state."""

    def observe(self, event: ev.Event) -> list[Finding]:
        """Judge ``memory_percent`` of each sample."""
        if not isinstance(event, ev.HostMetrics):
            return []
        value = event.metrics.get("memory_percent")
        if value is None:
            return []
        limit = float(self.settings["percent"])
        if value >= limit:
            return [self.fire(event.run_id, "Training Host Memory Nearly Full",
                              f"Memory of {event.host} (run {event.run_id}) is at {value:.1f}%, "
                              f"at or above {limit:g}%: the OOM killer may end the run",
                              round(float(value), 1), event.host,
                              ("Reduce Batch Size", "Reduce Data Loader Workers"))]
        if value < limit - float(self.settings["hysteresis"]):
            return [self.clear(event.run_id, event.host)]
        return []


class GpuMemory(Rule[None]):
    """A GPU's memory used at or above ``percent`` of its total."""

    name = "gpu_memory"
    watches = frozenset({"host_metrics"})
    alert_type = "gpu_memory_high"
    clears_at_end = True

    def new_state(self) -> None:
        """No state."""

    def observe(self, event: ev.Event) -> list[Finding]:
        """Judge ``gpu<i>/memory_used_mb`` against ``gpu<i>/memory_total_mb``."""
        if not isinstance(event, ev.HostMetrics):
            return []
        out: list[Finding] = []
        limit = float(self.settings["percent"])
        for gpu, used in _gpus(event.metrics, "memory_used_mb"):
            total = event.metrics.get(f"{gpu}/memory_total_mb")
            if not total or total <= 0:
                continue
            percent = 100.0 * used / float(total)
            subject = f"{gpu}@{event.host}"
            if percent >= limit:
                out.append(self.fire(
                    event.run_id, "GPU Memory Nearly Full",
                    f"{gpu.upper()} of {event.host} (run {event.run_id}) uses {used:.0f} of "
                    f"{total:.0f} MB ({percent:.1f}%, at or above {limit:g}%)",
                    round(percent, 1), subject,
                    ("Reduce Batch Size", "Enable Mixed Precision", "Enable Checkpointing")))
            elif percent < limit - float(self.settings["hysteresis"]):
                out.append(self.clear(event.run_id, subject))
        return out


@dataclass
class _Idle:
    live: bool = False
    idle: dict[str, int] = field(default_factory=dict)


class GpuIdle(Rule[_Idle]):
    """A GPU at or below ``util_percent`` for ``samples`` samples in a row while the run is live.

    Live: the run sent progress and has neither stalled nor ended (a stalled run is the stall
    rule's alert). A data-loader-bound run looks like this.
    """

    name = "gpu_idle"
    watches = frozenset({"training_progress", "run_state", "training_completed",
                         "training_failed", "host_metrics"})
    alert_type = "gpu_idle"
    clears_at_end = True

    def new_state(self) -> _Idle:
        """Not live yet."""
        return _Idle()

    def observe(self, event: ev.Event) -> list[Finding]:
        """Follow liveness from the run's events and count idle samples per GPU."""
        if event.run_id is None:
            return []
        if isinstance(event, ev.TrainingProgress):
            self.state(event.run_id).live = True
            return []
        if isinstance(event, ev.RunState) or ended(event):
            run = self.state(event.run_id)
            run.live = isinstance(event, ev.RunState) and event.state == "running"
            if not run.live:
                run.idle.clear()
            return []
        if not isinstance(event, ev.HostMetrics):
            return []
        run = self.state(event.run_id)
        out: list[Finding] = []
        limit = float(self.settings["util_percent"])
        for key, value in event.metrics.items():
            match = _GPU.match(key)
            if match is None:
                continue
            subject = f"gpu{match.group(1)}@{event.host}"
            if value > limit or not run.live:
                run.idle.pop(subject, None)
                out.append(self.clear(event.run_id, subject))
                continue
            run.idle[subject] = count = run.idle.get(subject, 0) + 1
            if count >= int(self.settings["samples"]):
                out.append(self.fire(
                    event.run_id, "GPU Idle While Training",
                    f"GPU {match.group(1)} of {event.host} (run {event.run_id}) is at "
                    f"{value:.0f}% utilisation for {count} samples while the run is live: "
                    "the data loader may be starving it",
                    round(float(value), 1), subject,
                    ("Add Data Loader Workers", "Enable pin_memory", "Prefetch Batches")))
        return out
