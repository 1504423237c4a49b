"""The training machine's health, sampled by the publisher's background thread.

Every ``MLOPS_HOOKS_SYSTEM_INTERVAL`` seconds (default 10; 0 disables) while a run is active,
:class:`SystemSampler` measures process and host CPU %, process RSS and host memory % (with
``psutil`` when it is installed, the ``system`` extra; else from ``/proc`` on Linux, a
hand-written fallback; else not at all), and per GPU utilisation %, memory used/total,
temperature and power through NVML (the ``pynvml`` module of the optional ``nvidia-ml-py``
package), plus ``torch.cuda.max_memory_allocated`` when torch has already initialised CUDA.
Nothing is fabricated: a value the machine cannot give is absent from the sample.

The optional modules are imported when the worker is built, on the thread that starts the
publisher: the background thread itself never imports (see ``Publisher._start``). Sampling,
NVML initialisation included, happens only on the background thread, and never raises.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
import time
from collections import deque
from types import ModuleType
from typing import Any

from mlops_hooks import events as ev
from mlops_hooks._publisher.config import env_float

__all__ = ["DEFAULT_SYSTEM_INTERVAL", "SYSTEM_INTERVAL_ENV", "SystemSampler", "system_interval"]

SYSTEM_INTERVAL_ENV = "MLOPS_HOOKS_SYSTEM_INTERVAL"
DEFAULT_SYSTEM_INTERVAL = 10.0
_MB = 1024 * 1024
_now, _wall = time.monotonic, time.time  # bound at import: a test patching time never feeds us
_START = (ev.TrainingProgress, ev.RunParams)
_END = (ev.TrainingCompleted, ev.TrainingFailed)


def system_interval() -> float:
    """Seconds between samples from ``MLOPS_HOOKS_SYSTEM_INTERVAL`` (default 10; 0: off).

    Raises:
        ValueError: The value is not a finite number >= 0; the message names the variable.
    """
    return env_float(SYSTEM_INTERVAL_ENV, DEFAULT_SYSTEM_INTERVAL)


def _optional(name: str) -> ModuleType | None:
    """Import an optional module, or ``None`` when it is missing or broken."""
    try:
        if name == "psutil":
            import psutil

            return psutil  # type: ignore[no-any-return, unused-ignore]
        import pynvml  # type: ignore[import-not-found, unused-ignore]

        return pynvml  # type: ignore[no-any-return, unused-ignore]
    except Exception:
        return None


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii") as f:
            return f.read()
    except OSError:
        return None


class SystemSampler:
    """Samples this machine for the active runs (background thread only after construction).

    Args:
        interval: Seconds between samples (0: the sampler does nothing, imports nothing).
        psutil: The ``psutil`` module, ``None`` for the ``/proc`` fallback; imported when left
            out.
        nvml: The ``pynvml`` module, ``None`` for no GPUs; imported when left out.
    """

    def __init__(self, interval: float, *, psutil: ModuleType | bool | None = True,
                 nvml: ModuleType | bool | None = True) -> None:
        self.interval = interval
        on = interval > 0
        self.psutil = (_optional("psutil") if on else None) if psutil is True else psutil or None
        self.nvml = (_optional("pynvml") if on else None) if nvml is True else nvml or None
        self.host = socket.gethostname() or "localhost"
        self.runs: dict[str, float] = {}  # run_id -> wall time of its first event
        self.next_due = 0.0
        self.primed = False
        self.gpus: list[Any] | None = None
        self.threads: deque[str] = deque(maxlen=8)  # names of the sampling threads (tests)
        self._proc: Any = None
        self._cpu: tuple[float, float] | None = None
        self._times: tuple[float, float] | None = None

    def observe(self, event: ev.Event, at: float) -> None:
        """Track which runs are active from the events passing through."""
        run_id = event.run_id
        if run_id is None or self.interval <= 0:
            return
        if isinstance(event, _START):
            if run_id not in self.runs and len(self.runs) < 64:
                self.runs[run_id] = at
                if len(self.runs) == 1:
                    self.next_due = _now() + self.interval
        elif isinstance(event, _END):
            self.runs.pop(run_id, None)

    def tick(self, inbox: deque[Any]) -> None:
        """Append one ``host_metrics`` event per active run to ``inbox`` when a sample is due."""
        if not self.runs:
            return
        now = _now()
        if not self.primed:
            self.primed = True
            self._guard(self._prime)
        if now < self.next_due:
            return
        self.next_due = now + self.interval
        metrics: dict[str, float] = {}
        self._guard(lambda: self.sample(metrics))
        if not metrics:
            return
        wall = _wall()
        for run_id, started in self.runs.items():
            event = ev.HostMetrics(run_id=run_id, host=self.host, metrics=dict(metrics),
                                   elapsed_s=round(max(0.0, wall - started), 3))
            inbox.append((event, wall))

    @staticmethod
    def _guard(call: Any) -> None:
        with contextlib.suppress(Exception):  # monitoring never raises into anything
            call()

    # ------------------------------------------------------------------ measuring

    def _prime(self) -> None:
        """First readings: CPU percentages are differences between two readings."""
        if self.psutil is not None:
            self._proc = self.psutil.Process()
            self._proc.cpu_percent(None)
            self.psutil.cpu_percent(None)
        else:
            self._cpu = self._proc_stat()
            self._times = self._process_times()
        if self.nvml is not None:
            try:
                self.nvml.nvmlInit()
                count = int(self.nvml.nvmlDeviceGetCount())
                self.gpus = [self.nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
            except Exception:
                self.gpus = None

    def sample(self, out: dict[str, float]) -> None:
        """Add every value this machine can give to ``out`` (keys without ``system/``)."""
        self.threads.append(threading.current_thread().name)
        self._cpu_memory(out)
        self._gpus(out)
        self._torch(out)

    def _cpu_memory(self, out: dict[str, float]) -> None:
        ps = self.psutil
        if ps is not None:
            _put(out, "process_cpu_percent", lambda: self._proc.cpu_percent(None))
            _put(out, "cpu_percent", lambda: ps.cpu_percent(None))
            _put(out, "process_rss_mb", lambda: self._proc.memory_info().rss / _MB)
            _put(out, "memory_percent", lambda: ps.virtual_memory().percent)
            return
        times, cpu = self._process_times(), self._proc_stat()
        if times is not None and self._times is not None and times[1] > self._times[1]:
            out["process_cpu_percent"] = round(
                100 * (times[0] - self._times[0]) / (times[1] - self._times[1]), 2)
        if cpu is not None and self._cpu is not None and cpu[0] > self._cpu[0]:
            busy = 1 - (cpu[1] - self._cpu[1]) / (cpu[0] - self._cpu[0])
            out["cpu_percent"] = round(100 * min(1.0, max(0.0, busy)), 2)
        self._times, self._cpu = times, cpu
        statm = _read("/proc/self/statm")
        if statm is not None:
            out["process_rss_mb"] = round(int(statm.split()[1]) * os.sysconf("SC_PAGE_SIZE")
                                          / _MB, 2)
        meminfo = _read("/proc/meminfo")
        if meminfo is not None:
            fields = {line.split(":")[0]: line.split()[1] for line in meminfo.splitlines()
                      if ":" in line and len(line.split()) > 1}
            if "MemTotal" in fields and "MemAvailable" in fields:
                total, available = int(fields["MemTotal"]), int(fields["MemAvailable"])
                if total > 0:
                    out["memory_percent"] = round(100 * (1 - available / total), 2)

    @staticmethod
    def _process_times() -> tuple[float, float] | None:
        t = os.times()
        return (t.user + t.system, _now())

    @staticmethod
    def _proc_stat() -> tuple[float, float] | None:
        """``(total, idle)`` jiffies of the host from ``/proc/stat`` (Linux), else ``None``."""
        text = _read("/proc/stat")
        if text is None or not text.startswith("cpu "):
            return None
        values = [float(v) for v in text.splitlines()[0].split()[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0.0)
        return (sum(values[:8]), idle)

    def _gpus(self, out: dict[str, float]) -> None:
        nv = self.nvml
        if nv is None or not self.gpus:
            return
        for i, handle in enumerate(self.gpus):
            self._gpu(out, nv, f"gpu{i}/", handle)

    @staticmethod
    def _gpu(out: dict[str, float], nv: Any, p: str, handle: Any) -> None:
        _put(out, p + "util_percent", lambda: nv.nvmlDeviceGetUtilizationRates(handle).gpu)
        _put(out, p + "memory_used_mb", lambda: nv.nvmlDeviceGetMemoryInfo(handle).used / _MB)
        _put(out, p + "memory_total_mb",
             lambda: nv.nvmlDeviceGetMemoryInfo(handle).total / _MB)
        _put(out, p + "temperature_c",
             lambda: nv.nvmlDeviceGetTemperature(handle, nv.NVML_TEMPERATURE_GPU))
        _put(out, p + "power_w", lambda: nv.nvmlDeviceGetPowerUsage(handle) / 1000)

    @staticmethod
    def _torch(out: dict[str, float]) -> None:
        torch = sys.modules.get("torch")  # only when training imported it: never imported here
        cuda = getattr(torch, "cuda", None)
        if cuda is None or not cuda.is_initialized():  # never creates a CUDA context
            return
        for i in range(cuda.device_count()):
            _put(out, f"gpu{i}/torch_max_allocated_mb", cuda.max_memory_allocated, i, scale=_MB)


def _put(out: dict[str, float], key: str, read: Any, *args: Any, scale: float = 1) -> None:
    """Store ``read(*args) / scale`` under ``key`` when it is a finite number; else nothing."""
    try:
        value = float(read(*args)) / scale
    except Exception:
        return
    if value == value and abs(value) != float("inf"):
        out[key] = round(value, 2)
