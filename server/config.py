"""The server's settings: one frozen dataclass, validated when built.

``mlops-hooks serve`` builds a :class:`ServerConfig` from its flags; tests and embedders build one
directly. Every limit that keeps the server's memory bounded lives here.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path

from mlops_hooks.server.alerts.config import AlertConfig

__all__ = ["DEFAULT_PORT", "IDEMPOTENCY_WINDOW", "MAX_BODY_BYTES", "ServerConfig", "data_dir"]

DEFAULT_PORT = 8001
#: Largest ``POST /api/events`` body.
MAX_BODY_BYTES = 1024 * 1024
#: ``event_id`` keys recognised as re-sends: the newest this many, the same in memory (the
#: backends) and on disk (the history), so a re-send within the window is recognised after a
#: restart too.
IDEMPOTENCY_WINDOW = 100_000


def data_dir() -> Path:
    """The per-user data directory of mlops-hooks (XDG on Linux, the usual places elsewhere)."""
    if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":  # pragma: no cover - exercised on macOS only
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "mlops-hooks"


def _positive(name: str, value: float, *, integer: bool = False, zero: bool = False) -> None:
    bad = isinstance(value, bool) or not isinstance(value, (int, float))
    bad = bad or (integer and not isinstance(value, int))
    bad = bad or not math.isfinite(value) or value < 0 or (value == 0 and not zero)
    if bad:
        kind = "an integer" if integer else "a number"
        limit = ">= 0" if zero else "> 0"
        raise ValueError(f"ServerConfig.{name} must be {kind} {limit}, got {value!r}")


@dataclass(frozen=True)
class ServerConfig:
    """Settings of one broadcaster server.

    Attributes:
        host: Interface to bind (``127.0.0.1`` unless told otherwise).
        port: TCP port; ``0`` when the app is not served on a socket (unit tests).
        db: SQLite history file, ``":memory:"``, or ``None`` for the default under the user's
            data directory (``~/.local/share/mlops-hooks/history.sqlite3``).
        token: Publisher token; when set, publishing needs ``Authorization: Bearer <token>``.
        subscriber_token: Optional token dashboards must present (``?token=`` or Bearer).
        allowed_origins: Extra browser origins allowed on WebSockets and POSTs (``"*"``: any).
        allowed_hosts: Extra ``Host`` names accepted (DNS-rebinding guard; ``"*"``: any).
        backend: Where events are sequenced and streamed: ``memory://`` or ``redis://...``.
        replay_size: Events kept for ``?since=`` replay.
        queue_max_bytes: Byte budget of one subscriber's outgoing queue; above it the
            subscriber is closed with 4008.
        queue_max_events: Event budget of one subscriber's outgoing queue.
        metrics_interval: Seconds between ``system_metrics`` samples (``0`` disables the monitor).
        stall_timeout: Seconds without an event before a running run is marked stalled
            (``0`` disables the watchdog).
        crash_grace: Seconds a live run whose publisher connection closed (or stopped its
            heartbeats) has to be carried by a publisher again before it is ``crashed``.
        heartbeat_timeout: Seconds without a publisher connection's heartbeat (its ping,
            every 5 s by default) before its runs wait out ``crash_grace``; also how long runs
            left live by a restart wait for their publishers to reconnect (plus the grace).
        stall_factor: A running run is ``stalled`` after this many times its median step
            time without a step ...
        stall_floor: ... and never before this many seconds.
        upload_dir: Where ``POST /api/files`` stores files (default: ``<data dir>/uploads``).
        max_upload_bytes: Largest accepted upload.
        upload_quota_bytes: Total size the upload directory may reach; an upload that would
            pass it is refused with 507.
        max_connections: Cap on open dashboard (``/ws``) connections; past it a handshake is
            refused with 503.
        max_publishers: Cap on open ``/ws/publish`` connections, a budget of their own, so
            dashboards never crowd publishers out (503 past it).
        max_open_connections: Cap on all open TCP connections, HTTP and WebSocket (``None``:
            as many as the descriptor limit allows); ``serve`` keeps it below the limit.
        request_timeout: Seconds a client has to send a whole request (line and headers, a
            WebSocket handshake included), and the longest pause inside a request body;
            then the connection is closed.
        slow_close_timeout: Seconds a connection closed by the server (a slow subscriber's
            4008) may take to read the rest of its data and the close frame before it is
            aborted.
        probe: Measure ``ws_response_time_ms``/``api_response_time_ms`` with a loopback probe.
        alerts: The alert rules' and notifiers' settings (docs/alerts.md).
        public_url: Base URL of the dashboard in notifications' links to run pages (default:
            ``http://<host>:<port>``).
        allow_relaunch: Enable the built-in launcher: Retry/Retrain re-run a run's captured
            command line on this machine (needs ``token``; docs/security.md).
    """

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    db: str | None = None
    token: str | None = None
    subscriber_token: str | None = None
    allowed_origins: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    backend: str = "memory://"
    replay_size: int = 10_000
    queue_max_bytes: int = 4 * 1024 * 1024
    queue_max_events: int = 4096
    metrics_interval: float = 5.0
    stall_timeout: float = 120.0
    crash_grace: float = 5.0
    heartbeat_timeout: float = 30.0
    stall_factor: float = 5.0
    stall_floor: float = 30.0
    upload_dir: str | None = None
    max_upload_bytes: int = 100 * 1024 * 1024
    upload_quota_bytes: int = 1024 * 1024 * 1024
    max_connections: int = 1000
    max_publishers: int = 100
    max_open_connections: int | None = None
    request_timeout: float = 5.0
    slow_close_timeout: float = 30.0
    probe: bool = True
    alerts: AlertConfig = field(default_factory=AlertConfig)
    public_url: str | None = None
    allow_relaunch: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host:
            raise ValueError(f"ServerConfig.host must be a non-empty string, got {self.host!r}")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or \
                not 0 <= self.port <= 65535:
            raise ValueError(f"ServerConfig.port must be an integer 0-65535, got {self.port!r}")
        for name in ("replay_size", "queue_max_bytes", "queue_max_events", "max_upload_bytes",
                     "upload_quota_bytes", "max_connections", "max_publishers"):
            _positive(name, getattr(self, name), integer=True)
        if self.max_open_connections is not None:
            _positive("max_open_connections", self.max_open_connections, integer=True)
        for name in ("metrics_interval", "stall_timeout", "crash_grace"):
            _positive(name, getattr(self, name), zero=True)
        for name in ("stall_factor", "stall_floor", "heartbeat_timeout"):
            _positive(name, getattr(self, name))
        _positive("slow_close_timeout", self.slow_close_timeout)
        _positive("request_timeout", self.request_timeout)
        for name in ("token", "subscriber_token"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ValueError(f"ServerConfig.{name} must be a non-empty string or None")
        if self.allow_relaunch and self.token is None:
            raise ValueError("allow_relaunch (--allow-relaunch) needs a publisher token "
                             "(--token): relaunching runs commands on this machine")
        if "://" not in self.backend:
            raise ValueError(
                f"ServerConfig.backend must be a URL such as 'memory://' or "
                f"'redis://localhost:6379/0', got {self.backend!r}"
            )
        if not isinstance(self.alerts, AlertConfig):
            raise ValueError(f"ServerConfig.alerts must be an AlertConfig, got {self.alerts!r}")
        from_file = self.alerts.sections["notify"]["public_url"]
        if self.public_url is None and from_file:
            object.__setattr__(self, "public_url", from_file)
        if self.public_url is not None and (
                not isinstance(self.public_url, str)
                or not self.public_url.startswith(("http://", "https://"))):
            raise ValueError(f"ServerConfig.public_url (--public-url, [notify] public_url) must "
                             f"be an http:// or https:// URL, got {self.public_url!r}")
        # Tuples stay tuples even when a caller passes lists.
        object.__setattr__(self, "allowed_origins", tuple(self.allowed_origins))
        object.__setattr__(self, "allowed_hosts", tuple(self.allowed_hosts))

    @property
    def db_path(self) -> str:
        """The SQLite path to open (``":memory:"`` stays as it is)."""
        if self.db is None:
            return str(data_dir() / "history.sqlite3")
        return self.db

    @property
    def upload_path(self) -> Path:
        """The upload directory (not created here)."""
        if self.upload_dir is None:
            return data_dir() / "uploads"
        return Path(self.upload_dir)

    @property
    def link_base(self) -> str:
        """Where notifications link to: :attr:`public_url`, else the bind address."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def describe(self) -> dict[str, object]:
        """The settings without secrets (for logs and ``/healthz``)."""
        out: dict[str, object] = {}
        for f in fields(self):
            if f.name in ("token", "subscriber_token"):
                out[f.name] = "set" if getattr(self, f.name) else None
            elif f.name == "alerts":  # notifier URLs carry tokens: counted, never shown
                out[f.name] = {"rules": self.alerts.enabled(),
                               "notifiers": len(self.alerts.notify_urls)
                               + len(self.alerts.webhooks)}
            else:
                out[f.name] = getattr(self, f.name)
        return out
