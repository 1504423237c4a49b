from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mlops_hooks import events as ev
from mlops_hooks.manager import hookimpl
from mlops_hooks.server import ServerConfig, create_app
from mlops_hooks.server.alerts import AlertConfig
from mlops_hooks.server.backends import MemoryBackend, Published

with warnings.catch_warnings():
    # Starlette prefers httpx2; the httpx it finds works the same for these tests.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

__all__ = ["TestClient"]

class ServerRecorder:
    """A server-side plugin that keeps what it receives."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.sides: list[str] = []

    @hookimpl
    def mlops_event(self, event: Any, side: str) -> None:
        self.events.append(event)
        self.sides.append(side)


class RefusingBackend(MemoryBackend):
    """The in-memory backend, made to refuse events like a Redis that is away.

    Attributes:
        down: Refuse every event while true.
        refuse_once: ``event_id`` values refused the first time they arrive.
        refused: ``event_id`` of every refused event, in order.
        refused_types: ``type`` of every refused event, in order.
    """

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.refuse_once: set[str] = set()
        self.refused: list[str | None] = []
        self.refused_types: list[str] = []

    async def publish(self, event: ev.Event) -> Published:
        if self.down or event.event_id in self.refuse_once:
            self.refuse_once.discard(event.event_id or "")
            self.refused.append(event.event_id)
            self.refused_types.append(event.type)
            raise ConnectionError("the test backend refuses it")
        return await super().publish(event)

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "connected": not self.down}


def unit_config(tmp_path: Path, **overrides: Any) -> ServerConfig:
    settings: dict[str, Any] = {
        "db": ":memory:", "port": 0, "allowed_hosts": ("testserver",),
        "upload_dir": str(tmp_path / "uploads"), "metrics_interval": 0, "stall_timeout": 0,
        # the alert rules raise events of their own: off unless a test asks for them
        "alerts": AlertConfig.build({"alerts": {"enabled": False}}),
    }
    settings.update(overrides)
    return ServerConfig(**settings)


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[Callable[..., TestClient]]:
    """Build a TestClient around a fresh app (lifespan started); closed at the end."""
    clients: list[TestClient] = []

    def make(plugins: Any = None, backend: Any = None, **overrides: Any) -> TestClient:
        app = create_app(unit_config(tmp_path, **overrides), plugins=plugins, backend=backend)
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in reversed(clients):
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()


def progress(run_id: str = "run-1", pct: float = 10, **extra: Any) -> dict[str, Any]:
    return {"type": "training_progress", "run_id": run_id, "progress": pct,
            "stage": "model_training", **extra}


def activity(n: int, size: int = 0) -> dict[str, Any]:
    return {"type": "activity_update",
            "activity": {"id": f"act_{n}", "title": f"Activity {n}",
                         "description": "x" * size or None}}
