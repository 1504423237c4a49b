"""What ``mlops-hooks demo`` was asked to do, and how much work each stage does."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

__all__ = ["FULL", "QUICK", "DemoOptions", "Plan", "default_workdir"]


@dataclass(frozen=True)
class Plan:
    """The size of every stage (one plan for a real demo, one for ``--quick``).

    Attributes:
        epochs: Epochs of the Lightning MLP.
        batch_size: Its batch size (small batches make the run last about a minute).
        lr: Its learning rate.
        hidden: Widths of its hidden layers.
        rows: Rows of the digits data used (``None``: all 1,797).
        probe_lr: Learning rate of the probe that diverges (``training_failed``).
        grid_c: Values of ``C`` the grid search tries.
        cv: Cross-validation folds of the grid search.
        n_jobs: Its worker processes (capped by the cores available).
        predictions: Requests in the burst of prediction traffic.
        prediction_rate: Requests per second during the burst.
        incident: Start and end of the malformed-request incident, as fractions of the burst.
        incident_share: Share of requests that are malformed during the incident.
        monitor_interval: ``PredictionMonitor`` seconds between throttled events.
        monitor_window: ``PredictionMonitor`` window for rates and the error rate, seconds.
        metrics_interval: Seconds between the server's ``system_metrics`` samples.
        spike_timeout: Longest the CPU load spike runs while waiting for ``health_change``.
        recovery_timeout: Longest to wait for health to recover after the spike.
        upload_seconds: How long the CSV upload is stretched over (so its progress shows).
    """

    epochs: int
    batch_size: int
    lr: float
    hidden: tuple[int, ...]
    rows: int | None
    probe_lr: float
    grid_c: tuple[float, ...]
    cv: int
    n_jobs: int
    predictions: int
    prediction_rate: float
    incident: tuple[float, float]
    incident_share: float
    monitor_interval: float
    monitor_window: float
    metrics_interval: float
    spike_timeout: float
    recovery_timeout: float
    upload_seconds: float


#: About two minutes on 2 CPU cores, one of them the Lightning run (14,400 steps of 8 images).
FULL = Plan(
    epochs=80, batch_size=8, lr=0.001, hidden=(256, 128), rows=None, probe_lr=0.5,
    grid_c=(0.01, 0.1, 1.0, 10.0), cv=5, n_jobs=2,
    predictions=6_000, prediction_rate=500.0, incident=(0.25, 0.4), incident_share=0.3,
    monitor_interval=1.0, monitor_window=5.0, metrics_interval=1.0, spike_timeout=20.0,
    recovery_timeout=15.0, upload_seconds=2.0)

#: A few seconds of work (the test suite's smoke run).
QUICK = Plan(
    epochs=2, batch_size=32, lr=0.1, hidden=(32,), rows=600, probe_lr=1.5,
    grid_c=(0.1, 1.0), cv=2, n_jobs=1,
    predictions=1_200, prediction_rate=1_500.0, incident=(0.5, 0.8), incident_share=0.5,
    monitor_interval=0.25, monitor_window=5.0, metrics_interval=0.5, spike_timeout=15.0,
    recovery_timeout=0.0, upload_seconds=0.3)


def default_workdir() -> Path:
    """Where the demo keeps its files by default: ``<mlops-hooks data dir>/demo``."""
    from mlops_hooks.server.config import data_dir

    return data_dir() / "demo"


@dataclass(frozen=True)
class DemoOptions:
    """The command line of ``mlops-hooks demo``, validated.

    Attributes:
        host: Interface the server binds.
        port: Its TCP port.
        db: SQLite history file; the demo's other files (the CSV it writes, uploads, the
            server's log) go in the same directory. ``None``: ``<data dir>/demo``.
        train: Run the work (``--no-train``: only serve).
        quick: Shrink the work to a few seconds.
        exit_after_work: Stop once the work is done instead of serving until Ctrl-C.
    """

    host: str = "127.0.0.1"
    port: int = 8001
    db: str | None = None
    train: bool = True
    quick: bool = False
    exit_after_work: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host.strip():
            raise ValueError(f"--host must be a host name or address, got {self.host!r}")
        if isinstance(self.port, bool) or not isinstance(self.port, int) \
                or not 1 <= self.port <= 65535:
            raise ValueError(f"--port must be an integer from 1 to 65535, got {self.port!r}")
        if self.db is not None and (not self.db.strip() or self.db == ":memory:"):
            raise ValueError(f"--db must be a file path (the demo keeps its files beside it), "
                             f"got {self.db!r}")

    @property
    def plan(self) -> Plan:
        """The stage sizes."""
        return QUICK if self.quick else FULL

    @property
    def workdir(self) -> Path:
        """The directory of the history file, the CSV, the uploads and the server's log."""
        if self.db is not None:
            return Path(self.db).expanduser().resolve().parent
        return default_workdir()

    @property
    def db_path(self) -> Path:
        """The SQLite history file."""
        if self.db is not None:
            return Path(self.db).expanduser().resolve()
        return self.workdir / "history.sqlite3"

    @property
    def client_host(self) -> str:
        """The address clients on this machine use (a wildcard bind is reached on loopback)."""
        host = self.host.strip("[]")
        try:
            if ipaddress.ip_address(host).is_unspecified:
                return "::1" if ":" in host else "127.0.0.1"
        except ValueError:
            pass
        return host

    @property
    def http_url(self) -> str:
        """The dashboard's URL."""
        host = self.client_host
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    @property
    def ws_url(self) -> str:
        """The subscribe endpoint (publishers derive ``/ws/publish`` from it)."""
        return "ws" + self.http_url[4:] + "/ws"

