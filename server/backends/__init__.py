"""Event backends, picked by URL scheme and imported lazily.

``memory://`` (the default) keeps everything in this process. ``redis://`` / ``rediss://``
(the ``[redis]`` extra) lets several servers share one stream.

:class:`Record` and :func:`make_record` are re-exported from the stream layer, which owns them,
for the backends' convenience.
"""

from __future__ import annotations

import importlib
from urllib.parse import urlsplit

from mlops_hooks.server.backends.base import Backend, Deliver, Published
from mlops_hooks.server.backends.memory import MemoryBackend
from mlops_hooks.server.stream.record import Record, make_record

__all__ = [
    "BACKENDS",
    "Backend",
    "Deliver",
    "MemoryBackend",
    "Published",
    "Record",
    "create_backend",
    "make_record",
]

#: URL scheme → ``"module:factory"``; a factory takes ``(url, *, replay_size)``.
BACKENDS: dict[str, str] = {
    "memory": "mlops_hooks.server.backends.memory:MemoryBackend",
    "redis": "mlops_hooks.server.backends.redis:RedisBackend",
    "rediss": "mlops_hooks.server.backends.redis:RedisBackend",
}


def create_backend(url: str, *, replay_size: int = 10_000) -> Backend:
    """Build the backend a URL names.

    Args:
        url: ``memory://`` or ``redis://host:port/db`` (``rediss://`` for TLS).
        replay_size: Records kept for ``?since=`` replay.

    Returns:
        The backend, not started yet.

    Raises:
        ValueError: The scheme is unknown, or its backend is not available in this install.
    """
    scheme = urlsplit(url).scheme.lower()
    target = BACKENDS.get(scheme)
    if target is None:
        known = ", ".join(f"{s}://" for s in BACKENDS)
        raise ValueError(f"unknown backend URL {url!r}: the scheme must be one of {known}")
    if scheme == "memory":
        return MemoryBackend(replay_size=replay_size)
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ValueError(
            f"the {scheme}:// backend is not available ({exc}); install mlops-hooks[redis]"
        ) from None
    backend: Backend = getattr(module, attr)(url, replay_size=replay_size)
    return backend
