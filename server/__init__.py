"""The mlops-hooks broadcaster: a Starlette app that ingests events and fans them out live.

Importing this package needs the ``[server]`` extra (Starlette, uvicorn, psutil,
python-multipart). The public entry points are :func:`create_app` and :class:`ServerConfig`;
``mlops-hooks serve`` runs the app under uvicorn.

Example:
    >>> from mlops_hooks.server import ServerConfig, create_app
    >>> app = create_app(ServerConfig(db=":memory:"))  # doctest: +SKIP
"""

from __future__ import annotations

from mlops_hooks.server.app import create_app
from mlops_hooks.server.config import ServerConfig

__all__ = ["ServerConfig", "create_app"]
