"""The in-process recording plugin the unit tests register on a fresh plugin manager."""

from __future__ import annotations

import pytest

from mlops_hooks import events as ev
from mlops_hooks.manager import PluginManager, create_plugin_manager, hookimpl


class Recorder:
    """A plugin that keeps every event it receives, and the side it was called on."""

    def __init__(self) -> None:
        self.events: list[ev.Event] = []
        self.sides: list[str] = []

    @hookimpl
    def mlops_event(self, event: ev.Event, side: str) -> None:
        self.events.append(event)
        self.sides.append(side)

    def of_type(self, kind: str) -> list:
        return [e for e in self.events if e.type == kind]

    def progress(self) -> list[ev.TrainingProgress]:
        return self.of_type("training_progress")

    def stages(self) -> list[str]:
        """Stages in the order they were entered (consecutive repeats collapsed)."""
        out: list[str] = []
        for event in self.progress():
            if not out or out[-1] != event.stage:
                out.append(event.stage)
        return out


def bare_manager(**plugins: object) -> PluginManager:
    """A training-side manager with only ``plugins`` (by name): no built-ins, no entry points."""
    manager = create_plugin_manager("training", builtins=False, entrypoints=False)
    for name, plugin in plugins.items():
        manager.register(plugin, name=name)
    return manager


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def pm(recorder: Recorder) -> PluginManager:
    """A training-side manager with only the recorder."""
    return bare_manager(recorder=recorder)
