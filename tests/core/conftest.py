from __future__ import annotations

from collections.abc import Iterator

import pytest

from mlops_hooks import events as ev
from mlops_hooks.manager import create_plugin_manager, hookimpl, reset_plugin_managers


class Recorder:
    """A plugin that keeps every event it receives."""

    def __init__(self) -> None:
        self.events: list[ev.Event] = []
        self.sides: list[str] = []

    @hookimpl
    def mlops_event(self, event: ev.Event, side: str) -> None:
        self.events.append(event)
        self.sides.append(side)

    def of_type(self, kind: str) -> list:
        return [e for e in self.events if e.type == kind]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def pm(recorder: Recorder):
    manager = create_plugin_manager("training", builtins=False, entrypoints=False)
    manager.register(recorder, name="recorder")
    return manager


@pytest.fixture(autouse=True)
def _fresh_process_managers(monkeypatch) -> Iterator[None]:
    monkeypatch.setenv("MLOPS_HOOKS_DISABLE", "publisher")
    reset_plugin_managers()
    yield
    reset_plugin_managers()
