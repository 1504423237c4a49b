from __future__ import annotations

from collections.abc import Iterator

import pytest

from mlops_hooks.manager import reset_plugin_managers
from tests.recorder import Recorder, pm, recorder

__all__ = ["Recorder", "pm", "recorder"]


@pytest.fixture(autouse=True)
def _fresh_process_managers(monkeypatch) -> Iterator[None]:
    monkeypatch.setenv("MLOPS_HOOKS_DISABLE", "publisher")
    reset_plugin_managers()
    yield
    reset_plugin_managers()
