from __future__ import annotations

import os

# Keras reads its backend once, at import: the adapter tests run it on PyTorch.
os.environ.setdefault("KERAS_BACKEND", "torch")

from collections.abc import Iterator

import pytest

from mlops_hooks import events as ev
from mlops_hooks.manager import reset_plugin_managers
from tests.recorder import Recorder, pm, recorder

#: Warnings a small CPU Lightning ``Trainer`` raises that say nothing about a test: the start of
#: the ``pytestmark`` of Lightning tests.
LIGHTNING_WARNINGS = [
    pytest.mark.filterwarnings("ignore:.*does not have many workers:UserWarning"),
    pytest.mark.filterwarnings("ignore:.*GPU available but not used:UserWarning"),
    pytest.mark.filterwarnings("ignore:.*number of training batches.*:UserWarning"),
    pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning"),
]

__all__ = ["Recorder", "pm", "recorder"]


@pytest.fixture(autouse=True)
def _quiet_process_managers(monkeypatch) -> Iterator[None]:
    # Nothing in these tests talks to a server; the console would only add noise.
    monkeypatch.setenv("MLOPS_HOOKS_DISABLE", "publisher,console")
    monkeypatch.delenv("MLOPS_HOOKS_AUTO", raising=False)
    reset_plugin_managers()
    yield
    reset_plugin_managers()


def assert_one_run(recorder: Recorder) -> str:
    """Every training event carries the same run_id; return it."""
    ids = {e.run_id for e in recorder.events if e.type != "prediction_volume"}
    assert len(ids) == 1 and None not in ids, ids
    return ids.pop()


def assert_progress_monotonic_to_100(recorder: Recorder) -> None:
    values = [e.progress for e in recorder.progress() if e.progress is not None]
    assert values, "no progress percentages"
    assert values == sorted(values), values
    assert values[-1] == 100


def assert_wire_valid(recorder: Recorder) -> None:
    for event in recorder.events:  # everything emitted survives strict decoding
        assert ev.decode(ev.encode(event)) == event
