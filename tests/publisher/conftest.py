"""Fixtures for the publisher's tests (helpers live in :mod:`tests.publisher.support`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mlops_hooks.manager import PluginManager
from mlops_hooks.publisher import Publisher
from tests.publisher.support import FAST, Server, States
from tests.recorder import bare_manager
from tests.redis_server import redis_server

__all__ = ["redis_server"]  # a fixture too (fails or skips without redis-server)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """A server of the test's own (to kill, restart or configure)."""
    srv = Server(tmp_path / "server")
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server shared by a module's tests (each test uses its own ``run_id``s)."""
    srv = Server(tmp_path_factory.mktemp("shared-server"))
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def states() -> States:
    return States()


@pytest.fixture
def plugin_manager(states: States) -> PluginManager:
    return bare_manager(states=states)


@pytest.fixture
def make_publisher(plugin_manager: PluginManager) -> Iterator[Callable[..., Publisher]]:
    """Publishers registered in ``plugin_manager``, closed (without waiting) after the test."""
    made: list[Publisher] = []

    def make(url: str, **kwargs: Any) -> Publisher:
        publisher = Publisher(url, plugin_manager=plugin_manager, **{**FAST, **kwargs})
        plugin_manager.register(publisher, name=f"publisher-{len(made)}")
        made.append(publisher)
        return publisher

    yield make
    for publisher in made:
        publisher.close(0)
