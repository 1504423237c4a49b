"""The publisher's settings: where to publish, and the knobs read from the environment.

Every setting has a constructor argument on :class:`~mlops_hooks.publisher.Publisher`; the
environment supplies the defaults:

* ``MLOPS_HOOKS_URL``: the server (default ``ws://127.0.0.1:8001/ws``);
* ``MLOPS_HOOKS_TOKEN``: sent as ``Authorization: Bearer <token>`` on the handshake;
* ``MLOPS_HOOKS_BUFFER``: events kept while the server is unreachable (default 10,000);
* ``MLOPS_HOOKS_FLUSH_TIMEOUT``: seconds to wait for delivery at exit (default 5);
* ``MLOPS_HOOKS_SYSTEM_INTERVAL``: seconds between samples of the training machine's health
  while a run is active (default 10; 0 disables; :mod:`mlops_hooks._publisher.system`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "DEFAULT_BUFFER",
    "DEFAULT_FLUSH_TIMEOUT",
    "DEFAULT_URL",
    "Settings",
    "env_float",
    "env_int",
    "is_loopback",
    "publish_url",
    "server_base",
]

DEFAULT_URL = "ws://127.0.0.1:8001/ws"
DEFAULT_BUFFER = 10_000
DEFAULT_FLUSH_TIMEOUT = 5.0

_SCHEMES = {"ws": "ws", "wss": "wss", "http": "ws", "https": "wss"}


def publish_url(url: str) -> str:
    """Derive the publish endpoint from a server URL.

    ``…/ws`` becomes ``…/ws/publish``; ``…/ws/publish`` is kept; a bare host (no path) gets
    ``/ws/publish``; ``http``/``https`` map to ``ws``/``wss``.

    Args:
        url: A server URL such as ``ws://127.0.0.1:8001/ws`` or ``https://mlops.example.com``.

    Returns:
        The ``ws://``/``wss://`` URL of the publish endpoint.

    Raises:
        ValueError: The scheme is not ws, wss, http or https, the host is missing, or the path
            ends in neither ``/ws`` nor ``/ws/publish``.

    Example:
        >>> publish_url("http://127.0.0.1:8001/ws")
        'ws://127.0.0.1:8001/ws/publish'
    """
    text = url.strip()
    parts = urlsplit(text)
    scheme = _SCHEMES.get(parts.scheme.lower())
    if scheme is None:
        raise ValueError(
            f"server URL must start with ws://, wss://, http:// or https://, got {url!r}"
        )
    if not parts.hostname:
        raise ValueError(f"server URL has no host: {url!r}")
    path = parts.path.rstrip("/")
    if path == "":
        path = "/ws/publish"
    elif path.endswith("/ws"):
        path += "/publish"
    elif not path.endswith("/ws/publish"):
        raise ValueError(
            f"server URL path must end in /ws (or /ws/publish), got {parts.path!r} in {url!r}"
        )
    return urlunsplit((scheme, parts.netloc, path, parts.query, ""))


def server_base(url: str) -> str:
    """``http(s)://host:port`` (plus any path prefix) of a server URL as the publisher takes it.

    Raises:
        ValueError: Not a server URL (the message says why).
    """
    ws = publish_url(url)
    scheme, rest = ws.split("://", 1)
    base = ("https" if scheme == "wss" else "http") + "://" + rest
    return base[: -len("/ws/publish")]


def is_loopback(url: str) -> bool:
    """Whether ``url`` points at this machine (no proxy is ever used for those)."""
    host = (urlsplit(url).hostname or "").lower()
    return host in ("localhost", "::1") or host.startswith("127.")


def env_int(name: str, default: int, minimum: int = 1) -> int:
    """Read a positive integer from the environment.

    Args:
        name: The variable.
        default: Used when the variable is unset or blank.
        minimum: The smallest accepted value.

    Returns:
        The value.

    Raises:
        ValueError: The value is not an integer >= ``minimum``; the message names the variable.
    """
    raw = os.environ.get(name, "").strip().replace("_", "")
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {raw!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {raw!r}")
    return value


def env_float(name: str, default: float) -> float:
    """Read a finite number of seconds >= 0 from the environment.

    Args:
        name: The variable.
        default: Used when the variable is unset or blank.

    Returns:
        The value.

    Raises:
        ValueError: The value is not a finite number >= 0; the message names the variable.
    """
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number of seconds >= 0, got {raw!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a number of seconds >= 0, got {raw!r}")
    return value


@dataclass(frozen=True)
class Settings:
    """Everything the background thread needs to know; validated on construction.

    Attributes:
        url: The publish endpoint (``ws://…/ws/publish``).
        token: Bearer token for the handshake, or ``None``.
        buffer_size: Events kept while undelivered before progress/metrics are dropped.
        max_inflight: Events sent but not yet acknowledged, at most.
        flush_timeout: Seconds :meth:`flush` and the exit flush wait by default.
        backoff_base: First reconnect delay ceiling, in seconds (doubles per failure).
        backoff_cap: Largest reconnect delay ceiling, in seconds.
        max_reconnect_attempts: Failed attempts in a row before ``max_reconnect_attempts``
            is reported (retrying continues at the capped delay).
        ping_interval: Seconds between latency probes on an open connection.
        reply_timeout: Seconds without a reply to the oldest message before the connection is
            considered dead and reopened.
        open_timeout: Seconds allowed for the TCP + WebSocket handshake and the first pong.
        poll_interval: How long new events may wait before the background thread looks, in
            seconds (the training thread never wakes it, which keeps ``emit`` cheap).
        system_interval: Seconds between samples of this machine while a run is active
            (0: none); ``MLOPS_HOOKS_SYSTEM_INTERVAL`` by default.
    """

    url: str
    token: str | None = None
    buffer_size: int = DEFAULT_BUFFER
    max_inflight: int = 256
    flush_timeout: float = DEFAULT_FLUSH_TIMEOUT
    backoff_base: float = 0.25
    backoff_cap: float = 10.0
    max_reconnect_attempts: int = 5
    ping_interval: float = 5.0
    reply_timeout: float = 15.0
    open_timeout: float = 5.0
    poll_interval: float = 0.02
    system_interval: float = field(
        default_factory=lambda: env_float("MLOPS_HOOKS_SYSTEM_INTERVAL", 10.0))

    def __post_init__(self) -> None:
        for name in ("buffer_size", "max_inflight", "max_reconnect_attempts"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("flush_timeout", "backoff_base", "backoff_cap", "ping_interval",
                     "reply_timeout", "open_timeout", "poll_interval", "system_interval"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a number of seconds >= 0, got {value!r}")
        for name in ("ping_interval", "reply_timeout", "open_timeout", "poll_interval"):
            if getattr(self, name) == 0:
                raise ValueError(f"{name} must be > 0, got 0")
        if self.backoff_cap < self.backoff_base:
            raise ValueError(
                f"backoff_cap ({self.backoff_cap}) must be >= backoff_base ({self.backoff_base})"
            )
