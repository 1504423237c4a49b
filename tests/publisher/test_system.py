"""The training machine's health: sampled on the publisher thread, stored as system/... series."""

from __future__ import annotations

import sys
import threading
import time
import types
from collections import deque
from typing import Any

import httpx
import pytest

from mlops_hooks import events as ev
from mlops_hooks._publisher.config import Settings
from mlops_hooks._publisher.system import SystemSampler
from mlops_hooks.publisher import Publisher
from tests.live_server import LiveServer

QUIET = ["--metrics-interval", "0", "--stall-timeout", "0"]


def _progress(run_id: str, step: int) -> ev.TrainingProgress:
    return ev.TrainingProgress(run_id=run_id, stage="model_training", current_step=step,
                               current_loss=1 / (step + 1))


def _wait_until(read: Any, what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_run_gets_system_series_from_its_own_machine_sampled_off_the_training_thread(
        tmp_path, monkeypatch):
    monkeypatch.setenv("MLOPS_HOOKS_SYSTEM_INTERVAL", "0.2")
    with LiveServer(tmp_path, extra_args=QUIET) as server:
        pub = Publisher(server.ws_url)
        try:
            pub.publish(_progress("sys-1", 1))

            def system_series() -> dict[str, list[list[float]]] | None:
                got = httpx.get(f"{server.http_url}/api/runs/sys-1/metrics", timeout=10)
                if got.status_code != 200:
                    return None
                series = {k: v for k, v in got.json()["series"].items()
                          if k.startswith("system/")}
                ok = series and all(len(v) >= 2 for v in series.values())
                return series if ok else None

            series = _wait_until(system_series, "system/... series with >= 2 points")
            worker = pub._worker
            assert worker is not None
            threads = set(worker.system.threads)
            pub.publish(ev.TrainingCompleted(run_id="sys-1", model_name="m"))
            assert pub.flush(10)
        finally:
            pub.close(10)
        state = httpx.get(f"{server.http_url}/api/runs/sys-1", timeout=10).json()
    assert threads == {"mlops-hooks-publisher"}, threads  # never the training thread
    assert threading.current_thread().name not in threads
    for key in ("system/cpu_percent", "system/process_cpu_percent", "system/process_rss_mb",
                "system/memory_percent"):
        assert key in series, sorted(series)
    steps = [s for s, _ in series["system/process_rss_mb"]]
    assert steps == sorted(steps) and steps[0] >= 0  # whole seconds since the run started
    assert all(v > 0 for _, v in series["system/process_rss_mb"])
    assert all(0 <= v <= 100 for _, v in series["system/memory_percent"])
    assert not any(k.startswith("system/gpu") for k in series)  # no GPU here: nothing invented
    assert "system/cpu_percent" in state["run"]["series_keys"]


class _Nvml(types.ModuleType):
    """A stand-in for ``pynvml`` implementing the calls the sampler uses (two GPUs)."""

    NVML_TEMPERATURE_GPU = 0

    class NVMLError(Exception):
        pass

    def __init__(self) -> None:
        super().__init__("pynvml")
        self.inits = 0

    def nvmlInit(self) -> None:
        self.inits += 1

    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(self, i: int) -> str:
        return f"h{i}"

    def nvmlDeviceGetUtilizationRates(self, h: str) -> Any:
        return types.SimpleNamespace(gpu=87 if h == "h0" else 3, memory=40)

    def nvmlDeviceGetMemoryInfo(self, h: str) -> Any:
        return types.SimpleNamespace(used=6 * 2**30, total=16 * 2**30, free=10 * 2**30)

    def nvmlDeviceGetTemperature(self, h: str, sensor: int) -> int:
        if h == "h1":
            raise self.NVMLError("Not Supported")
        return 71

    def nvmlDeviceGetPowerUsage(self, h: str) -> int:
        return 212_500  # milliwatts


def _sample_once(sampler: SystemSampler, run_id: str = "r-1") -> list[ev.HostMetrics]:
    inbox: deque[Any] = deque()
    sampler.observe(_progress(run_id, 1), time.time())
    sampler.tick(inbox)  # primes (and nvmlInit)
    sampler.next_due = 0.0
    sampler.tick(inbox)
    return [item[0] for item in inbox]


def test_gpus_through_nvml_with_absent_values_left_out(monkeypatch):
    fake = _Nvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    sampler = SystemSampler(5.0)
    assert sampler.nvml is fake
    [event] = _sample_once(sampler)
    assert fake.inits == 1
    assert event.run_id == "r-1" and event.host and event.elapsed_s >= 0
    m = event.metrics
    assert m["gpu0/util_percent"] == 87 and m["gpu1/util_percent"] == 3
    assert m["gpu0/memory_used_mb"] == 6144 and m["gpu0/memory_total_mb"] == 16384
    assert m["gpu0/temperature_c"] == 71 and "gpu1/temperature_c" not in m
    assert m["gpu0/power_w"] == 212.5
    assert not any(k.startswith("gpu2/") for k in m)
    assert ev.decode(ev.encode(event)) == event  # valid on the wire


def test_without_nvml_there_are_no_gpu_keys_and_a_failing_init_is_no_gpu():
    broken = _Nvml()
    broken.nvmlInit = lambda: (_ for _ in ()).throw(RuntimeError("no driver"))  # type: ignore[method-assign]
    for nvml in (None, broken):
        [event] = _sample_once(SystemSampler(5.0, nvml=nvml))
        assert not any(k.startswith("gpu") for k in event.metrics)


def test_the_proc_fallback_without_psutil():
    if not sys.platform.startswith("linux"):
        pytest.skip("the fallback reads /proc (Linux)")
    sampler = SystemSampler(5.0, psutil=None, nvml=None)
    sum(i * i for i in range(200_000))  # some CPU time between the two readings
    [event] = _sample_once(sampler)
    m = event.metrics
    assert m["process_rss_mb"] > 1 and 0 <= m["memory_percent"] <= 100
    assert "process_cpu_percent" in m and 0 <= m.get("cpu_percent", 0) <= 100


def test_only_active_runs_are_sampled_and_interval_0_samples_nothing():
    sampler = SystemSampler(5.0, nvml=None)
    inbox: deque[Any] = deque()
    sampler.tick(inbox)
    assert not inbox  # no run yet
    assert len(_sample_once(sampler)) == 1
    sampler.observe(ev.TrainingCompleted(run_id="r-1", model_name="m"), time.time())
    sampler.next_due = 0.0
    inbox.clear()
    sampler.tick(inbox)
    assert not inbox and not sampler.runs
    off = SystemSampler(0)
    assert off.psutil is None and off.nvml is None  # nothing imported when off
    assert _sample_once(off) == []


def test_the_interval_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("MLOPS_HOOKS_SYSTEM_INTERVAL", "0")
    assert Publisher("ws://127.0.0.1:9/ws").settings.system_interval == 0
    monkeypatch.delenv("MLOPS_HOOKS_SYSTEM_INTERVAL")
    assert Settings(url="ws://127.0.0.1:9/ws/publish").system_interval == 10.0
    for bad in ("often", "-1", "nan"):
        monkeypatch.setenv("MLOPS_HOOKS_SYSTEM_INTERVAL", bad)
        with pytest.raises(ValueError, match="MLOPS_HOOKS_SYSTEM_INTERVAL"):
            Publisher("ws://127.0.0.1:9/ws")


def test_a_sampling_error_never_raises():
    class Broken:
        def Process(self) -> Any:
            raise OSError("gone")

    sampler = SystemSampler(5.0, psutil=Broken(), nvml=None)  # type: ignore[arg-type]
    assert _sample_once(sampler) == []  # nothing measurable: no event at all
